"""lhotse manifests in and out, through lhotse itself, on real clips of the shared data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dama.cli.main import main
from dama.data import load_audio, load_data
from dama.errors import DataError
from tests.helpers import SHARED_DATA, need_real_data

lhotse = pytest.importorskip("lhotse", reason="lhotse is not installed (pip install lhotse)")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DAMA_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def clips():
    need_real_data()
    return load_data("swahili:train", SHARED_DATA)[:4]


def test_prepare_format_lhotse_is_read_back_by_lhotse_and_dama(tmp_path, capsys):
    need_real_data()
    out = tmp_path / "lh"
    assert main(["data", "prepare", "swahili:train", "--data-root", str(SHARED_DATA), "--hours", "0.01",
                 "--format", "lhotse", "--out", str(out), "--json", str(tmp_path / "p.json")]) == 0
    res = json.loads((tmp_path / "p.json").read_text())
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"swahili_{k}_train.jsonl.gz" for k in ("cuts", "recordings", "supervisions")]
    cuts = lhotse.load_manifest(out / "swahili_cuts_train.jsonl.gz")
    lhotse.validate(cuts, read_data=True)  # lhotse's own checks, audio loaded
    assert len(cuts) == res["n"] > 0
    sub = {u.id: u for u in load_data("swahili:train", SHARED_DATA)}
    for spec in (f"{out}:train", str(out / "swahili_cuts_train.jsonl.gz"),
                 str(out / "swahili_supervisions_train.jsonl.gz")):
        m = load_data(spec)
        assert len(m) == res["n"]
        for u in m:  # whole-file recordings are read in place
            assert u.audio == sub[u.id].audio and u.text == sub[u.id].text and u.language == "sw"


def test_segments_of_a_long_recording_are_cut_by_lhotse(clips, tmp_path):
    rec = lhotse.Recording.from_file(str(clips[0].audio), recording_id="long")
    sups = [lhotse.SupervisionSegment(id="a", recording_id="long", start=0.5, duration=1.0, text="kwanza",
                                      language="Swahili", speaker="s1"),
            lhotse.SupervisionSegment(id="b", recording_id="long", start=2.0, duration=1.5, text="pili")]
    lhotse.RecordingSet.from_recordings([rec]).to_file(tmp_path / "x_recordings_dev.jsonl.gz")
    lhotse.SupervisionSet.from_segments(sups).to_file(tmp_path / "x_supervisions_dev.jsonl.gz")
    m = load_data(str(tmp_path / "x_recordings_dev.jsonl.gz"))
    got = [(u.id, u.text, u.language, u.speaker) for u in m]
    assert got == [("a", "kwanza", "sw", "s1"), ("b", "pili", None, None)]
    full = load_audio(clips[0].audio)
    a = load_audio(m[0].audio)
    assert m[0].audio.suffix == ".flac" and len(a) == 16_000
    np.testing.assert_allclose(a, full[8_000:24_000], atol=2e-4)  # FLAC is 16-bit
    assert m[1].duration == pytest.approx(1.5)
    assert load_data(f"{tmp_path}:dev")[1].audio == m[1].audio  # the folder, by split: the same stored clip


def test_bad_lhotse_input_is_named(clips, tmp_path):
    rec = lhotse.Recording.from_file(str(clips[0].audio), recording_id="r").to_dict()
    rec["sources"] = [{"type": "command", "channels": [0], "source": f"touch {tmp_path / 'pwned'}; cat x.wav"}]
    sup = lhotse.SupervisionSegment(id="s", recording_id="r", start=0, duration=1.0, text="x")
    (tmp_path / "c_recordings_t.jsonl").write_text(json.dumps(rec) + "\n")  # a hand-made (or hostile) file
    lhotse.SupervisionSet.from_segments([sup]).to_file(tmp_path / "c_supervisions_t.jsonl")
    with pytest.raises(DataError, match="running a shell command"):
        load_data(str(tmp_path / "c_recordings_t.jsonl"))
    assert not (tmp_path / "pwned").exists()
    lhotse.SupervisionSet.from_segments([sup]).to_file(tmp_path / "lone_supervisions.jsonl.gz")
    with pytest.raises(DataError, match="needs its recordings manifest beside it"):
        load_data(str(tmp_path / "lone_supervisions.jsonl.gz"))


def test_lhotse_s_own_fleurs_recipe_output_is_data(tmp_path):
    """What an online user gets from `lhotse download fleurs` + `lhotse prepare fleurs` is valid --data as it
    stands: the real recipe (``lhotse.recipes.prepare_fleurs``) runs here on a folder laid out as
    ``download_fleurs`` leaves it, holding real FLEURS clips (the fleurs-control English ones)."""
    need_real_data()
    import soundfile as sf
    from lhotse.recipes import prepare_fleurs

    corpus, lang = tmp_path / "fleurs", "en_us"
    clips = sorted((SHARED_DATA / "fleurs-control").glob("fleurs-en-00[0-5].ogg"))
    for i, split in enumerate(("train", "dev", "test")):
        (corpus / lang / split).mkdir(parents=True)
        (corpus / "metadata" / lang).mkdir(parents=True, exist_ok=True)
        rows = []
        for clip in clips[2 * i: 2 * i + 2]:
            audio, sr = sf.read(clip, dtype="float32")
            sf.write(corpus / lang / split / f"{clip.stem}.wav", audio, sr)
            text = clip.with_suffix(".txt").read_text().strip()
            rows.append("\t".join([clip.stem[-3:], f"{clip.stem}.wav", text, text, "x", str(len(audio)), "FEMALE"]))
        (corpus / "metadata" / lang / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    prepare_fleurs(corpus, output_dir=tmp_path / "manifests", languages=lang)
    m = load_data(f"{tmp_path / 'manifests' / lang}:test")  # the folder lhotse wrote, by split
    assert [u.text for u in m] == [c.with_suffix(".txt").read_text().strip() for c in clips[4:6]]
    assert {u.language for u in m} == {"en"}  # FLEURS' "en_us" is Whisper's en
    assert main(["data", "check", f"{tmp_path / 'manifests' / lang}:train", "--decode"]) == 0
