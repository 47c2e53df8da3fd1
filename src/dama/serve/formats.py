"""The response formats of OpenAI's ``/v1/audio/transcriptions``: json, text, srt, vtt, verbose_json."""

from __future__ import annotations

from dataclasses import dataclass

from dama.languages import WHISPER_LANGUAGES
from dama.serve.transcription import Segment

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
MEDIA_TYPES = {"json": "application/json", "verbose_json": "application/json", "text": "text/plain; charset=utf-8",
               "srt": "application/x-subrip; charset=utf-8", "vtt": "text/vtt; charset=utf-8"}


@dataclass
class Transcript:
    """One request's result and how it was served (which adapter, which language, detected or given)."""

    segments: list[Segment]
    language: str
    duration: float
    adapter: str | None  # None: the bare base model
    detected: bool
    language_probability: float | None = None
    language_name: str | None = None
    detected_by: str | None = None  # "router" or "whisper" (Whisper's own detection), when detected

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)


def _clock(t: float, sep: str) -> str:
    ms = round(t * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(segments: list[Segment]) -> str:
    return "".join(f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text}\n\n"
                   for i, s in enumerate(segments, 1))


def to_vtt(segments: list[Segment]) -> str:
    return "WEBVTT\n\n" + "".join(f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n\n" for s in segments)


def language_name(t: Transcript) -> str:
    """OpenAI names the language in verbose_json ("swahili"); a language Whisper lacks keeps its run's name."""
    return WHISPER_LANGUAGES.get(t.language) or t.language_name or t.language


def serving_info(t: Transcript) -> dict:
    """dama's own fields (extra keys OpenAI clients ignore): how the request was served."""
    return {"adapter": t.adapter, "language": t.language, "detected": t.detected,
            "language_probability": t.language_probability, "detected_by": t.detected_by}


def to_verbose_json(t: Transcript) -> dict:
    """OpenAI's verbose_json. Fields dama does not compute (avg_logprob, no_speech_prob) are null, not invented."""
    return {
        "task": "transcribe", "language": language_name(t), "duration": round(t.duration, 3), "text": t.text,
        "segments": [{"id": i, "seek": round(s.start * 100), "start": round(s.start, 3), "end": round(s.end, 3),
                      "text": s.text, "tokens": s.tokens, "temperature": 0.0, "avg_logprob": None,
                      "compression_ratio": round(s.compression_ratio, 3), "no_speech_prob": None}
                     for i, s in enumerate(t.segments)],
        "dama": serving_info(t),
    }


def render(t: Transcript, fmt: str) -> str | dict:
    """The body for ``fmt``: a dict (JSON) or text."""
    if fmt == "json":
        return {"text": t.text, "dama": serving_info(t)}
    if fmt == "verbose_json":
        return to_verbose_json(t)
    if fmt == "text":
        return t.text + "\n"
    if fmt == "srt":
        return to_srt(t.segments)
    if fmt == "vtt":
        return to_vtt(t.segments)
    raise ValueError(f"unknown format {fmt!r}")
