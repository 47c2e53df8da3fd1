"""The grid deletes only folders it owns: names from a config cannot leave the runs folder, and an
unfinished run folder is deleted only if it lies strictly inside the runs folder and holds nothing but
a run's own files (issue 24)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dama.bench import grid as grid_mod
from dama.bench.config import load_config
from dama.bench.grid import Cell, cells, run_dir, run_grid
from dama.errors import DamaError

BASE = "methods: [lora]\nhours: [0.5]\nseeds: [0]\ncontrol: null\n"


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "bench.yaml"
    p.write_text(text)
    return p


def victim(tmp_path: Path, name: str = "victim-0.5h-lora-s0") -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "precious.txt").write_text("keep me")
    return d


@pytest.mark.parametrize("text,field", [
    ('out: grid/g\nlanguages: {"../../victim": {train: "swahili:train"}}\n' + BASE, "languages"),
    ('out: g\nlanguages: {"a/b": {train: "swahili:train"}}\n' + BASE, "languages"),
    ('out: g\nlanguages: {".hidden": {train: "swahili:train"}}\n' + BASE, "languages"),
    ('out: g\nlanguages: {"sw": {train: "swahili:train"}}\nmethods: [lora, "../x"]\n'
     'variants: {"../x": {method: lora}}\nhours: [0.5]\n', "variants"),
    ('out: g\nlanguages: {"sw": {train: "swahili:train"}}\nmethods: [lora]\nseeds: ["../../x"]\n', "seeds"),
    ('out: g\nlanguages: {"sw": {train: "swahili:train"}}\nmethods: [lora]\nseeds: [-1]\n', "seeds"),
    ('out: g\nlanguages: {"sw": {train: "swahili:train"}}\nmethods: [lora]\nhours: [.inf]\n', "hours"),
])
def test_config_names_that_would_leave_the_runs_folder_are_refused_naming_file_and_field(tmp_path, text, field):
    path = write(tmp_path, text)
    with pytest.raises(DamaError) as e:
        load_config(path)
    assert str(path) in str(e.value) and field in str(e.value)


def test_bench_with_a_traversing_language_name_touches_nothing(tmp_path, capsys):
    """The reported case: language "../../victim" made `dama bench` delete a folder beside the grid."""
    from dama.cli.main import main

    target = victim(tmp_path)
    path = write(tmp_path / "cfg", 'out: ../grid/g\nlanguages: {"../../victim": {train: "swahili:train"}}\n' + BASE)
    assert main(["bench", "--config", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "languages" in err and "../../victim" in err and str(path) in err
    assert (target / "precious.txt").read_text() == "keep me"


@pytest.fixture
def cfg(tmp_path):
    return load_config(write(tmp_path / "cfg", 'out: ../grid\nlanguages: {"sw": {train: "swahili:train"}}\n' + BASE))


@pytest.fixture
def no_subprocess(monkeypatch):
    """Replace the `dama train` subprocess: record the calls, write nothing."""
    calls: list[list[str]] = []

    def fake(argv, log_path):
        calls.append(argv)
        return 1

    monkeypatch.setattr(grid_mod, "_run_logged", fake)
    return calls


def test_a_hand_made_cell_with_a_traversing_name_has_no_run_folder(cfg, tmp_path, no_subprocess):
    target = victim(tmp_path)
    lang = cfg.languages[0]
    lang.name = "../../victim"  # past the config's own checks
    cell = Cell(lang, "lora", 0.5, 0)
    with pytest.raises(DamaError, match="not a usable folder name"):
        run_dir(cfg, cell)
    with pytest.raises(DamaError):
        run_grid(cfg, log=lambda *a: None)
    assert (target / "precious.txt").is_file() and not no_subprocess


def test_a_run_folder_linking_out_of_the_grid_is_not_deleted(cfg, tmp_path, no_subprocess):
    target = victim(tmp_path)
    cell = cells(cfg)[0]
    d = run_dir(cfg, cell)
    d.parent.mkdir(parents=True)
    d.symlink_to(target, target_is_directory=True)
    with pytest.raises(DamaError, match="symbolic link"):
        run_grid(cfg, log=lambda *a: None)
    with pytest.raises(DamaError, match="symbolic link"):
        grid_mod.run_cell(cfg, cell, log=lambda *a: None)
    assert (target / "precious.txt").is_file() and d.is_symlink() and not no_subprocess


def test_a_run_folder_holding_other_files_is_not_deleted(cfg, no_subprocess):
    cell = cells(cfg)[0]
    d = run_dir(cfg, cell)
    d.mkdir(parents=True)
    (d / "metrics.jsonl").write_text("")
    (d / "notes.txt").write_text("mine")
    with pytest.raises(DamaError, match="notes.txt"):
        run_grid(cfg, log=lambda *a: None)
    with pytest.raises(DamaError, match="not .*an unfinished run"):
        grid_mod.run_cell(cfg, cell, log=lambda *a: None)
    assert (d / "notes.txt").read_text() == "mine" and not no_subprocess


def test_a_config_json_that_is_not_a_runs_is_not_deleted(cfg, no_subprocess):
    d = run_dir(cfg, cells(cfg)[0])
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    with pytest.raises(DamaError, match="not .*an unfinished run"):
        run_grid(cfg, log=lambda *a: None)
    assert (d / "config.json").is_file()


def test_an_unstarted_run_of_the_grid_is_still_cleared_and_redone(cfg, no_subprocess):
    cell = cells(cfg)[0]
    d = run_dir(cfg, cell)
    (d / "adapter").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"model": "m", "method": {"method": "lora"}, "train": {}}))
    (d / "metrics.jsonl").write_text("")
    (d / "test.hyps.jsonl").write_text("")
    assert [c.name for c in run_grid(cfg, log=lambda *a: None)] == [cell.name]  # the fake training "fails"
    assert not d.exists() and len(no_subprocess) == 1
    settings = cfg.logs_dir / f"{cell.name}.settings.json"
    assert json.loads(settings.read_text())[0] == "train"
    assert [p.name for p in settings.parent.iterdir()] == [settings.name]  # no temporary file left


def test_a_checkpointed_run_is_resumed_not_deleted(cfg, no_subprocess):
    d = run_dir(cfg, cells(cfg)[0])
    d.mkdir(parents=True)
    (d / "checkpoint.pt").write_bytes(b"x")
    (d / "notes.txt").write_text("mine")  # not the grid's to judge: it does not delete here
    run_grid(cfg, log=lambda *a: None)
    assert (d / "checkpoint.pt").is_file() and "--resume" in no_subprocess[0]


def test_leftovers_of_a_killed_run_still_count_as_the_runs(cfg, no_subprocess):
    d = run_dir(cfg, cells(cfg)[0])
    d.mkdir(parents=True)
    (d / ".dama.lock").write_text("123\n")  # the lock file a killed process leaves (unlocked)
    (d / ".config.json.k3j2x.tmp").write_text("{")  # half an atomic write
    (d / "checkpoint.pt.tmp").write_bytes(b"")
    (d / ".dama-write-check-x1y2z3").write_bytes(b"")  # the CLI's writability probe, killed
    run_grid(cfg, log=lambda *a: None)
    assert not d.exists() and len(no_subprocess) == 1


def test_a_run_folder_another_process_is_writing_is_not_deleted(cfg, no_subprocess):
    fcntl = pytest.importorskip("fcntl")
    import os

    cell = cells(cfg)[0]
    d = run_dir(cfg, cell)
    d.mkdir(parents=True)
    (d / "metrics.jsonl").write_text("")
    fd = os.open(d / ".dama.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DamaError, match="another dama process"):
            grid_mod.run_cell(cfg, cell, log=lambda *a: None)
    finally:
        os.close(fd)
    assert (d / "metrics.jsonl").is_file() and not no_subprocess
