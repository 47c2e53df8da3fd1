"""Swahili read news speech (one speaker), MIT, github.com/CateGitau/Swahili-Speech."""

from __future__ import annotations

from pathlib import Path

from dama.data.manifest import Manifest
from dama.data.recipes._records import git_download, prepare_records

NAME = "swahili"
LANGUAGE = "sw"
SPLITS = ("train", "val", "test")
SOURCE_URL = "https://github.com/CateGitau/Swahili-Speech"
SOURCE_COMMIT = "3f51a8d"


def download_swahili(dest: str | Path) -> Path:
    return git_download(SOURCE_URL, SOURCE_COMMIT, Path(dest))


def prepare_swahili(root: str | Path, split: str = "test") -> Manifest:
    return prepare_records(Path(root), split, LANGUAGE, NAME, SPLITS)
