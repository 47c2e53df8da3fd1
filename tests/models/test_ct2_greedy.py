"""CTranslate2 greedy decoding from encoder outputs gives the PyTorch loop's tokens, for every adapter it
can represent; the others are declined (and then decoded in PyTorch)."""

from __future__ import annotations

import pytest
import torch

from dama.models.greedy import greedy_decode, merged_decoder
from dama.models.transcribe import DecodeOptions
from tests.models.test_greedy import _adapted

pytest.importorskip("ctranslate2", reason="ctranslate2 is not installed (pip install 'dama[dev]')")

from dama.models.ct2_greedy import ct2_decoder, rows_per_call  # noqa: E402


def _case(w, n=6, seed=0):
    torch.manual_seed(seed)
    enc = torch.randn(n, w.model.config.max_source_positions, w.model.config.d_model)
    return enc, [w.prompt_ids("sw")] * n


@pytest.mark.parametrize("method", ["none", "lora", "dama"])
def test_same_tokens_as_the_pytorch_loop(tiny6_ct2_dir, method):
    w = _adapted(tiny6_ct2_dir, method)
    w.model.eval()
    dec = merged_decoder(w.model)
    ct = ct2_decoder(w, dec, threads=1)
    assert ct is not None
    enc, prompts = _case(w)
    budgets = [3, 40, 17, 60, 8, 25]  # cut at each row's own budget, not the batch's
    for opts in (DecodeOptions(loop_repeats=3, loop_max_ngram=4), DecodeOptions(suppress=False),
                 DecodeOptions(loop_repeats=50)):
        ref = greedy_decode(w, enc, prompts, budgets, opts, dec)
        assert ct.decode(w, enc, prompts, budgets, opts) == ref
        assert len({len(r) for r in ref}) > 1


def test_a_budget_past_the_positions_is_capped_as_in_pytorch(tiny6_ct2_dir):
    w = _adapted(tiny6_ct2_dir, "lora")
    dec = merged_decoder(w.model)
    ct = ct2_decoder(w, dec, threads=1)
    enc, prompts = _case(w, n=2, seed=3)
    opts = DecodeOptions(loop_repeats=1000)
    budgets = [10_000, 5]
    assert ct.decode(w, enc, prompts, budgets, opts) == greedy_decode(w, enc, prompts, budgets, opts, dec)


def test_new_language_tokens_are_declined(tiny6_ct2_dir):
    """CTranslate2 takes an id after <|notimestamps|> for a timestamp (it echoed the prompt when tried)."""
    from dama.adapt import make_method
    from dama.evaluate.cached import decoding_view
    from dama.models.load import load_whisper
    from dama.models.new_language import add_language_token

    w = load_whisper(tiny6_ct2_dir, device="cpu")
    tok_id = add_language_token(w, "rw", "Kinyarwanda")
    adapted = make_method("dama", train_token_ids=(tok_id,)).apply(w.model)
    w = decoding_view(w, adapted.model)
    assert ct2_decoder(w, merged_decoder(w.model)) is None


def test_unmerged_adapter_layers_are_declined(tiny6_ct2_dir):
    w = _adapted(tiny6_ct2_dir, "dora")  # DoRA layers stay adapter layers in the merged copy
    assert ct2_decoder(w, merged_decoder(w.model)) is None


def test_rows_per_call_is_bounded_by_the_keys_values_memory():
    from transformers import WhisperConfig

    base = WhisperConfig(d_model=512, decoder_layers=6, max_source_positions=1500)
    large = WhisperConfig(d_model=1280, decoder_layers=32, max_source_positions=1500)
    assert rows_per_call(base) == 43  # 1.5 GiB / 36.9 MB
    assert rows_per_call(large) == 3  # 1.5 GiB / 491.5 MB: large models stay at a few rows per call
    assert rows_per_call(base, budget_bytes=1) == 1
    assert rows_per_call(WhisperConfig(d_model=8, decoder_layers=1, max_source_positions=10)) == 64  # capped
