"""`dama bench --executor submitit-local`: the grid's cells as submitit jobs (the path Slurm jobs take,
run as local processes), two at once, on a tiny model; a second call finds them finished."""

from __future__ import annotations

import json
import os

import pytest

from dama.bench import load_config
from dama.bench.executors import make_engine
from dama.cli.main import main
from dama.errors import DamaError
from dama.testing import make_corpus


def _config(tmp_path, model_dir) -> str:
    root = make_corpus(tmp_path / "data", n_train=4, n_val=2, n_test=2)
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(f"""
model: {model_dir}
out: res
data_root: {root}
methods: [zero-shot, dama]
languages: {{swahili: {{train: "swahili:train", language: sw}}}}
control: null
train: {{epochs: 1, batch_size: 4, threads: 1}}
method_args: {{dama: {{r_high: 4, r_low: 2}}}}
n_boot: 100
executor: {{max_parallel: 2, timeout_min: 10, cpus_per_task: 1, slurm_partition: gpu}}
""")
    return str(cfg)


def test_cells_run_as_submitit_jobs(tmp_path, tiny6_ct2_dir, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    cfg = _config(tmp_path, tiny6_ct2_dir)
    assert main(["bench", "--config", cfg, "--executor", "submitit-local"]) == 0
    out = capsys.readouterr().out
    assert "swahili-zero-shot: submitted to submitit-local (1 in flight)" in out
    assert "swahili-all-dama-s0: submitted to submitit-local (2 in flight)" in out  # both at once
    res = tmp_path / "res"
    data = json.loads((res / "results.json").read_text())
    assert data["runs_finished"] == data["runs_total"] == 2
    jobs = list((res / "logs" / "submitit").glob("*/*_result.pkl"))
    assert len(jobs) == 2  # each cell ran as its own job
    # the grid's resume semantics are unchanged: nothing left to run
    assert main(["bench", "--config", cfg, "--executor", "submitit-local"]) == 0
    assert "2 runs, 2 already finished, 0 to run" in capsys.readouterr().out


def test_bad_executor_settings_are_named(tmp_path, tiny6_ct2_dir):
    cfg = load_config(_config(tmp_path, tiny6_ct2_dir))
    cfg.executor = {"max_parallel": 0}
    with pytest.raises(DamaError, match="max_parallel"):
        make_engine("submitit-local", cfg)
    cfg.executor = {"no_such_resource": 1}
    with pytest.raises(DamaError, match="executor"):
        make_engine("submitit-local", cfg)
    with pytest.raises(DamaError, match="no Slurm here"):
        make_engine("submitit-slurm", cfg)
    assert make_engine("local", cfg) is None
