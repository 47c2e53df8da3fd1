"""One small module per corpus, lhotse-style: ``download_<name>`` and ``prepare_<name>``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dama.data.recipes import (
    amharic,
    fleurs_control,
    kinyarwanda,
    malagasy,
    pidgin,
    swahili,
    yoruba,
)
from dama.data.recipes._records import RecordsCorpus


@dataclass(frozen=True)
class Recipe:
    """A registered corpus.

    ``language`` is the code its utterances carry (None: several, as in fleurs-control).
    ``language_name`` is set only for a language Whisper has no token for: it is what
    ``dama train`` needs to add ``<|language|>`` (``--language-name``), so a recipe that
    knows its language saves the user from typing it. ``zero_shot_proxy`` is the existing
    Whisper token to decode such a language with before it has its own.
    """

    name: str
    splits: tuple[str, ...]
    default_split: str
    source_url: str
    prepare: Callable
    download: Callable
    language: str | None = None
    language_name: str | None = None
    zero_shot_proxy: str | None = None

    @property
    def new_language(self) -> bool:
        """True when Whisper lacks this corpus's language token (training must add one)."""
        return self.language_name is not None


def _records_recipe(corpus: RecordsCorpus) -> Recipe:
    """The Recipe of a corpus in the shared recordings layout (see :mod:`dama.data.recipes._records`)."""
    return Recipe(corpus.name, corpus.splits, "test", corpus.source_url, corpus.prepare, corpus.download,
                  language=corpus.language, language_name=corpus.language_name,
                  zero_shot_proxy=corpus.zero_shot_proxy)


RECIPES: dict[str, Recipe] = {
    **{m.CORPUS.name: _records_recipe(m.CORPUS) for m in (swahili, yoruba, amharic, malagasy, kinyarwanda, pidgin)},
    "fleurs-control": Recipe("fleurs-control", fleurs_control.SPLITS, "all", fleurs_control.SOURCE_URL,
                             fleurs_control.prepare_fleurs_control, fleurs_control.download_fleurs_control),
}

# Codes a recipe brings that Whisper has no token for -> their names: the ``extra`` of
# ``dama.languages.resolve_language`` and the ``extra_languages`` of ``check_manifest``,
# so ``dama data check kinyarwanda:train`` does not call ``rw`` an unknown language.
NEW_LANGUAGES: dict[str, str] = {r.language: r.language_name for r in RECIPES.values()
                                 if r.language and r.language_name}


def new_language_of(spec: str) -> tuple[str, str] | None:
    """``(code, name)`` when every part of a data spec is a recipe of one language Whisper lacks.

    ``kinyarwanda:train`` -> ``("rw", "Kinyarwanda")``; ``swahili:train``, a manifest path,
    or a mix of languages -> None. This is what lets ``dama train --data kinyarwanda:train``
    add the new token without ``--language rw --language-name Kinyarwanda`` (the CLI calls
    it when neither flag is given).
    """
    found = set()
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        recipe = RECIPES.get(part.partition(":")[0])
        if recipe is None or not recipe.new_language:
            return None
        found.add((recipe.language, recipe.language_name))
    return found.pop() if len(found) == 1 else None
