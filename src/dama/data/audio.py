"""Audio loading: any libsndfile format (WAV, FLAC, Ogg/Opus, MP3) -> 16 kHz mono float32."""

from __future__ import annotations

import re
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


# libsndfile's header report on a cut-off file: a WAV's data chunk larger than what the file holds, an Ogg
# stream whose last page is not the end of the stream
_WAV_SHORT = re.compile(r"^data : (\d+) \(should be (\d+)\)", re.M)
_STREAMED_SIZES = {0, 0x7FFFFFFF, 0xFFFFFFFF}  # placeholders of WAV writers that stream (size unknown): not a cut


def truncation(path: str | Path) -> str | None:
    """Why ``path`` looks cut off, or None. libsndfile decodes a truncated WAV or Ogg/Opus file up to the cut
    without any error (a truncated FLAC does fail, when decoded); only its header report tells, so this
    reads it: a transcript of half a recording must not pass for the whole one."""
    try:
        info = sf.info(str(path)).extra_info
    except Exception:  # unreadable: audio_duration / load_audio name the problem
        return None
    m = _WAV_SHORT.search(info)
    if m and int(m[1]) > int(m[2]) and int(m[1]) not in _STREAMED_SIZES:
        return f"its header declares {int(m[1])} bytes of audio data, the file holds {int(m[2])}"
    if "lacks an end-of-stream bit" in info:
        return "its Ogg stream has no end (the last page lacks the end-of-stream bit)"
    return None


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
