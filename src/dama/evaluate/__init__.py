"""Evaluation: a script-aware normaliser, WER/CER, the evaluation runner and decoding from the encoder cache."""

from dama.evaluate.cached import decode_rows, decoding_view, evaluate_cached
from dama.evaluate.metrics import ErrorCounts, cer, corpus_errors, utterance_errors, wer
from dama.evaluate.normalize import normalize_text
from dama.evaluate.run import evaluate

__all__ = ["ErrorCounts", "cer", "corpus_errors", "decode_rows", "decoding_view", "evaluate", "evaluate_cached",
           "normalize_text", "utterance_errors", "wer"]
