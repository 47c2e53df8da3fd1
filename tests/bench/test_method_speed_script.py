"""benchmarks/method_speed.py end to end on a tiny model (the real figures are in benchmarks/results/)."""

from __future__ import annotations

import json

import pytest

from dama.testing import make_corpus
from tests.helpers import load_benchmark


def load_script():
    return load_benchmark("method_speed")


def test_method_speed_measures_each_method_side_by_side(tmp_path, tiny6_ct2_dir):
    s = load_script()
    corpus = make_corpus(tmp_path / "data")
    out = tmp_path / "speed.json"
    cache = tmp_path / "cache"
    args = ["--data", "swahili:train", "--data-root", str(corpus), "--hours", "0", "--model", str(tiny6_ct2_dir),
            "--methods", "dama,lora", "--epochs", "2", "--batch-size", "4", "--cache-dir", str(cache),
            "--out", str(out)]
    assert s.main(args) == 0
    res = json.loads(out.read_text())
    assert res["setup"]["reference"] == "dama" and list(res["methods"]) == ["dama", "lora"]
    d, lo = res["methods"]["dama"], res["methods"]["lora"]
    for r in (d, lo):
        assert len(r["epoch_seconds"]) == 2 and r["epoch_seconds_after_first"] == r["epoch_seconds"][1]
        assert r["utterances"] == 8 and r["steps"] == 4 and r["peak_memory_mb"] > 0
    assert d["epoch_time_vs_reference"] == 1.0 and d["params_vs_reference"] == 1.0
    assert lo["params_vs_reference"] == pytest.approx(lo["trainable_params"] / d["trainable_params"])
    assert d["trainable_params"] < lo["trainable_params"]
    assert len(list(cache.rglob("*.keys.json"))) == 1  # built once up front; the runs only read it


def test_method_speed_refuses_a_single_epoch(tmp_path):
    with pytest.raises(SystemExit):
        load_script().main(["--epochs", "1", "--out", str(tmp_path / "x.json")])
