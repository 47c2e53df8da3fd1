"""Scoring long-form transcripts: WER of the joined text, segment boundaries against the true clip
times of ``CORPUS:SPLIT-long`` recordings, loops.

Boundary error: for every true clip start (end), the distance to the nearest hypothesis segment start
(end). Whisper may split a clip into several segments, which this does not penalise; a true boundary
with no hypothesis boundary near it (a missed pause, a drifting clock) is what makes it large.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dama.data.audio import SAMPLE_RATE, load_audio
from dama.data.manifest import Manifest
from dama.errors import DataError
from dama.evaluate.normalize import normalize_text
from dama.evaluate.run import check_languages, manifest_languages, score_hyps


def boundary_errors_ms(truth: Sequence, hyp: Sequence) -> list[float]:
    """|true start - nearest hyp start| and |true end - nearest hyp end| for every true segment, in ms.
    No hypothesis segments: every error is the recording-scale miss, reported as ``inf``."""
    if not hyp:
        return [float("inf")] * (2 * len(truth))
    starts = np.array([s.start for s in hyp])
    ends = np.array([s.end for s in hyp])
    out = []
    for t in truth:
        out.append(float(np.abs(starts - t.start).min() * 1000))
        out.append(float(np.abs(ends - t.end).min() * 1000))
    return out


def has_loop(text: str, n: int = 4, times: int = 4) -> bool:
    """Whether some word ``n``-gram occurs at least ``times`` times in ``text`` (normalised)."""
    words = normalize_text(text).split()
    grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return bool(grams) and max(grams.values()) >= times


def summarize_boundaries(errors: list[float]) -> dict:
    if not errors:
        return {"boundary_median_ms": None, "boundary_p90_ms": None, "n_boundaries": 0}
    a = np.array(errors)
    return {"boundary_median_ms": round(float(np.median(a)), 1),
            "boundary_p90_ms": round(float(np.percentile(a, 90)), 1), "n_boundaries": len(errors)}


def evaluate_long(model, m: Manifest, options=None, language: str | None = None,
                  hyps_path: str | Path | None = None, log=None) -> dict:
    """Transcribe every recording of ``m`` with :func:`dama.longform.transcribe_long` (``model``: a dama
    Whisper or a faster-whisper model) and score it: WER/CER of the joined segment texts, and, for
    ``CORPUS:SPLIT-long`` data, boundary errors against the true clip times; loops; real-time factor."""
    from dataclasses import replace

    from dama.data.longform import read_segments, segments_path
    from dama.longform import LongformOptions, Segment, text_of, transcribe_long
    from dama.models.load import Whisper
    from dama.outputs import atomic_write_text

    if not m:
        raise DataError(f"{m.name}: no recordings to evaluate")
    m.raise_problems()
    langs = manifest_languages(m, language)
    if isinstance(model, Whisper):
        check_languages(model, m, langs)
    opts = options or LongformOptions()
    hyps, all_segments, errors, loops = [], [], [], 0
    audio_s = compute_s = 0.0
    for u, lang in zip(m, langs):
        audio = load_audio(u.audio, u.where)
        audio_s += len(audio) / SAMPLE_RATE
        t = time.perf_counter()
        segs: list[Segment] = transcribe_long(model, audio, replace(opts, language=lang))
        compute_s += time.perf_counter() - t
        del audio
        text = text_of(segs)
        hyps.append(text)
        loops += has_loop(text)
        all_segments.append([s.to_json() for s in segs])
        if segments_path(Path(u.audio)).is_file():
            errors += boundary_errors_ms(read_segments(u.audio), segs)
        if log:
            log(f"{u.id}: {len(segs)} segments, {compute_s:.0f} s so far")
    res = score_hyps(m, langs, hyps)
    if hyps_path:
        rows = [{"id": u.id, "audio": str(u.audio), "language": lang, "hyp": h, "segments": s}
                for u, lang, h, s in zip(m, langs, hyps, all_segments)]
        atomic_write_text(hyps_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return {**res, **summarize_boundaries(errors), "loops": loops, "hyps_path": str(hyps_path) if hyps_path else None,
            "rtf": compute_s / audio_s if audio_s else 0.0, "audio_seconds": audio_s, "compute_seconds": compute_s,
            "data": m.name, "strategy": opts.strategy}
