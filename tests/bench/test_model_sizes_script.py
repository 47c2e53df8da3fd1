"""tiny and base at their exact architecture, random weights, end to end on real clips (the path
benchmarks/model_sizes.py takes for every size): DAMA's layout, a training step at batch 4, the SVD-tail
basis still in place after it, the adapter in plain PEFT (load, merge), the CTranslate2 export against
the merged model, and faster-whisper transcribing with it."""

from __future__ import annotations

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
