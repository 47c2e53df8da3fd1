"""The layout both real low-resource corpora share (ALFFA-style recordings).

``<root>/data/raw_text_file.txt`` holds ``UTT_ID:text`` lines; audio lives in
``<root>/data/records/<split>/<UTT_ID>.<ext>``. Audio is matched by file stem so
the original WAVs and re-encoded Opus copies both work.
"""

from __future__ import annotations

import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from dama.data.manifest import Manifest, Problem, Utterance, read_utf8
from dama.errors import DataError

AUDIO_EXTS = (".wav", ".flac", ".opus", ".ogg", ".mp3")


def read_transcripts(path: Path) -> tuple[dict[str, tuple[str, str]], list[Problem]]:
    """``UTT_ID:text`` lines -> {id: (text, "file:line")}; malformed lines become problems."""
    if not path.is_file():
        raise DataError(f"{path}: transcript file not found. Point --data-root at the folder holding the corpus.")
    out, problems = {}, []
    for n, line in enumerate(read_utf8(path, "transcript file").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        uid, sep, text = line.partition(":")
        if not sep or not uid.strip():
            problems.append(Problem(where, "expected 'UTT_ID:text'"))
            continue
        if uid.strip() in out:
            problems.append(Problem(where, f"duplicate utterance id {uid.strip()!r} (first at {out[uid.strip()][1]})"))
            continue
        out[uid.strip()] = (unicodedata.normalize("NFC", text.strip()), where)
    return out, problems


def prepare_records(root: Path, split: str, language: str, corpus: str, splits: tuple[str, ...]) -> Manifest:
    if split not in splits:
        raise DataError(f"{corpus} has splits {', '.join(splits)}; got {split!r}")
    texts, problems = read_transcripts(root / "data" / "raw_text_file.txt")
    audio_dir = root / "data" / "records" / split
    if not audio_dir.is_dir():
        raise DataError(f"{audio_dir}: not found. Is {root} a copy of the {corpus} corpus?")
    items = []
    for p in sorted(audio_dir.iterdir()):
        if p.suffix.lower() not in AUDIO_EXTS:
            continue
        if p.stem not in texts:
            problems.append(Problem(str(p), "no transcript line with this id in raw_text_file.txt"))
            continue
        text, where = texts[p.stem]
        items.append(Utterance(p.stem, p, text, language=language, speaker=None, split=split, where=where))
    if not items and not problems:
        raise DataError(f"{audio_dir}: no audio files ({'/'.join(AUDIO_EXTS)})")
    return Manifest(items, name=f"{corpus}:{split}", problems=problems)


def git_download(url: str, commit: str, dest: Path) -> Path:
    """Clone ``url`` at ``commit`` into ``dest`` (for users online; needs git and git-lfs)."""
    if dest.exists():
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    subprocess.run(["git", "clone", url, str(tmp)], check=True)
    subprocess.run(["git", "-C", str(tmp), "checkout", commit], check=True)
    tmp.rename(dest)
    return dest


@dataclass(frozen=True)
class RecordsCorpus:
    """A corpus in this layout, published as a git repository: what a recipe module declares, and its
    ``download``/``prepare`` (the module's ``download_<name>``/``prepare_<name>``).

    ``language_name`` only for a language Whisper has no token for (training adds one);
    ``zero_shot_proxy`` the existing token its zero-shot runs decode with.
    """

    name: str
    language: str
    splits: tuple[str, ...]
    source_url: str
    source_commit: str
    language_name: str | None = None
    zero_shot_proxy: str | None = None

    def download(self, dest: str | Path) -> Path:
        """Clone the corpus at its pinned commit into ``dest`` (kept if it is there already)."""
        return git_download(self.source_url, self.source_commit, Path(dest))

    def prepare(self, root: str | Path, split: str = "test") -> Manifest:
        """The manifest of one split of a copy of the corpus at ``root``."""
        return prepare_records(Path(root), split, self.language, self.name, self.splits)
