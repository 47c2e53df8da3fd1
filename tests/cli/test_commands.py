"""The command modules: flags derived from the settings' dataclasses (one source for every default),
the options a bench grid may set, `dama data download`, and --json of probe and bench."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields, replace
from types import SimpleNamespace

import pytest

from dama.cli.main import build_parser, main
from dama.errors import DamaError

# what bench/config.py's hand-kept TRAIN_OPTIONS held when train_option_names() replaced it
OLD_TRAIN_OPTIONS = {
    "epochs", "batch_size", "grad_accum", "lr", "warmup", "schedule", "precision", "val_max_utts", "patience",
    "save_every", "low_memory", "device", "threads", "rank", "alpha_ratio", "r_high", "r_low", "ranks",
    "segments", "uniform_rank", "random_init", "no_bpp", "cache_dir", "allocation", "allocation_measure",
}


def _train_args(*flags):
    return build_parser().parse_args(["train", "--data", "x", "--out", "y", *flags])


def _help(*command) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    return " ".join(out.getvalue().split())  # unwrapped


def test_train_flags_and_their_defaults_come_from_the_dataclasses():
    from dama.adapt.options import OPTION_CLASSES, flag_of
    from dama.train.config import TrainConfig, cli_fields

    text = _help("train")
    for cls in (TrainConfig, *OPTION_CLASSES):
        for f in cli_fields(cls):
            assert flag_of(f) in text, f.name
            if f.default is not None and not isinstance(f.default, bool):
                assert f"(default: {f.default})" in text, f.name
    assert "--weight-decay" not in text and "--stop-after-steps" not in text  # cli=False


def test_flags_not_given_leave_the_dataclass_defaults():
    from dama.adapt import make_method
    from dama.cli.train import method_options, train_config
    from dama.train.config import TrainConfig

    args = _train_args()
    assert args.epochs is None and args.warmup is None and args.no_bpp is None and args.rank is None
    assert train_config(args) == TrainConfig()
    assert method_options(args) == {}
    assert make_method(args.method, **method_options(args)) == make_method("dama")


def test_flags_reach_the_fields_they_name():
    from dama.cli.train import method_options, train_config

    cfg = train_config(_train_args("--epochs", "2", "--warmup", "0.2", "--low-memory", "--schedule", "cosine"))
    assert (cfg.epochs, cfg.warmup_frac, cfg.low_memory, cfg.schedule) == (2, 0.2, True, "cosine")
    opts = method_options(_train_args("--r-high", "16", "--segments", "2,5", "--ranks", "8,4,4,4,4,8", "--no-bpp",
                                      "--random-init", "--uniform-rank", "--alpha-ratio", "1"))
    assert opts == {"r_high": 16, "l_early": 2, "l_late": 5, "ranks": (8, 4, 4, 4, 4, 8), "bpp": False,
                    "svd_init": False, "uniform": True, "alpha_ratio": 1.0}
    assert method_options(_train_args("--method", "lora", "--rank", "8")) == {"r": 8}
    assert method_options(_train_args("--method", "lora", "--r-high", "8")) == {}  # not lora's: ignored
    with pytest.raises(DamaError, match="--rank does not apply to dama"):
        method_options(_train_args("--rank", "8"))
    with pytest.raises(DamaError, match="apply to --method dama only"):
        method_options(_train_args("--method", "pissa", "--no-bpp"))
    with pytest.raises(DamaError, match="--segments takes L_EARLY,L_LATE"):
        method_options(_train_args("--segments", "2"))
    with pytest.raises(DamaError, match="comma-separated integers"):
        method_options(_train_args("--ranks", "8,x"))


def test_method_config_from_options_is_the_library_call():
    from dama.adapt.options import method_config_from_options

    m = method_config_from_options("dama", r_high=16, no_bpp=True, rank=None)
    assert (m.r_high, m.bpp, m.r_low) == (16, False, 8)
    with pytest.raises(DamaError, match="unknown method option"):
        method_config_from_options("dama", rnak=4)
    with pytest.raises(DamaError, match="unknown method"):
        method_config_from_options("lorra")


def test_train_options_a_grid_may_set_are_the_train_flags():
    from dama.train.config import TrainConfig, train_option_names

    names = train_option_names()
    # options added since
    assert names == OLD_TRAIN_OPTIONS | {"report_to", "no_kv_cache", "timestamp_share", "effective_batch",
                                         "gradient_checkpointing", "rehearsal", "rehearsal_share",
                                         "rehearsal_targets"}
    args = vars(_train_args())
    assert names <= set(args)  # each one is a `dama train` flag (stored under its option name)
    with pytest.raises(DamaError, match="unknown training option"):
        TrainConfig.from_options(warmup_frac=0.2)  # the field's name; the option is --warmup


def test_method_classes_inherit_the_option_fields():
    from dama.adapt import METHODS
    from dama.adapt.options import CommonOptions, DamaOptions, RankOptions

    for name, cls in METHODS.items():
        own = {f.name: f.default for f in fields(cls)}
        assert own["alpha_ratio"] == CommonOptions.alpha_ratio
        if "r" in own:
            assert own["r"] == RankOptions.r, name
    assert [f.name for f in fields(METHODS["dama"])][-len(fields(DamaOptions)):] == [f.name for f in
                                                                                      fields(DamaOptions)]


def test_every_help_answers_without_torch():
    commands = [[], ["model", "fetch"], ["transcribe"], ["eval"], ["train"], ["export"], ["data", "download"],
                ["data", "synth"], ["cache", "info"], ["probe"], ["plan"], ["bench"], ["languages"]]
    code = ("import sys\nfrom dama.cli.main import main\n"
            f"for c in {commands!r}:\n"
            "    try:\n        main([*c, '--help'])\n    except SystemExit:\n        pass\n"
            "assert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_held_out_specs_default_to_the_corpus_splits():
    from dama.data.spec import held_out_spec, sibling_split

    assert sibling_split("swahili:train", "val") == "swahili:val"
    assert sibling_split("fleurs-control", "val") is None  # no val split
    assert sibling_split("swahili:train,yoruba:train", "val") is None
    assert sibling_split("m.jsonl", "test") is None
    assert held_out_spec(None, "yoruba:train", "test") == "yoruba:test"
    assert held_out_spec("none", "yoruba:train", "test") is None
    assert held_out_spec("x.jsonl", "yoruba:train", "test") == "x.jsonl"


def test_data_download_calls_the_recipe(tmp_path, capsys, monkeypatch):
    from dama.data.recipes import RECIPES

    got = []

    def fake(dest):
        got.append(dest)
        dest.mkdir(parents=True)
        return dest

    monkeypatch.setitem(RECIPES, "swahili", replace(RECIPES["swahili"], download=fake))
    assert main(["data", "download", "swahili", "--out", str(tmp_path / "d"), "--json", str(tmp_path / "j.json")]) == 0
    assert got == [tmp_path / "d" / "swahili"]
    assert json.loads((tmp_path / "j.json").read_text())["path"] == str(tmp_path / "d" / "swahili")
    assert f"--data-root {tmp_path / 'd'}" in capsys.readouterr().out
    assert main(["data", "download", "klingon", "--out", str(tmp_path / "d")]) == 2
    assert "not a known corpus" in capsys.readouterr().err


def test_data_download_offline_is_one_line_naming_the_source(tmp_path, capsys, monkeypatch):
    from dama.data.recipes import swahili

    def offline(cmd, **kw):
        raise subprocess.CalledProcessError(128, cmd)

    monkeypatch.setattr("dama.data.recipes._records.subprocess.run", offline)
    assert main(["data", "download", "swahili", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and swahili.CORPUS.source_url in err and "network" in err

    def no_git(cmd, **kw):
        raise FileNotFoundError(2, "No such file or directory", "git")

    monkeypatch.setattr("dama.data.recipes._records.subprocess.run", no_git)
    assert main(["data", "download", "yoruba", "--out", str(tmp_path)]) == 2
    assert "needs git" in capsys.readouterr().err


def test_probe_writes_its_result_to_json(tmp_path, monkeypatch):
    res = {"model": "m", "layers": 2, "stacks": {}}
    monkeypatch.setattr("dama.data.spec.load_data", lambda spec, root=None: [spec])
    monkeypatch.setattr("dama.models.load.load_whisper", lambda *a, **k: "w")
    monkeypatch.setattr("dama.probe.run_probe", lambda *a, **k: res)
    monkeypatch.setattr("dama.probe.table", lambda r: "table")
    monkeypatch.setattr("dama.probe.write_probe", lambda r, out: (out, out + ".png"))
    assert main(["probe", "--data", "x", "--out", str(tmp_path / "p.json"), "--json", str(tmp_path / "j.json")]) == 0
    assert json.loads((tmp_path / "j.json").read_text()) == res


def test_bench_writes_the_collected_results_to_json(tmp_path, monkeypatch):
    cfg = SimpleNamespace(out=tmp_path / "b", logs_dir=tmp_path / "b" / "logs", quick=lambda: cfg)
    data = {"runs_total": 1, "runs_finished": 1, "summary": [], "runs": [{"run": "r"}]}
    monkeypatch.setattr("dama.bench.load_config", lambda path: cfg)
    monkeypatch.setattr("dama.bench.grid.check_launcher", lambda c: None)
    monkeypatch.setattr("dama.bench.grid.check_settings", lambda c: None)
    monkeypatch.setattr("dama.bench.run_grid", lambda c, **k: [])
    monkeypatch.setattr("dama.bench.collect", lambda c: data)
    monkeypatch.setattr("dama.bench.write_results", lambda c, d: (tmp_path / "r.json", tmp_path / "r.csv"))
    seen = {}
    monkeypatch.setattr("dama.bench.write_report", lambda c, d, cmd: seen.setdefault("cmd", cmd) and "report.md")
    assert main(["bench", "--config", "c.yaml", "--json", str(tmp_path / "j.json")]) == 0
    out = json.loads((tmp_path / "j.json").read_text())
    assert out["runs_total"] == 1 and out["failed"] == [] and out["runs"] == [{"run": "r"}]
    assert seen["cmd"] == "dama bench --config c.yaml"  # --json does not change the grid: not in the report
