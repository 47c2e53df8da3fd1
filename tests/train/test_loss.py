"""The chunked loss must equal the standard cross-entropy in value and gradients."""

from __future__ import annotations

import pytest
import torch

from dama.train.loss import chunked_cross_entropy, soft_cross_entropy


@pytest.mark.parametrize("train_weight", [False, True])
@pytest.mark.parametrize("chunk", [3, 7, 1000])
def test_chunked_cross_entropy_matches_standard(train_weight, chunk):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 9, 16, generator=g, requires_grad=True)
    weight = torch.randn(50, 16, generator=g, requires_grad=train_weight)
    labels = torch.randint(0, 50, (2, 9), generator=g)
    labels[0, :3] = -100  # prompt positions
    labels[1, 6:] = -100  # padding
    ref = torch.nn.functional.cross_entropy((hidden @ weight.T).reshape(-1, 50), labels.reshape(-1))
    ref_grads = torch.autograd.grad(ref * 3, [hidden] + ([weight] if train_weight else []))
    got = chunked_cross_entropy(hidden, weight, labels, chunk=chunk)
    got_grads = torch.autograd.grad(got * 3, [hidden] + ([weight] if train_weight else []))
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    for a, b in zip(got_grads, ref_grads):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("train_weight", [False, True])
@pytest.mark.parametrize("chunk", [3, 1000])
def test_soft_targets_score_against_a_distribution(train_weight, chunk):
    """Positions with a soft target (k ids, probabilities p) give -sum_k p_k log softmax(z)_k, the others their
    label's cross-entropy; value and gradients as autograd computes them on full logits."""
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(2, 9, 16, generator=g, requires_grad=True)
    weight = torch.randn(50, 16, generator=g, requires_grad=train_weight)
    labels = torch.randint(0, 50, (2, 9), generator=g)
    labels[0, :3] = -100
    labels[1, 6:] = -100
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[1, :6] = True  # the second row is a rehearsal example, scored against its teacher
    mask[1, 7] = True  # a soft target on an ignored (padding) position is ignored too
    ids = torch.stack([torch.randperm(50, generator=g)[:4] for _ in range(18)]).reshape(2, 9, 4)
    probs = torch.rand(2, 9, 4, generator=g).softmax(-1)
    logp = (hidden @ weight.T).log_softmax(-1)
    valid = labels != -100
    hard = -logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    smooth = -(logp.gather(-1, ids) * probs).sum(-1)
    ref = torch.where(mask, smooth, hard)[valid].mean()
    params = [hidden] + ([weight] if train_weight else [])
    ref_grads = torch.autograd.grad(ref * 2, params)
    for got in (chunked_cross_entropy(hidden, weight, labels, chunk=chunk, soft=(mask, ids, probs)),
                soft_cross_entropy(hidden @ weight.T, labels, (mask, ids, probs))):
        got_grads = torch.autograd.grad(got * 2, params)
        assert got.item() == pytest.approx(ref.item(), rel=1e-5)
        for a, b in zip(got_grads, ref_grads):
            assert torch.allclose(a, b, atol=1e-5)
    # a one-hot soft target on the label is the label: the hard loss again
    one_hot = (torch.ones(2, 9, dtype=torch.bool), labels.clamp(min=0)[..., None], torch.ones(2, 9, 1))
    assert chunked_cross_entropy(hidden, weight, labels, chunk=chunk, soft=one_hot).item() == pytest.approx(
        chunked_cross_entropy(hidden, weight, labels, chunk=chunk).item(), rel=1e-6)


def test_chunked_cross_entropy_all_ignored_is_zero():
    hidden = torch.randn(4, 8, requires_grad=True)
    loss = chunked_cross_entropy(hidden, torch.randn(10, 8), torch.full((4,), -100))
    loss.backward()
    assert loss.item() == 0.0 and hidden.grad.abs().sum() == 0


@pytest.mark.parametrize("method", ["lora", "full"])
def test_fused_head_equals_model_loss_on_whisper(tiny_ct2_dir, method):
    """Through a real (tiny) Whisper with adapters: same loss and same gradients as HF's own loss."""
    from dama.adapt import make_method
    from dama.models.load import load_whisper
    from dama.train.loss import fused_lm_head, hidden_states_as_logits

    w = load_whisper(tiny_ct2_dir)
    model = make_method(method, **({"r": 4} if method == "lora" else {})).apply(w.model).model
    head = fused_lm_head(model)
    assert head is not None
    g = torch.Generator().manual_seed(1)
    enc = torch.randn(2, model.config.max_source_positions, model.config.d_model, generator=g)
    ids = torch.randint(0, model.config.vocab_size, (2, 7), generator=g)
    labels = ids.roll(-1, 1)
    labels[1, 5:] = -100
    from transformers.modeling_outputs import BaseModelOutput

    kw = {"encoder_outputs": BaseModelOutput(last_hidden_state=enc), "decoder_input_ids": ids}
    params = [p for p in model.parameters() if p.requires_grad]
    ref = model(**kw, labels=labels).loss
    ref_g = torch.autograd.grad(ref, params, allow_unused=True)
    with hidden_states_as_logits(model):
        hidden = model(**kw).logits
    got = chunked_cross_entropy(hidden, head.weight, labels, chunk=5)
    got_g = torch.autograd.grad(got, params, allow_unused=True)
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    assert [a is None for a in got_g] == [b is None for b in ref_g]  # (the encoder gets none: outputs given)
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(got_g, ref_g) if a is not None)
    assert model(**kw).logits.shape[-1] == model.config.vocab_size  # head restored
