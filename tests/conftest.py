"""Shared fixtures: tiny random Whisper models (fast) and the real whisper-base (integration)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dama.testing import make_tiny_ct2

# load_benchmark and SHARED_DATA stay importable from here for tests written before tests.helpers
from tests.helpers import SHARED_DATA, load_benchmark, need_real_data  # noqa: F401


@pytest.fixture
def tiny_ct2_dir(tmp_path) -> Path:
    return make_tiny_ct2(tmp_path / "tiny-ct2")


@pytest.fixture
def tiny6_ct2_dir(tmp_path) -> Path:
    """Six decoder layers, like whisper-base, so DAMA has early, middle and late segments."""
    return make_tiny_ct2(tmp_path / "tiny6-ct2", decoder_layers=6)


@pytest.fixture
def tiny_whisper(tiny_ct2_dir):
    from dama.models.load import load_whisper

    return load_whisper(tiny_ct2_dir, device="cpu")


def _real_model_dir() -> Path:
    from dama.models.fetch import fetch_model

    return fetch_model("whisper-base", log=lambda *a: None)


@pytest.fixture(scope="session")
def whisper_base():
    need_real_data()
    from dama.models.load import load_whisper

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    return load_whisper(_real_model_dir(), device="cpu")


@pytest.fixture(scope="session")
def whisper_base_ct2_dir(tmp_path_factory) -> Path:
    """The assembled CTranslate2 whisper-base (from the cached wheels) for cross-checks."""
    from dama.models.fetch import KNOWN_MODELS, _find_wheel, assemble_ct2_dir, cache_dir

    _real_model_dir()
    for mirror in KNOWN_MODELS["whisper-base"].mirrors:
        folder = cache_dir() / "wheels" / mirror.name
        if folder.is_dir():
            wheels = [_find_wheel(folder, r) for r in mirror.wheels]
            return assemble_ct2_dir(wheels, tmp_path_factory.mktemp("wb-ct2"))
    pytest.skip("whisper-base wheels are not in the cache")
