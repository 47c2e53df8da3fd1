"""Manifest readers, recipes, subsets and checks on small fixture files the tests create."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from dama.data import check_manifest, load_audio, load_data, read_common_voice, read_jsonl, read_table
from dama.data.manifest import Manifest, Utterance, select_hours
from dama.errors import DataError
from dama.testing import write_wav


def test_jsonl_resolves_relative_paths_and_reports_bad_lines(tmp_path):
    write_wav(tmp_path / "clips" / "a.wav", 1.5)
    lines = [
        json.dumps({"audio_filepath": "clips/a.wav", "text": "habari", "duration": 1.5, "language": "sw",
                    "speaker": 7}),
        "{not json",
        json.dumps({"text": "no audio"}),
        "",
        json.dumps({"audio_filepath": "clips/a.wav"}),
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    m = read_jsonl(tmp_path / "m.jsonl")
    assert len(m) == 1
    u = m[0]
    assert u.audio == tmp_path / "clips" / "a.wav" and u.text == "habari" and u.speaker == "7"
    assert u.duration == 1.5 and u.language == "sw" and u.where == f"{tmp_path / 'm.jsonl'}:1"
    wheres = [p.where for p in m.problems]
    assert wheres == [f"{tmp_path / 'm.jsonl'}:{n}" for n in (2, 3, 5)]
    with pytest.raises(DataError, match="3 problem"):
        m.raise_problems()


@pytest.mark.parametrize("sep,ext", [(",", "csv"), ("\t", "tsv")])
def test_csv_and_tsv(tmp_path, sep, ext):
    write_wav(tmp_path / "b.wav", 1.0)
    (tmp_path / f"m.{ext}").write_text(sep.join(["audio_filepath", "text", "language"]) + "\n"
                                       + sep.join(["b.wav", "ẹ kú àárọ̀", "yo"]) + "\n")
    m = read_table(tmp_path / f"m.{ext}")
    assert [(u.audio.name, u.text, u.language) for u in m] == [("b.wav", "ẹ kú àárọ̀", "yo")]


def test_table_without_audio_column_names_the_header(tmp_path):
    (tmp_path / "m.csv").write_text("file,transcript\nx.wav,hi\n")
    with pytest.raises(DataError, match=r"m.csv:1: header"):
        read_table(tmp_path / "m.csv")


def test_common_voice_folder_with_mp3(tmp_path):
    cv = tmp_path / "sw"
    (cv / "clips").mkdir(parents=True)
    x = (0.2 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    sf.write(str(cv / "clips" / "c1.mp3"), x, 16000, format="MP3")
    (cv / "test.tsv").write_text("client_id\tpath\tsentence\tlocale\nspk1\tc1.mp3\tHabari yako\tsw\n")
    m = read_common_voice(cv, "test")
    assert len(m) == 1 and m[0].speaker == "spk1" and m[0].language == "sw" and m[0].split == "test"
    audio = load_audio(m[0].audio)
    assert abs(len(audio) - 16000) < 2000  # MP3 adds encoder padding
    with pytest.raises(DataError, match="has splits"):
        read_common_voice(cv, "train")


def _records_corpus(root, name="swahili"):
    d = root / name / "data"
    for split, ids in (("train", ["u1", "u2", "u3"]), ("test", ["t1"])):
        for i, uid in enumerate(ids):
            write_wav(d / "records" / split / f"{uid}.wav", 1.0 + i)
    (d / "raw_text_file.txt").write_text("u1:Habari, yako?\nu2:Nzuri sana\nu3:Asante\nt1:Karibu\nbroken line\n")
    return root


def test_recipe_matches_audio_by_stem_and_reports_bad_lines(tmp_path):
    root = _records_corpus(tmp_path)
    m = load_data("swahili:train", root)
    assert [u.id for u in m] == ["u1", "u2", "u3"] and {u.language for u in m} == {"sw"}
    assert m[0].where.endswith("raw_text_file.txt:1")
    assert [str(p) for p in m.problems] == [f"{root / 'swahili/data/raw_text_file.txt'}:5: expected 'UTT_ID:text'"]
    both = load_data("swahili:train+test", root)
    assert len(both) == 4
    with pytest.raises(DataError, match="splits train, val, test"):
        load_data("swahili:dev", root)


def test_data_root_from_environment(tmp_path, monkeypatch):
    root = _records_corpus(tmp_path)
    monkeypatch.setenv("DAMA_DATA", str(root))
    assert len(load_data("swahili:test")) == 1
    monkeypatch.delenv("DAMA_DATA")
    with pytest.raises(DataError, match="--data-root"):
        load_data("swahili:test")
    with pytest.raises(DataError, match="neither a file"):
        load_data("klingon:test", root)


def _manifest(durations):
    return Manifest([Utterance(f"u{i}", __file__, "x", duration=d) for i, d in enumerate(durations)], name="m")


def test_subset_is_reproducible_and_close_to_target():
    rng = np.random.default_rng(0)
    m = _manifest(rng.uniform(2, 20, size=400).tolist())
    a, b = select_hours(m, 0.5, seed=3), select_hours(m, 0.5, seed=3)
    assert [u.id for u in a] == [u.id for u in b]
    assert abs(a.seconds - 1800) <= 10  # within half of the longest clip
    assert [u.id for u in select_hours(m, 0.5, seed=4)] != [u.id for u in a]
    assert select_hours(m, 100, seed=0).seconds == pytest.approx(m.seconds)
    with pytest.raises(DataError):
        select_hours(m, 0)


def test_check_lists_every_problem(tmp_path):
    write_wav(tmp_path / "ok.wav", 1.0)
    write_wav(tmp_path / "long.wav", 31.0)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF0000WAVEjunk")
    sf.write(str(tmp_path / "empty.wav"), np.zeros(0, np.float32), 16000)
    recs = [
        {"audio_filepath": "ok.wav", "text": "fine", "language": "sw"},
        {"audio_filepath": "missing.wav", "text": "x"},
        {"audio_filepath": "corrupt.wav", "text": "x"},
        {"audio_filepath": "empty.wav", "text": "x"},
        {"audio_filepath": "ok.wav", "text": "   "},
        {"audio_filepath": "ok.wav", "text": "x", "language": "xx"},
        {"audio_filepath": "long.wav", "text": "long one"},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    errors, warnings = check_manifest(read_jsonl(tmp_path / "m.jsonl"))
    msgs = {int(p.where.rsplit(":", 1)[1]): p.message for p in errors}
    assert set(msgs) == {2, 3, 4, 5, 6}
    assert "not found" in msgs[2] and "cannot read audio header" in msgs[3]
    assert "zero-length" in msgs[4] and "empty transcript" in msgs[5] and "'xx'" in msgs[6]
    assert any("> 30 s" in p.message for p in warnings)


def test_load_audio_resamples_and_downmixes(tmp_path):
    p = write_wav(tmp_path / "s.wav", 2.0, sr=44100, channels=2)
    a = load_audio(p)
    assert a.dtype == np.float32 and a.ndim == 1 and len(a) == 32000
    assert 0.15 < np.abs(a).max() < 0.35
    with pytest.raises(DataError, match="listed at m.jsonl:4"):
        load_audio(tmp_path / "nope.wav", where="m.jsonl:4")


def test_per_language_keeps_the_first_n_of_each_language_in_order():
    m = Manifest([Utterance(f"u{i}", f"{i}.wav", "x", language=lang)
                  for i, lang in enumerate(["de", "de", "de", "en", "fr", "en", "en"])], name="control")
    assert [u.id for u in m.per_language(2)] == ["u0", "u1", "u3", "u4", "u5"]
    assert m.per_language(2).name == "control" and len(m.per_language(10)) == 7
    with pytest.raises(DataError, match="positive"):
        m.per_language(0)
