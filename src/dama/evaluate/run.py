"""Evaluate a Whisper model on a manifest: WER/CER, real-time factor, per-utterance output."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

from tqdm.auto import tqdm

from dama.data.audio import SAMPLE_RATE, load_audio
from dama.data.manifest import Manifest, Problem
from dama.errors import DamaError, DataError
from dama.evaluate.metrics import ErrorCounts, utterance_errors
from dama.evaluate.normalize import normalize_text
from dama.models.load import Whisper
from dama.models.transcribe import DecodeOptions, transcribe
from dama.outputs import atomic_write_text

LOAD_BLOCK = 64  # clips decoded into memory at a time


def manifest_languages(m: Manifest, language: str | None) -> list[str]:
    langs = [language or u.language for u in m]
    missing = [u for u, lang in zip(m, langs) if not lang]
    if missing:
        raise DataError(
            f"{m.name}: {len(missing)} utterance(s) have no language (first: {missing[0].where}); "
            "pass --language CODE"
        )
    return langs


def check_languages(w: Whisper, m: Manifest, langs: list[str]) -> None:
    """Every language code must have a token in ``w``; an unknown one is named with the
    manifest line it came from (not a bare 'no language token' from deep in decoding)."""
    bad: dict[str, str] = {}
    known: dict[str, bool] = {}
    for u, lang in zip(m, langs):
        if lang not in known:
            try:
                w.language_token_id(lang)
                known[lang] = True
            except DamaError:
                known[lang] = False
        if not known[lang]:
            bad.setdefault(lang, u.where or str(u.audio))
    if bad:
        listed = "; ".join(f"{code!r} (<|{code}|>, first at {where})" for code, where in bad.items())
        raise DataError(
            f"{m.name}: unknown language code(s) {listed}: {w.name} has no token for them. Use a Whisper code "
            "(`dama languages` lists them), --language CODE to override, or train a new token with "
            "dama train --language CODE --language-name NAME."
        )


def evaluate(w: Whisper, m: Manifest, language: str | None = None, opts: DecodeOptions | None = None,
             hyps_path: str | Path | None = None, show_progress: bool = True) -> dict:
    """Transcribe every utterance of ``m`` and score it.

    ``language`` overrides the manifest's languages. Returns a dict with top-level
    ``wer``, ``cer``, ``n``, ``rtf`` and a per-language breakdown.
    """
    if not m:
        raise DataError(f"{m.name}: no utterances to evaluate")
    m.raise_problems()
    langs = manifest_languages(m, language)
    check_languages(w, m, langs)
    opts = opts or DecodeOptions()
    hyps: list[str] = []
    audio_seconds = 0.0
    compute_seconds = 0.0
    problems: list[Problem] = []
    bar = tqdm(total=len(m), desc=f"eval {m.name}", unit="utt", disable=not show_progress)
    for start in range(0, len(m), LOAD_BLOCK):
        block = m[start: start + LOAD_BLOCK]
        audios = []
        for u in block:
            try:
                audios.append(load_audio(u.audio, u.where))
                u.duration = len(audios[-1]) / SAMPLE_RATE
            except DataError as e:
                problems.append(Problem(u.where or str(u.audio), str(e)))
                audios.append(None)
        if problems:
            continue  # keep scanning to report every unreadable clip at once
        audio_seconds += sum(len(a) for a in audios) / SAMPLE_RATE
        t0 = time.perf_counter()
        hyps += transcribe(w, audios, langs[start: start + LOAD_BLOCK], opts, progress=bar.update)
        compute_seconds += time.perf_counter() - t0
    bar.close()
    if problems:
        Manifest(name=m.name, problems=problems).raise_problems()

    return {
        **score_hyps(m, langs, hyps, hyps_path),
        "rtf": compute_seconds / audio_seconds if audio_seconds else 0.0,
        "audio_seconds": audio_seconds,
        "compute_seconds": compute_seconds,
        "model": w.name,
        "data": m.name,
        "decode": {"num_beams": opts.num_beams, "batch_size": opts.batch_size, "loop_repeats": opts.loop_repeats,
                   "tokens_per_second": opts.tokens_per_second},
    }


def score_hyps(m: Manifest, langs: list[str], hyps: list[str], hyps_path: str | Path | None = None) -> dict:
    """Corpus and per-language WER/CER of ``hyps`` against ``m``.

    With ``hyps_path``, one JSON line per utterance (reference, hypothesis, both normalised,
    error counts) is written: what bootstrap intervals and paired tests resample.
    """
    total = ErrorCounts(0, 0, 0, 0)
    by_lang: dict[str, ErrorCounts] = defaultdict(lambda: ErrorCounts(0, 0, 0, 0))
    rows = []
    for u, lang, hyp in zip(m, langs, hyps, strict=True):
        e = utterance_errors(u.text, hyp)
        total = total + e
        by_lang[lang] = by_lang[lang] + e
        rows.append({
            "id": u.id, "language": lang, "audio": str(u.audio), "duration": u.duration,
            "ref": u.text, "hyp": hyp, "ref_norm": normalize_text(u.text), "hyp_norm": normalize_text(hyp),
            "word_errors": e.word_errors, "ref_words": e.ref_words, "char_errors": e.char_errors,
            "ref_chars": e.ref_chars, "wer": round(e.wer, 4),
        })
    if hyps_path:  # all at once: an interrupted run never leaves half a hypotheses file
        atomic_write_text(hyps_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return {
        "wer": total.wer,
        "cer": total.cer,
        "n": len(rows),
        "word_errors": total.word_errors,
        "ref_words": total.ref_words,
        "char_errors": total.char_errors,
        "ref_chars": total.ref_chars,
        "by_language": {k: {"wer": v.wer, "cer": v.cer, "ref_words": v.ref_words} for k, v in sorted(by_lang.items())},
        "hyps_path": str(hyps_path) if hyps_path else None,
    }
