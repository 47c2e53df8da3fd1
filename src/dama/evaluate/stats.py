"""Uncertainty for small test sets: bootstrap intervals and paired tests over utterances.

A test split of a few hundred utterances gives corpus WERs that move by a point or more
when other utterances are drawn. Everything here resamples *utterances* (the unit that
was sampled) and recomputes corpus WER as summed errors over summed reference words.
Several seeds of one system are averaged per utterance first, so an interval covers
test-set sampling of the seed-averaged system; seed spread is reported separately.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dama.errors import DataError
from dama.evaluate.metrics import utterance_errors


@dataclass
class UtteranceErrors:
    """Per-utterance error counts of one system on one test split, in a fixed utterance order."""

    ids: list[str]
    word_errors: np.ndarray
    ref_words: np.ndarray
    char_errors: np.ndarray
    ref_chars: np.ndarray
    languages: list[str] | None = None  # per utterance, when the hyps file records it

    def only(self, language: str) -> UtteranceErrors:
        """The utterances of one language (a control set holds several)."""
        if self.languages is None:
            raise DataError("these per-utterance errors carry no languages")
        keep = np.array([x == language for x in self.languages])
        pick = lambda a: a[keep]  # noqa: E731
        return UtteranceErrors([i for i, k in zip(self.ids, keep) if k], pick(self.word_errors),
                               pick(self.ref_words), pick(self.char_errors), pick(self.ref_chars),
                               [language] * int(keep.sum()))

    @property
    def wer(self) -> float:
        return float(self.word_errors.sum() / max(self.ref_words.sum(), 1))

    @property
    def cer(self) -> float:
        return float(self.char_errors.sum() / max(self.ref_chars.sum(), 1))


    @classmethod
    def from_texts(cls, ids: list[str], refs: list[str], hyps: list[str]) -> UtteranceErrors:
        """Count each utterance's errors once; ``.wer``/``.cer`` then equal ``corpus_errors``'."""
        if not len(ids) == len(refs) == len(hyps):
            raise ValueError(f"{len(ids)} ids, {len(refs)} references, {len(hyps)} hypotheses")
        e = [utterance_errors(r, h) for r, h in zip(refs, hyps)]
        col = lambda k: np.array([getattr(x, k) for x in e], dtype=np.float64)  # noqa: E731
        return cls(list(ids), col("word_errors"), col("ref_words"), col("char_errors"), col("ref_chars"))


COUNTS = {"word_errors", "ref_words", "char_errors", "ref_chars"}


def read_hyps(path: str | Path) -> UtteranceErrors:
    """Read the per-utterance JSONL that ``dama eval`` / ``dama train`` write (``*.hyps.jsonl``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: per-utterance hypotheses not found")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not JSON ({e.msg})") from None
    if not rows:
        raise DataError(f"{path}: no utterances")
    for n, r in enumerate(rows, 1):
        if not COUNTS <= r.keys():  # written before files carried all error counts: count them from the texts
            if "ref" not in r or "hyp" not in r:
                raise DataError(f"{path}:{n}: no error counts and no ref/hyp to count them from")
            e = utterance_errors(r["ref"], r["hyp"])
            r.update(word_errors=e.word_errors, ref_words=e.ref_words, char_errors=e.char_errors,
                     ref_chars=e.ref_chars)
    col = lambda k: np.array([r[k] for r in rows], dtype=np.float64)  # noqa: E731
    langs = [r.get("language") for r in rows]
    return UtteranceErrors([str(r["id"]) for r in rows], col("word_errors"), col("ref_words"),
                           col("char_errors"), col("ref_chars"), langs if all(langs) else None)


def stack_seeds(runs: list[UtteranceErrors]) -> UtteranceErrors:
    """Average several runs (seeds) of one system utterance by utterance; they must share a test split."""
    if not runs:
        raise ValueError("no runs to stack")
    first = runs[0]
    for r in runs[1:]:
        if r.ids != first.ids:
            raise DataError("runs to average were scored on different test utterances")
    mean = lambda k: np.mean([getattr(r, k) for r in runs], axis=0)  # noqa: E731
    return UtteranceErrors(first.ids, mean("word_errors"), first.ref_words, mean("char_errors"), first.ref_chars,
                           first.languages)


def _resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_ci(e: UtteranceErrors, level: float = 0.95, n_boot: int = 2000, seed: int = 0,
                 unit: str = "word") -> tuple[float, float]:
    """Percentile bootstrap interval of corpus WER (``unit="word"``) or CER (``"char"``)."""
    err, ref = (e.word_errors, e.ref_words) if unit == "word" else (e.char_errors, e.ref_chars)
    idx = _resamples(len(err), n_boot, seed)
    stats = err[idx].sum(1) / np.maximum(ref[idx].sum(1), 1)
    a = (1 - level) / 2
    lo, hi = np.quantile(stats, [a, 1 - a])
    return float(lo), float(hi)


@dataclass
class PairedComparison:
    """System a minus system b on the same utterances (negative diff: a has fewer errors)."""

    wer_a: float
    wer_b: float
    diff: float
    ci: tuple[float, float]
    p_bootstrap: float  # two-sided: how often resampling flips the sign of the difference
    wins: int  # utterances where a has fewer word errors than b
    losses: int
    p_sign: float  # two-sided exact sign test on wins vs losses (ties dropped)

    def to_dict(self) -> dict:
        return {"wer_a": self.wer_a, "wer_b": self.wer_b, "diff": self.diff, "ci": list(self.ci),
                "p_bootstrap": self.p_bootstrap, "wins": self.wins, "losses": self.losses, "p_sign": self.p_sign}


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial sign test, p = P(|X - n/2| >= |wins - n/2|) for X ~ Bin(n, 1/2)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_compare(a: UtteranceErrors, b: UtteranceErrors, level: float = 0.95, n_boot: int = 2000,
                   seed: int = 0) -> PairedComparison:
    """Paired bootstrap (same resampled utterances for both) and sign test of WER(a) - WER(b)."""
    if a.ids != b.ids:
        raise DataError("paired comparison needs both systems scored on the same test utterances")
    idx = _resamples(len(a.ids), n_boot, seed)
    ref = np.maximum(a.ref_words[idx].sum(1), 1)
    diffs = (a.word_errors[idx].sum(1) - b.word_errors[idx].sum(1)) / ref
    al = (1 - level) / 2
    lo, hi = np.quantile(diffs, [al, 1 - al])
    p_boot = min(1.0, 2 * min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0))))
    wins = int(np.sum(a.word_errors < b.word_errors))
    losses = int(np.sum(a.word_errors > b.word_errors))
    return PairedComparison(a.wer, b.wer, a.wer - b.wer, (float(lo), float(hi)), p_boot, wins, losses,
                            sign_test(wins, losses))


__all__ = ["PairedComparison", "UtteranceErrors", "bootstrap_ci", "paired_compare", "read_hyps", "sign_test",
           "stack_seeds"]
