"""Hugging Face datasets as a data source, read through the `datasets` library itself.

Datasets are built in the test from real clips of the shared data (``Dataset.from_dict(...)
.cast_column("audio", Audio(...))``), saved with ``save_to_disk`` and ``to_parquet``, and read back
through ``dama.data.load_data`` and the CLI. The Hub path (``hf:NAME:SPLIT``) runs through the same
streaming ``load_dataset`` call on a local folder of Parquet files (no network here).
"""

from __future__ import annotations

import hashlib
import json

import pytest

from dama.cli.main import main
from dama.data import load_data
from dama.data.audio import audio_duration
from dama.data.hf import DatasetColumns
from dama.data.store import audio_store
from dama.errors import DataError
from tests.helpers import SHARED_DATA, need_real_data

datasets = pytest.importorskip("datasets", reason="the `datasets` package is not installed (pip install datasets)")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DAMA_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def clips():
    """Eight real Swahili training clips with their transcripts."""
    need_real_data()
    m = load_data("swahili:train", SHARED_DATA)[:8]
    for u in m:
        u.duration = audio_duration(u.audio)
    return m


def _dataset(clips, embed: bool, **extra):
    from datasets import Audio, Dataset

    audio = [{"bytes": u.audio.read_bytes(), "path": u.audio.name} if embed else str(u.audio) for u in clips]
    cols = {"audio": audio, "transcription": [u.text for u in clips], "language": ["Swahili"] * len(clips),
            "id": [u.id for u in clips], **extra}
    return Dataset.from_dict(cols).cast_column("audio", Audio(sampling_rate=16_000))


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_save_to_disk_reads_back_the_same_clips(clips, tmp_path):
    from dama.encoder_cache import clip_key

    _dataset(clips, embed=False).save_to_disk(str(tmp_path / "ds"))  # save_to_disk embeds the bytes
    m = load_data(str(tmp_path / "ds"))
    assert [u.text for u in m] == [u.text for u in clips] and [u.id for u in m] == [u.id for u in clips]
    assert {u.language for u in m} == {"sw"}  # "Swahili" in the language column -> Whisper's code
    for got, src in zip(m, clips):
        assert got.audio.parent.parent == audio_store() and _sha(got.audio) == _sha(src.audio)
        assert got.duration == pytest.approx(src.duration)
        assert clip_key(got) == clip_key(src)  # the encoder cache sees the same clip
    # a DatasetDict: splits by name, and an unknown split names those there are
    datasets.DatasetDict(train=_dataset(clips[:5], embed=True), test=_dataset(clips[5:], embed=True)).save_to_disk(
        str(tmp_path / "dd"))
    assert len(load_data(f"{tmp_path / 'dd'}:test")) == 3
    with pytest.raises(DataError, match=r"no split 'validation'; it has \['test', 'train'\]: use one of them, "
                                         r"e.g. .*dd:test"):
        load_data(f"{tmp_path / 'dd'}:validation")
    with pytest.raises(DataError, match="holds the splits"):
        load_data(str(tmp_path / "dd"))


def test_parquet_and_hub_path_stream_and_stop_at_max_hours(clips, tmp_path):
    ds = _dataset(clips, embed=True)
    ds.to_parquet(str(tmp_path / "clips.parquet"))
    m = load_data(str(tmp_path / "clips.parquet"))
    assert [u.text for u in m] == [u.text for u in clips]
    assert all(_sha(a.audio) == _sha(b.audio) for a, b in zip(m, clips))
    # the Hub's code path (load_dataset(NAME, streaming=True)) on a folder of data files
    (tmp_path / "hub" / "data").mkdir(parents=True)
    ds.to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"))
    first3 = sum(u.duration for u in clips[:3]) / 3600
    part = load_data(f"hf:{tmp_path / 'hub'}:train", max_hours=first3 - 1e-6)
    assert [u.id for u in part] == [u.id for u in clips[:3]]  # streamed: stops once it has enough
    with pytest.raises(DataError, match=r"no split 'test'; it has \['train'\]"):
        load_data(f"hf:{tmp_path / 'hub'}:test")
    with pytest.raises(DataError, match="hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT"):
        load_data("hf:only-a-name")


def test_columns_found_given_or_named_in_a_clear_error(clips, tmp_path):
    from datasets import Dataset

    ds = _dataset(clips[:2], embed=True, normalized_text=["x", "y"])
    ds.save_to_disk(str(tmp_path / "two"))
    assert [u.text for u in load_data(str(tmp_path / "two"))] == [u.text for u in clips[:2]]
    got = load_data(str(tmp_path / "two"), columns=DatasetColumns(text="normalized_text", language="id"))
    assert [u.text for u in got] == ["x", "y"] and got[0].language == clips[0].id  # not a code: kept as is
    with pytest.raises(DataError, match=r"no transcript column 'words'.*--text-column"):
        load_data(str(tmp_path / "two"), columns=DatasetColumns(text="words"))
    ds.remove_columns(["transcription", "normalized_text"]).save_to_disk(str(tmp_path / "notext"))
    with pytest.raises(DataError, match=r"no transcript column: none of .*name it with --text-column"):
        load_data(str(tmp_path / "notext"))
    Dataset.from_dict({"text": ["a"], "file": ["x.wav"]}).save_to_disk(str(tmp_path / "noaudio"))
    with pytest.raises(DataError, match=r"no audio column among \['text', 'file'\].*cast_column"):
        load_data(str(tmp_path / "noaudio"))


def test_cli_data_check_and_prepare_on_a_dataset(clips, tmp_path, capsys):
    _dataset(clips, embed=True).save_to_disk(str(tmp_path / "ds"))
    assert main(["data", "check", str(tmp_path / "ds"), "--decode", "--json", str(tmp_path / "c.json")]) == 0
    res = json.loads((tmp_path / "c.json").read_text())
    assert res["n"] == 8 and res["errors"] == 0 and res["hours"] > 0
    assert main(["data", "prepare", str(tmp_path / "ds"), "--hours", "0.004", "--out", str(tmp_path / "m.jsonl")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert 0 < len(lines) < 8 and all(ln["language"] == "sw" for ln in lines)
    capsys.readouterr()
    assert main(["data", "check", str(tmp_path / "ds"), "--text-column", "nope"]) == 2
    assert "no transcript column 'nope'" in capsys.readouterr().err
