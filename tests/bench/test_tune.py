"""`tune`: each method's learning rate chosen on the validation split (issue 26). Candidates and their
names, the choice (validation only, ties to the lower rate), the later seeds at the chosen rate,
restartability, --dry-run, and zero-shot on a language Whisper has no token for."""

from __future__ import annotations

import json

import pytest

from dama.bench import grid as grid_mod
from dama.bench.config import NAME_PATTERN, load_config, lr_label
from dama.bench.grid import _settings, _settings_path, cells, check_settings, choose, run_dir, run_grid, train_command
from dama.errors import DamaError
from tests.bench.tunegrid import TUNED, cell_named, finish, write_config


def names(cfg) -> list[str]:
    return [c.name for c in cells(cfg)]


def test_rates_are_named_short_and_safe():
    assert [lr_label(x) for x in (3e-4, 1e-3, 3.0e-3, 2.5e-4, 1e-5, 0.1)] == [
        "3e-4", "1e-3", "3e-3", "2.5e-4", "1e-5", "1e-1"]


def test_candidates_per_rate_at_the_tune_seed_the_own_rate_is_the_plain_run(tmp_path):
    cfg = write_config(tmp_path)
    assert cfg.tune.lr == [3e-4, 1e-3, 3e-3]  # "3e-3" (text to YAML) is read as a number too
    grid = cells(cfg)
    assert [c.name for c in grid] == [
        "sw-zero-shot",
        "sw-0.5h-dama-lr-3e-4-s0", "sw-0.5h-dama-s0", "sw-0.5h-dama-lr-3e-3-s0",
        "sw-0.5h-lora-lr-3e-4-s0", "sw-0.5h-lora-s0", "sw-0.5h-lora-lr-3e-3-s0",
        "sw-0.5h-dama-lr-chosen-s1", "sw-0.5h-lora-lr-chosen-s1"]  # seed 1: once the rate is chosen
    assert all(NAME_PATTERN.fullmatch(c.name) for c in grid if not c.pending)
    by = {c.name: c for c in grid}
    plain = train_command(cfg, by["sw-0.5h-dama-s0"])
    assert "--lr" not in plain  # the method's own rate: exactly the untuned grid's command
    low = train_command(cfg, by["sw-0.5h-dama-lr-3e-4-s0"])
    assert low[-2:] == ["--lr", "0.0003"] and low[:-2] == [x.replace("dama-s0", "dama-lr-3e-4-s0") for x in plain]
    with pytest.raises(DamaError, match="no run folder until its learning rate is chosen"):
        run_dir(cfg, by["sw-0.5h-dama-lr-chosen-s1"])


def test_the_own_rate_comes_from_the_method_not_from_a_constant(tmp_path, monkeypatch):
    from dama.adapt import METHODS

    monkeypatch.setattr(METHODS["dama"], "default_lr", 3e-4)  # `dama train` would now use 3e-4 without --lr
    cfg = write_config(tmp_path, TUNED + "method_args: {lora: {lr: 3.0e-3}}\n")
    seed0 = [n for n in names(cfg) if n.endswith("-s0")]
    assert seed0 == ["sw-0.5h-dama-s0", "sw-0.5h-dama-lr-1e-3-s0", "sw-0.5h-dama-lr-3e-3-s0",
                     "sw-0.5h-lora-lr-3e-4-s0", "sw-0.5h-lora-lr-1e-3-s0", "sw-0.5h-lora-s0"]
    lora = train_command(cfg, cell_named(cfg, "sw-0.5h-lora-s0"))
    assert lora[-2:] == ["--lr", "0.003"]  # the method's own lr option, as the untuned grid runs it
    assert train_command(cfg, cell_named(cfg, "sw-0.5h-lora-lr-1e-3-s0"))[-2:] == ["--lr", "0.001"]


def test_the_rate_with_the_lowest_validation_wer_is_chosen_never_the_test_split(tmp_path):
    cfg = write_config(tmp_path)
    # test WER says 3e-4, validation says 3e-3: validation decides
    finish(cfg, "sw-0.5h-dama-lr-3e-4-s0", val=0.60, test=0.3, lr=3e-4)
    finish(cfg, "sw-0.5h-dama-s0", val=0.55, test=0.5)
    assert choose(cfg, cfg.languages[0], 0.5, "dama").rate is None  # one candidate still missing
    assert "sw-0.5h-dama-lr-chosen-s1" in names(cfg)
    finish(cfg, "sw-0.5h-dama-lr-3e-3-s0", val=0.45, test=0.7, lr=3e-3)
    ch = choose(cfg, cfg.languages[0], 0.5, "dama")
    assert ch.rate == 3e-3 and ch.chosen.name == "sw-0.5h-dama-lr-3e-3-s0"
    assert [v for _, _, v in ch.candidates] == [0.60, 0.55, 0.45]
    assert "sw-0.5h-dama-lr-3e-3-s1" in names(cfg) and "sw-0.5h-dama-lr-chosen-s1" not in names(cfg)
    assert train_command(cfg, cell_named(cfg, "sw-0.5h-dama-lr-3e-3-s1"))[-2:] == ["--lr", "0.003"]


def test_a_tie_goes_to_the_lower_rate_and_the_own_rate_chosen_runs_the_plain_seed(tmp_path):
    cfg = write_config(tmp_path)
    finish(cfg, "sw-0.5h-lora-lr-3e-4-s0", val=0.50, test=0.5, lr=3e-4)
    finish(cfg, "sw-0.5h-lora-s0", val=0.40, test=0.5)
    finish(cfg, "sw-0.5h-lora-lr-3e-3-s0", val=0.40, test=0.5, lr=3e-3)
    assert choose(cfg, cfg.languages[0], 0.5, "lora").rate == 1e-3
    assert "sw-0.5h-lora-s1" in names(cfg)  # the plain run: an untuned grid's seed 1 is reused as it is
    assert "--lr" not in train_command(cfg, cell_named(cfg, "sw-0.5h-lora-s1"))


def test_a_candidate_is_chosen_from_only_once_it_has_finished_with_its_forgetting(tmp_path):
    cfg = write_config(tmp_path)
    for name, lr in (("sw-0.5h-dama-lr-3e-4-s0", 3e-4), ("sw-0.5h-dama-s0", 1e-3)):
        finish(cfg, name, val=0.5, test=0.5, lr=lr)
    finish(cfg, "sw-0.5h-dama-lr-3e-3-s0", val=0.1, test=0.5, lr=3e-3, forgetting=False)
    assert choose(cfg, cfg.languages[0], 0.5, "dama").rate is None


def test_a_candidate_without_validation_wer_is_a_clear_error(tmp_path):
    cfg = write_config(tmp_path)
    finish(cfg, "sw-0.5h-dama-s0", val=None, test=0.5)
    with pytest.raises(DamaError, match=r"sw-0.5h-dama-s0/results.json has no validation WER \(best_val_wer\)"):
        cells(cfg)


def test_dry_run_lists_candidates_and_the_later_seeds_once_chosen(tmp_path, capsys):
    from dama.cli.main import main

    cfg = write_config(tmp_path)
    finish(cfg, "sw-zero-shot", val=None, test=0.9, lr=None)
    finish(cfg, "sw-0.5h-dama-s0", val=0.55, test=0.5)
    path = str(tmp_path / "bench.yaml")
    assert main(["bench", "--config", path, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "9 runs, 2 already finished, 7 to run" in out
    assert "tune: sw 0.5h dama: 1 of 3 candidates finished (validation WER: 3e-4 –, 1e-3 0.550, 3e-3 –)" in out
    listed = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert len(listed) == 7 and "--out " + str(cfg.runs_dir / "sw-0.5h-dama-lr-3e-4-s0") in listed[0]
    assert listed[-2] == ("sw-0.5h-dama-lr-chosen-s1: seed 1 of dama at the rate chosen on validation, once its "
                          "3 candidates (sw-0.5h-dama-lr-3e-4-s0, sw-0.5h-dama-s0, sw-0.5h-dama-lr-3e-3-s0) "
                          "have finished (1 of 3 so far)")
    finish(cfg, "sw-0.5h-dama-lr-3e-4-s0", val=0.60, test=0.5, lr=3e-4)
    finish(cfg, "sw-0.5h-dama-lr-3e-3-s0", val=0.65, test=0.5, lr=3e-3)
    assert main(["bench", "--config", path, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "tune: sw 0.5h dama: lr 1e-3 chosen on validation WER (3e-4 0.600, 1e-3 0.550, 3e-3 0.650)" in out
    listed = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert any("--out " + str(cfg.runs_dir / "sw-0.5h-dama-s1") in x for x in listed)
    assert not any("dama-lr-chosen" in x for x in listed)


def test_an_untuned_grids_runs_are_the_tuned_grids_candidates(tmp_path):
    """The reuse of issue 26: bench.yaml's finished 0.5 h runs (and an ablation's lr variant) count."""
    base = TUNED.replace("tune: {lr: [3.0e-4, 1.0e-3, 3e-3], methods: [dama, lora], seed: 0}\n", "")
    plain = write_config(tmp_path / "main", base)
    ablation = write_config(tmp_path / "ablation", base.replace("out: g", "out: ab\nruns: ../main/g/runs").replace(
        "[zero-shot, dama, lora]", "[dama, dama-lr-3e-3]") + "variants: {dama-lr-3e-3: {method: dama, lr: 0.003}}\n")
    tuned = write_config(tmp_path / "tuned", TUNED.replace("out: g", "out: t\nruns: ../main/g/runs"))
    for cfg, name in ((plain, "sw-0.5h-dama-s0"), (ablation, "sw-0.5h-dama-lr-3e-3-s0")):
        cell = cell_named(cfg, name)
        finish(cfg, name, val=0.5, test=0.5)
        _settings_path(cfg, cell).parent.mkdir(parents=True, exist_ok=True)
        _settings_path(cfg, cell).write_text(json.dumps(_settings(cfg, cell)))
    check_settings(tuned)  # the same settings: no complaint
    ch = choose(tuned, tuned.languages[0], 0.5, "dama")
    assert [v for _, _, v in ch.candidates] == [None, 0.5, 0.5]
    longer = write_config(tmp_path / "longer", TUNED.replace("out: g", "out: t\nruns: ../main/g/runs")
                          + "train: {epochs: 9}\n")
    with pytest.raises(DamaError, match="2 run\\(s\\) .* other settings"):
        check_settings(longer)


@pytest.fixture
def fake_training(monkeypatch):
    """`dama train` and `dama eval` replaced by writing a finished run: validation WER per run name."""
    val = {"sw-0.5h-dama-lr-3e-4-s0": 0.7, "sw-0.5h-dama-s0": 0.6, "sw-0.5h-dama-lr-3e-3-s0": 0.5,
           "sw-0.5h-lora-lr-3e-4-s0": 0.4, "sw-0.5h-lora-s0": 0.5, "sw-0.5h-lora-lr-3e-3-s0": 0.6}
    ran: list[str] = []

    def fake(argv, log_path):
        from pathlib import Path

        from tests.bench.tunegrid import write_run

        if argv[argv.index("-m") + 2] == "train":
            out = Path(argv[argv.index("--out") + 1])
            ran.append(out.name)
            write_run(out, val=val.get(out.name, 0.5), test=0.5, forgetting=False)
        else:
            Path(argv[argv.index("--json") + 1]).write_text(json.dumps({"wer": 0.2}))
        return 0

    monkeypatch.setattr(grid_mod, "_run_logged", fake)
    return ran


def test_the_grid_runs_the_candidates_then_only_the_chosen_rates_seeds(tmp_path, fake_training):
    cfg = write_config(tmp_path)
    log: list[str] = []
    assert run_grid(cfg, log=log.append) == []
    assert fake_training == ["sw-zero-shot",
                             "sw-0.5h-dama-lr-3e-4-s0", "sw-0.5h-dama-s0", "sw-0.5h-dama-lr-3e-3-s0",
                             "sw-0.5h-lora-lr-3e-4-s0", "sw-0.5h-lora-s0", "sw-0.5h-lora-lr-3e-3-s0",
                             "sw-0.5h-dama-lr-3e-3-s1", "sw-0.5h-lora-lr-3e-4-s1"]
    assert "tune: sw 0.5h dama: lr 3e-3 chosen on validation WER (3e-4 0.700, 1e-3 0.600, 3e-3 0.500)" in log
    assert any(x.startswith("[9/9] sw-0.5h-lora-lr-3e-4-s1 finished") for x in log)
    fake_training.clear()
    assert run_grid(cfg, log=log.append) == [] and fake_training == []  # restarted: the same choice, all done


def test_an_only_pattern_reaches_the_chosen_seed_once_it_has_a_name(tmp_path, fake_training):
    cfg = write_config(tmp_path)
    run_grid(cfg, log=lambda m: None, only=["sw-0.5h-lora-*"])
    assert fake_training == ["sw-0.5h-lora-lr-3e-4-s0", "sw-0.5h-lora-s0", "sw-0.5h-lora-lr-3e-3-s0",
                             "sw-0.5h-lora-lr-3e-4-s1"]  # the pattern matches seed 1 once it has a name


def test_a_chosen_rates_run_made_elsewise_is_refused_when_it_appears(tmp_path, fake_training):
    cfg = write_config(tmp_path)
    (cfg.runs_dir / "sw-0.5h-lora-lr-3e-4-s1").mkdir(parents=True)  # the seed-1 run lora will get, made elsewise
    cfg.logs_dir.mkdir(parents=True)
    (cfg.logs_dir / "sw-0.5h-lora-lr-3e-4-s1.settings.json").write_text(json.dumps(["train", "--epochs", "99"]))
    with pytest.raises(DamaError, match="sw-0.5h-lora-lr-3e-4-s1"):
        run_grid(cfg, log=lambda m: None, only=["sw-0.5h-lora-*"])


@pytest.mark.parametrize("text,match", [
    (TUNED.replace("methods: [dama, lora], seed: 0", "methods: [dama, dora]"), r"tune.methods: 'dora'"),
    (TUNED.replace("methods: [dama, lora], seed: 0", "methods: [zero-shot]"), r"tune.methods: 'zero-shot'"),
    (TUNED.replace("seed: 0}", "seed: 5}"), r"tune.seed 5 is not one of the grid's seeds"),
    (TUNED.replace("3e-3]", "-1]"), r"tune.lr: -1 is not a learning rate"),
    (TUNED.replace("3e-3]", "fast]"), r"tune.lr: 'fast' is not a number"),
    (TUNED.replace("3e-3]", "0.0003]"), r"tune.lr lists a rate twice"),
    (TUNED.replace("seed: 0}", "seed: 0, steps: 3}"), r"tune: unknown key\(s\) \['steps'\]"),
    (TUNED.replace("language: sw}", "language: sw, val: none}"), r"languages.sw has val: none"),
    (TUNED.replace("[zero-shot, dama, lora]", "[zero-shot, dama, lora, dama-lr-3e-3]")
     + "variants: {dama-lr-3e-3: {method: dama, lr: 0.003}}\n", r"candidate of dama at lr 0.003 is named dama-lr-3e-3"),
])
def test_bad_tune_settings_name_the_file_and_field(tmp_path, text, match):
    (tmp_path / "bench.yaml").write_text(text)
    with pytest.raises(DamaError, match=match) as e:
        load_config(tmp_path / "bench.yaml")
    assert str(tmp_path / "bench.yaml") in str(e.value)


def test_quick_trains_at_the_methods_own_rates(tmp_path):
    q = write_config(tmp_path).quick()
    assert q.tune is None and names(q) == ["sw-zero-shot", "sw-0.5h-dama-s0", "sw-0.5h-lora-s0"]


# ---- zero-shot on a language Whisper lacks ---------------------------------------------------------

NEW = """out: g
methods: [zero-shot, dama]
languages: {kinyarwanda: {train: "kinyarwanda:train"}, pidgin: {train: "pidgin:train"}}
hours: [0.5]
"""


def test_zero_shot_of_a_new_language_decodes_with_the_recipes_proxy(tmp_path):
    from dama.data.recipes import RECIPES

    cfg = write_config(tmp_path, NEW)
    by = {c.name: c for c in cells(cfg)}
    for lang in ("kinyarwanda", "pidgin"):
        zs = train_command(cfg, by[f"{lang}-zero-shot"])
        proxy = RECIPES[lang].zero_shot_proxy
        assert proxy and zs[zs.index("--language") + 1] == proxy and "--language-name" not in zs
        assert RECIPES[lang].language not in zs  # never the untrained new token
        trained = train_command(cfg, by[f"{lang}-0.5h-dama-s0"])
        assert "--language" not in trained  # `dama train` adds the new token by itself
    en = write_config(tmp_path / "own", NEW.replace('{train: "kinyarwanda:train"}',
                                                    '{train: "kinyarwanda:train", zero_shot_proxy: sw}'))
    zs = train_command(en, cells(en)[0])
    assert zs[zs.index("--language") + 1] == "sw"


def test_a_named_new_language_takes_its_language_and_name_in_training(tmp_path):
    cfg = write_config(tmp_path, NEW.replace('{train: "pidgin:train"}',
                                             '{train: "pidgin:train", language: pcm, language_name: Naija}'))
    by = {c.name: c for c in cells(cfg)}
    trained = " ".join(train_command(cfg, by["pidgin-0.5h-dama-s0"]))
    assert "--language pcm --language-name Naija" in trained
    zs = train_command(cfg, by["pidgin-zero-shot"])
    assert zs[zs.index("--language") + 1] == "en" and "--language-name" not in zs


@pytest.mark.parametrize("lang,match", [
    ('{train: "x.jsonl", language: xx, language_name: Xish}', r"languages.x: Whisper has no token for Xish"),
    ('{train: "kinyarwanda:train", zero_shot_proxy: klingon}', r"languages.x.zero_shot_proxy: unknown language"),
])
def test_a_new_language_without_a_usable_proxy_is_refused(tmp_path, lang, match):
    (tmp_path / "bench.yaml").write_text(f"out: g\nmethods: [zero-shot, dama]\nlanguages: {{x: {lang}}}\n")
    with pytest.raises(DamaError, match=match) as e:
        load_config(tmp_path / "bench.yaml")
    assert str(tmp_path / "bench.yaml") in str(e.value)
    (tmp_path / "bench.yaml").write_text(f"out: g\nmethods: [dama]\nlanguages: {{x: {lang}}}\n")
    load_config(tmp_path / "bench.yaml")  # no zero-shot: nothing to decode with a proxy


def test_the_committed_six_language_grid():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[2] / "benchmarks" / "six-languages.yaml")
    main = load_config(Path(__file__).resolve().parents[2] / "benchmarks" / "bench.yaml")
    assert cfg.runs_dir == main.runs_dir and cfg.train == main.train and cfg.data_seed == main.data_seed
    assert [x.name for x in cfg.languages] == ["swahili", "yoruba", "amharic", "malagasy", "kinyarwanda", "pidgin"]
    assert cfg.tune.lr == [3e-4, 1e-3, 3e-3] and cfg.tune.methods == ["dama", "lora"] and cfg.tune.seed == 0
    grid = cells(cfg)
    assert len(grid) == 6 + 6 * 2 * 3 + 6 * 2
    assert [c.method for c in grid[:6]] == ["zero-shot"] * 6
    assert [c.name for c in grid[6:12]] == [f"swahili-0.5h-{m}-s0" for m in (
        "dama-lr-3e-4", "dama", "dama-lr-3e-3", "lora-lr-3e-4", "lora", "lora-lr-3e-3")]
    assert all(c.seed == 1 for c in grid[6 + 36:])
    # the main grid's runs have the same names and commands
    for name in ("swahili-0.5h-dama-s0", "yoruba-0.5h-lora-s0", "swahili-zero-shot"):
        a, b = cell_named(cfg, name), cell_named(main, name)
        assert _settings(cfg, a) == _settings(main, b)
