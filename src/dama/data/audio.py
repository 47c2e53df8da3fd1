"""Audio loading: any libsndfile format (WAV, FLAC, Ogg/Opus, MP3) -> 16 kHz mono float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from dama.errors import DataError

SAMPLE_RATE = 16_000  # Hz: what Whisper's feature extractor takes; every clip is resampled to it
CHUNK_SECONDS = 30.0  # Whisper's input window: the encoder sees at most this much audio at once. Longer
# clips are transcribed in pieces, left out of training (audio and transcript would no longer match) and
# decoded from audio rather than from the encoder cache, whose rows hold one window each.


def audio_duration(path: str | Path) -> float:
    """Duration in seconds read from the header (fast: nothing is decoded)."""
    try:
        info = sf.info(str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: audio file not found") from None
    except Exception as e:  # libsndfile raises a generic error for unreadable files
        raise DataError(f"{path}: cannot read audio header ({e}). Is it corrupt or in an unsupported format?") from e
    return info.frames / info.samplerate if info.samplerate else 0.0


def decode_audio_bytes(data: bytes, name: str = "upload") -> np.ndarray:
    """Decode an in-memory audio file (an HTTP upload) to 16 kHz mono float32, with the checks of
    :func:`load_audio`; ``name`` (the client's file name) is used in error messages."""
    import io

    if not data:
        raise DataError(f"{name}: the file is empty (0 bytes). Send an audio file (WAV, FLAC, Ogg/Opus or MP3).")
    try:
        audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:
        raise DataError(f"{name}: cannot decode audio ({e}). Send WAV, FLAC, Ogg/Opus or MP3.") from e
    return _to_mono_16k(audio, sr, name)


def _to_mono_16k(audio: np.ndarray, sr: int, name: str, ctx: str = "") -> np.ndarray:
    if audio.size == 0 or audio.shape[0] == 0:
        raise DataError(f"{name}: audio is empty (0 samples){ctx}. Remove the entry or replace the file.")
    audio = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    if sr != SAMPLE_RATE:
        audio = soxr.resample(audio, sr, SAMPLE_RATE).astype(np.float32)
    if not np.isfinite(audio).all():
        raise DataError(f"{name}: audio contains NaN or infinite samples{ctx}")
    return np.ascontiguousarray(audio, dtype=np.float32)


def load_audio(path: str | Path, where: str | None = None) -> np.ndarray:
    """Decode ``path`` to a 16 kHz mono float32 array.

    ``where`` (e.g. ``manifest.jsonl:12``) is added to error messages so users can
    find the offending entry.
    """
    ctx = f" (listed at {where})" if where else ""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: audio file not found{ctx}. Check the path or the manifest's folder.")
    try:
        audio, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as e:
        raise DataError(f"{p}: cannot decode audio{ctx}: {e}. Re-encode it as WAV/FLAC/Opus.") from e
    return _to_mono_16k(audio, sr, str(p), ctx)
