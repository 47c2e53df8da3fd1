"""Integration: the default decoding of `dama train` validation / `dama eval` (CTranslate2 on the
merged adapter, from cached encoder outputs) gives the transcripts of the previous default (the PyTorch
lean loop on the merged adapter, itself tested equal to ``generate`` in tests/models/test_greedy.py) on
real clips with the committed Swahili DAMA adapter; ``benchmarks/eval_decode.py`` compares all paths
on more clips."""

from __future__ import annotations

from pathlib import Path

import pytest

from dama.data import load_data
from dama.data.manifest import Manifest
from tests.helpers import SHARED_DATA

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_ct2_decoding_gives_the_previous_transcripts(whisper_base, tmp_path):
    pytest.importorskip("ctranslate2", reason="ctranslate2 is not installed")
    from dama.encoder_cache import ClipInputs
    from dama.evaluate.cached import decode_rows, decoding_view
    from dama.models.ct2_greedy import ct2_decoder
    from dama.models.greedy import merged_decoder
    from dama.models.transcribe import DecodeOptions
    from dama.runs import RunFolder

    w = RunFolder(ROOT / "benchmarks/results/swahili-full-dama").load(device="cpu", merge=False)
    w = decoding_view(w, w.model)
    assert ct2_decoder(w, merged_decoder(w.model)) is not None, "the default path is CTranslate2 here"
    m = load_data("swahili:test", SHARED_DATA)
    m.fill_durations()
    m = Manifest([u for u in m if (u.duration or 0) <= 30][:4], name=m.name)
    inputs = ClipInputs(w, m, True, tmp_path, log=lambda *a: None)
    rows, langs, opts = list(range(len(m))), ["sw"] * len(m), DecodeOptions(batch_size=2)
    ct2 = decode_rows(w, inputs, m, rows, langs, opts)  # the default
    assert ct2 == decode_rows(w, inputs, m, rows, langs, opts, ct2=False)  # the previous default
    assert sum(bool(t) for t in ct2) == len(m)
