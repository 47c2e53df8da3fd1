"""Training: encoder-output cache, batching, the training loop and run directories."""

from dama.train.run import load_run, run_training
from dama.train.trainer import TrainConfig, TrainingError, train

__all__ = ["TrainConfig", "TrainingError", "load_run", "run_training", "train"]
