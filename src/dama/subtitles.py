"""Timestamped segments as the files people use: plain text, SubRip (.srt), WebVTT (.vtt), JSON
(``dama transcribe --format``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

FORMATS = ("txt", "srt", "vtt", "json")


@dataclass
class _Cue:
    start: float
    end: float
    text: str


def _clean(text: str) -> str:
    """One line of cue text: no blank lines (they end a cue in SRT and VTT), no '-->'."""
    return " ".join(text.replace("-->", "->").split())


def _json_segment(s) -> dict:
    out = {"start": round(s.start, 3), "end": round(s.end, 3), "text": _clean(s.text)}
    if getattr(s, "words", None) is not None:  # word timings: start, end, word, probability
        out["words"] = [{"start": round(x.start, 3), "end": round(x.end, 3), "word": x.word,
                         "probability": round(x.probability, 4)} for x in s.words]
    return out


def format_segments(segments: Sequence, fmt: str, language: str | None = None, audio: str | None = None) -> str:
    """``segments`` (objects with ``start``, ``end``, ``text``) as ``fmt`` (one of :data:`FORMATS`).

    JSON lists each segment's words (start, end, word, probability) when it has word timings.
    No segments (silence) is an empty transcript: an empty .txt, an .srt with no cues, a .vtt with only
    its header, JSON with ``"segments": []``.
    """
    segs = [s for s in segments if _clean(s.text)]
    if fmt == "txt":
        return "".join(_clean(s.text) + "\n" for s in segs)
    if fmt in ("srt", "vtt"):  # the server's writers (dama.serve.formats): one SRT/VTT layout in dama
        from dama.serve.formats import to_srt, to_vtt

        cues = [_Cue(s.start, s.end, _clean(s.text)) for s in segs]
        return to_srt(cues) if fmt == "srt" else to_vtt(cues)
    if fmt == "json":
        obj = {"audio": audio, "language": language, "text": " ".join(_clean(s.text) for s in segs),
               "segments": [_json_segment(s) for s in segs]}
        return json.dumps(obj, ensure_ascii=False, indent=1) + "\n"
    raise ValueError(f"unknown transcript format {fmt!r}; choose from {', '.join(FORMATS)}")
