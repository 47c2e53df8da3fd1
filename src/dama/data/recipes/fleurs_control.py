"""FLEURS control clips (en, de, es, fr, pt; CC BY 4.0) for measuring forgetting.

Layout: ``fleurs-LANG-NNN.ogg`` next to ``fleurs-LANG-NNN.txt``. The "split" of this
recipe is a language code (``fleurs-control:en``) or ``all``. The full corpus is
``google/fleurs`` on the Hugging Face hub; these 50 clips come via the cuttledoc fixtures.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from dama.data.manifest import Manifest, Problem, Utterance
from dama.errors import DataError

NAME = "fleurs-control"
SPLITS = ("all", "en", "de", "es", "fr", "pt")
SOURCE_URL = "https://huggingface.co/datasets/google/fleurs"
_STEM = re.compile(r"^fleurs-([a-z]{2,3})-(\d+)$")


def download_fleurs_control(dest: str | Path) -> Path:
    raise DataError(
        f"fleurs-control is a 50-clip selection from {SOURCE_URL}; download FLEURS there and write a "
        "JSONL manifest, or use the copy in the project's shared data folder."
    )


def prepare_fleurs_control(root: str | Path, split: str = "all") -> Manifest:
    root = Path(root)
    if split not in SPLITS:
        raise DataError(f"fleurs-control splits are languages {', '.join(SPLITS)}; got {split!r}")
    if not root.is_dir():
        raise DataError(f"{root}: not found. Point --data-root at the folder that holds fleurs-control/.")
    items, problems = [], []
    for audio in sorted(root.glob("fleurs-*.ogg")):
        m = _STEM.match(audio.stem)
        if not m:
            continue
        lang = m.group(1)
        if split != "all" and lang != split:
            continue
        txt = audio.with_suffix(".txt")
        if not txt.is_file():
            problems.append(Problem(str(audio), f"no transcript {txt.name} next to it"))
            continue
        text = unicodedata.normalize("NFC", txt.read_text(encoding="utf-8").strip())
        items.append(Utterance(audio.stem, audio, text, language=lang, split=split, where=str(txt)))
    if not items and not problems:
        raise DataError(f"{root}: no fleurs-*.ogg clips for split {split!r}")
    return Manifest(items, name=f"{NAME}:{split}", problems=problems)
