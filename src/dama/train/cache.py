"""Encoder outputs computed once per utterance and reused for every step and epoch.

With a frozen encoder its outputs never change, so re-running it each step (what the
standard Hugging Face recipe does) wastes most of the compute. The cache is a float16
``.npy`` memory map (n_utts x frames x d_model) keyed by the encoder's weights and the
exact clips, written atomically so an interrupted build leaves nothing half-valid.
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
from dama.data.manifest import Manifest
from dama.models.load import Whisper


def encoder_fingerprint(model: torch.nn.Module) -> str:
    """Cheap but weight-sensitive: a hash of the encoder's first conv and last norm."""
    enc = model.get_encoder() if hasattr(model, "get_encoder") else model.model.encoder
    h = hashlib.sha256()
    for t in (enc.conv1.weight, enc.conv1.bias, enc.layer_norm.weight, enc.layers[-1].fc2.weight):
        h.update(t.detach().float().cpu().numpy().tobytes())
    h.update(json.dumps([enc.config.d_model, enc.config.encoder_layers]).encode())
    return h.hexdigest()[:16]


def manifest_fingerprint(m: Manifest) -> str:
    h = hashlib.sha256()
    for u in m:
        st = os.stat(u.audio)
        h.update(f"{u.id}\0{Path(u.audio).resolve()}\0{st.st_size}\0{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:16]


class EncoderCache:
    """Row ``i`` holds the encoder output of utterance ``i`` of the manifest it was built from."""

    def __init__(self, path: Path):
        self.path = path
        self.array = np.load(path, mmap_mode="r")

    def __len__(self) -> int:
        return self.array.shape[0]

    def get(self, rows: list[int]) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.array[rows]))

    @staticmethod
    def size_bytes(n: int, frames: int, d_model: int) -> int:
        return n * frames * d_model * 2

    @classmethod
    def build(cls, w: Whisper, m: Manifest, cache_root: str | Path, batch_size: int = 8,
              log=print, show_progress: bool = True) -> EncoderCache:
        cache_root = Path(cache_root)
        cache_root.mkdir(parents=True, exist_ok=True)
        key = f"enc-{encoder_fingerprint(w.model)}-{manifest_fingerprint(m)}"
        path = cache_root / f"{key}.npy"
        if path.is_file():
            log(f"encoder cache hit: {path}")
            return cls(path)
        cfg = w.model.config
        frames = cfg.max_source_positions
        size = cls.size_bytes(len(m), frames, cfg.d_model)
        log(f"caching encoder outputs of {len(m)} clips: {size / 2**20:.0f} MiB (float16) at {path}")
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".npy", dir=cache_root)
        os.close(fd)
        try:
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(m), frames, cfg.d_model))
            encoder = w.model.get_encoder()
            with torch.no_grad():
                for start in tqdm(range(0, len(m), batch_size), desc="encoder cache", unit="batch",
                                  disable=not show_progress):
                    batch = m[start:start + batch_size]
                    audios = [load_audio(u.audio, u.where) for u in batch]
                    feats = w.feature_extractor(audios, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
                    out = encoder(feats.to(w.device, dtype=w.model.dtype)).last_hidden_state
                    arr[start:start + len(batch)] = out.to(torch.float16).cpu().numpy()
            arr.flush()
            del arr
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return cls(path)
