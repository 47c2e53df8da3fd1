"""Encoder outputs computed once per utterance and reused for every step, epoch and run.

A service of its own (not part of training): training, test-split evaluation (``dama eval
--cache-dir``), probes and the benchmark scripts all read encoder outputs through it, and
``dama cache info|prune`` look after it. :class:`ClipInputs` is what a decoder reads per clip:
these cached outputs, or log-Mel features when the encoder itself trains.

With a frozen encoder its outputs never change, so re-running it each step (what the
standard Hugging Face recipe does) wastes most of the compute. The cache is a folder per
encoder (keyed by a hash of its weights) holding float16 ``.npy`` shards
(n_utts x frames x d_model) and, beside each, the list of clip keys it holds. A clip is
keyed by the content of its audio file (a SHA-256 of its bytes), so a 0.5 h subset,
another method or another seed reuses what an earlier run computed, and so does a copy of
the data at another path or with new timestamps (an unpacked archive, a fresh checkout, a
re-provisioned share); only missing clips are encoded.

Integrity. A cache outlives runs, sits on shared disks and is written by processes that
can be killed or run out of space, so nothing in it is trusted unchecked:

* Each shard's array carries, after its data (where ``np.load`` never looks), a trailer
  with its shape, dtype, data offset and CRC-32s of its header, of every row and of its
  key list, the trailer itself guarded by a CRC: no byte of a shard goes unchecked. A
  shard is checked structurally (sizes, header, key list) when it is opened, and each
  row it serves is checksummed the first time this process reads it (CRC-32 runs at ~2.5
  GB/s: ~0.4 ms per MiB, ~0.6 ms per whisper-base clip, once per process). A bad shard
  or key list is reported in one line naming the file, deleted, and its clips encoded
  again. Shards written before checksums existed (a bare ``.npy``) are still read, with
  the structural checks only.
* A shard is written with ordinary writes (never into a memory map, where a full disk
  is a SIGBUS), into a uniquely named temporary file whose space is reserved first
  (``posix_fallocate``), then fsync'ed and renamed into place; its key list follows, so
  an interrupted or failed build leaves nothing that looks valid. A full disk is a
  :class:`DamaError` saying how much room was needed, where, and what to do.
* Shard names are unique per write and no file is ever rewritten, so concurrent builds
  cannot clobber each other; the rename into place (and the removal of a bad shard)
  happens under an exclusive ``flock`` of the folder, where a writer also drops its
  shard if another process has meanwhile cached the same clips. A writer holds a lock
  on its temporary file, so leftovers of killed builds are told apart from files being
  written and removed safely.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import stat
import struct
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers.modeling_outputs import BaseModelOutput

from dama import kv_cache
from dama.data.audio import SAMPLE_RATE, load_audio
from dama.data.manifest import Manifest, Utterance
from dama.errors import DamaError, DataError
from dama.models.load import Whisper
from dama.outputs import fsync_dir

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locks, unique names still keep writers apart
    fcntl = None  # type: ignore[assignment]

FORMAT = "dama-encoder-cache/2"
_MAGIC = b"DAMAENC2"
_FOOTER = struct.Struct("<II8s")  # trailer length, CRC-32 of the trailer, magic: the file's last 16 bytes
_DTYPE = np.dtype("<f2")
_TMP_PREFIX = ".shard-"  # temporary files of builds in progress (or killed): never read as shards
_TMP_SUFFIX = ".tmp"
_LEFTOVER_MIN_AGE_S = 60.0  # an unlocked temp file younger than this may be one whose writer is about to lock it
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)

Log = Callable[[str], object]


def encoder_fingerprint(model: torch.nn.Module) -> str:
    """Cheap but weight-sensitive: a hash of the encoder's first conv and last layers."""
    enc = model.get_encoder() if hasattr(model, "get_encoder") else model.model.encoder
    h = hashlib.sha256()
    for t in (enc.conv1.weight, enc.conv1.bias, enc.layer_norm.weight, enc.layers[-1].fc2.weight):
        h.update(t.detach().float().cpu().numpy().tobytes())
    h.update(json.dumps([enc.config.d_model, enc.config.encoder_layers]).encode())
    return h.hexdigest()[:16]


# ---- clip keys: the identity of a clip's audio ------------------------------------------------------

_KEYS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> content key, per process
_DATA_CHECK_HINT = "`dama data check SPEC` lists every problem of a data set at once."


def _not_a_file(mode: int) -> str | None:
    """What a path is when it is not a regular file (reading a device or a FIFO never ends)."""
    for test, what in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return None if stat.S_ISREG(mode) else "not a regular file"


def _clip_key_or_problem(u: Utterance) -> tuple[str | None, str | None]:
    """(key, None), or (None, what is wrong with the clip's file, naming it and its manifest line)."""
    ctx = f" (listed at {u.where})" if u.where else ""
    try:
        path = Path(u.audio).resolve()
        st = os.stat(path)
    except FileNotFoundError:
        return None, f"{Path(u.audio)}: audio file not found{ctx}; fix the path or remove the entry"
    except (OSError, RuntimeError) as e:  # permission, symlink loop, I/O error
        return None, f"{Path(u.audio)}: cannot read audio file{ctx}: {getattr(e, 'strerror', None) or e}"
    what = _not_a_file(st.st_mode)
    if what:  # checked before opening: a FIFO blocks on open, /dev/zero reads forever
        return None, f"{path}: {what}, not an audio file{ctx}; point the entry at a regular file"
    stamp = (str(path), st.st_size, st.st_mtime_ns)
    key = _KEYS.get(stamp)
    if key is not None:
        return key, None
    try:  # O_NONBLOCK: should the path have become a FIFO since the stat, opening it must not hang
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        return None, f"{path}: cannot open audio file{ctx}: {e.strerror}"
    with os.fdopen(fd, "rb") as f:
        what = _not_a_file(os.fstat(fd).st_mode)
        if what:
            return None, f"{path}: {what}, not an audio file{ctx}; point the entry at a regular file"
        h = hashlib.sha256(b"audio-v2\0")
        try:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        except OSError as e:
            return None, f"{path}: cannot read audio file{ctx}: {e.strerror}"
    key = _KEYS[stamp] = h.hexdigest()[:24]
    return key, None


def clip_key(u: Utterance) -> str:
    """Identity of the audio a clip's encoder output depends on (not its transcript, id or
    path): a hash of the file's bytes. Hashing is ~1 ms per clip; each file is read once
    per process while its path, size and mtime stay the same. Anything but a readable
    regular file is a :class:`DataError` naming it (and its manifest line), raised before
    reading, since hashing a device or a FIFO would never finish."""
    key, problem = _clip_key_or_problem(u)
    if problem:
        raise DataError(f"{problem}. {_DATA_CHECK_HINT}")
    return key  # type: ignore[return-value]


def clip_keys(utts: Iterable[Utterance]) -> list[str]:
    """:func:`clip_key` of every clip; all unreadable files are reported in one :class:`DataError`."""
    keys, problems = [], []
    for u in utts:
        key, problem = _clip_key_or_problem(u)
        keys.append(key)
        if problem:
            problems.append(problem)
    if len(problems) == 1:
        raise DataError(f"{problems[0]}. {_DATA_CHECK_HINT}")
    if problems:
        shown = "\n  ".join(problems[:5]) + (f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise DataError(f"{len(problems)} audio files cannot be read for the encoder cache:\n  {shown}\n"
                        f"{_DATA_CHECK_HINT}")
    return keys  # type: ignore[return-value]


# ---- shards: reading and verifying -----------------------------------------------------------------

class _Bad(Exception):
    """A shard or key list that must not be used; the message says why."""


class _Foreign(_Bad):
    """An intact shard in a format of another dama version: not used, but not deleted either (a cache
    is shared by whatever versions run against it)."""


_VERIFIED: dict[tuple[str, int, int, int], set[int]] = {}  # array file stamp -> rows checksummed, per process


@dataclass(eq=False)
class _Shard:
    """A shard as found on disk: its array, key list and (unless written by an older dama) checksums."""

    npy: Path
    keys_file: Path
    keys: list[str]
    keys_crc: int
    meta: dict | None = None  # the trailer; None for a legacy shard (no checksums)
    array: np.ndarray | None = None
    stamp: tuple[str, int, int, int] | None = None
    size: int = 0
    _opened: bool = field(default=False, repr=False)

    def open(self) -> np.ndarray:
        """Map the array after checking everything but the row checksums (sizes, header, trailer,
        key list); cheap: a few small reads. Raises :class:`_Bad`."""
        if self._opened:
            return self.array  # type: ignore[return-value]
        try:
            st = os.stat(self.npy)
        except FileNotFoundError:
            raise _Bad("its array file is missing (deleted?)") from None
        if not stat.S_ISREG(st.st_mode):
            raise _Bad(f"its array is {_not_a_file(st.st_mode)}")
        self.size = st.st_size
        self.stamp = (str(self.npy), st.st_ino, st.st_size, st.st_mtime_ns)
        self.meta = _read_trailer(self.npy, st.st_size)
        try:
            arr = np.load(self.npy, mmap_mode="r")
        except Exception as e:  # truncated, bad header: numpy raises ValueError, OSError, EOFError ...
            raise _Bad(f"array unreadable ({type(e).__name__}: {e})") from None
        n = len(self.keys)
        if arr.ndim != 3 or arr.dtype != _DTYPE or arr.shape[0] != n:
            raise _Bad(f"array is {arr.dtype}{list(arr.shape)}, expected float16 [{n}, frames, d_model] "
                       f"for its {n} keys")
        end = arr.offset + arr.nbytes
        if self.meta is None:
            if end != st.st_size:
                raise _Bad(f"array file is {st.st_size} bytes, its header says {end}")
        else:
            m = self.meta
            if m["keys_crc32"] != self.keys_crc:
                raise _Bad(f"key list {self.keys_file.name} does not match the array's checksum of it")
            if list(arr.shape) != m["shape"] or arr.offset != m["data_offset"] or m["dtype"] != _DTYPE.str:
                raise _Bad(f"array header ({arr.dtype}{list(arr.shape)} at {arr.offset}) disagrees with its "
                           f"trailer ({m['dtype']}{m['shape']} at {m['data_offset']})")
            if end + m["trailer_bytes"] != st.st_size:
                raise _Bad(f"array file is {st.st_size} bytes, expected {end + m['trailer_bytes']}")
            with open(self.npy, "rb") as f:  # every byte is covered: header here, rows in verify()
                if zlib.crc32(f.read(arr.offset)) != m["header_crc32"]:
                    raise _Bad("array header fails its checksum")
        self.array, self._opened = arr, True
        return arr

    def verify(self, rows: Iterable[int], again: bool = False) -> None:
        """Checksum each of ``rows`` not yet checked in this process (all of them if ``again``; ~0.4 ms
        per MiB). Raises :class:`_Bad`."""
        arr = self.open()
        if self.meta is None:
            return  # a legacy shard has nothing to check rows against
        done = _VERIFIED.setdefault(self.stamp, set())  # type: ignore[arg-type]
        if again:
            done.clear()
        crcs = self.meta["row_crc32"]
        for r in sorted(set(rows) - done):
            got = zlib.crc32(arr[r])
            if got != crcs[r]:
                raise _Bad(f"row {r} (clip {self.keys[r]}) fails its checksum (crc32 {got:08x}, "
                           f"expected {crcs[r]:08x}): the file was altered or damaged on disk")
            done.add(r)


def _read_trailer(npy: Path, size: int) -> dict | None:
    """The checksums after a shard's data, or None when the file has none (written by an older dama)."""
    try:
        with open(npy, "rb") as f:
            if size < _FOOTER.size:
                return None
            f.seek(size - _FOOTER.size)
            length, crc, magic = _FOOTER.unpack(f.read(_FOOTER.size))
            if magic != _MAGIC:
                return None
            if length > size - _FOOTER.size:
                raise _Bad("checksum trailer is damaged (length beyond the file)")
            f.seek(size - _FOOTER.size - length)
            raw = f.read(length)
    except OSError as e:
        raise _Bad(f"array unreadable ({e.strerror})") from None
    if zlib.crc32(raw) != crc:
        raise _Bad("checksum trailer is damaged (its CRC does not match)")
    try:
        meta = json.loads(raw)
    except ValueError:
        raise _Bad("checksum trailer is damaged (not JSON)") from None
    if meta.get("format") != FORMAT:
        raise _Foreign(f"written by another dama version (format {meta.get('format')!r}; this one reads "
                       f"{FORMAT!r}); not used here")
    meta["trailer_bytes"] = length + _FOOTER.size
    if len(meta.get("row_crc32", ())) != meta.get("shape", [None])[0]:
        raise _Bad("checksum trailer is damaged (row count)")
    return meta


def _parse_keys(keys_file: Path) -> tuple[list[str], int]:
    """A shard's key list and its CRC-32; raises :class:`_Bad` for a truncated or corrupt one."""
    try:
        raw = keys_file.read_bytes()
    except OSError as e:
        raise _Bad(f"key list unreadable ({e.strerror})") from None
    try:
        keys = json.loads(raw)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise _Bad(f"key list is truncated or corrupt ({e})") from None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _Bad("key list is not a JSON list of clip keys")
    return keys, zlib.crc32(raw)


def _npy_of(keys_file: Path) -> Path:
    return keys_file.with_name(keys_file.name[: -len(".keys.json")] + ".npy")


def _scan(folder: Path, skip: set[Path] | frozenset[Path] = frozenset()) -> tuple[list[_Shard], list[tuple[Path, str]]]:
    """Shards in reading order (the first holding a key serves it), and (file, reason) for each key list
    that cannot be used. Only the key lists are read: arrays are opened by :meth:`_Shard.open`."""
    shards, bad = [], []
    for keys_file in sorted(folder.glob("shard-*.keys.json")):
        npy = _npy_of(keys_file)
        if keys_file in skip or npy in skip:
            continue
        try:
            keys, crc = _parse_keys(keys_file)
            if not npy.exists():  # arrays are renamed into place before their key list, and deleted after it
                raise _Bad(f"its array {npy.name} is missing")
        except _Bad as e:
            bad.append((keys_file, str(e)))
            continue
        shards.append(_Shard(npy, keys_file, keys, crc))
    return shards, bad


def _read_index(folder: Path) -> dict[str, tuple[Path, int]]:
    """Clip key -> (array file, row) over the readable key lists (arrays not opened)."""
    index: dict[str, tuple[Path, int]] = {}
    for s in _scan(folder)[0]:
        for row, k in enumerate(s.keys):
            index.setdefault(k, (s.npy, row))
    return index


def _served(folder: Path) -> set[str]:
    """Keys of the shards that pass the structural checks (a few small reads each; rows unchecked)."""
    out: set[str] = set()
    for s in _scan(folder)[0]:
        with contextlib.suppress(_Bad):
            s.open()
            out.update(s.keys)
    return out


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Exclusive flock on the folder itself (no lock file to leave behind) around renames into place
    and removals. Where flock is unavailable (some network file systems) it is skipped: shard names
    are unique per write, so writers still never clobber each other."""
    fd = None
    try:
        fd = os.open(folder, os.O_RDONLY)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        pass
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def _discard(files: list[Path]) -> None:
    """Delete a bad or unneeded shard: the key list first, so a half-deleted shard never looks valid.
    Failing to delete (a read-only cache) is not an error: callers leave the shard out regardless."""
    if not files:
        return
    with _folder_lock(files[0].parent):
        for f in files:
            with contextlib.suppress(OSError):
                f.unlink(missing_ok=True)


def _usable(folder: Path, needed: list[str], log: Log) -> dict[str, tuple[_Shard, int]]:
    """Clip key -> (shard, row) for every key of ``needed`` that a sound shard serves. Shards are
    checked structurally and the rows served are checksummed; a bad shard or key list is reported,
    deleted, and left out (its clips are then missing, i.e. encoded again)."""
    skip: set[Path] = set()  # discarded already (even if deleting failed: a read-only cache)
    while True:
        shards, bad = _scan(folder, skip)
        for keys_file, reason in bad:  # its array (if any) is useless without it
            _warn_discard(log, keys_file, reason)
            _discard([keys_file, _npy_of(keys_file)])
            skip.update((keys_file, _npy_of(keys_file)))
        index: dict[str, tuple[_Shard, int]] = {}
        for s in shards:
            for row, k in enumerate(s.keys):
                index.setdefault(k, (s, row))
        rows: dict[_Shard, list[int]] = {}
        for k in needed:
            if k in index:
                s, r = index[k]
                rows.setdefault(s, []).append(r)
        clean = True
        for s, rs in rows.items():
            try:
                s.verify(rs)
            except _Foreign as e:
                log(f"note: encoder cache: {s.npy}: {e}")
                skip.update((s.keys_file, s.npy))
                clean = False
            except _Bad as e:
                _warn_discard(log, s.npy, str(e))
                _discard([s.keys_file, s.npy])
                skip.update((s.keys_file, s.npy))
                clean = False
        if clean:  # else again: a later shard may serve the clips the bad one held
            return {k: index[k] for k in needed if k in index}


def _warn_discard(log: Log, path: Path, reason: str) -> None:
    log(f"warning: encoder cache: {path}: {reason}; discarded, its clips will be encoded again")


# ---- shards: writing -------------------------------------------------------------------------------

def _npy_header(shape: tuple[int, ...]) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": _DTYPE.str, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write until everything is written (it may write less); a full disk raises OSError(ENOSPC)."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def _reserve(fd: int, nbytes: int) -> None:
    """Claim the shard's blocks before writing any, so a full disk fails at once (not after an hour of
    encoding) and cleanly. File systems without fallocate are fine: writes then report ENOSPC."""
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, nbytes)
        except OSError as e:
            if e.errno in _NO_SPACE:
                raise
            # EOPNOTSUPP, EINVAL ...: unsupported here; ordinary writes still fail cleanly


def _write_error(folder: Path, needed: int, n: int, e: OSError) -> DamaError:
    """What to tell the user when a shard cannot be written: a full disk (how much room was needed, where,
    what to do) or another file-system error (read-only, permissions)."""
    if e.errno not in _NO_SPACE:
        return DamaError(f"{folder}: cannot write the encoder cache ({e.strerror or e}). Nothing was written. "
                         "Make the folder writable, or put the cache elsewhere with --cache-dir DIR.")
    try:
        free = f"{_human(shutil.disk_usage(folder).free)} free"
    except OSError:
        free = "free space unknown"
    return DamaError(
        f"{folder}: not enough disk space for the encoder cache ({e.strerror}): {n} clips need {needed} bytes "
        f"({_human(needed)}), {free}. Nothing was written. Free space there, or put the cache on a "
        "larger disk with --cache-dir DIR (and `dama cache prune` drops what no data set needs).")


def _human(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def _is_leftover(tmp: Path, min_age_s: float) -> bool:
    """A temp file no live process is writing: its writer held an flock on it until it died."""
    try:
        if time.time() - tmp.stat().st_mtime < min_age_s:
            return False
        if fcntl is None or not tmp.name.endswith(_TMP_SUFFIX):
            return True  # written by an older dama (no lock): only the age tells
        fd = os.open(tmp, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False  # a live writer holds it
    finally:
        os.close(fd)


def _remove_leftovers(folder: Path, log: Log) -> None:
    """Delete temporary files of killed builds (reserved space that nothing will ever use)."""
    gone, freed = 0, 0
    for tmp in folder.glob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}"):
        if _is_leftover(tmp, _LEFTOVER_MIN_AGE_S):
            with contextlib.suppress(OSError):
                size = tmp.stat().st_size
                tmp.unlink()
                gone, freed = gone + 1, freed + size
    if gone:
        log(f"encoder cache: removed {gone} leftover file(s) of interrupted builds ({freed / 2**20:.0f} MiB)")


def _write_shard(folder: Path, keys: list[str], shape: tuple[int, int, int], batches: Iterable[np.ndarray],
                 log: Log) -> Path | None:
    """Write ``batches`` (float16 rows, in ``keys`` order) as a new shard; returns its array file, or None
    if another process cached all of ``keys`` while this one encoded them (its copy is then dropped).

    Atomic: a unique temp file (space reserved, locked as "being written"), fsync, then under the folder
    lock the array and then its key list are renamed into place. Any failure removes the temp file."""
    n, frames, d = shape
    header = _npy_header(shape)
    row_bytes = frames * d * _DTYPE.itemsize
    needed = len(header) + n * row_bytes
    keys_bytes = json.dumps(keys).encode()
    name = f"shard-{hashlib.sha256(keys_bytes).hexdigest()[:16]}-{secrets.token_hex(4)}"
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{name}.", suffix=_TMP_SUFFIX, dir=folder)
    except OSError as e:
        raise _write_error(folder, needed, n, e) from e
    tmp = Path(tmp_name)
    try:
        if fcntl is not None:  # "being written": leftover cleanup leaves it alone (no locks: the age tells)
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _reserve(fd, needed)
        _write_all(fd, header)
        crcs: list[int] = []
        for batch in batches:
            batch = np.ascontiguousarray(batch, dtype=_DTYPE)
            if batch.shape[1:] != (frames, d):
                raise ValueError(f"encoder output {batch.shape} does not fit a shard of {shape}")
            crcs.extend(zlib.crc32(row) for row in batch)
            _write_all(fd, batch)
        if len(crcs) != n:
            raise ValueError(f"{len(crcs)} rows encoded for a shard of {n}")
        trailer = json.dumps({"format": FORMAT, "shape": list(shape), "dtype": _DTYPE.str,
                              "data_offset": len(header), "header_crc32": zlib.crc32(header),
                              "keys_crc32": zlib.crc32(keys_bytes),
                              "row_crc32": crcs}, separators=(",", ":")).encode()
        _write_all(fd, trailer + _FOOTER.pack(len(trailer), zlib.crc32(trailer), _MAGIC))
        os.fsync(fd)
        npy, keys_file = folder / f"{name}.npy", folder / f"{name}.keys.json"
        with _folder_lock(folder):
            if set(keys) <= _served(folder):
                log(f"encoder cache: another process cached these {n} clips meanwhile; using its copy")
                return None
            kfd, ktmp = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{name}.keys.", suffix=_TMP_SUFFIX, dir=folder)
            try:
                _write_all(kfd, keys_bytes)
                os.fsync(kfd)
            except BaseException:
                Path(ktmp).unlink(missing_ok=True)
                raise
            finally:
                os.close(kfd)
            os.replace(tmp, npy)
            os.replace(ktmp, keys_file)
            fsync_dir(folder)
        st = os.stat(npy)
        _VERIFIED[(str(npy), st.st_ino, st.st_size, st.st_mtime_ns)] = set(range(n))  # checksummed as written
        return npy
    except OSError as e:
        raise _write_error(folder, needed, n, e) from e
    finally:
        os.close(fd)
        tmp.unlink(missing_ok=True)


# ---- the cache -------------------------------------------------------------------------------------

class EncoderCache:
    """Row ``i`` holds the encoder output of utterance ``i`` of the manifest it was built for."""

    def __init__(self, folder: Path, locations: list[tuple[Path, int]],
                 arrays: dict[Path, np.ndarray] | None = None):
        self.path = folder
        self._arrays = arrays if arrays is not None else {
            p: np.load(p, mmap_mode="r") for p in {p for p, _ in locations}}
        self._loc = locations

    def __len__(self) -> int:
        return len(self._loc)

    def get(self, rows: list[int]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self._arrays[p][r] for p, r in (self._loc[i] for i in rows)]))

    @staticmethod
    def size_bytes(n: int, frames: int, d_model: int) -> int:
        return n * frames * d_model * 2

    @classmethod
    def build(cls, w: Whisper, m: Manifest, cache_root: str | Path, batch_size: int = 4,
              log: Log = print, show_progress: bool = True) -> EncoderCache:
        """The cache for ``m``: clips already cached (by any run) are checked and reused, the rest
        encoded into a new shard. Unreadable audio is a :class:`DataError` before any encoding; a bad
        shard is reported, discarded and rebuilt; a full disk is a :class:`DamaError`."""
        keys = clip_keys(m)  # first: bad audio paths are reported before anything is created
        folder = Path(cache_root) / f"enc-{encoder_fingerprint(w.model)}"
        folder.mkdir(parents=True, exist_ok=True)
        unique = list(dict.fromkeys(keys))
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        for attempt in range(3):
            found = _usable(folder, unique, log)
            todo_keys = [k for k in unique if k not in found]
            if not todo_keys:
                break
            if attempt == 2:  # what was just written failed its checks twice
                raise DamaError(f"{folder}: encoder outputs written here do not read back intact (see the "
                                "warnings above): the disk may be failing. Use another --cache-dir.")
            cls._encode(w, [m[first[k]] for k in todo_keys], todo_keys, folder, batch_size, log, show_progress,
                        reused=len(unique) - len(todo_keys))
        if attempt == 0:
            log(f"encoder cache hit: {len(m)} clips from {folder}")
        arrays = {s.npy: s.array for s, _ in found.values()}
        return cls(folder, [(found[k][0].npy, found[k][1]) for k in keys], arrays)  # type: ignore[arg-type]

    @classmethod
    def _encode(cls, w: Whisper, utts: list[Utterance], keys: list[str], folder: Path, batch_size: int,
                log: Log, show_progress: bool, reused: int) -> None:
        cfg = w.model.config
        frames = cfg.max_source_positions
        size = cls.size_bytes(len(utts), frames, cfg.d_model)
        log(f"caching encoder outputs of {len(utts)} clips ({reused} already cached): "
            f"{size / 2**20:.0f} MiB (float16) in {folder}")
        _remove_leftovers(folder, log)
        encoder = w.model.get_encoder()

        def batches() -> Iterator[np.ndarray]:
            with torch.no_grad():
                for start in tqdm(range(0, len(utts), batch_size), desc="encoder cache", unit="batch",
                                  disable=not show_progress):
                    batch = utts[start:start + batch_size]
                    audios = [load_audio(u.audio, u.where) for u in batch]
                    feats = w.feature_extractor(audios, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
                    out = encoder(feats.to(w.device, dtype=w.model.dtype)).last_hidden_state
                    yield out.to(torch.float16).cpu().numpy()

        _write_shard(folder, keys, (len(utts), frames, cfg.d_model), batches(), log)


def cached_rows(w: Whisper, keys: list[str], cache_root: str | Path, log: Log = print) -> dict[str, np.ndarray]:
    """Encoder outputs (float16, frames x d_model) that ``cache_root`` already holds for these clip keys
    (:func:`clip_keys`), checked as :meth:`EncoderCache.build` checks them; nothing is encoded or written.
    For readers that can use what is there and compute the rest their own way (the language router)."""
    folder = Path(cache_root) / f"enc-{encoder_fingerprint(w.model)}"
    if not folder.is_dir():
        return {}
    found = _usable(folder, list(dict.fromkeys(keys)), log)
    return {k: np.asarray(s.array[row]) for k, (s, row) in found.items()}


# ---- housekeeping: what a cache holds, its health, and dropping what no data set needs any more ----

def _encoder_folders(root: Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no encoder cache here (folder not found). `dama train` keeps one in "
                        "<--out>/../.encoder-cache unless --cache-dir; `dama bench` in <out>/runs/.encoder-cache")
    folders = sorted(p for p in root.glob("enc-*") if p.is_dir())
    if not folders and root.name.startswith("enc-"):
        folders = [root]
    return folders


def _orphans(folder: Path) -> list[Path]:
    """Arrays without a key list: a build killed between renaming the two into place."""
    return [p for p in folder.glob("shard-*.npy") if not p.with_name(p.name[:-4] + ".keys.json").exists()]


def _check_folder(folder: Path, verify: bool) -> tuple[list[_Shard], list[tuple[Path, list[Path], str]]]:
    """Sound shards, and (file, files to delete, reason) for each bad one; ``verify`` checksums every row."""
    shards, bad = _scan(folder)
    problems = [(kf, [f for f in (kf, _npy_of(kf)) if f.exists()], reason) for kf, reason in bad]
    good = []
    for s in shards:
        try:
            s.verify(range(len(s.keys)), again=True) if verify else s.open()
        except _Foreign as e:
            problems.append((s.npy, [], str(e)))  # reported, never deleted
            continue
        except _Bad as e:
            problems.append((s.npy, [s.keys_file, s.npy], str(e)))
            continue
        good.append(s)
    return good, problems


def check_cache(root: str | Path, verify: bool = True) -> list[str]:
    """Every problem in the cache at ``root`` (a cache folder or one ``enc-*`` folder), one line each,
    naming the file: truncated or corrupt key lists and arrays, and (when ``verify``, reading every byte
    at ~0.4 ms per MiB) rows whose checksums fail. Empty when the cache is sound."""
    return [f"{path}: {reason}" for folder in _encoder_folders(Path(root))
            for path, _, reason in _check_folder(folder, verify)[1]]


def repair_cache(root: str | Path, verify: bool = True, dry_run: bool = False) -> dict:
    """Delete the bad shards :func:`check_cache` finds (their clips are encoded again when next needed)."""
    problems, removed, freed = [], [], 0
    for folder in _encoder_folders(Path(root)):
        for path, files, reason in _check_folder(folder, verify)[1]:
            problems.append(f"{path}: {reason}")
            for f in files:
                with contextlib.suppress(OSError):
                    freed += f.stat().st_size
                    removed.append(str(f))
            if not dry_run:
                _discard(files)
    return {"problems": problems, "removed": removed, "freed_bytes": freed, "dry_run": dry_run}


def cache_info(root: str | Path, verify: bool = True) -> list[dict]:
    """Per encoder folder: sound shards, clips (distinct) they hold, bytes on disk, leftovers of interrupted
    builds ("partial"), shards without checksums ("legacy_shards", written by an older dama: only their
    sizes can be checked) and "problems" (one line per bad file, see :func:`check_cache`; ``verify``
    reads every byte to checksum it, else only sizes, headers and key lists are checked)."""
    rows = []
    for folder in _encoder_folders(Path(root)):
        good, problems = _check_folder(folder, verify)
        keys: set[str] = set()
        for s in good:
            keys.update(s.keys)
        rows.append({"folder": str(folder), "shards": len(good), "clips": len(keys),
                     "bytes": sum(f.stat().st_size for f in folder.iterdir() if f.is_file()),
                     "partial": len(list(folder.glob(f"{_TMP_PREFIX}*"))) + len(_orphans(folder)),
                     "legacy_shards": sum(s.meta is None for s in good),
                     "problems": [f"{path}: {reason}" for path, _, reason in problems], "verified": verify})
    return rows


def prune_cache(root: str | Path, keep: list[Utterance], dry_run: bool = False,
                stale_after_s: float = 86400.0) -> dict:
    """Delete the shards that serve none of ``keep``'s clips (nothing else reads them: clips are keyed by
    their audio's bytes, so edited, deleted or re-keyed audio leaves dead shards behind), key lists that
    cannot be read (they serve nothing), and leftovers of builds interrupted more than ``stale_after_s``
    ago that no live process is writing. A shard holding any clip to keep stays whole."""
    live = {clip_key(u) for u in keep if Path(u.audio).is_file()}  # a missing file has nothing to keep
    removed, kept, freed = [], 0, 0
    for folder in _encoder_folders(Path(root)):
        served: set[str] = set()
        shards, bad = _scan(folder)
        for s in shards:
            keys = set(s.keys) - served
            served |= keys
            if keys & live:
                kept += 1
                continue
            freed += s.npy.stat().st_size + s.keys_file.stat().st_size
            removed.append(str(s.npy))
            if not dry_run:
                _discard([s.keys_file, s.npy])
        for kf, _ in bad:
            files = [f for f in (kf, _npy_of(kf)) if f.exists()]
            freed += sum(f.stat().st_size for f in files)
            removed.extend(str(f) for f in files)
            if not dry_run:
                _discard(files)
        for tmp in [*folder.glob(f"{_TMP_PREFIX}*"), *_orphans(folder)]:
            if _is_leftover(tmp, stale_after_s):
                freed += tmp.stat().st_size
                removed.append(str(tmp))
                if not dry_run:
                    tmp.unlink(missing_ok=True)
        kv_removed, kv_freed = kv_cache.prune(folder, live, dry_run, stale_after_s)
        removed += kv_removed
        freed += kv_freed
    return {"removed": removed, "kept_shards": kept, "freed_bytes": freed, "dry_run": dry_run,
            "clips_to_keep": len(live)}


# ---- what a decoder reads per clip --------------------------------------------------------------------

class ClipInputs:
    """The encoder side of every clip of ``m``, by manifest row: cached encoder outputs (``use_cache``,
    for every method that leaves the encoder frozen), or log-Mel features (the encoder trains, so its
    outputs change every step and must be recomputed)."""

    def __init__(self, w: Whisper, m: Manifest, use_cache: bool, cache_root: str | Path, log: Log = print):
        self.use_cache = use_cache
        if use_cache:
            self.cache = EncoderCache.build(w, m, cache_root, log=log)
        else:
            feats = []
            for u in tqdm(m, desc="log-Mel features", unit="utt"):
                a = load_audio(u.audio, u.where)
                feats.append(w.feature_extractor(a, sampling_rate=SAMPLE_RATE, return_tensors="pt")
                             .input_features[0].to(torch.float16))
            self.features = torch.stack(feats) if feats else None

    def model_kwargs(self, rows: list[int], device, dtype) -> dict:
        """Keyword arguments for the model's forward: ``encoder_outputs`` or ``input_features``."""
        if self.use_cache:
            hidden = self.cache.get(rows).to(device=device, dtype=dtype)
            return {"encoder_outputs": BaseModelOutput(last_hidden_state=hidden)}
        return {"input_features": self.features[rows].to(device=device, dtype=dtype)}


__all__ = ["FORMAT", "ClipInputs", "EncoderCache", "cache_info", "check_cache", "clip_key", "clip_keys",
           "encoder_fingerprint", "prune_cache", "repair_cache"]
