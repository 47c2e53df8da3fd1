"""Normaliser and WER/CER against hand-computed values."""

from __future__ import annotations

import unicodedata

import pytest

from dama.evaluate.metrics import corpus_errors, utterance_errors
from dama.evaluate.normalize import normalize_text


@pytest.mark.parametrize("raw,expected", [
    ("Habari, YAKO?", "habari yako"),
    ("Walioambukizwa wote ni 13, wakiwa Dar-es-Salaam.", "walioambukizwa wote ni 13 wakiwa dar es salaam"),
    ("1,000 na 3.5", "1000 na 35"),
    ("don't l'accident", "dont laccident"),
    ("«Ọjà» ní ìlú “Èkó”!", "ọjà ní ìlú èkó"),
    ("für die Straße", "für die straße"),
    ("¿cierto?  sí\t¡ya!", "cierto sí ya"),
    ("", ""),
])
def test_normalize(raw, expected):
    assert normalize_text(raw) == expected


def test_tone_marks_survive_and_nfd_equals_nfc():
    word = "ọ̀rọ̀ àṣà"
    nfd = unicodedata.normalize("NFD", word)
    assert nfd != word
    assert normalize_text(nfd) == normalize_text(word) == unicodedata.normalize("NFC", word)
    # a missing tone mark is an error, as it changes the word
    assert utterance_errors("ọ̀rọ̀", "ọrọ").word_errors == 1


def test_wer_cer_known_values():
    e = utterance_errors("a b c d", "a x c")  # 1 substitution + 1 deletion
    assert (e.word_errors, e.ref_words) == (2, 4)
    e = utterance_errors("abcd", "abd")
    assert (e.char_errors, e.ref_chars) == (1, 4)
    total = corpus_errors(["Hello world", "good day"], ["hello, world!", "bad day"])
    assert total.wer == pytest.approx(1 / 4)
    assert total.cer == pytest.approx(3 / (11 + 8))  # "good"->"bad": 2 subs + 1 del over 19 chars
    assert utterance_errors("", "").wer == 0 and utterance_errors("a", "").word_errors == 1
    assert utterance_errors("", "x y").word_errors == 2
