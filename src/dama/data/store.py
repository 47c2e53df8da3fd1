"""Audio that a data source holds inside itself (a Hugging Face dataset's bytes, a lhotse cut's
segment of a longer recording) written once as a file, so that every feature that works on files
(``--hours``, ``dama data check``, the encoder cache keyed by a clip's bytes) works on it unchanged.

Files are named by the sha256 of their bytes under ``$DAMA_CACHE/audio-store/``: the same clip read
twice, or from two sources, is one file; a write is atomic, so a killed process leaves no half clip.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def audio_store() -> Path:
    from dama.paths import cache_dir

    return cache_dir() / "audio-store"


def store_audio(data: bytes, suffix: str = ".wav") -> Path:
    """The path of a file holding ``data`` (an encoded clip), written if not already there."""
    from dama.outputs import atomic_write_bytes

    digest = hashlib.sha256(data).hexdigest()
    out = audio_store() / digest[:2] / f"{digest}{suffix}"
    if not out.is_file():
        atomic_write_bytes(out, data)
    return out
