from pathlib import Path

import pytest

from dama.bench.config import load_config
from dama.bench.grid import cells, forgetting_command, select, train_command
from dama.errors import DamaError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path, text: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    p = tmp_path / "bench.yaml"
    p.write_text(text)
    return p


def test_committed_config_loads_and_expands():
    cfg = load_config(REPO / "benchmarks" / "bench.yaml")
    assert cfg.out == REPO / "benchmarks" / "cpu-whisper-base"
    assert cfg.hours == [0.5, None]
    assert [p.name for p in cfg.speed] == ["method_speed_cpu.json", "method_speed_cpu_xeon.json"]
    grid = cells(cfg)
    # one zero-shot per language + 7 trained methods x 2 languages x 2 amounts x 2 seeds
    assert len(grid) == 2 + 7 * 2 * 2 * 2
    assert [c.name for c in grid[:3]] == ["swahili-zero-shot", "yoruba-zero-shot", "swahili-0.5h-dama-s0"]
    assert len({c.name for c in grid}) == len(grid)
    q = cfg.quick()
    assert q.out.name == "cpu-whisper-base-quick"
    assert [c.name for c in cells(q)] == ["swahili-zero-shot", "swahili-0.5h-dama-s0", "swahili-0.5h-lora-s0"]
    assert q.test_limit == 40 and q.train["val_max_utts"] == 10 and q.control_per_language == 5
    assert cfg.control_per_language == 0  # the grid itself measures forgetting on every control clip
    argv = forgetting_command(q, cells(q)[1])
    assert argv[argv.index("--limit-per-language") + 1] == "5"
    assert "--limit-per-language" not in forgetting_command(cfg, grid[2])


def test_commands_carry_the_grid_settings(tmp_path):
    cfg = load_config(write(tmp_path, """
out: res
model: /models/tiny
methods: [zero-shot, dama]
languages: {sw: {train: "swahili:train", language: sw}}
hours: [0.25]
train: {epochs: 2, low_memory: true, val_max_utts: 5}
method_args: {dama: {r_high: 16, ranks: [16, 4, 16]}}
control: fleurs-control:en
"""))
    dama_cell = cells(cfg)[1]
    argv = train_command(cfg, dama_cell)
    joined = " ".join(argv)
    assert "--method dama --data swahili:train" in joined and f"--out {tmp_path}/res/runs/sw-0.25h-dama-s0" in joined
    assert "--hours 0.25" in joined and "--epochs 2" in joined and "--low-memory" in joined
    assert "--r-high 16" in joined and "--ranks 16,4,16" in joined and "--language sw" in joined
    assert "--resume" not in joined and "--resume" in train_command(cfg, dama_cell, resume=True)
    zs = " ".join(train_command(cfg, cells(cfg)[0]))
    assert "--hours" not in zs and "--r-high" not in zs
    fg = " ".join(forgetting_command(cfg, dama_cell))
    assert "eval --data fleurs-control:en" in fg and f"--adapter {tmp_path}/res/runs/sw-0.25h-dama-s0" in fg
    assert "--adapter" not in " ".join(forgetting_command(cfg, cells(cfg)[0]))


def test_variants_run_their_base_method_with_their_options(tmp_path):
    cfg = load_config(write(tmp_path, """
out: res
methods: [dama, dama-no-bpp, dama-flat]
languages: {sw: {train: "swahili:train"}}
train: {epochs: 3}
variants:
  dama-no-bpp: {method: dama, no_bpp: true}
  dama-flat: {method: dama, uniform_rank: true, epochs: 4}
method_args: {dama-flat: {r_low: 4}}
"""))
    by_name = {c.method: " ".join(train_command(cfg, c)) for c in cells(cfg)}
    assert "--method dama " in by_name["dama-no-bpp"] and "--no-bpp" in by_name["dama-no-bpp"]
    assert "runs/sw-all-dama-no-bpp-s0" in by_name["dama-no-bpp"]
    assert "--no-bpp" not in by_name["dama"] and "--epochs 3" in by_name["dama"]
    flat = by_name["dama-flat"]
    assert "--uniform-rank" in flat and "--r-low 4" in flat and "--epochs 4" in flat and "--epochs 3" not in flat


@pytest.mark.parametrize("text,match", [
    ("out: x\nmethods: [lora, magic]\nlanguages: {a: {train: t}}", "unknown method"),
    ("out: x\nmethods: [lora]\nlanguages: {a: {train: t}}\ntrain: {learning_rate: 1}", "unknown option"),
    ("out: x\nmethods: [lora]\nlanguages: {a: {train: t}}\nhours: [-1]", "positive"),
    ("out: x\nmethods: [lora]\nlanguages: {a: {train: t}}\nhours: [lots]", "numbers or 'all'"),
    ("out: x\nmethods: [lora]\nlanguages: {a: {train: t}}\nmethod_args: {dama: {r_high: 8}}", "not in methods"),
    ("out: x\nmethods: [lora]", "missing required key 'languages'"),
    ("out: x\nmethods: [lora]\nlanguages: {a: {train: t, colour: red}}", "languages"),
    ("out: x\nmethods: [lora]\nlanguages: {a: {train: t}}\nsedes: [1]", "unknown key"),
    ("out: [unclosed", "not valid YAML"),
    ("out: x\nmethods: [v]\nlanguages: {a: {train: t}}\nvariants: {v: {no_bpp: true}}", "needs method"),
    ("out: x\nmethods: [lora]\nlanguages: {a: {train: t}}\nvariants: {lora: {method: dama}}", "name of a method"),
    ("out: x\nmethods: [v]\nlanguages: {a: {train: t}}\nvariants: {v: {method: dama, bpp: 0}}", "unknown option"),
])
def test_bad_configs_are_clear_errors(tmp_path, text, match):
    with pytest.raises(DamaError, match=match):
        load_config(write(tmp_path, text))


def test_missing_config_file(tmp_path):
    with pytest.raises(DamaError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_committed_ablation_config_loads():
    cfg = load_config(REPO / "benchmarks" / "ablation.yaml")
    names = [c.name for c in cells(cfg)]
    assert len(names) == 2 * 9 and "swahili-0.5h-dama-no-bpp-s0" in names
    by_name = {c.name: " ".join(train_command(cfg, c)) for c in cells(cfg)}
    assert "--method dama" in by_name["yoruba-0.5h-dama-random-init-s0"]
    assert "--random-init" in by_name["yoruba-0.5h-dama-random-init-s0"]


def test_committed_allocation_config_resolves_the_probe_beside_it():
    cfg = load_config(REPO / "benchmarks" / "allocation.yaml")
    fisher = [c for c in cells(cfg) if c.method == "dama-probe-fisher"]
    for cell in fisher:  # each language's own probe (its Fisher profile is measured on its train split)
        cmd = " ".join(train_command(cfg, cell))
        probe = REPO / "benchmarks" / "probe" / f"whisper-base-prompt-{cell.language.name}.json"
        assert f"--allocation {probe}" in cmd and probe.is_file()
        assert "--allocation-measure fisher" in cmd
    assert {c.language.name for c in fisher} == {"swahili", "yoruba"}
    assert cfg.runs_dir == load_config(REPO / "benchmarks" / "bench.yaml").runs_dir


def test_an_option_placeholder_other_than_language_is_refused(tmp_path):
    with pytest.raises(DamaError, match="placeholder"):
        load_config(write(tmp_path, "out: x\nmethods: [dama]\nlanguages: {a: {train: t}}\n"
                                    "train: {allocation: 'p/{lang}.json'}\n"))


def test_grids_sharing_a_runs_folder_share_finished_runs_and_their_settings_check(tmp_path):
    import json

    from dama.bench.grid import _settings, _settings_path, check_settings, is_finished, run_dir

    base = "methods: [dama, lora]\nlanguages: {sw: {train: \"swahili:train\"}}\nhours: [0.5]\ntrain: {epochs: 2}\n"
    grid = load_config(write(tmp_path, "out: grid\n" + base))
    ablation = load_config(write(tmp_path / "sub", "out: ../ablation\nruns: ../grid/runs\n" + base.replace(
        "[dama, lora]", "[dama, dama-no-bpp]") + "variants: {dama-no-bpp: {method: dama, no_bpp: true}}\n"))
    assert ablation.runs_dir == grid.runs_dir == tmp_path / "grid" / "runs"
    assert ablation.logs_dir == tmp_path / "grid" / "logs" and ablation.out == tmp_path / "ablation"
    assert ablation.quick().runs_dir == tmp_path / "ablation-quick" / "runs"  # the preset never touches shared runs
    dama = cells(grid)[0]
    d = run_dir(grid, dama)
    d.mkdir(parents=True)
    for f in ("results.json", "forgetting.json"):
        (d / f).write_text("{}")
    _settings_path(grid, dama).parent.mkdir(parents=True)
    _settings_path(grid, dama).write_text(json.dumps(_settings(grid, dama)))
    shared = cells(ablation)[0]
    assert shared.name == dama.name and run_dir(ablation, shared) == d
    assert is_finished(ablation, shared) and not is_finished(ablation, cells(ablation)[1])
    check_settings(ablation)
    longer = load_config(write(tmp_path / "sub2", "out: ../x\nruns: ../grid/runs\n" + base.replace("epochs: 2",
                                                                                                 "epochs: 3")))
    with pytest.raises(DamaError, match="other settings"):
        check_settings(longer)


def test_settings_written_in_one_checkout_match_in_a_copy_elsewhere(tmp_path):
    """Settings files hold absolute paths (the run folder, a probe JSON beside the config); a clone of the
    repository in another folder must still see its committed runs as this grid's, and a changed probe
    file name must still be caught."""
    import json
    import shutil

    from dama.bench.grid import _settings, _settings_path, check_settings, run_dir

    text = ("out: grid\nmethods: [dama-probed]\nlanguages: {sw: {train: \"swahili:train\"}}\nhours: [0.5]\n"
            "variants: {dama-probed: {method: dama, allocation: \"probe/{language}.json\"}}\n")
    made = load_config(write(tmp_path / "main" / "benchmarks", text))
    cell = cells(made)[0]
    assert "--allocation" in _settings(made, cell) and str(tmp_path / "main") in " ".join(_settings(made, cell))
    run_dir(made, cell).mkdir(parents=True)
    _settings_path(made, cell).parent.mkdir(parents=True)
    _settings_path(made, cell).write_text(json.dumps(_settings(made, cell)))
    shutil.copytree(tmp_path / "main", tmp_path / "elsewhere" / "clone")
    clone = load_config(tmp_path / "elsewhere" / "clone" / "benchmarks" / "bench.yaml")
    check_settings(clone)  # the same settings, read from another folder
    other = load_config(write(tmp_path / "elsewhere" / "clone" / "benchmarks",
                              text.replace("probe/{language}", "probe/other-{language}")))
    with pytest.raises(DamaError, match="other settings"):
        check_settings(other)


def test_only_picks_runs_by_pattern_in_the_order_given(tmp_path, capsys):
    from dama.cli.main import main

    path = write(tmp_path, "out: g\nmethods: [zero-shot, dama, lora]\nhours: [0.5]\nseeds: [0, 1]\n"
                           "languages: {sw: {train: \"swahili:train\"}, yo: {train: \"yoruba:train\"}}\n")
    grid = cells(load_config(path))
    picked = select(grid, ["yo-*-lora-s0", "*-dama-s1", "yo-0.5h-lora-s*"])
    assert [c.name for c in picked] == ["yo-0.5h-lora-s0", "sw-0.5h-dama-s1", "yo-0.5h-dama-s1", "yo-0.5h-lora-s1"]
    assert select(grid, ["*-lora-s0", "yo-0.5h-lora-s0"]) == select(grid, ["*-lora-s0"])  # no run twice
    with pytest.raises(DamaError, match="'fr-\\*' matches no run"):
        select(grid, ["sw-zero-shot", "fr-*"])
    assert main(["bench", "--config", str(path), "--dry-run", "--only", "yo-0.5h-lora-s0, sw-zero-shot"]) == 0
    out = capsys.readouterr().out
    assert "10 runs, 0 already finished, 2 to run (--only)" in out
    lines = [line for line in out.splitlines() if line.startswith("  ")]
    assert len(lines) == 2 and "yo-0.5h-lora-s0" in lines[0] and "--method zero-shot" in lines[1]


def test_estimate_uses_finished_runs_of_the_same_method_scaled_to_the_cell(tmp_path):
    import json

    from dama.bench.grid import estimate_seconds, run_dir
    from dama.testing import make_corpus

    root = make_corpus(tmp_path / "data", n_train=20, n_test=3)
    cfg = load_config(write(tmp_path, f"""
out: res
data_root: {root}
methods: [zero-shot, dama, lora, full, dama-long]
variants: {{dama-long: {{method: dama, epochs: 10}}}}
languages: {{sw: {{train: "swahili:train"}}, yo: {{train: "yoruba:train"}}}}
hours: [0.5, all]
seeds: [0, 1]
"""))
    by = {c.name: c for c in cells(cfg)}
    # 0.5 h of sw is 10 clips here (20 clips per hour); the whole split has 20. Test split: 3 clips.
    for name, train, total in (("sw-0.5h-dama-s0", 60.0, 100.0), ("sw-0.5h-lora-s0", 200.0, 300.0),
                               ("sw-zero-shot", 0.0, 50.0)):
        run_dir(cfg, by[name]).mkdir(parents=True)
        (run_dir(cfg, by[name]) / "results.json").write_text(json.dumps({
            "total_seconds": total, "train_seconds": train, "n": 3,
            **({"train_utterances": 10, "train_hours": 0.5} if train else {})}))
    finished = [by[n] for n in ("sw-0.5h-dama-s0", "sw-0.5h-lora-s0", "sw-zero-shot")]

    def est(*names):
        return estimate_seconds(cfg, [by[n] for n in names], finished)

    assert est("sw-0.5h-dama-s1", "sw-0.5h-lora-s1") == (400.0, 2)  # the same cell, another seed
    assert est("sw-0.5h-dama-long-s0") == (60.0 * 2 + 40.0, 1)  # twice the epochs, the same testing
    assert est("sw-all-dama-s0") == (60.0 * 2 + 40.0, 1)  # twice the clips
    # no full fine-tuning finished: an adapter's time would be far off, so no estimate; Yoruba: no test size
    assert est("sw-0.5h-full-s0", "yo-0.5h-dama-s0", "yo-zero-shot") == (0.0, 0)
    assert estimate_seconds(cfg, [], finished) == (0.0, 0)


def test_estimate_prefers_runs_made_on_this_machine(tmp_path):
    import json

    from dama.bench.grid import estimate_seconds, run_dir

    cfg = load_config(write(tmp_path, """
out: res
methods: [dama, lora]
languages: {sw: {train: "swahili:train"}}
hours: [0.5, 1.0]
seeds: [0, 1]
"""))
    by = {c.name: c for c in cells(cfg)}
    for name, train, total, machine in (("sw-0.5h-dama-s0", 60.0, 100.0, "Slow CPU"),
                                        ("sw-0.5h-dama-s1", 6.0, 10.0, "Fast CPU"),
                                        ("sw-0.5h-lora-s0", 200.0, 300.0, "Slow CPU")):
        run_dir(cfg, by[name]).mkdir(parents=True)
        (run_dir(cfg, by[name]) / "results.json").write_text(json.dumps({
            "total_seconds": total, "train_seconds": train, "n": 3, "train_utterances": 10, "train_hours": 0.5}))
        (run_dir(cfg, by[name]) / "config.json").write_text(json.dumps({"device_name": machine}))
    finished = [by[n] for n in ("sw-0.5h-dama-s0", "sw-0.5h-dama-s1", "sw-0.5h-lora-s0")]

    def est(name, here):
        return estimate_seconds(cfg, [by[name]], finished, here=here)

    assert est("sw-1h-dama-s0", "Fast CPU") == (6.0 * 2 + 4.0, 1)  # this machine's run, twice the clips
    assert est("sw-1h-dama-s0", "Slow CPU") == (60.0 * 2 + 40.0, 1)
    assert est("sw-1h-dama-s0", "Third CPU") == ((160.0 + 16.0) / 2, 1)  # no run here: every machine's
    assert est("sw-1h-lora-s0", "Fast CPU") == (200.0 * 2 + 100.0, 1)  # no LoRA run here: the other machine's


def test_speed_files_resolve_beside_the_config_and_a_missing_one_is_named(tmp_path):
    (tmp_path / "results").mkdir()
    for name in ("method_speed_b.json", "method_speed_a.json"):
        (tmp_path / "results" / name).write_text("{}")
    base = "out: res\nmethods: [dama]\nlanguages: {sw: {train: 'swahili:train'}}\n"
    cfg = load_config(write(tmp_path, base + "speed: [results/method_speed_*.json, results/none_*.json]\n"))
    assert cfg.speed == [tmp_path / "results" / "method_speed_a.json", tmp_path / "results" / "method_speed_b.json"]
    assert load_config(write(tmp_path, base)).speed == []
    with pytest.raises(DamaError, match=r"speed: .*results/typo\.json not found"):
        load_config(write(tmp_path, base + "speed: results/typo.json\n"))
