"""Evaluation: a script-aware normaliser, WER/CER, and the evaluation runner."""

from dama.evaluate.metrics import ErrorCounts, cer, corpus_errors, utterance_errors, wer
from dama.evaluate.normalize import normalize_text
from dama.evaluate.run import evaluate

__all__ = ["ErrorCounts", "cer", "corpus_errors", "evaluate", "normalize_text", "utterance_errors", "wer"]
