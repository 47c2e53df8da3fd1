"""Timestamped segments as the files people use: plain text, SubRip (.srt), WebVTT (.vtt), JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence

FORMATS = ("txt", "srt", "vtt", "json")


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _clean(text: str) -> str:
    """One line of cue text: no blank lines (they end a cue in SRT and VTT), no '-->'."""
    return " ".join(text.replace("-->", "->").split())


def format_segments(segments: Sequence, fmt: str, language: str | None = None, audio: str | None = None) -> str:
    """``segments`` (objects with ``start``, ``end``, ``text``) as ``fmt`` (one of :data:`FORMATS`).

    No segments (silence) is an empty transcript: an empty .txt, an .srt with no cues, a .vtt with only
    its header, JSON with ``"segments": []``.
    """
    segs = [s for s in segments if _clean(s.text)]
    if fmt == "txt":
        return "".join(_clean(s.text) + "\n" for s in segs)
    if fmt == "srt":
        return "\n".join(f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{_clean(s.text)}\n"
                         for i, s in enumerate(segs, 1))
    if fmt == "vtt":
        return "WEBVTT\n\n" + "\n".join(f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{_clean(s.text)}\n"
                                        for s in segs)
    if fmt == "json":
        obj = {"audio": audio, "language": language, "text": " ".join(_clean(s.text) for s in segs),
               "segments": [{"start": round(s.start, 3), "end": round(s.end, 3), "text": _clean(s.text)}
                            for s in segs]}
        return json.dumps(obj, ensure_ascii=False, indent=1) + "\n"
    raise ValueError(f"unknown transcript format {fmt!r}; choose from {', '.join(FORMATS)}")
