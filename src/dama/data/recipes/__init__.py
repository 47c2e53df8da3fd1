"""One small module per corpus, lhotse-style: ``download_<name>`` and ``prepare_<name>``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dama.data.recipes import fleurs_control, swahili, yoruba


@dataclass(frozen=True)
class Recipe:
    name: str
    splits: tuple[str, ...]
    default_split: str
    source_url: str
    prepare: Callable
    download: Callable


RECIPES: dict[str, Recipe] = {
    "swahili": Recipe("swahili", swahili.SPLITS, "test", swahili.SOURCE_URL, swahili.prepare_swahili,
                      swahili.download_swahili),
    "yoruba": Recipe("yoruba", yoruba.SPLITS, "test", yoruba.SOURCE_URL, yoruba.prepare_yoruba,
                     yoruba.download_yoruba),
    "fleurs-control": Recipe("fleurs-control", fleurs_control.SPLITS, "all", fleurs_control.SOURCE_URL,
                             fleurs_control.prepare_fleurs_control, fleurs_control.download_fleurs_control),
}
