"""Run by tests/train/test_distributed.py under ``accelerate launch --multi_gpu --num_processes 2``
(two CPU processes, gloo): ``dama train`` from the command line, then a run stopped after a few
steps (as if killed) and resumed, both by the two processes. One launch, to keep the test fast."""

from __future__ import annotations

import json
import sys

from dama.adapt import make_method
from dama.cli.main import main as dama_main
from dama.data import load_data
from dama.train.config import TrainConfig
from dama.train.run import run_training


def main(model: str, data_root: str, tmp: str, cfg_json: str) -> None:
    rc = dama_main(["train", "--method", "dama", "--model", model, "--data", "swahili:train", "--data-root",
                    data_root, "--out", f"{tmp}/cli-two", "--epochs", "2", "--batch-size", "3",
                    "--cache-dir", f"{tmp}/cache", "--device", "cpu", "--grad-accum", "2"])
    assert rc in (0, None), rc
    cfg = TrainConfig(**json.loads(cfg_json))
    tr, va, te = (load_data(f"swahili:{s}", data_root) for s in ("train", "val", "test"))
    try:
        run_training(model, make_method("dama"), tr, va, te, f"{tmp}/resumed-two", cfg, log=lambda *a: None)
        raise SystemExit("expected the run to stop after cfg.stop_after_steps")
    except KeyboardInterrupt:
        pass
    cfg.stop_after_steps = 0
    run_training(model, make_method("dama"), tr, va, te, f"{tmp}/resumed-two", cfg, resume=True,
                 log=lambda *a: None)


if __name__ == "__main__":
    main(*sys.argv[1:])
