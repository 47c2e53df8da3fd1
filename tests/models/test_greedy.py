"""The lean greedy loop gives the tokens ``generate`` gives, merged or not, for every kind of adapter."""

from __future__ import annotations

import pytest
import torch

from dama.adapt import make_method
from dama.evaluate.cached import decoding_view
from dama.models.greedy import greedy_decode, merged_decoder
from dama.models.load import load_whisper
from dama.models.transcribe import DecodeOptions, decode_features


def _adapted(model_dir, method: str):
    w = load_whisper(model_dir, device="cpu")
    if method == "none":
        return w
    adapted = make_method(method, **({"r": 4} if method in ("lora", "dora") else {})).apply(w.model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a trained-looking adapter: B is zero at init, so give it weight
        for n, p in adapted.model.named_parameters():
            if "lora_B" in n or "lora_E" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return decoding_view(w, adapted.model)


@pytest.mark.parametrize("method", ["none", "lora", "dama", "dora"])
@pytest.mark.parametrize("merge", [False, True])
def test_same_tokens_as_generate(tiny6_ct2_dir, method, merge):
    w = _adapted(tiny6_ct2_dir, method)
    w.model.eval()
    torch.manual_seed(0)
    n = 6
    enc = torch.randn(n, w.model.config.max_source_positions, w.model.config.d_model)
    prompts = [w.prompt_ids("sw")] * n
    budgets = [3, 40, 17, 60, 8, 25]  # rows end at different steps: they leave the batch one by one
    opts = DecodeOptions(loop_repeats=3, loop_max_ngram=4)
    from transformers.modeling_outputs import BaseModelOutput

    ref = decode_features(w, None, prompts, budgets, opts, encoder_outputs=BaseModelOutput(last_hidden_state=enc))
    dec = merged_decoder(w.model) if merge else None
    got = greedy_decode(w, enc, prompts, budgets, opts, dec)
    assert got == ref
    assert len({len(r) for r in ref}) > 1, "rows of several lengths exercise leaving the batch"


def test_merged_decoder_leaves_the_model_untouched(tiny6_ct2_dir):
    w = _adapted(tiny6_ct2_dir, "lora")
    before = {k: v.clone() for k, v in w.model.state_dict().items()}
    dec = merged_decoder(w.model)
    after = w.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not any("lora" in n for n, _ in dec.named_parameters())
    x = torch.randn(2, 5, w.model.config.d_model)
    layer = w.model.model.decoder.layers[1].fc1
    merged = dec.layers[1].fc1
    assert torch.allclose(layer(x), merged(x), atol=1e-5)
