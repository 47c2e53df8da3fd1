"""benchmarks/gpu_large.py awaits a GPU; its CPU smoke mode (--device cpu --tiny) runs here so it cannot rot."""

from __future__ import annotations

import json

from tests.helpers import load_benchmark


def test_gpu_large_smoke_mode_writes_its_results(tmp_path):
    out = tmp_path / "gpu.json"
    res = load_benchmark("gpu_large").main(["--device", "cpu", "--tiny", "--batch", "2", "--tokens", "8",
                                            "--warmup", "0", "--steps", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    assert set(res["methods"]) == {"dama", "lora", "dora", "full"}
    m = res["methods"]
    assert m["dama"]["trainable_params"] < min(m["lora"]["trainable_params"], m["full"]["trainable_params"])
    assert all(r["seconds_per_step"] > 0 for r in m.values())
    assert res["ratios"]["time_dama_over_dora"]["ours"] > 0
    assert round(res["ratios"]["memory_dama_over_full"]["paper"], 3) == 0.764  # 21.63 / 28.32
    assert res["gpu"] and res["setting"]["batch"] == 2
