"""Two training processes on one CPU (torch.distributed, gloo), launched the way users launch them,
train the same adapter as one process with the same global batch, and only the main one writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dama.adapt import make_method
from dama.data import load_data
from dama.testing import make_corpus
from dama.train.config import TrainConfig
from dama.train.distributed import World, loss_weight, share
from dama.train.run import run_training

SRC = Path(__file__).resolve().parents[2] / "src"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(SRC), str(SRC.parent),
                                                                              os.environ.get("PYTHONPATH", "")])}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _launch(cmd: list[str], tmp_path: Path) -> None:
    p = subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]


def _single(model, corpus, out, cfg) -> dict:
    tr, va, te = (load_data(f"swahili:{s}", corpus) for s in ("train", "val", "test"))
    return run_training(str(model), make_method("dama"), tr, va, te, out, cfg, log=lambda *a: None)


def _same_adapter(a: Path, b: Path) -> None:
    x, y = (load_file(p / "adapter" / "adapter_model.safetensors") for p in (a, b))
    assert x.keys() == y.keys()
    for k in x:  # float tolerance: the all-reduce sums the processes' gradients in another order
        torch.testing.assert_close(x[k], y[k], atol=2e-5, rtol=1e-4, msg=k)
    assert any(x[k].abs().sum() > 0 for k in x if "lora_B" in k)  # it trained


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _same_record(single: Path, multi: Path) -> None:
    """metrics.jsonl written once (no duplicate rows), with the one-process losses and schedule."""
    a, b = _rows(single), _rows(multi)
    assert [(r["kind"], r["epoch"], r["step"]) for r in a] == [(r["kind"], r["epoch"], r["step"]) for r in b]
    for r, s in zip(a, b):
        if r["kind"] == "step":
            assert r["loss"] == pytest.approx(s["loss"], rel=1e-5) and r["lr"] == pytest.approx(s["lr"])
        else:
            assert r["val_wer"] == pytest.approx(s["val_wer"])
    res_a, res_b = (json.loads((p / "results.json").read_text()) for p in (single, multi))
    assert res_a["steps"] == res_b["steps"] and res_a["wer"] == pytest.approx(res_b["wer"])
    assert sorted(p.name for p in multi.iterdir()) == sorted(p.name for p in single.iterdir())


def test_shares_and_weights_make_the_global_mean():
    batch = list(range(5))
    worlds = [World(r, 2) for r in range(2)]
    assert [share(batch, w) for w in worlds] == [[0, 2, 4], [1, 3]]
    # per-process mean losses m0 (over 30 tokens) and m1 (over 10): DDP averages the weighted ones
    m0, m1 = 2.0, 6.0
    avg = (m0 * loss_weight(30, 40, worlds[0]) + m1 * loss_weight(10, 40, worlds[1])) / 2
    assert avg == pytest.approx((m0 * 30 + m1 * 10) / 40)
    assert World().barrier() is None and World().broadcast({"a": 1}) == {"a": 1} and World().sum(3.0) == 3.0


def test_two_processes_train_what_one_does(tiny6_ct2_dir, tmp_path):
    """One `accelerate launch --multi_gpu --num_processes 2` on a CPU (gloo) runs
    tests/train/distributed_script.py: (1) `dama train` from the command line, batches of 3 clips
    (accumulated 2 + 1 into optimizer steps)
    shared 2 + 1; (2) batches of one clip (the second process's share is empty: it joins each
    all-reduce with weight 0), stopped after 5 steps and resumed by two processes. Each gives the
    one-process adapter, losses, schedule, validation and results, written once."""
    corpus = make_corpus(tmp_path / "data")
    cache = tmp_path / "cache"
    cfg = {"epochs": 2, "batch_size": 1, "cache_dir": str(cache)}
    _single(tiny6_ct2_dir, corpus, tmp_path / "cli-one", TrainConfig(epochs=2, batch_size=3, grad_accum=2,
                                                                             cache_dir=str(cache)))
    _single(tiny6_ct2_dir, corpus, tmp_path / "resumed-one", TrainConfig(**cfg))
    _launch([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
             "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
             "--main_process_port", str(_free_port()), str(Path(__file__).with_name("distributed_script.py")),
             str(tiny6_ct2_dir), str(corpus), str(tmp_path), json.dumps({**cfg, "stop_after_steps": 5})], tmp_path)
    for name in ("cli", "resumed"):
        _same_adapter(tmp_path / f"{name}-one", tmp_path / f"{name}-two")
        _same_record(tmp_path / f"{name}-one", tmp_path / f"{name}-two")
