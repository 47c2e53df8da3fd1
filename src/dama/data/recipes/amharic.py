"""Amharic read speech in Ge'ez script (one device, 1-2 speakers), MIT, github.com/IsraelAbebe/Amharic-ASR-Dataset.

Transcripts carry no punctuation; some have runs of spaces where the original had
punctuation, which the WER normaliser collapses.
"""

from __future__ import annotations

from pathlib import Path

from dama.data.manifest import Manifest
from dama.data.recipes._records import git_download, prepare_records

NAME = "amharic"
LANGUAGE = "am"
SPLITS = ("train", "val", "test")
SOURCE_URL = "https://github.com/IsraelAbebe/Amharic-ASR-Dataset"
SOURCE_COMMIT = "0429362"


def download_amharic(dest: str | Path) -> Path:
    return git_download(SOURCE_URL, SOURCE_COMMIT, Path(dest))


def prepare_amharic(root: str | Path, split: str = "test") -> Manifest:
    return prepare_records(Path(root), split, LANGUAGE, NAME, SPLITS)
