"""Yoruba read speech with tone marks (one speaker), MIT, github.com/ogunlao/yoruba_speech_project."""

from __future__ import annotations

from pathlib import Path

from dama.data.manifest import Manifest
from dama.data.recipes._records import git_download, prepare_records

NAME = "yoruba"
LANGUAGE = "yo"
SPLITS = ("train", "val", "test", "extra")
SOURCE_URL = "https://github.com/ogunlao/yoruba_speech_project"
SOURCE_COMMIT = "7000026"


def download_yoruba(dest: str | Path) -> Path:
    return git_download(SOURCE_URL, SOURCE_COMMIT, Path(dest))


def prepare_yoruba(root: str | Path, split: str = "test") -> Manifest:
    return prepare_records(Path(root), split, LANGUAGE, NAME, SPLITS)
