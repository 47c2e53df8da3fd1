"""Whisper's language codes, and resolution of user-given codes or names."""

from __future__ import annotations

from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

from dama.errors import DataError

WHISPER_LANGUAGES: dict[str, str] = dict(LANGUAGES)  # code -> English name, e.g. "sw" -> "swahili"


def resolve_language(code_or_name: str, extra: dict[str, str] | None = None) -> str:
    """Return the Whisper code for ``code_or_name`` ("sw", "Swahili", "swahili").

    ``extra`` maps codes of languages added by the user (no Whisper token) to names.
    """
    key = code_or_name.strip().lower()
    if key in WHISPER_LANGUAGES or (extra and key in extra):
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise DataError(
        f"unknown language {code_or_name!r}: Whisper has no token for it. Use a Whisper code "
        f"(e.g. sw, yo, en; `dama languages` lists all {len(WHISPER_LANGUAGES)}), or give a new "
        "language a name so a token can be trained for it (dama train --language CODE --language-name NAME)."
    )


def code_of(value) -> str | None:
    """A dataset's language label as a Whisper code where it names one ("Swahili" -> "sw", "sw-KE" and
    "sw_ke" -> "sw"); a label Whisper does not know is kept as it is (``dama data check`` names it)."""
    if value in (None, ""):
        return None
    s = str(value)
    for candidate in (s, s.split("_")[0].split("-")[0]):
        try:
            return resolve_language(candidate)
        except DataError:
            continue
    return s
