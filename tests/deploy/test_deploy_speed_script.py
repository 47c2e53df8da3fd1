"""The deployment benchmark script runs end to end (on a tiny model; the real figures are in benchmarks/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.test_export import _train

ROOT = Path(__file__).resolve().parents[2]


def test_deploy_speed_script_smoke(tmp_path):
    pytest.importorskip("ctranslate2")
    _, corpus, run = _train(tmp_path)
    out = tmp_path / "speed.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "deploy_speed.py"), "--adapter", str(run),
                    "--data", "swahili:test", "--data-root", str(corpus), "--out", str(out)], check=True)
    res = json.loads(out.read_text())
    assert set(res["variants"]) == {"hf-unmerged", "hf-merged", "ct2-float32", "ct2-int8"}
    v = res["variants"]
    assert res["setup"]["clips"] == 3 and all(x["rtf"] > 0 for x in v.values())
    assert v["hf-merged"]["wer"] == v["hf-unmerged"]["wer"]  # merging changes nothing
    assert res["setup"]["baseline"] == "hf-unmerged" and v["hf-unmerged"]["speedup_vs_baseline"] == 1.0
    p = v["hf-merged"]["paired_vs_baseline"]
    assert p["diff"] == 0.0 and p["ci"] == [0.0, 0.0] and p["wins"] == p["losses"] == 0


def test_deploy_speed_script_variant_subset(tmp_path):
    pytest.importorskip("ctranslate2")
    _, corpus, run = _train(tmp_path)
    out = tmp_path / "int8.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "deploy_speed.py"), "--adapter", str(run), "--data",
           "swahili:test", "--data-root", str(corpus), "--out", str(out)]
    subprocess.run([*cmd, "--variants", "ct2-float32,ct2-int8"], check=True)
    res = json.loads(out.read_text())
    assert list(res["variants"]) == ["ct2-float32", "ct2-int8"] and res["setup"]["baseline"] == "ct2-float32"
    assert "paired_vs_baseline" in res["variants"]["ct2-int8"]
    bad = subprocess.run([*cmd, "--variants", "ct2-int4"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--variants: choose from" in bad.stderr
