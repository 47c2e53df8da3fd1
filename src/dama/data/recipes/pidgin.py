"""Nigerian Pidgin read speech (one device), MIT, github.com/BlessingBassey/AMMI-Speech-Lig-Aikuma.

Whisper has no Nigerian Pidgin token, so this recipe exercises the new-language path:
its utterances carry the ISO 639-3 code ``pcm`` (there is no 639-1 code) and
``LANGUAGE_NAME`` names the token ``dama train`` adds. For zero-shot decoding the proxy
is English (``ZERO_SHOT_PROXY``): Pidgin is an English-based creole whose spelling here
is mostly English words ("This good news dey inside Bible"), so the English token gets
the script, vocabulary and spelling conventions closest.
"""

from __future__ import annotations

from pathlib import Path

from dama.data.manifest import Manifest
from dama.data.recipes._records import git_download, prepare_records

NAME = "pidgin"
LANGUAGE = "pcm"
LANGUAGE_NAME = "Nigerian Pidgin"
ZERO_SHOT_PROXY = "en"
SPLITS = ("train", "val", "test")
SOURCE_URL = "https://github.com/BlessingBassey/AMMI-Speech-Lig-Aikuma"
SOURCE_COMMIT = "db596b4"


def download_pidgin(dest: str | Path) -> Path:
    return git_download(SOURCE_URL, SOURCE_COMMIT, Path(dest))


def prepare_pidgin(root: str | Path, split: str = "test") -> Manifest:
    return prepare_records(Path(root), split, LANGUAGE, NAME, SPLITS)
