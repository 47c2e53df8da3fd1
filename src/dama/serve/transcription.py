"""Audio to timed segments: the two ways the server transcribes, matching the two of ``dama transcribe``.

* **Short-form, batched** (:func:`transcribe_segments`): a clip of at most Whisper's 30 s window whose
  response needs no times (``json``, ``text``) is decoded with other requests for the same adapter in one
  batch, exactly as ``dama transcribe FILE`` decodes it (same text); its one segment spans the clip.
* **Long-form** (:func:`transcribe_timed`): audio over 30 s, or any request whose format shows times
  (``verbose_json``, ``srt``, ``vtt``), goes through :func:`dama.longform.transcribe_long` — Silero VAD
  windows decoded in Whisper's timestamp mode — so segments carry Whisper's own times and audio of any
  length works; the segments equal ``dama transcribe --format json FILE``'s. One recording at a time
  (its windows are batched inside ``transcribe_long``).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dama.data.audio import CHUNK_SECONDS, SAMPLE_RATE
from dama.models.load import Whisper
from dama.models.transcribe import DecodeOptions, transcribe

TIMED_FORMATS = ("verbose_json", "srt", "vtt")  # response formats that show segment times


def needs_long_form(audio: np.ndarray, timed: bool) -> bool:
    """Long-form when the audio does not fit one window, or the response shows times."""
    return timed or len(audio) > CHUNK_SECONDS * SAMPLE_RATE


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


def _segment(w: Whisper, start: float, end: float, text: str) -> Segment:
    return Segment(start, end, text, w.tokenizer.encode(" " + text, add_special_tokens=False))


def transcribe_segments(w: Whisper, audios: Sequence[np.ndarray], languages: Sequence[str],
                        opts: DecodeOptions | None = None) -> list[list[Segment]]:
    """Short-form: each clip (at most 30 s) in ``languages[i]``, all in one batched decode; one segment per
    clip spanning it (none when nothing was said)."""
    texts = transcribe(w, list(audios), list(languages), opts)
    return [[_segment(w, 0.0, len(a) / SAMPLE_RATE, text)] if text else [] for a, text in zip(audios, texts)]


def transcribe_timed(w: Whisper, audio: np.ndarray, language: str, opts: DecodeOptions | None = None
                     ) -> list[Segment]:
    """Long-form: one recording of any length through :func:`dama.longform.transcribe_long` (the options
    ``dama transcribe --format`` derives from the same decoding flags)."""
    from dama.longform import LongformOptions, transcribe_long

    opts = opts or DecodeOptions()
    lo = LongformOptions(language=language, batch_size=opts.batch_size, num_beams=opts.num_beams,
                         loop_repeats=opts.loop_repeats)
    return [_segment(w, s.start, s.end, s.text) for s in transcribe_long(w, audio, lo)]
