"""Training: encoder-output cache, batching, the training loop and run directories."""

import importlib

# loaded on first use (PEP 562): `dama train --help` reads dama.train.config without torch
_LAZY = {"load_run": "dama.train.run", "run_training": "dama.train.run", "TrainConfig": "dama.train.config",
         "TrainingError": "dama.train.trainer", "train": "dama.train.trainer"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dama.train' has no attribute {name!r}")


__all__ = ["TrainConfig", "TrainingError", "load_run", "run_training", "train"]
