"""Resolve a data spec on the command line to a :class:`Manifest`.

Specs: ``swahili:test``, ``yoruba:train+extra``, ``fleurs-control`` (a recipe, found
under ``--data-root`` or ``$DAMA_DATA``), a manifest file (``.jsonl``/``.json``/``.csv``/
``.tsv``), a Common Voice folder with an optional ``:split``, or a Hugging Face dataset
(``hf:NAME[:CONFIG]:SPLIT`` on the Hub, a ``save_to_disk`` folder with an optional ``:split``, a
``.parquet``/``.arrow`` file; :mod:`dama.data.hf`), or lhotse manifests (a CutSet or a recordings +
supervisions pair, ``.jsonl.gz``, or their folder with ``:split``; :mod:`dama.data.lhotse_manifests`).
Synthetic speech: ``udhr-synth:en+de+es:30`` (UDHR articles 1..30 read by espeak-ng, built once under
the cache folder; :func:`dama.data.recipes.udhr_synth.load_synth_spec`). Several specs can be joined
with commas. ``CORPUS:SPLIT-long`` (``swahili:test-long``) is that
split's clips joined into recordings of minutes, with the true clip boundaries (:mod:`dama.data.longform`).
"""

from __future__ import annotations

import os
from pathlib import Path

from dama.data.hf import DatasetColumns
from dama.data.longform import base_split, build_long, is_long_split
from dama.data.manifest import Manifest, read_common_voice, read_jsonl, read_table
from dama.data.recipes import RECIPES
from dama.errors import DataError

DATA_ENV = "DAMA_DATA"


def data_root(explicit: str | Path | None = None) -> Path:
    root = explicit or os.environ.get(DATA_ENV)
    if not root:
        raise DataError(
            f"no data folder given: pass --data-root DIR or set {DATA_ENV}=DIR "
            f"(the folder that holds {', '.join(RECIPES)})"
        )
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found (from --data-root or ${DATA_ENV})")
    return root


def sibling_split(spec: str, split: str) -> str | None:
    """The same corpus's ``split``: ``sibling_split("swahili:train", "val") == "swahili:val"``; None for a
    manifest, several specs joined with commas, or a corpus without that split."""
    name = spec.split(":", 1)[0]
    if "," in spec or name not in RECIPES or split not in RECIPES[name].splits:
        return None
    return f"{name}:{split}"


def held_out_spec(given: str | None, train: str, split: str) -> str | None:
    """The validation (``split="val"``) or test data of a run trained on ``train``: ``given``, where
    ``"none"`` means none, else the training corpus's own ``split`` (:func:`sibling_split`)."""
    if given == "none":
        return None
    return given or sibling_split(train, split)


def _load_path(path: Path, split: str | None, columns: DatasetColumns, max_hours: float | None) -> Manifest:
    from dama.data import hf
    from dama.data import lhotse_manifests as lh

    if hf.is_saved_dataset(path):
        return hf.load_saved(path, split, columns)
    if lh.is_lhotse_manifest(path):
        return lh.load_lhotse(path)
    if (pair := lh.lhotse_folder_split(path, split)) is not None:
        return lh.load_lhotse(*pair)
    if path.is_dir():
        return read_common_voice(path, split or "test")
    if hf.is_dataset_file(path):
        return hf.load_files(path, split, columns, max_hours)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return read_jsonl(path)
    if suffix in (".csv", ".tsv"):
        return read_table(path)
    raise DataError(f"{path}: unknown manifest type {suffix!r}; use .jsonl, .json, .csv, .tsv, .parquet or .arrow")


def load_data(spec: str, root: str | Path | None = None, language: str | None = None,
              columns: DatasetColumns | None = None, max_hours: float | None = None) -> Manifest:
    """Load ``spec`` (see module doc). ``language`` fills in utterances that lack one. ``columns`` names a
    Hugging Face dataset's columns; ``max_hours`` lets a streamed dataset stop once it has that much audio
    (``--hours`` then subsets as usual)."""
    parts = [s.strip() for s in spec.split(",") if s.strip()]
    if not parts:
        raise DataError("empty data spec")
    out = Manifest(name=spec)
    for part in parts:
        m = _load_one(part, root, columns or DatasetColumns(), max_hours)
        out.extend(m)
        out.problems.extend(m.problems)
    if language:
        for u in out:
            u.language = u.language or language
    return out


def _load_one(spec: str, root: str | Path | None, columns: DatasetColumns, max_hours: float | None) -> Manifest:
    if spec.startswith("hf:"):
        from dama.data.hf import load_hub

        return load_hub(spec, columns, max_hours)
    path = Path(spec).expanduser()
    if path.exists():
        return _load_path(path, None, columns, max_hours)
    name, _, split = spec.partition(":")
    if name == "udhr-synth":
        from dama.data.recipes.udhr_synth import load_synth_spec

        return load_synth_spec(split)
    if name not in RECIPES:
        if Path(name).expanduser().exists():
            return _load_path(Path(name).expanduser(), split or None, columns, max_hours)
        raise DataError(
            f"{spec!r} is neither a file/folder nor a known corpus ({', '.join(RECIPES)}). "
            "Give a manifest path, CORPUS:SPLIT or a Hugging Face dataset (hf:NAME[:CONFIG]:SPLIT)."
        )
    recipe = RECIPES[name]
    corpus_root = data_root(root) / name
    if is_long_split(split):  # swahili:test-long: the split's clips joined into recordings of minutes
        base = base_split(split)
        return build_long(_load_one(f"{name}:{base}", root, columns, None), name, base)
    splits = (split or recipe.default_split).split("+")
    out = Manifest(name=spec)
    for s in splits:
        m = recipe.prepare(corpus_root, s)
        out.extend(m)
        out.problems.extend(m.problems)
    return out


def download_corpus(name: str, root: str | Path) -> Path:
    """Fetch corpus ``name`` with its recipe's ``download`` into ``root/name``, so that ``root`` is a
    ``--data-root``; returns the corpus folder. Needs git, git-lfs and the network: a failed clone is
    one :class:`DataError` naming the source."""
    import shlex
    import subprocess

    if name not in RECIPES:
        raise DataError(f"{name!r} is not a known corpus ({', '.join(RECIPES)})")
    recipe = RECIPES[name]
    try:
        return Path(recipe.download(Path(root).expanduser() / name))
    except subprocess.CalledProcessError as e:
        cmd = shlex.join(map(str, e.cmd)) if isinstance(e.cmd, list | tuple) else str(e.cmd)
        raise DataError(f"{name}: could not download {recipe.source_url} (`{cmd}` failed with status "
                        f"{e.returncode}): check the network connection and that git and git-lfs work") from None
    except FileNotFoundError as e:
        if e.filename != "git":
            raise
        raise DataError(f"{name}: downloading {recipe.source_url} needs git (and git-lfs); git is not installed "
                        "or not on PATH") from None
