"""Several processes training one run (``accelerate launch`` / ``torchrun``), in one place.

Semantics (what makes N processes train the same adapter as one):

- ``--batch-size`` is the **global** batch (accelerate's ``split_batches=True``): every process walks
  the same seeded list of length-bucketed batches and takes its share of each batch's clips
  (:func:`share`). The optimizer steps, the schedule and the checkpoints are those of a one-process
  run with the same flags; only the time per step changes.
- Each process's loss is weighted by its share of the batch's target tokens times N
  (:func:`loss_weight`): DDP averages gradients over processes, so the average of the weighted
  per-process means is exactly the one-process batch mean (the loss is a mean over tokens, and
  the processes' token counts differ).
- A process whose share is empty (a batch smaller than N) still runs a forward and backward, on
  one clip with weight 0, so every process joins every gradient all-reduce.
- One writer: the main process alone locks and prepares the run folder, writes config.json,
  metrics.jsonl, checkpoints, the adapter, results.json, builds the encoder cache (and the
  cross-attention K/V cache) first, and decodes validation and test clips; the others wait at a
  barrier (or receive the validation result by broadcast) and then read what it wrote.

A single process (no ``WORLD_SIZE`` > 1 in the environment) never touches torch.distributed: every
method here is then a no-op, so the one-process path is exactly what it was.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch

WAIT_HOURS = 6  # how long a process waits for the others at a barrier


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.distributed:
            torch.distributed.barrier()

    @contextlib.contextmanager
    def main_first(self):
        """The main process runs the block first (it writes a cache); the others then run it (and read it)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def broadcast(self, obj):
        """The main process's ``obj``, on every process."""
        if not self.distributed:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, x: float) -> float:
        """``x`` summed over the processes."""
        if not self.distributed:
            return x
        nccl = torch.distributed.get_backend() == "nccl"  # NCCL reduces CUDA tensors only
        t = torch.tensor([x], dtype=torch.float64, device="cuda" if nccl else "cpu")
        torch.distributed.all_reduce(t)
        return float(t.item())


def world(device: str | None = None) -> World:
    """The current process group (set up through accelerate's ``PartialState`` when launched with
    ``WORLD_SIZE`` > 1: gloo on CPU, NCCL on GPUs), or the one-process world."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return World()
    from accelerate import PartialState

    # the others wait at a barrier while the main process builds caches and decodes the test split, which
    # on a CPU can take far longer than torch's 30 min default (a failed process ends them all anyway:
    # the launcher stops the group)
    state = PartialState(cpu=device == "cpu" or not torch.cuda.is_available(), timeout=timedelta(hours=WAIT_HOURS))
    return World(state.process_index, state.num_processes)


def share(batch: list, w: World) -> list:
    """This process's clips of a global batch (every N-th, starting at its rank)."""
    return batch[w.rank::w.size]


def loss_weight(n_local_tokens: int, n_global_tokens: int, w: World) -> float:
    """What this process's mean loss is multiplied by so that DDP's average of gradients equals the
    gradient of the global batch's mean loss (see the module's docstring)."""
    return w.size * n_local_tokens / max(n_global_tokens, 1)


__all__ = ["World", "loss_weight", "share", "world"]
