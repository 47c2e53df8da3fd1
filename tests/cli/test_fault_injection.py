"""The fault-injection script (benchmarks/fault_injection.py), one case of every kind, on the tiny model.

Each case is a real `dama train` subprocess that is killed, or whose cache or checkpoint is
damaged or replaced by a code-running pickle, or whose cache disk is full; the committed
report (benchmarks/results/fault_injection.json) is a longer run of the same script.
"""

from __future__ import annotations

import json

from tests.helpers import load_benchmark


def test_every_fault_is_detected_or_recovered_and_the_result_is_identical(tmp_path):
    fi = load_benchmark("fault_injection")
    out = tmp_path / "report.json"
    assert fi.main(["--cases", str(len(fi.KINDS)), "--seed", "1", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    done = [c for c in r["cases"] if "skipped" not in c]
    assert {c["kind"] for c in done} >= set(fi.KINDS) - {"disk-full"}  # disk-full needs root for its tmpfs
    assert r["code_ran"] == 0
    assert r["detected"] == r["faults_to_detect"] > 0
    assert r["recovered"] == r["identical"] == len(done)
