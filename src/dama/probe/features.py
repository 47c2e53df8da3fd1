"""Per-layer pooled representations of a frozen Whisper, for probing (cached on disk).

Two traps make the naive probe useless (see issue 4): teacher-forcing the transcript lets
every decoder layer read the language off the text itself, and padding frames dilute
encoder means. So:

- ``encoder``: each encoder layer's hidden states (embeddings = layer 0), mean-pooled over
  the frames that hold audio (50 per second), not the 30 s padding;
- ``decoder`` (mode ``prompt``, the default): the decoder run on the task prompt alone —
  <|startoftranscript|> <|transcribe|> <|notimestamps|>, no language token, no text — so
  whatever language information a decoder layer holds came from the audio through
  cross-attention; mean over the prompt positions;
- ``decoder`` (mode ``transcript``): the naive variant, teacher-forced reference text
  (language token left out), mean over text positions; kept to show the saturation.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dama.data.audio import CHUNK_SECONDS, SAMPLE_RATE, load_audio
from dama.data.manifest import Manifest
from dama.encoder_cache import clip_key
from dama.errors import DamaError
from dama.models.load import Whisper, model_fingerprint

MODES = ("prompt", "transcript")
FRAMES_PER_SECOND = 50  # encoder positions per second of audio (1500 per 30 s window)


@dataclass
class LayerFeatures:
    ids: list[str]
    languages: list[str]
    encoder: np.ndarray  # (n_encoder_layers + 1, N, d)
    decoder: np.ndarray  # (n_decoder_layers + 1, N, d)
    mode: str

    def stack(self, name: str) -> np.ndarray:
        if name not in ("encoder", "decoder"):
            raise DamaError(f"unknown stack {name!r}; use encoder or decoder")
        return getattr(self, name)


def _task_prompt(w: Whisper) -> list[int]:
    gc = w.generation_config
    ids = [gc.decoder_start_token_id]
    if getattr(gc, "is_multilingual", False):
        ids.append(gc.task_to_id["transcribe"])
    return ids + [gc.no_timestamps_token_id]


@torch.no_grad()
def _extract(w: Whisper, m: Manifest, mode: str, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    model = w.model.eval()
    prompt = _task_prompt(w)
    eot = w.generation_config.eos_token_id
    enc_out, dec_out = [], []
    for b in tqdm(range(0, len(m), batch_size), desc=f"probe features ({mode})", unit="batch", leave=False):
        utts = m[b:b + batch_size]
        audios = [load_audio(u.audio, u.where) for u in utts]
        feats = w.feature_extractor(audios, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        enc = model.model.encoder(feats.to(w.device, dtype=model.dtype), output_hidden_states=True)
        frames = [max(1, min(1500, math.ceil(len(a) / SAMPLE_RATE * FRAMES_PER_SECOND))) for a in audios]
        hs = torch.stack(enc.hidden_states)  # (L+1, B, 1500, d)
        enc_out.append(torch.stack([hs[:, i, :n].mean(1) for i, n in enumerate(frames)], 1).float().cpu().numpy())
        if mode == "prompt":
            ids = torch.tensor([prompt] * len(utts), device=w.device)
            mask = torch.ones_like(ids, dtype=torch.bool)
        else:
            rows = [prompt + w.tokenizer(" " + u.text.strip(), add_special_tokens=False).input_ids for u in utts]
            rows = [r[: model.config.max_target_positions] for r in rows]
            width = max(len(r) for r in rows)
            ids = torch.tensor([r + [eot] * (width - len(r)) for r in rows], device=w.device)
            mask = torch.zeros_like(ids, dtype=torch.bool)
            for i, r in enumerate(rows):
                mask[i, len(prompt):len(r)] = True  # text positions only
                if len(r) == len(prompt):
                    mask[i, : len(prompt)] = True
        dec = model.model.decoder(input_ids=ids, encoder_hidden_states=enc.last_hidden_state, output_hidden_states=True)
        dh = torch.stack(dec.hidden_states)  # (L+1, B, T, d)
        weights = mask.to(dh.dtype) / mask.sum(1, keepdim=True)
        dec_out.append(torch.einsum("lbtd,bt->lbd", dh, weights).float().cpu().numpy())
    return np.concatenate(enc_out, 1), np.concatenate(dec_out, 1)


def layer_features(w: Whisper, m: Manifest, mode: str = "prompt", cache_dir: str | Path | None = None,
                   batch_size: int = 8, log=print) -> LayerFeatures:
    """Pooled per-layer features of every clip in ``m`` (clips over 30 s are left out, with a note)."""
    if mode not in MODES:
        raise DamaError(f"unknown probe feature mode {mode!r}; use one of {', '.join(MODES)}")
    m.raise_problems()
    m.fill_durations()
    keep = Manifest([u for u in m if (u.duration or 0) <= CHUNK_SECONDS], name=m.name)
    if len(keep) < len(m):
        log(f"note: {len(m) - len(keep)} clip(s) over {CHUNK_SECONDS:.0f} s left out of the probe")
    missing = [u for u in keep if not u.language]
    if missing:
        raise DamaError(f"{m.name}: {len(missing)} clip(s) have no language (first: {missing[0].where}); "
                        "the probe needs every clip's language")
    ids = [u.id for u in keep]
    langs = [u.language for u in keep]
    path = None
    if cache_dir:
        h = hashlib.sha256(json.dumps([model_fingerprint(w.model), mode,
                                       [clip_key(u) for u in keep]]).encode()).hexdigest()[:16]
        path = Path(cache_dir) / f"probe-{h}.npz"
        if path.is_file():
            z = np.load(path)
            log(f"probe features from cache {path}")
            return LayerFeatures(ids, langs, z["encoder"], z["decoder"], mode)
    enc, dec = _extract(w, keep, mode, batch_size)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, encoder=enc, decoder=dec)
        tmp.replace(path)
    return LayerFeatures(ids, langs, enc, dec, mode)


__all__ = ["FRAMES_PER_SECOND", "LayerFeatures", "MODES", "layer_features"]
