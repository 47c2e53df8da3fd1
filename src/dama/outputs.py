"""Where dama writes: checked before expensive work, written atomically, failures in one line.

A read-only folder or a full disk for ``--json`` or ``--hyps`` used to surface only after
minutes of decoding, as a traceback, and an interruption mid-write could leave half a
file behind. Every command checks its output locations first (:func:`check_writable`),
writes through :func:`atomic_write_text` (a uniquely named temporary file in the same
folder, flushed to disk, then renamed over the target: readers see the old file or the
new one, never a mix, and two processes never share a temporary name), and the CLI turns
any ``OSError`` into one line through :func:`describe_os_error`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from dama.errors import DamaError

WRITE_CHECK_PREFIX = ".dama-write-check-"  # the probe file's name: a kill may leave one (run folders accept it)
PROBE_BYTES = 64 * 1024  # written and flushed by check_writable: a full disk fails here, not after the work


class OutputError(DamaError):
    """An output location cannot be written."""


def describe_os_error(e: OSError, what: str | None = None) -> str:
    """One line naming the file, the reason and what to do, for any OSError."""
    name = e.filename if e.filename is not None else "(unknown file)"
    if e.filename2 is not None:
        name = f"{e.filename} -> {e.filename2}"
    reason = e.strerror or str(e)
    hint = {
        errno.ENOSPC: "the disk is full: free space or choose another location",
        errno.EDQUOT: "the disk quota is exhausted: free space or choose another location",
        errno.EROFS: "the file system is read-only: choose a writable location",
        errno.EACCES: "permission denied: choose a location you can write, or fix its permissions",
        errno.EPERM: "operation not permitted: choose a location you own",
        errno.ENOENT: "no such file or folder: check the path",
        errno.EISDIR: "a folder is in the way: give a file path",
        errno.ENOTDIR: "a file is in the way: give a folder path",
    }.get(e.errno or 0, "check the path and try again")
    prefix = f"{what}: " if what else ""
    return f"{prefix}{name}: {reason} ({hint})"


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe_folder(folder: Path, what: str, target: Path) -> None:
    """Create, fill, flush and delete a small file in ``folder``: fails for read-only or full locations."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=WRITE_CHECK_PREFIX, dir=folder)
    except OSError as e:
        raise OutputError(describe_os_error(e, f"cannot write {what} {target}")) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * PROBE_BYTES)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise OutputError(describe_os_error(e, f"cannot write {what} {target}")) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def check_writable(path: str | Path, what: str = "output") -> Path:
    """Fail now, with one clear line, if the file ``path`` could not be written later.

    Creates missing parent folders (the write would need them anyway), refuses a folder
    where a file is expected, and writes a small probe file beside the target.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; {what} needs a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{path}: exists and is not writable; choose another {what} location")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(describe_os_error(e, f"cannot create the folder for {what} {path}")) from None
    _probe_folder(path.parent, what, path)
    return path


def check_writable_dir(path: str | Path, what: str = "output folder") -> Path:
    """Fail now if the folder ``path`` could not be created or written; creates nothing."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: is a file; {what} needs a folder")
    _probe_folder(_nearest_existing(path.absolute()), what, path)
    return path


def fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: not every file system lets a folder be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` through ``write(f)`` on a temporary file beside it, then rename over it.

    Streams (a checkpoint is written by ``torch.save``), so nothing needs building in memory first;
    the temporary name is unique (``mkstemp``), so two processes never share one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp's 0600 would hide results from other users
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temporary file :func:`atomic_write` makes (left behind by a kill)."""
    return name.startswith(".") and name.endswith(".tmp")


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` all at once or not at all (see the module docstring)."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
