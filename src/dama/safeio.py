"""Reading and writing dama's own state files without trusting them.

Why a module of its own: a run folder is read back by later processes (``--resume``, ``dama
bench``, ``dama eval``), possibly after a kill, a full disk, a copy over a flaky link or a
deliberate edit. Every reader here therefore

* never executes anything a file says: checkpoints load with ``torch.load(weights_only=True)``,
  whose unpickler builds only tensors and plain containers (``os.system`` in a crafted pickle is
  refused, not called);
* verifies what it loaded: a checkpoint carries the sha256 of its own content, so a truncated or
  bit-flipped file is caught before training continues from it;
* turns every failure (``OSError``, ``UnicodeDecodeError``, ``JSONDecodeError``,
  ``UnpicklingError``, truncation) into a :class:`FileError` naming the file and what to do,
  which the CLI prints without a traceback.

Writers replace files atomically through a temporary file with a unique name (``mkstemp`` in the
same folder, so two processes never share one), flushed and fsynced before ``os.replace``: a kill
at any moment leaves either the old file or the new one, never a mix.

:class:`FolderLock` keeps two processes from writing one folder at once (``flock``, released by
the kernel when the holder dies, so a killed run never leaves a stale lock behind).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from dama.errors import DamaError
from dama.outputs import atomic_write, atomic_write_text

try:  # POSIX only; elsewhere folders go unlocked (dama's targets are Linux and macOS)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

CHECKPOINT_FORMAT = "dama-checkpoint/2"
LOCK_NAME = ".dama.lock"


class FileError(DamaError):
    """A file could not be read, parsed or verified; the message names it and what to do."""


class CheckpointError(FileError):
    """A checkpoint is missing, truncated, corrupted, tampered with or not dama's."""


class FolderLockedError(DamaError):
    """Another live process is writing the folder."""


# -- atomic writes: dama.outputs (one implementation for every file dama writes) ------------------


def write_json(path: str | Path, obj: Any) -> None:
    """JSON with ``indent=2`` (``default=str`` for paths and the like), written atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


# -- reading ------------------------------------------------------------------------------------


def read_json(path: str | Path, what: str = "file", fix: str = "") -> Any:
    """Parse a JSON file; any way it can fail becomes a :class:`FileError` naming ``path``
    (as ``what``) and ending with ``fix``, the action that helps."""
    path = Path(path)
    tail = f" {fix}" if fix else ""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise FileError(f"{path}: {what} not found.{tail}") from e
    except UnicodeDecodeError as e:
        raise FileError(f"{path}: {what} is not UTF-8 text (byte {e.start}); it is corrupted.{tail}") from e
    except OSError as e:
        raise FileError(f"{path}: cannot read {what}: {e.strerror or e}.{tail}") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        how = "is empty" if not text.strip() else f"is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
        raise FileError(f"{path}: {what} {how}; it is truncated or corrupted.{tail}") from e


# -- checkpoints --------------------------------------------------------------------------------


def content_digest(obj: Any) -> str:
    """sha256 of a checkpoint's content: every tensor's dtype, shape and bytes, and every plain
    value, in a canonical order. Computed over the loaded objects, not the file's bytes, so the
    checksum lives inside the one file it protects (an atomic rename keeps them together)."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)}:".encode())
        h.update(t.view(torch.uint8).numpy() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}:".encode())
        for k in sorted(obj, key=lambda k: (type(k).__name__, repr(k))):
            _feed(h, k)
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}:".encode())
        for x in obj:
            _feed(h, x)
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        h.update(f"S{len(b)}:".encode() + b)
    elif obj is None or isinstance(obj, (bool, int, float)):  # bool before int: repr tells them apart
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, torch.dtype):
        h.update(f"dtype:{obj};".encode())
    else:
        raise TypeError(f"a checkpoint holds only tensors and plain values, not {type(obj).__name__}")


def save_checkpoint_file(path: str | Path, payload: dict) -> None:
    """Write ``payload`` (tensors, dicts, lists, numbers, strings) with its checksum, atomically."""
    import torch

    wrapped = {"format": CHECKPOINT_FORMAT, "sha256": content_digest(payload), "payload": payload}
    atomic_write(path, lambda f: torch.save(wrapped, f))


def _numpy_array_globals() -> list:
    """What a pickled numpy array needs (dama < 2 stored numpy's RNG state as one): constructors of
    plain arrays, nothing that can run code."""
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return [np.ndarray, np.dtype, _reconstruct, (_reconstruct, "numpy.core.multiarray._reconstruct"),
            (_reconstruct, "numpy._core.multiarray._reconstruct"),
            *(getattr(np.dtypes, n) for n in ("UInt32DType", "Float64DType") if hasattr(np, "dtypes"))]


def load_checkpoint(path: str | Path, fix: str, required: tuple[str, ...] = (),
                    log: Callable[[str], None] | None = None) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint_file` without running any code it may
    hold, verify its checksum and that it has the ``required`` keys, and return its payload.

    A checkpoint of the older unversioned layout (no checksum) is still accepted when it loads
    as plain data; ``log`` is told it could not be verified. Every failure is a
    :class:`CheckpointError` naming ``path`` and ending with ``fix``."""
    import torch

    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: no checkpoint here. {fix}") from e
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint: {e.strerror or e}. {fix}") from e
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        if m:
            raise CheckpointError(
                f"{path}: refused to load: it asks to call {m.group(1)}, which no dama checkpoint does "
                f"(it was not written by dama, or was tampered with). Nothing in it was run. {fix}") from None
        if "Weights only load failed" in str(e):
            why = re.search(r"WeightsUnpickler error:\s*(.+)", str(e))
            raise CheckpointError(
                f"{path}: refused to load: it is not plain tensors and values "
                f"({why.group(1).strip() if why else 'a pickle dama does not write'}), so it was not written by "
                f"dama, is damaged or was tampered with. Nothing in it was run. {fix}") from None
        raise CheckpointError(f"{path}: the checkpoint ({size} bytes) is truncated or corrupted "
                              f"({_first_line(e)}). {fix}") from None
    except MemoryError:
        raise
    except Exception as e:  # torch reports truncation as RuntimeError, EOFError, ValueError, ...
        raise CheckpointError(f"{path}: the checkpoint ({size} bytes) is truncated or corrupted "
                              f"({type(e).__name__}: {_first_line(e)}). {fix}") from None
    if not isinstance(ck, dict):
        raise CheckpointError(f"{path}: not a dama checkpoint (it holds a {type(ck).__name__}). {fix}")
    if "format" in ck:
        if ck["format"] != CHECKPOINT_FORMAT or not isinstance(ck.get("payload"), dict):
            raise CheckpointError(f"{path}: checkpoint format {ck['format']!r} is not {CHECKPOINT_FORMAT!r} "
                                  f"(written by another dama version?). {fix}")
        try:
            digest = content_digest(ck["payload"])
        except TypeError as e:
            raise CheckpointError(f"{path}: not a dama checkpoint ({e}). {fix}") from None
        if digest != ck.get("sha256"):
            raise CheckpointError(f"{path}: the checkpoint is corrupted: its content's sha256 {digest[:16]}... "
                                  f"is not the {str(ck.get('sha256'))[:16]}... it was written with. {fix}")
        payload = ck["payload"]
    else:
        payload = ck
        if log is not None:
            log(f"note: {path} has no checksum (written by an older dama); loaded as plain data, unverified")
    missing = [k for k in required if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: not a dama training checkpoint (no {', '.join(missing)}). {fix}")
    return payload


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0][:200] if s else type(e).__name__


# -- folder lock --------------------------------------------------------------------------------


class FolderLock:
    """An exclusive lock on ``folder`` for the life of a ``with`` block: ``flock`` on
    ``folder/.dama.lock`` (which records the holder's pid for the message a second process gets).

    Non-blocking: a second process fails at once with :class:`FolderLockedError` rather than
    queueing behind a run that may take hours. The kernel drops the lock when the holder exits or
    is killed, so a leftover lock file never blocks anyone. Re-entrant within one process (the
    run wraps training, which locks too). The lock file is removed on a normal release; a
    process that opened it just before must then notice (its inode is no longer the path's) and
    try again, so no two processes can each hold a lock on a different file of the same name.
    """

    _held: ClassVar[dict[str, int]] = {}  # resolved folder -> nesting depth, this process

    def __init__(self, folder: str | Path, hint: str = "wait for it to finish, or use another --out"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.hint = hint
        self._fd: int | None = None
        self._key = ""

    def __enter__(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._key = str(self.folder.resolve())
        if self._key in FolderLock._held:
            FolderLock._held[self._key] += 1
            return self
        if fcntl is not None:
            self._fd = self._acquire()
        FolderLock._held[self._key] = 1
        return self

    def _acquire(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                try:
                    pid = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
                finally:
                    os.close(fd)
                raise FolderLockedError(f"{self.folder} is being written by another dama process (pid {pid}); "
                                        f"{self.hint}.") from None
            try:
                st = os.stat(self.path)
                mine = os.fstat(fd)
                same = (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev)
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
            os.close(fd)  # the holder removed that file as we opened it; lock the current one

    def __exit__(self, *exc: object) -> None:
        depth = FolderLock._held.get(self._key, 0) - 1
        if depth > 0:
            FolderLock._held[self._key] = depth
            return
        FolderLock._held.pop(self._key, None)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # while still held: see the class docstring
            os.close(self._fd)
            self._fd = None


__all__ = ["CheckpointError", "FileError", "FolderLock", "FolderLockedError", "load_checkpoint", "read_json",
           "save_checkpoint_file", "write_json"]
