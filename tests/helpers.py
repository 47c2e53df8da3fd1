"""Helpers tests import (conftest.py holds fixtures only): where the real data is, skipping or failing
when it is missing, and importing a benchmark script as a module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("DAMA_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def need_real_data() -> None:
    """Skip the test when the real corpora are not here; fail instead under DAMA_REQUIRE_INTEGRATION=1."""
    if SHARED_DATA.is_dir():
        return
    msg = f"real data not found at {SHARED_DATA} (set DAMA_DATA)"
    if os.environ.get("DAMA_REQUIRE_INTEGRATION"):
        pytest.fail(msg)
    pytest.skip(msg)


def load_benchmark(name: str):
    """A script of benchmarks/ (not a package) imported as a module, for tests of its functions."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
