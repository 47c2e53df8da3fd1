"""Training: batches, the chunked loss, the training loop, checkpoints, and a whole run.

  config.py       TrainConfig: every training setting and its default
  batches.py      manifest -> tokenised examples -> length-bucketed batches
  loss.py         cross-entropy in vocabulary chunks
  trainer.py      the loop (Trainer.fit: setup, resume, epochs, validation, checkpoints)
  checkpoint.py   what a checkpoint holds; written and read back without trusting it
  run.py          a run end to end: run folder, train, save, test (run_training)

Elsewhere: the encoder cache is :mod:`dama.encoder_cache`, decoding from it
:mod:`dama.evaluate.cached`, a run folder's layout and reading :mod:`dama.runs`.
"""

import importlib

# loaded on first use (PEP 562): `dama train --help` reads dama.train.config without torch
_LAZY = {"TrainingError": "dama.train.checkpoint", "TrainConfig": "dama.train.config",
         "run_training": "dama.train.run", "train": "dama.train.trainer"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dama.train' has no attribute {name!r}")


__all__ = ["TrainConfig", "TrainingError", "run_training", "train"]
