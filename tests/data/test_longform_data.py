"""CORPUS:SPLIT-long: deterministic recordings built from consecutive clips, with true clip times."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from dama.data import longform
from dama.data.longform import plan_recordings, read_segments
from dama.data.spec import load_data
from dama.errors import DataError

SR = 16_000


def _corpus(root, n=12, seconds=(20.0, 35.0)):
    """An ALFFA-layout swahili corpus of ``n`` tone clips (test split) under ``root/swahili``."""
    rng = np.random.default_rng(0)
    rec = root / "swahili" / "data" / "records" / "test"
    rec.mkdir(parents=True)
    lines = []
    for i in range(n):
        dur = rng.uniform(*seconds)
        t = np.arange(int(dur * SR)) / SR
        sf.write(rec / f"utt_{i:02d}.wav", (0.3 * np.sin(2 * np.pi * (200 + 20 * i) * t)).astype(np.float32), SR)
        lines.append(f"utt_{i:02d}:sentence number {i}")
    (root / "swahili" / "data" / "raw_text_file.txt").write_text("\n".join(lines) + "\n")
    return root


def test_plan_groups_consecutive_clips_into_minutes():
    groups = plan_recordings([25.0] * 20)
    assert [i for g in groups for i in g] == list(range(20))  # every clip once, in order
    assert all(len(g) == 7 for g in groups[:-1])  # 7 x 25 s + gaps >= 180 s
    assert plan_recordings([25.0] * 8) == [list(range(8))]  # a remainder under 60 s joins the last


def test_test_long_spec_builds_recordings_with_true_times(tmp_path, monkeypatch):
    root = _corpus(tmp_path / "data")
    monkeypatch.setenv("DAMA_CACHE", str(tmp_path / "cache"))
    m = load_data("swahili:test-long", root)
    clips = load_data("swahili:test", root)
    assert m.name == "swahili:test-long" and len(m) >= 1
    assert all(u.language == "sw" and str(u.audio).startswith(str(tmp_path / "cache" / "longform")) for u in m)
    seen = []
    for u in m:
        audio, sr = sf.read(u.audio, dtype="float32")
        assert sr == SR and abs(len(audio) / SR - u.duration) < 1e-3
        segs = read_segments(u.audio)
        assert u.text == " ".join(s.text for s in segs)
        assert segs[0].start == longform.LEAD_S and abs(u.duration - segs[-1].end - longform.LEAD_S) < 2e-3
        for a, b in zip(segs, segs[1:]):
            assert longform.GAP_MIN_S - 2e-3 <= b.start - a.end <= longform.GAP_MAX_S + 2e-3
        for s in segs:  # each true segment holds its clip (to the sample)
            clip = clips[[c.id for c in clips].index(s.source)]
            ref, _ = sf.read(clip.audio, dtype="float32")
            piece = audio[round(s.start * SR): round(s.end * SR)]
            assert len(piece) == len(ref) and np.abs(piece[:1000] - ref[:1000]).max() < 1e-3
        seen += [s.source for s in segs]
    assert seen == [c.id for c in clips]
    again = load_data("swahili:test-long", root)  # cached, and the same
    assert [(u.id, u.audio, u.text, u.duration) for u in again] == [(u.id, u.audio, u.text, u.duration) for u in m]
    assert not [p for p in (tmp_path / "cache").rglob(".*.tmp")]


def test_unknown_split_long_names_the_split(tmp_path, monkeypatch):
    root = _corpus(tmp_path / "data", n=2)
    monkeypatch.setenv("DAMA_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="nope"):
        load_data("swahili:nope-long", root)
