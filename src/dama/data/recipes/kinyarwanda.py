"""Kinyarwanda read speech (one device), MIT, github.com/Andrews2017/Speech-Kinyarwanda-dataset.

Whisper has no Kinyarwanda token, so this recipe exercises the new-language path: its
utterances carry the ISO 639-1 code ``rw`` and ``LANGUAGE_NAME`` names the token that
``dama train`` adds (``--language rw --language-name Kinyarwanda``). Zero-shot decoding
needs an existing token instead; ``ZERO_SHOT_PROXY`` is the one chosen on the val split
(see benchmarks/zero-shot/kinyarwanda_val_proxy.json).

Transcripts are cased and punctuated as shipped; a few lack the space after a full stop
("zombi.Ibiganiro"), which the WER normaliser splits back into two words.
"""

from __future__ import annotations

from pathlib import Path

from dama.data.manifest import Manifest
from dama.data.recipes._records import git_download, prepare_records

NAME = "kinyarwanda"
LANGUAGE = "rw"
LANGUAGE_NAME = "Kinyarwanda"
ZERO_SHOT_PROXY = "sw"  # provisional: the val comparison of sw, sn and ln decides
SPLITS = ("train", "val", "test")
SOURCE_URL = "https://github.com/Andrews2017/Speech-Kinyarwanda-dataset"
SOURCE_COMMIT = "a0df7a3"


def download_kinyarwanda(dest: str | Path) -> Path:
    return git_download(SOURCE_URL, SOURCE_COMMIT, Path(dest))


def prepare_kinyarwanda(root: str | Path, split: str = "test") -> Manifest:
    return prepare_records(Path(root), split, LANGUAGE, NAME, SPLITS)
