"""What a training checkpoint holds, and how it is written and read back.

A checkpoint holds only tensors and plain values, so resuming never runs code a file may carry:
the adapter's tensors (trainable, frozen and buffers), the best-on-validation tensors, optimizer,
scheduler, every RNG (Python's and numpy's tuples converted to tensors), the method's extra state
(AdaLoRA's rank allocator) and the run's progress (:class:`RunState`). It is written atomically
with the sha256 of its content and read back with :func:`dama.safeio.load_checkpoint`, which turns
a truncated or corrupted file into a clear error.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from dama.adapt.base import Adapted
from dama.errors import DamaError
from dama.safeio import load_checkpoint, save_checkpoint_file

CHECKPOINT_KEYS = ("tensors", "best", "optimizer", "scheduler", "rng", "allocator", "state")


class TrainingError(DamaError):
    """Training stopped (e.g. a non-finite loss); the message says what survived."""


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    best_val_wer: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    epoch_seconds: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    # across interruptions: the highest peak memory of any process of this run so far, and the wall
    # time earlier processes spent in training up to their last checkpoint (a resumed run's results
    # would otherwise report only its last process: after a kill during testing, no training at all)
    peak_memory_mb: float = 0.0
    elapsed_seconds: float = 0.0


def adapter_tensors(adapted: Adapted) -> dict[str, torch.Tensor]:
    """Everything that changes or defines the adapter, copied to the CPU: trainable tensors, frozen
    adapter tensors and adapter buffers (AdaLoRA's rank masks)."""
    model = adapted.model
    out = {n: p.detach().cpu().clone() for n, p in model.named_parameters()
           if p.requires_grad or n in adapted.frozen or "lora_" in n}
    out.update({n: b.detach().cpu().clone() for n, b in model.named_buffers() if "lora_" in n or "ranknum" in n})
    return out


def load_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy ``tensors`` (from :func:`adapter_tensors`) into the model's parameters and buffers."""
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    with torch.no_grad():
        for n, t in tensors.items():
            if n not in params:
                raise TrainingError(f"checkpoint tensor {n} does not exist in the model; wrong method or model?")
            params[n].copy_(t)


def rng_state() -> dict:
    """Every generator's state as tensors and plain values (what a weights-only load accepts;
    Python's tuple and numpy's array state would otherwise need pickled code to rebuild)."""
    version, mt, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    st = {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    py, npy = st["python"], st["numpy"]
    if isinstance(py, dict):
        random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss_next"]))
    else:  # unversioned checkpoint: the tuple itself
        random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in py))
    if isinstance(npy, dict):
        np.random.set_state((npy["name"], np.asarray(npy["keys"].numpy(), dtype=np.uint32), npy["pos"],
                             npy["has_gauss"], npy["cached_gaussian"]))
    else:
        np.random.set_state(npy)
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(path: Path, adapted: Adapted, opt, sched, state: RunState,
                    best: dict[str, torch.Tensor] | None) -> None:
    """Write atomically: a kill mid-write leaves the previous checkpoint intact. Never
    overwrite a good checkpoint with non-finite weights."""
    tensors = adapter_tensors(adapted)
    bad = [n for n, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        last = f"the last good checkpoint is {path}" if path.is_file() else "no checkpoint had been written yet"
        raise TrainingError(
            f"weights became non-finite (e.g. {bad[0]}) by step {state.step}; stopped without saving them. "
            f"{last}. Lower --lr or use --precision no, then --resume."
        )
    save_checkpoint_file(path, {
        "tensors": tensors,
        "best": best,
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": rng_state(),
        "allocator": adapted.extra_state() if adapted.extra_state else None,
        "state": asdict(state),
    })


def read_checkpoint(path: Path, log: Callable[[str], None] | None = None) -> dict:
    """A run's checkpoint, verified, loaded as plain data: nothing in the file can run code.
    A damaged one is a :class:`dama.safeio.CheckpointError` that says how to start over."""
    fix = (f"Delete {path} to train this run from the beginning (with or without --resume), "
           "or train into another --out.")
    return load_checkpoint(path, fix, required=CHECKPOINT_KEYS, log=log)


def restore(ck: dict, path: Path, adapted: Adapted, opt, sched, device: torch.device) -> RunState:
    """Put checkpoint ``ck`` (read from ``path``) back: tensors, optimizer, schedule, RNG and method state;
    returns its progress. One that does not fit (other method, model or settings) is a :class:`TrainingError`."""
    try:
        load_tensors(adapted.model, ck["tensors"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        set_rng_state(ck["rng"])
        if ck.get("allocator"):
            if adapted.load_extra_state is None:
                raise ValueError("the checkpoint holds method state this method does not have")
            adapted.load_extra_state(ck["allocator"], device)
        return RunState(**ck["state"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise TrainingError(
            f"{path}: does not fit this run's model, optimizer or schedule ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''}). Resume with the run's original settings "
            f"(its config.json), or delete {path} to train it from the beginning.") from None


__all__ = ["CHECKPOINT_KEYS", "RunState", "TrainingError", "adapter_tensors", "load_tensors", "read_checkpoint",
           "restore", "rng_state", "save_checkpoint", "set_rng_state"]
