"""Peak-memory measurement and one allocator setting that keeps CPU training lean.

glibc serves allocations below its mmap threshold from the heap, and after the first
large free it raises that threshold to as much as 32 MB. A training step allocates and
frees many 10-30 MB activations (batch x 1500 frames x d_model for cross-attention), which
then land on the heap and fragment it. ``limit_heap_fragmentation`` pins the threshold
(like MALLOC_MMAP_THRESHOLD_=262144), so they are returned to the OS at once; the price is
fresh page faults for each. Measured by benchmarks/train_speed.py (whisper-base, LoRA r=64,
batch 8, 2-core CPU): peak RSS 2624 -> 1502 MB, epochs 15.2 -> 19.1 s; hence opt-in
(``dama train --low-memory``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys

import torch

M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h
MMAP_THRESHOLD_BYTES = 256 * 1024
_applied: bool | None = None


def limit_heap_fragmentation() -> bool:
    """Pin glibc's mmap threshold so large freed tensors go back to the OS. Returns whether
    it applied (False off glibc, e.g. macOS or musl, where nothing is changed)."""
    global _applied
    if _applied is None:
        _applied = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _applied = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
            except (OSError, AttributeError):
                _applied = False
    return _applied


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated GPU memory on CUDA; peak resident set size of the process on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss_kb / 1024 if sys.platform != "darwin" else rss_kb / 2**20
