"""RunFolder: the one place a run folder's names are spelled, and how a folder is recognised as dama's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dama.errors import ModelError
from dama.runs import RunFolder
from dama.safeio import LOCK_NAME


def test_layout_is_spelled_once():
    run = RunFolder("/x/run")
    assert run.config_path.name == "config.json" and run.results_path.name == "results.json"
    assert run.checkpoint_path.name == "checkpoint.pt" and run.adapter_path.name == "adapter"
    assert run.hyps_path("test").name == "test.hyps.jsonl" and run.zero_shot_path.name == "zero-shot.json"
    assert {run.metrics_path.name, run.plot_path.name, run.pissa_init_path.name, run.model_path.name, LOCK_NAME} \
        <= RunFolder.NAMES
    assert set(RunFolder.MARKS) <= RunFolder.NAMES and str(run) == "/x/run"


def test_own_names_and_temporary_files():
    assert RunFolder.is_own_name("test.hyps.jsonl") and RunFolder.is_own_name(".dama.lock")
    assert RunFolder.is_own_temp(".config.json.k3j2x.tmp") and RunFolder.is_own_temp(".dama-write-check-1")
    assert not RunFolder.is_own_temp(".notes.txt.ab.tmp") and not RunFolder.is_own_name("notes.txt")


def test_foreign_entries_and_marks(tmp_path):
    run = RunFolder(tmp_path / "run")
    assert run.foreign_entries() == [] and run.found_marks() == []  # missing: nothing foreign
    run.path.mkdir()
    (run.path / "metrics.jsonl").write_text("")
    assert run.foreign_entries() == ["metrics.jsonl"]  # no dama config.json: not recognisably a run
    assert run.found_marks() == ["metrics.jsonl"]
    run.write_config({"method": {"method": "lora"}, "train": {}})
    assert run.foreign_entries() == [] and run.read_config()["method"]["method"] == "lora"
    (run.path / "notes.txt").write_text("mine")
    assert run.foreign_entries() == ["notes.txt"]
    assert not run.is_finished() and not run.has_checkpoint()
    run.write_results({"wer": 0.5})
    assert run.is_finished() and run.read_results() == {"wer": 0.5}


def test_reading_a_folder_that_is_not_a_run_names_it(tmp_path):
    with pytest.raises(ModelError, match="not a dama run directory"):
        RunFolder(tmp_path).read_config()
    (tmp_path / "config.json").write_text(json.dumps({"method": {}, "train": {}, "model": "x"}))
    with pytest.raises(ModelError, match="no adapter/ or model/ folder"):
        RunFolder(tmp_path).load()


def test_run_folder_does_not_import_torch():
    out = subprocess.run([sys.executable, "-c", "import sys, dama.runs; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # dama bench's grid and report can use it cheaply
