"""Corpus-level WER and CER (errors summed over utterances, divided by reference length)."""

from __future__ import annotations

from dataclasses import dataclass

import jiwer

from dama.evaluate.normalize import normalize_text


@dataclass
class ErrorCounts:
    word_errors: int
    ref_words: int
    char_errors: int
    ref_chars: int

    @property
    def wer(self) -> float:
        return self.word_errors / max(self.ref_words, 1)

    @property
    def cer(self) -> float:
        return self.char_errors / max(self.ref_chars, 1)

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.word_errors + other.word_errors,
            self.ref_words + other.ref_words,
            self.char_errors + other.char_errors,
            self.ref_chars + other.ref_chars,
        )


def _edits(ref: list, hyp: list) -> int:
    """Levenshtein distance between two token lists (what jiwer counts as S+D+I)."""
    if not ref:
        return len(hyp)
    if not hyp:
        return len(ref)
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return out.substitutions + out.deletions + out.insertions


def utterance_errors(ref: str, hyp: str, normalize: bool = True) -> ErrorCounts:
    if normalize:
        ref, hyp = normalize_text(ref), normalize_text(hyp)
    rw, hw = ref.split(), hyp.split()
    if ref or hyp:
        co = jiwer.process_characters(ref or " ", hyp or " ") if ref and hyp else None
        ce = (co.substitutions + co.deletions + co.insertions) if co else max(len(ref), len(hyp))
    else:
        ce = 0
    return ErrorCounts(_edits(rw, hw), len(rw), ce, len(ref))


def corpus_errors(refs: list[str], hyps: list[str], normalize: bool = True) -> ErrorCounts:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    total = ErrorCounts(0, 0, 0, 0)
    for r, h in zip(refs, hyps):
        total = total + utterance_errors(r, h, normalize)
    return total


def wer(refs: list[str], hyps: list[str], normalize: bool = True) -> float:
    return corpus_errors(refs, hyps, normalize).wer


def cer(refs: list[str], hyps: list[str], normalize: bool = True) -> float:
    return corpus_errors(refs, hyps, normalize).cer
