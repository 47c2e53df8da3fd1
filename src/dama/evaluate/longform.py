"""Scoring long-form transcripts: WER of the joined text, segment boundaries against the true clip
times of ``CORPUS:SPLIT-long`` recordings, loops.

Boundary error: for every true clip start (end), the distance to the nearest hypothesis segment start
(end). Whisper may split a clip into several segments, which this does not penalise; a true boundary
with no hypothesis boundary near it (a missed pause, a drifting clock) is what makes it large.

Two sets of true boundaries: the *clip edges* (where each source clip starts and ends in the recording)
and the *speech edges* (where speech starts and ends inside each clip, :func:`speech_edges`). The corpora's
clips carry their own silence before and after the speech (room tone, the reader waiting for the prompt
to end), which no timestamp model should call speech; the clip-edge error therefore mostly measures that
silence, the speech-edge error the timestamps.
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


SPEECH_FRAME_S = 0.02  # energy frames of the speech-edge rule
SPEECH_MIN_RUN = 5  # frames (100 ms) above the threshold in a row: speech, not a click
DIGITAL_SILENCE_DB = -90.0


def speech_edges(clip: np.ndarray, sr: int = SAMPLE_RATE) -> tuple[float, float]:
    """Where speech starts and ends inside one clip (seconds from its start), by an energy rule on the clip
    alone: frame energies (20 ms frames, dB); the clip's noise floor is the 10th and its speech level the
    95th percentile of the frames above digital silence (-90 dB); a frame is loud when it lies above the
    midpoint of the two (in dB); speech starts at the first run of at least 5 loud frames (100 ms) and ends
    at the end of the last such run. A clip with no such run is speech from start to end."""
    hop = int(SPEECH_FRAME_S * sr)
    n = len(clip) // hop
    if n < SPEECH_MIN_RUN:
        return 0.0, len(clip) / sr
    db = 10 * np.log10(np.mean(np.square(clip[: n * hop].astype(np.float64).reshape(n, hop)), axis=1) + 1e-12)
    live = db[db > DIGITAL_SILENCE_DB]
    if not len(live):
        return 0.0, len(clip) / sr
    floor, level = np.percentile(live, 10), np.percentile(live, 95)
    loud = db > (floor + level) / 2
    runs, start = [], None
    for i, x in enumerate([*loud, False]):
        if x and start is None:
            start = i
        elif not x and start is not None:
            if i - start >= SPEECH_MIN_RUN:
                runs.append((start, i))
            start = None
    if not runs:
        return 0.0, len(clip) / sr
    return runs[0][0] * SPEECH_FRAME_S, runs[-1][1] * SPEECH_FRAME_S


def speech_truth(audio: np.ndarray, truth: Sequence, sr: int = SAMPLE_RATE) -> list:
    """``truth`` (clip segments of a long recording) moved to the speech edges inside each clip
    (:func:`speech_edges` on the recording's own samples of the clip)."""
    from dataclasses import replace

    out = []
    for t in truth:
        a, b = int(round(t.start * sr)), int(round(t.end * sr))
        on, off = speech_edges(audio[a:b], sr)
        out.append(replace(t, start=t.start + on, end=t.start + off))
    return out


def has_loop(text: str, n: int = 4, times: int = 4) -> bool:
    """Whether some word ``n``-gram occurs at least ``times`` times in ``text`` (normalised)."""
    words = normalize_text(text).split()
    grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return bool(grams) and max(grams.values()) >= times


def summarize_boundaries(errors: list[float], prefix: str = "boundary") -> dict:
    """Median and 90th percentile (ms) of ``errors``, keys ``{prefix}_median_ms`` ... (``boundary``: against
    the clip edges; ``speech_boundary``: against the speech edges)."""
    n_key = "n_boundaries" if prefix == "boundary" else f"n_{prefix}"
    if not errors:
        return {f"{prefix}_median_ms": None, f"{prefix}_p90_ms": None, n_key: 0}
    a = np.array(errors)
    return {f"{prefix}_median_ms": round(float(np.median(a)), 1),
            f"{prefix}_p90_ms": round(float(np.percentile(a, 90)), 1), n_key: len(errors)}


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
    hyps, all_segments, errors, speech_errors, loops = [], [], [], [], 0
    audio_s = compute_s = 0.0
    for u, lang in zip(m, langs):
        audio = load_audio(u.audio, u.where)
        audio_s += len(audio) / SAMPLE_RATE
        t = time.perf_counter()
        segs: list[Segment] = transcribe_long(model, audio, replace(opts, language=lang))
        compute_s += time.perf_counter() - t
        if segments_path(Path(u.audio)).is_file():
            truth = read_segments(u.audio)
            errors += boundary_errors_ms(truth, segs)
            speech_errors += boundary_errors_ms(speech_truth(audio, truth), segs)
        del audio
        text = text_of(segs)
        hyps.append(text)
        loops += has_loop(text)
        all_segments.append([s.to_json() for s in segs])
        if log:
            log(f"{u.id}: {len(segs)} segments, {compute_s:.0f} s so far")
    res = score_hyps(m, langs, hyps)
    if hyps_path:
        rows = [{"id": u.id, "audio": str(u.audio), "language": lang, "hyp": h, "segments": s}
                for u, lang, h, s in zip(m, langs, hyps, all_segments)]
        atomic_write_text(hyps_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return {**res, **summarize_boundaries(errors), **summarize_boundaries(speech_errors, "speech_boundary"),
            "loops": loops, "hyps_path": str(hyps_path) if hyps_path else None,
            "rtf": compute_s / audio_s if audio_s else 0.0, "audio_seconds": audio_s, "compute_seconds": compute_s,
            "data": m.name, "strategy": opts.strategy, "timing": opts.timing}
