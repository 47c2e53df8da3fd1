"""Encoder outputs computed once per utterance and reused for every step, epoch and run.

With a frozen encoder its outputs never change, so re-running it each step (what the
standard Hugging Face recipe does) wastes most of the compute. The cache is a folder per
encoder (keyed by a hash of its weights) holding float16 ``.npy`` shards
(n_utts x frames x d_model) and, beside each, the list of clip keys it holds. A clip is
keyed by the content of its audio file (a SHA-256 of its bytes), so a 0.5 h subset,
another method or another seed reuses what an earlier run computed, and so does a copy of
the data at another path or with new timestamps (an unpacked archive, a fresh checkout, a
re-provisioned share); only missing clips are encoded. A shard's key list is written
after its array, atomically, so an interrupted build leaves nothing that looks valid.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dama.data.audio import SAMPLE_RATE, load_audio
from dama.data.manifest import Manifest, Utterance
from dama.errors import DataError
from dama.models.load import Whisper


def encoder_fingerprint(model: torch.nn.Module) -> str:
    """Cheap but weight-sensitive: a hash of the encoder's first conv and last layers."""
    enc = model.get_encoder() if hasattr(model, "get_encoder") else model.model.encoder
    h = hashlib.sha256()
    for t in (enc.conv1.weight, enc.conv1.bias, enc.layer_norm.weight, enc.layers[-1].fc2.weight):
        h.update(t.detach().float().cpu().numpy().tobytes())
    h.update(json.dumps([enc.config.d_model, enc.config.encoder_layers]).encode())
    return h.hexdigest()[:16]


_KEYS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> content key, per process


def clip_key(u: Utterance) -> str:
    """Identity of the audio a clip's encoder output depends on (not its transcript, id or
    path): a hash of the file's bytes. Hashing is ~1 ms per clip; each file is read once
    per process while its path, size and mtime stay the same."""
    path = Path(u.audio).resolve()
    st = os.stat(path)
    stamp = (str(path), st.st_size, st.st_mtime_ns)
    key = _KEYS.get(stamp)
    if key is None:
        h = hashlib.sha256(b"audio-v2\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        key = _KEYS[stamp] = h.hexdigest()[:24]
    return key


def _shards(folder: Path) -> list[tuple[Path, Path]]:
    """Complete shards, (array, key list), in reading order: the first shard holding a key serves it."""
    out = []
    for keys_file in sorted(folder.glob("shard-*.keys.json")):
        npy = keys_file.with_name(keys_file.name.replace(".keys.json", ".npy"))
        if npy.is_file():
            out.append((npy, keys_file))
    return out


def _read_index(folder: Path) -> dict[str, tuple[Path, int]]:
    index: dict[str, tuple[Path, int]] = {}
    for npy, keys_file in _shards(folder):
        for row, k in enumerate(json.loads(keys_file.read_text())):
            index.setdefault(k, (npy, row))
    return index


class EncoderCache:
    """Row ``i`` holds the encoder output of utterance ``i`` of the manifest it was built for."""

    def __init__(self, folder: Path, locations: list[tuple[Path, int]]):
        self.path = folder
        self._arrays = {p: np.load(p, mmap_mode="r") for p in {p for p, _ in locations}}
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
              log=print, show_progress: bool = True) -> EncoderCache:
        folder = Path(cache_root) / f"enc-{encoder_fingerprint(w.model)}"
        folder.mkdir(parents=True, exist_ok=True)
        keys = [clip_key(u) for u in m]
        index = _read_index(folder)
        unique = list(dict.fromkeys(keys))
        todo_keys = [k for k in unique if k not in index]
        if not todo_keys:
            log(f"encoder cache hit: {len(m)} clips from {folder}")
        else:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            cls._encode(w, [m[first[k]] for k in todo_keys], todo_keys, folder, batch_size, log, show_progress,
                        reused=len(unique) - len(todo_keys))
            index = _read_index(folder)
        return cls(folder, [index[k] for k in keys])

    @classmethod
    def _encode(cls, w: Whisper, utts: list[Utterance], keys: list[str], folder: Path, batch_size: int,
                log, show_progress: bool, reused: int) -> None:
        cfg = w.model.config
        frames = cfg.max_source_positions
        size = cls.size_bytes(len(utts), frames, cfg.d_model)
        log(f"caching encoder outputs of {len(utts)} clips ({reused} already cached): "
            f"{size / 2**20:.0f} MiB (float16) in {folder}")
        shard = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
        fd, tmp = tempfile.mkstemp(prefix=f".shard-{shard}.", suffix=".npy", dir=folder)
        os.close(fd)
        try:
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(utts), frames, cfg.d_model))
            encoder = w.model.get_encoder()
            with torch.no_grad():
                for start in tqdm(range(0, len(utts), batch_size), desc="encoder cache", unit="batch",
                                  disable=not show_progress):
                    batch = utts[start:start + batch_size]
                    audios = [load_audio(u.audio, u.where) for u in batch]
                    feats = w.feature_extractor(audios, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
                    out = encoder(feats.to(w.device, dtype=w.model.dtype)).last_hidden_state
                    arr[start:start + len(batch)] = out.to(torch.float16).cpu().numpy()
            arr.flush()
            del arr
            os.replace(tmp, folder / f"shard-{shard}.npy")
            fd, tmp_keys = tempfile.mkstemp(prefix=f".shard-{shard}.", suffix=".json", dir=folder)
            with os.fdopen(fd, "w") as f:
                json.dump(keys, f)
            os.replace(tmp_keys, folder / f"shard-{shard}.keys.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# ---- housekeeping: what a cache holds, and dropping what no data set needs any more ----------------

def _encoder_folders(root: Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no encoder cache here (folder not found). `dama train` keeps one in "
                        "<--out>/../.encoder-cache unless --cache-dir; `dama bench` in <out>/runs/.encoder-cache")
    folders = sorted(p for p in root.glob("enc-*") if p.is_dir())
    if not folders and root.name.startswith("enc-"):
        folders = [root]
    return folders


def cache_info(root: str | Path) -> list[dict]:
    """Per encoder folder: shards, clips (distinct), bytes on disk, and leftovers of interrupted builds."""
    rows = []
    for folder in _encoder_folders(Path(root)):
        shards = _shards(folder)
        keys: set[str] = set()
        for _, kf in shards:
            keys.update(json.loads(kf.read_text()))
        rows.append({"folder": str(folder), "shards": len(shards), "clips": len(keys),
                     "bytes": sum(f.stat().st_size for f in folder.iterdir() if f.is_file()),
                     "partial": len(list(folder.glob(".shard-*")))})
    return rows


def prune_cache(root: str | Path, keep: list[Utterance], dry_run: bool = False,
                stale_after_s: float = 86400.0) -> dict:
    """Delete the shards that serve none of ``keep``'s clips (nothing else reads them: clips are keyed by
    their audio's bytes, so edited, deleted or re-keyed audio leaves dead shards behind), and leftovers of
    builds interrupted more than ``stale_after_s`` ago. A shard holding any clip to keep stays whole."""
    import time

    live = {clip_key(u) for u in keep if Path(u.audio).is_file()}  # a missing file has nothing to keep
    removed, kept, freed = [], 0, 0
    for folder in _encoder_folders(Path(root)):
        served: set[str] = set()
        for npy, kf in _shards(folder):
            keys = set(json.loads(kf.read_text())) - served
            served |= keys
            if keys & live:
                kept += 1
                continue
            freed += npy.stat().st_size + kf.stat().st_size
            removed.append(str(npy))
            if not dry_run:
                kf.unlink()  # the key list first: a half-deleted shard never looks valid
                npy.unlink()
        for tmp in folder.glob(".shard-*"):
            if time.time() - tmp.stat().st_mtime > stale_after_s:
                freed += tmp.stat().st_size
                removed.append(str(tmp))
                if not dry_run:
                    tmp.unlink()
    return {"removed": removed, "kept_shards": kept, "freed_bytes": freed, "dry_run": dry_run,
            "clips_to_keep": len(live)}
