"""Hugging Face ``datasets`` as a data source: a Hub dataset (``hf:NAME[:CONFIG]:SPLIT``), a local
``save_to_disk`` folder, or Parquet/Arrow files, read through the ``datasets`` library itself.

Audio is taken *encoded* from the audio column (``Audio(decode=False)``: the original file's bytes, or
its path) and written once into a content-addressed folder of the dama cache (:mod:`dama.data.store`),
so every feature that works on files — ``--hours``, ``dama data check``, the encoder cache keyed by
audio content — works on a dataset unchanged. This also wraps the pitfall of recent ``datasets`` (4 and
later): decoding an ``Audio`` column needs ``torchcodec`` and FFmpeg's shared libraries, which many machines lack; dama
decodes the bytes with soundfile (libsndfile: WAV, FLAC, Ogg/Opus, MP3) like every other clip.

Hub datasets and Parquet/Arrow files are *streamed*: with ``max_hours`` (``--hours``) only the first
clips of the split, in the dataset's order, up to that much audio are fetched, not the whole corpus.
A ``save_to_disk`` folder is memory-mapped and read whole (``--hours`` then draws its random subset).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dama.data.manifest import Manifest, Utterance
from dama.data.store import store_audio
from dama.errors import DataError

PREFIX = "hf:"
TEXT_COLUMNS = ("sentence", "text", "transcription", "normalized_text", "raw_transcription")
LANGUAGE_COLUMNS = ("language", "locale", "lang")
SPEAKER_COLUMNS = ("speaker_id", "client_id", "speaker")
ID_COLUMNS = ("id", "utt_id", "segment_id", "audio_id")
FILE_SUFFIXES = {".parquet": "parquet", ".arrow": "arrow"}


@dataclass(frozen=True)
class DatasetColumns:
    """Which columns of a dataset hold what; None: found among the usual names (``TEXT_COLUMNS`` ...)."""

    text: str | None = None
    language: str | None = None
    audio: str | None = None


def is_saved_dataset(path: Path) -> bool:
    """True for a folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


def is_dataset_file(path: Path) -> bool:
    return path.suffix.lower() in FILE_SUFFIXES


def parse_hub_spec(spec: str) -> tuple[str, str | None, str]:
    """``hf:NAME[:CONFIG]:SPLIT`` -> (name, config, split)."""
    parts = spec[len(PREFIX):].split(":")
    if len(parts) == 2 and all(parts):
        return parts[0], None, parts[1]
    if len(parts) == 3 and all(parts):
        return parts[0], parts[1], parts[2]
    raise DataError(f"{spec!r}: a Hugging Face dataset is hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT "
                    "(e.g. hf:google/fleurs:sw_ke:train)")


def _datasets():
    try:
        import datasets
    except ImportError:
        raise DataError("reading Hugging Face datasets needs the `datasets` package: "
                        "pip install 'dama[datasets]'") from None
    return datasets


def _pick_split(splits: Iterable[str], split: str | None, source: str) -> str:
    have = sorted(splits)
    if split is None:
        if len(have) == 1:
            return have[0]
        raise DataError(f"{source}: holds the splits {have}; name one, e.g. {source}:{have[0]}")
    if split not in have:
        raise DataError(f"{source}: no split {split!r}; it has {have}: use one of them, e.g. {source}:{have[0]}")
    return split


def load_hub(spec: str, columns: DatasetColumns = DatasetColumns(), max_hours: float | None = None) -> Manifest:
    """``hf:NAME[:CONFIG]:SPLIT``: a Hub dataset (or a local folder of data files ``load_dataset`` reads),
    streamed so that ``max_hours`` fetches only that much audio."""
    datasets = _datasets()
    name, config, split = parse_hub_spec(spec)
    try:
        dd = datasets.load_dataset(name, config, streaming=True)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{spec}: could not open the dataset {name!r}"
                        + (f" (config {config!r})" if config else "")
                        + f": {msg}. Check the name and config on huggingface.co/datasets, the network, "
                        "and `huggingface-cli login` for gated sets.") from None
    split = _pick_split(dd.keys(), split, f"{PREFIX}{name}" + (f":{config}" if config else ""))
    return _to_manifest(dd[split], spec, columns, max_hours, streamed=True)


def load_saved(path: Path, split: str | None, columns: DatasetColumns = DatasetColumns()) -> Manifest:
    """A ``save_to_disk`` folder (a Dataset, or a DatasetDict with ``:SPLIT``)."""
    datasets = _datasets()
    ds = datasets.load_from_disk(str(path))
    source = f"{path}:{split}" if split else str(path)
    if isinstance(ds, datasets.DatasetDict):
        split = _pick_split(ds.keys(), split, str(path))
        ds = ds[split]
    elif split not in (None, "train", ds.split and str(ds.split)):
        raise DataError(f"{path}: a single saved Dataset (split {ds.split or 'unnamed'}) has no split {split!r}; "
                        f"drop ':{split}'")
    return _to_manifest(ds, source, columns, None, streamed=False)


def load_files(path: Path, split: str | None, columns: DatasetColumns = DatasetColumns(),
               max_hours: float | None = None) -> Manifest:
    """A Parquet or Arrow file, streamed with ``load_dataset("parquet"|"arrow", data_files=...)``."""
    datasets = _datasets()
    if split not in (None, "train"):
        raise DataError(f"{path}: a single {path.suffix} file is one split; drop ':{split}'")
    ds = datasets.load_dataset(FILE_SUFFIXES[path.suffix.lower()], data_files=str(path), split="train",
                               streaming=True)
    return _to_manifest(ds, str(path), columns, max_hours, streamed=True)


# ---------------------------------------------------------------------------

def _audio_column(features, names: list[str], given: str | None, source: str) -> str:
    from datasets import Audio

    if given:
        if given not in names:
            raise DataError(f"{source}: no audio column {given!r}; the columns are {names}")
        return given
    typed = [n for n in names if isinstance(features.get(n) if features else None, Audio)]
    if typed:
        return typed[0]
    if "audio" in names:
        return "audio"
    raise DataError(f"{source}: no audio column among {names}. dama reads speech from a column of type "
                    "datasets.Audio (or named 'audio'): cast yours with ds.cast_column(NAME, Audio()) or pass "
                    "--audio-column NAME")


def _find(names: list[str], given: str | None, usual: tuple[str, ...], what: str, flag: str, source: str,
          required: bool) -> str | None:
    if given:
        if given not in names:
            raise DataError(f"{source}: no {what} column {given!r}; the columns are {names} (fix {flag})")
        return given
    for n in usual:
        if n in names:
            return n
    if required:
        raise DataError(f"{source}: no {what} column: none of {list(usual)} among the columns {names}; "
                        f"name it with {flag} COLUMN")
    return None


def _materialise(entry, source: str, where: str) -> Path:
    """The clip of an ``Audio(decode=False)`` cell as a local file: its own path when it is a local file,
    else its bytes (or the remote file's) written once into the audio store (:mod:`dama.data.store`)."""
    if not isinstance(entry, dict):
        raise DataError(f"{where}: the audio cell is {type(entry).__name__}, not an encoded clip")
    data, path = entry.get("bytes"), entry.get("path")
    if data is None:
        if path and Path(path).is_file():
            return Path(path)
        if not path:
            raise DataError(f"{where}: the audio cell holds neither bytes nor a path")
        from datasets.utils.file_utils import xopen

        try:
            with xopen(path, "rb") as f:
                data = f.read()
        except (OSError, FileNotFoundError) as e:
            raise DataError(f"{where}: cannot read the audio {path} ({e})") from None
    return store_audio(data, Path(path).suffix.lower() if path and Path(path).suffix else ".wav")


def _duration(path: Path) -> float | None:
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:
        return None  # `dama data check` names the clip; reading must not stop here
    return info.frames / info.samplerate if info.samplerate else 0.0


def _to_manifest(ds, source: str, columns: DatasetColumns, max_hours: float | None, streamed: bool) -> Manifest:
    from datasets import Audio

    from dama.languages import code_of

    names = list(ds.column_names or (ds.features or {}).keys())
    if not names and streamed:  # some streamed sets only know their columns after the first row
        names = list(next(iter(ds)).keys())
    audio_col = _audio_column(ds.features, names, columns.audio, source)
    text_col = _find(names, columns.text, TEXT_COLUMNS, "transcript", "--text-column", source, required=True)
    lang_col = _find(names, columns.language, LANGUAGE_COLUMNS, "language", "--language-column", source,
                     required=False)
    speaker_col = _find(names, None, SPEAKER_COLUMNS, "speaker", "", source, required=False)
    id_col = _find(names, None, ID_COLUMNS, "id", "", source, required=False)
    ds = ds.cast_column(audio_col, Audio(decode=False))  # bytes/path as stored: no torchcodec needed
    keep = [c for c in (audio_col, text_col, lang_col, speaker_col, id_col) if c]
    ds = ds.select_columns(list(dict.fromkeys(keep)))
    target = max_hours * 3600 if max_hours else None
    items, total, seen_ids = [], 0.0, set()
    for i, row in enumerate(ds):
        where = f"{source}#{i}"
        path = _materialise(row[audio_col], source, where)
        cell_path = (row[audio_col] or {}).get("path")
        uid = str(row[id_col]) if id_col and row.get(id_col) not in (None, "") else None
        if uid is None or uid in seen_ids:  # FLEURS' id names the sentence, read by several speakers
            uid = Path(cell_path).stem if cell_path else f"{i:06d}"
        seen_ids.add(uid)
        dur = _duration(path)
        text = row[text_col]
        items.append(Utterance(
            id=uid, audio=path, text="" if text is None else str(text), duration=dur,
            language=code_of(row.get(lang_col)) if lang_col else None,
            speaker=str(row[speaker_col]) if speaker_col and row.get(speaker_col) not in (None, "") else None,
            where=where,
        ))
        total += dur or 0.0
        if target is not None and total >= target:
            break
    if not items:
        raise DataError(f"{source}: the split holds no rows")
    return Manifest(items, name=source)

