"""A script-aware text normaliser for WER/CER in any language.

Rules, applied in order (documented in the README):
1. Unicode NFC, so a tone-marked vowel typed as base + combining marks equals its
   precomposed form ("ọ́" either way).
2. Lowercase (``str.lower``; not ``casefold``, which would turn German "ß" into "ss").
3. Separators inside numbers are dropped ("1,000" -> "1000", "3.5" -> "35"), so digit
   groups compare as one token however they are punctuated. Digits are not spelled
   out: "13" and "kumi na tatu" stay different, which penalises both sides equally.
4. Apostrophes and similar marks inside words are removed ("don't" -> "dont",
   "l'accident" -> "laccident"); every other punctuation or symbol character (Unicode
   categories P* and S*) becomes a space.
5. Whitespace is collapsed.
Letters and combining marks (Unicode L*, M*) are never touched: diacritics and tone
marks are kept, unlike Whisper's English/basic normalisers, which strip them.
"""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = "'’ʼ`´‘"
_NUM_SEP = re.compile(r"(?<=\d)[,.\u00a0\u202f'’](?=\d)")
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text).lower()
    text = _NUM_SEP.sub("", text)
    out = []
    for ch in text:
        if ch in _APOSTROPHES:
            continue
        cat = unicodedata.category(ch)
        out.append(" " if cat[0] in "PSZC" else ch)
    return _SPACE.sub(" ", "".join(out)).strip()
