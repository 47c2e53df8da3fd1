"""tiny and base at their exact architecture, random weights, end to end on real clips (the path
benchmarks/model_sizes.py takes for every size): DAMA's layout, a training step at batch 4, the SVD-tail
basis still in place after it, the adapter in plain PEFT (load, merge), the CTranslate2 export against
the merged model, and faster-whisper transcribing with it."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SHARED_DATA, load_benchmark

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("size, ranks", [("tiny", [32, 8, 8, 32]), ("base", [32, 8, 8, 8, 8, 32])])
def test_exact_size_trains_saves_merges_and_exports(size, ranks, whisper_base, tmp_path):
    pytest.importorskip("faster_whisper")
    ms = load_benchmark("model_sizes")
    rec = ms.run_one(size, tmp_path / "work", steps=1, batch=4, data_root=str(SHARED_DATA), cache=tmp_path / "c")
    lay, tr = rec["layout"], rec["train"]
    assert lay["dama_ranks"] == ranks and lay["decoder_layers"] == len(ranks)
    assert tr["steps"] == 1 and tr["batch_size"] == 4 and tr["peak_step_rss_mb"] >= tr["rss_before_steps_mb"] > 0
    assert abs(tr["encoder_cache_mb_per_clip"] - 1500 * lay["d_model"] * 2 / 2**20) < 0.01
    assert rec["svd_tail"]["svd_tail_frozen_ok"] and rec["svd_tail"]["middle_modules_checked"] == 4
    assert rec["peft"]["peft_load_merge_ok"]
    ct2 = rec["ct2"]
    assert ct2["ct2_matches_hf_greedy"] and ct2["ct2_tokens_compared"] >= 4
    assert ct2["faster_whisper_ran"] and ct2["faster_whisper_mel_bins"] == 80
    assert rec["export_check_passed"]


def test_a_size_without_the_free_memory_it_needs_is_not_started(tmp_path):
    """The script reads MemAvailable before each size: large-v2 at batch 1000 (hundreds of GB predicted) is
    recorded as not started, with why, instead of being killed by the kernel mid-way."""
    ms = load_benchmark("model_sizes")
    assert ms.memory_short("tiny", 4) is None
    short = ms.memory_short("large-v2", 1000)
    assert short.startswith("not started: needs about") and "GB was free" in short
    out = tmp_path / "r.json"
    assert ms.main(["--sizes", "large-v2", "--batch", "1000", "--out", str(out), "--work", str(tmp_path)]) == 0
    rec = json.loads(out.read_text())["sizes"]["large-v2"]
    assert rec["not_run"].startswith("not started: needs about") and "train" not in rec
