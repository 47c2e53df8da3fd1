"""The frozen part of cross-attention keys and values, computed once per clip instead of every step.

In a decoder-only step, every decoder layer projects all 1500 encoder frames of every clip to
keys and values (``k_proj``, ``v_proj`` of ``encoder_attn``): on whisper-base that is 66 of the
~120 GFLOP of a batch's forward (``benchmarks/flops.py``), yet it depends only on the audio and on
frozen weights. Here those base projections are computed once per clip, stored beside the encoder
cache, and served to the step; an adapter's own low-rank path on ``k_proj``/``v_proj`` (vanilla
LoRA, DAMA, LoRA-FA, PiSSA) is still computed from the encoder outputs and added on top, so
gradients are those of the uncached step (the test checks loss and gradients).

When it applies: the encoder is frozen (the encoder cache is in use) and each cross-attention
``k_proj``/``v_proj`` is a frozen ``nn.Linear`` or a vanilla PEFT LoRA layer over one. DoRA (its
magnitude rescales base and update together), AdaLoRA (its SVD layer) and full fine-tuning (the
base weights train) compute as before; ``applies`` says why not.

Storage: ``<encoder cache folder>/kv-<hash of the k/v weights>/<clip key>.<crc32>.npy``, one
float32 file per clip of shape (layers, 2, frames, d_model): 36.9 MB per clip on whisper-base, about
7 GB per hour of 17-second clips (12x the float16 encoder cache; ~100 GB per hour on large-v3, see
``dama estimate``), printed before it is built. A cache that would take more than half the disk's
free space is not built: the run computes keys/values in every step instead, and says so.
Float32, so the served values are the very values the step would have computed. Content-keyed
like the encoder cache (clips by their audio's bytes, projections by their weights), so other
runs, methods and seeds reuse it; written atomically; each file's CRC-32 (in its name) is checked
on first read; a bad file is discarded and recomputed. ``dama cache prune`` drops files of clips no
data set needs; ``--no-kv-cache`` turns it off (the step is then the plain one).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from dama.errors import DamaError

Log = Callable[[str], object]
PREFIX = "kv-"


class NotEnoughSpace(DamaError):
    """The cache would not fit on the disk (nothing was written): training computes keys/values instead."""


def _cross_projections(model: torch.nn.Module) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
    """(k_proj, v_proj) of every decoder layer's cross-attention, as they sit in the (PEFT) model."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = base.model.decoder.layers
    return [(layer.encoder_attn.k_proj, layer.encoder_attn.v_proj) for layer in layers]


def _base_linear(module: torch.nn.Module) -> tuple[torch.nn.Linear | None, str | None]:
    """The frozen base ``nn.Linear`` of a k/v projection whose output is base + a vanilla LoRA path,
    or (None, why not)."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    if type(module) is torch.nn.Linear:
        lin = module
    elif type(module) is LoraLinear:
        names = module.active_adapters
        if module.lora_variant or len(names) != 1 or names[0] not in module.lora_A:
            return None, "a LoRA variant (e.g. DoRA) rescales base and update together"
        if not isinstance(module.lora_dropout[names[0]], torch.nn.Identity):
            return None, "LoRA dropout on the key/value projections"
        lin = module.base_layer
        if type(lin) is not torch.nn.Linear:
            return None, "the base layer is not a plain Linear"
    else:
        return None, f"{type(module).__name__} key/value projections"
    if lin.weight.requires_grad or (lin.bias is not None and lin.bias.requires_grad):
        return None, "the base key/value weights train"
    return lin, None


def applies(model: torch.nn.Module) -> str | None:
    """None when the cache can serve ``model``'s cross-attention; else the reason it cannot."""
    for k, v in _cross_projections(model):
        for m in (k, v):
            lin, why = _base_linear(m)
            if lin is None:
                return why
    return None


def projection_fingerprint(model: torch.nn.Module) -> str:
    """A hash of every base k/v weight (PiSSA, for one, changes them): a different model, another folder."""
    h = hashlib.sha256()
    for k, v in _cross_projections(model):
        for m in (k, v):
            lin, _ = _base_linear(m)
            for t in (lin.weight, lin.bias):
                if t is not None:
                    h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def bytes_per_clip(layers: int, frames: int, d_model: int) -> int:
    return layers * 2 * frames * d_model * 4


class CrossKVCache:
    """Per-row base keys/values for a manifest's clips, and the forward hooks that serve them."""

    def __init__(self, folder: Path, files: list[Path]):
        self.path = folder
        self._files = files
        self._headers: dict[Path, tuple[tuple[int, ...], int]] = {}  # shape, data offset
        self._serving: tuple[torch.Tensor, list[int], np.ndarray, set] | None = None
        self.hits = 0

    @classmethod
    def build(cls, model: torch.nn.Module, encoder_folder: Path, keys: list[str],
              encoder_outputs: Callable[[list[int]], torch.Tensor], batch_size: int = 4, log: Log = print,
              ) -> CrossKVCache:
        """Keys/values of every clip (``keys[i]`` is row i's content key; ``encoder_outputs(rows)`` its
        cached encoder outputs), computed for the clips not yet stored. A full disk is a :class:`DamaError`
        before anything is written."""
        proj = _cross_projections(model)
        folder = Path(encoder_folder) / f"{PREFIX}{projection_fingerprint(model)}"
        folder.mkdir(parents=True, exist_ok=True)
        present = {p.name.split(".")[0]: p for p in folder.glob("*.npy")}
        unique = list(dict.fromkeys(keys))
        for k in unique:  # every byte checked once per process, as the encoder cache's
            p = present.get(k)
            if p is not None and not _intact(p):
                log(f"warning: {p}: damaged cross-attention key/value file (size, header or CRC-32); "
                    "discarded, it is computed again")
                p.unlink(missing_ok=True)
                del present[k]
        todo = [k for k in unique if k not in present]
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        lin0, _ = _base_linear(proj[0][0])
        d = lin0.out_features
        if todo:
            rows = [first[k] for k in todo]
            frames = encoder_outputs(rows[:1]).shape[1]
            one = bytes_per_clip(len(proj), frames, d)
            need = one * len(todo)
            free = shutil.disk_usage(folder).free
            log(f"caching cross-attention keys/values of {len(todo)} clips ({len(unique) - len(todo)} already "
                f"cached): {need / 2**30:.2f} GiB (float32, {one / 2**20:.1f} MiB per clip) in {folder}; "
                "--no-kv-cache turns this off")
            if need > free * 0.5:  # at most half the free space: leave room for checkpoints and everything else
                raise NotEnoughSpace(f"not enough disk space for the cross-attention key/value cache in {folder}: "
                                f"{need} bytes needed, {free} free. Free space, use another --cache-dir, or "
                                "pass --no-kv-cache (each step then computes them, as before).")
            for s in range(0, len(rows), batch_size):
                chunk = rows[s:s + batch_size]
                present.update(cls._compute(proj, encoder_outputs(chunk), [keys[r] for r in chunk], folder))
        return cls(folder, [present[k] for k in keys])

    @staticmethod
    def _compute(proj, enc: torch.Tensor, keys: list[str], folder: Path) -> dict[str, Path]:
        with torch.no_grad():
            enc = enc.float()
            out = np.empty((len(keys), len(proj), 2, enc.shape[1], enc.shape[2]), dtype=np.float32)
            for li, (k, v) in enumerate(proj):
                for j, m in enumerate((k, v)):
                    lin, _ = _base_linear(m)
                    out[:, li, j] = torch.nn.functional.linear(enc, lin.weight.float(),
                                                               None if lin.bias is None else lin.bias.float()).numpy()
        written = {}
        for key, arr in zip(keys, out):
            arr = np.ascontiguousarray(arr)
            crc = zlib.crc32(arr.data) & 0xFFFFFFFF
            target = folder / f"{key}.{crc:08x}.npy"
            fd, tmp = tempfile.mkstemp(prefix=".kv-", suffix=".tmp", dir=folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    np.save(f, arr)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            written[key] = target
        return written

    def _header(self, path: Path) -> tuple[tuple[int, ...], int]:
        h = self._headers.get(path)
        if h is None:
            with path.open("rb") as f:
                shape, _, _ = _npy_header(f)
                h = self._headers[path] = (shape, f.tell())
        return h

    def load(self, rows: list[int], block: tuple[int, int] | None = None) -> np.ndarray:
        """(layers, 2, len(rows), frames, d_model) float32 (or one (layer, k|v) ``block`` of it), read (not
        memory-mapped: mapped pages would count as the process's memory), each block contiguous."""
        shape, _ = self._header(self._files[rows[0]])
        blocks = [block] if block else [(li, w) for li in range(shape[0]) for w in range(shape[1])]
        buf = np.empty((*((1, 1) if block else shape[:2]), len(rows), *shape[2:]), dtype=np.float32)
        one = int(np.prod(shape[2:])) * 4
        for j, r in enumerate(rows):
            path = self._files[r]
            if self._header(path)[0] != shape:
                raise DamaError(f"{path}: key/value block of shape {self._header(path)[0]}, expected {shape}")
            with path.open("rb", buffering=0) as f:
                for li, w in blocks:
                    f.seek(self._header(path)[1] + (li * shape[1] + w) * one)
                    view = memoryview(buf[0, 0, j] if block else buf[li, w, j]).cast("B")
                    if f.readinto(view) != view.nbytes:
                        raise DamaError(f"{path}: truncated key/value file; delete it to recompute it")
        return buf

    def get(self, rows: list[int], layer: int, which: int) -> torch.Tensor:
        """(len(rows), frames, d_model) float32 of one projection (a fresh tensor)."""
        return torch.from_numpy(self.load(rows, (layer, which))[0, 0])  # that block only

    # -- serving during a step ---------------------------------------------------------------------------

    def attach(self, model: torch.nn.Module) -> None:
        """Route every cross-attention k/v projection through the cache while :meth:`serving` is active."""
        from types import MethodType

        for li, pair in enumerate(_cross_projections(model)):
            for j, module in enumerate(pair):
                if getattr(module, "_dama_kv_orig", None) is None:
                    module._dama_kv_orig = module.forward
                module.forward = MethodType(_make_forward(self, li, j), module)

    def detach(self, model: torch.nn.Module) -> None:
        for pair in _cross_projections(model):
            for module in pair:
                orig = getattr(module, "_dama_kv_orig", None)
                if orig is not None:
                    module.forward = orig
                    module._dama_kv_orig = None

    @contextmanager
    def serving(self, encoder_hidden: torch.Tensor, rows: list[int]) -> Iterator[None]:
        """Within the block, projections of exactly ``encoder_hidden`` are served from rows ``rows``."""
        self._serving = (encoder_hidden, rows, self.load(rows), set())
        try:
            yield
        finally:
            self._serving = None

    def lookup(self, x: torch.Tensor, layer: int, which: int) -> torch.Tensor | None:
        s = self._serving
        if s is None:
            return None
        enc, rows, buf, served = s
        if x.data_ptr() != enc.data_ptr() or x.shape != enc.shape:
            return None
        self.hits += 1
        if (layer, which) in served:  # asked again in this step (activation checkpointing recomputes the
            block = self.load(rows, (layer, which))[0, 0]  # forward): the first copy has had LoRA added to it
        else:
            served.add((layer, which))
            block = buf[layer, which]
        # its own tensor (own version counter) over its block: the LoRA path adds into it in place
        return torch.from_numpy(block).to(device=x.device, dtype=x.dtype)


def _npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) of the .npy file ``f``, which is left at the start of the data."""
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(f)


def _intact(path: Path) -> bool:
    """The file reads as a float32 array whose CRC-32 is the one in its name."""
    try:
        crc = int(path.name.split(".")[1], 16)
        with path.open("rb") as f:
            shape, fortran, dtype = _npy_header(f)
            if dtype != np.float32 or len(shape) != 4 or fortran:
                return False
            need, got, crc_now = int(np.prod(shape)) * 4, 0, 0
            while chunk := f.read(1 << 22):  # in chunks: a mapped file's pages would count as our memory
                crc_now = zlib.crc32(chunk, crc_now)
                got += len(chunk)
        return got == need and crc_now & 0xFFFFFFFF == crc
    except (ValueError, IndexError, OSError, EOFError):
        return False


class _AddLowRank(torch.autograd.Function):
    """``base += scaling * ax @ B.T`` in place, on a cached block that needs no gradient.

    A plain in-place ``addmm_`` on the block made autograd record a CopySlices over the whole block,
    whose backward cloned, zero-filled and strided-copied batch x 1500 x d_model gradients for every
    cross-attention projection (17 % of a cached DAMA step in a profile); out of place it would keep
    a second copy of every block alive. Here the backward is addmm's own, for ``ax`` and ``B`` only."""

    @staticmethod
    def forward(ctx, base, ax, b_weight, scaling: float):
        base.addmm_(ax, b_weight.t(), alpha=scaling)
        ctx.mark_dirty(base)
        ctx.save_for_backward(ax, b_weight)
        ctx.scaling = scaling
        return base

    @staticmethod
    def backward(ctx, grad):
        ax, b_weight = ctx.saved_tensors
        grad_ax = grad.mm(b_weight) * ctx.scaling if ctx.needs_input_grad[1] else None
        grad_b = (grad.t().mm(ax) * ctx.scaling) if ctx.needs_input_grad[2] else None
        return None, grad_ax, grad_b, None


def _make_forward(cache: CrossKVCache, layer: int, which: int):
    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        base = None if (args or kwargs) else cache.lookup(x, layer, which)
        if base is None:
            return self._dama_kv_orig(x, *args, **kwargs)
        if type(self) is torch.nn.Linear:
            return base
        name = self.active_adapters[0]
        if self.disable_adapters or self.merged:
            return self._dama_kv_orig(x)
        flat = x.reshape(-1, x.shape[-1])
        ax = torch.nn.functional.linear(flat, self.lora_A[name].weight)
        out = _AddLowRank.apply(base.view(-1, base.shape[-1]), ax, self.lora_B[name].weight, self.scaling[name])
        return out.view(*x.shape[:-1], out.shape[-1])

    return forward


def prune(encoder_folder: Path, live: set[str], dry_run: bool = False,
          stale_after_s: float = 86400.0) -> tuple[list[str], int]:
    """Remove key/value files of clips not in ``live``, and temporary files of builds interrupted more than
    ``stale_after_s`` ago: (removed, freed bytes)."""
    removed, freed = [], 0
    now = time.time()
    for folder in sorted(Path(encoder_folder).glob(f"{PREFIX}*")):
        for p in folder.iterdir():
            stale_tmp = p.name.startswith(".kv-") and now - p.stat().st_mtime > stale_after_s
            if stale_tmp or (p.suffix == ".npy" and p.name.split(".")[0] not in live):
                freed += p.stat().st_size
                removed.append(str(p))
                if not dry_run:
                    p.unlink(missing_ok=True)
    return removed, freed


__all__ = ["CrossKVCache", "NotEnoughSpace", "applies", "bytes_per_clip", "projection_fingerprint", "prune"]
