"""The lean timestamp-mode loop gives the tokens, log-probabilities and p(no speech) that ``generate`` gives
(greedy), and the long-form path built on it the same segments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dama.data.audio import SAMPLE_RATE as SR
from dama.longform import LongformOptions, Window, _decode_windows, transcribe_long
from dama.testing import make_tiny_ct2


@pytest.fixture(scope="module")
def ts_model_dir(tmp_path_factory):
    return make_tiny_ct2(tmp_path_factory.mktemp("ts") / "tiny-ts", timestamps=True)


def test_lean_loop_matches_generate(ts_model_dir):
    from dama.models.load import load_whisper

    w = load_whisper(ts_model_dir, device="cpu")
    # a random tiny decoder barely listens to the encoder and repeats one text token: make it listen, and
    # suppress that token, so rows differ and end at different steps (a loop, the end of text)
    w.generation_config.suppress_tokens = [*(w.generation_config.suppress_tokens or []), 143]
    with torch.no_grad():
        for layer in w.model.model.decoder.layers:
            layer.encoder_attn.out_proj.weight.mul_(30)
    torch.manual_seed(1)
    n = 6
    enc = torch.randn(n, w.model.config.max_source_positions, w.model.config.d_model)
    windows = [Window(0, 4 * SR)] * n  # budget: ceil(4 * 15 * 1.3) + 16 = 94 tokens
    opts = LongformOptions(language="en", loop_repeats=3, loop_max_ngram=4)
    ref = _decode_windows(w, enc, windows, LongformOptions(**{**opts.__dict__, "lean": False}), 0.0)
    got = _decode_windows(w, enc, windows, opts, 0.0)
    assert [g[0] for g in got] == [r[0] for r in ref]
    assert np.allclose([g[1:] for g in got], [r[1:] for r in ref], atol=1e-5)
    ts_begin = w.generation_config.no_timestamps_token_id + 1
    assert any(t >= ts_begin for r in ref for t in r[0]), "the grammar is exercised: timestamps were emitted"
    assert len({len(r[0]) for r in ref}) > 1, "rows of several lengths exercise leaving the batch"


def test_long_form_segments_same_with_either_decoder(ts_model_dir):
    """End to end (VAD, windows, encoder once per batch, parsing) on real speech: the same segments."""
    from dama.models.load import load_whisper
    from tests.longform.test_longform import _speech

    w = load_whisper(ts_model_dir, device="cpu")
    audio = _speech(4)
    opts = LongformOptions(language="en", temperatures=(0.0,), batch_size=2)
    got = transcribe_long(w, audio, opts)
    ref = transcribe_long(w, audio, LongformOptions(**{**opts.__dict__, "lean": False}))
    assert got, "segments were decoded"
    assert [(s.start, s.end, s.text) for s in got] == [(s.start, s.end, s.text) for s in ref]


def test_fallback_keeps_the_best_attempt_when_asked(ts_model_dir):
    """Every window fails (log-probability threshold above 0): "last" keeps the sampled decoding,
    "best" the attempt with the highest mean log-probability, here the greedy one."""
    from dama.models.load import load_whisper
    from tests.longform.test_longform import _speech

    w = load_whisper(ts_model_dir, device="cpu")
    audio = _speech(2)
    fail = {"language": "en", "logprob_threshold": 1.0, "compression_ratio_threshold": 1e9, "batch_size": 4}
    greedy = transcribe_long(w, audio, LongformOptions(**fail, temperatures=(0.0,)))
    best = transcribe_long(w, audio, LongformOptions(**fail, temperatures=(0.0, 1.0), fallback_pick="best"))
    last = transcribe_long(w, audio, LongformOptions(**fail, temperatures=(0.0, 1.0)))
    assert greedy and best == greedy and last != greedy
