"""Audio to timed segments: the one function the server calls to transcribe.

Until long-form decoding with timestamps lands, a segment is one piece of Whisper's 30 s
window (audio is cut at the quietest point before each window's end, as ``dama transcribe``
does), so the joined text equals the offline transcript. Swap :func:`transcribe_segments` for
the long-form path and every response format follows.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dama.data.audio import SAMPLE_RATE
from dama.models.load import Whisper
from dama.models.transcribe import DecodeOptions, split_long, transcribe


@dataclass
class Segment:
    """A stretch of audio and its text; times in seconds from the start of the upload."""

    start: float
    end: float
    text: str
    tokens: list[int] = field(default_factory=list)

    @property
    def compression_ratio(self) -> float:
        """What OpenAI's verbose_json reports (high values flag repetition loops)."""
        raw = self.text.encode()
        return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def transcribe_segments(w: Whisper, audios: Sequence[np.ndarray], languages: Sequence[str],
                        opts: DecodeOptions | None = None) -> list[list[Segment]]:
    """Transcribe each 16 kHz clip in ``languages[i]``; one segment per 30 s piece (empty pieces dropped)."""
    pieces, owner, starts = [], [], []
    for i, a in enumerate(audios):
        offset = 0
        for piece in split_long(a):
            pieces.append(piece)
            owner.append(i)
            starts.append(offset)
            offset += len(piece)
    texts = transcribe(w, pieces, [languages[i] for i in owner], opts)
    out: list[list[Segment]] = [[] for _ in audios]
    for i, start, piece, text in zip(owner, starts, pieces, texts):
        if text:
            out[i].append(Segment(start / SAMPLE_RATE, (start + len(piece)) / SAMPLE_RATE, text,
                                  w.tokenizer.encode(" " + text, add_special_tokens=False)))
    return out
