"""Cross-entropy over Whisper's 51,865-token vocabulary without materialising all the logits.

The standard path keeps batch x tokens x vocab float32 logits, their log-softmax and their
gradient alive at once: ~0.5 GB for a batch of 8 clips with 100-token transcripts, the
largest activation of a decoder-only step. Here the output projection and the loss run in
row chunks, and each chunk's gradient (softmax - one-hot) is turned into the gradient of
the hidden states (and of the projection weight, when it trains) immediately, so only one
chunk of logits ever exists. Same FLOPs as forward + backward of the standard path.

Positions may carry a soft target instead of one label (``--rehearsal-targets distribution``): k token ids
and their probabilities p. Their loss is the soft cross-entropy ``logsumexp(z) - sum_k p_k z_k`` and its
gradient ``softmax(z) - p`` (scattered over the k ids): the one-hot case with k tokens.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

IGNORE = -100


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, chunk: int, need_h: bool, need_w: bool, soft=None):
        # Only rows with a label reach the output projection: prompt and padding positions (often a
        # quarter of a batch's rows) would cost the full 51,865-way projection, forward and backward,
        # for a loss term and a gradient that are multiplied by zero anyway.
        rows = (labels != IGNORE).nonzero()[:, 0]
        n_valid = torch.tensor(max(len(rows), 1), dtype=torch.float32, device=hidden.device)
        hv, tv = hidden.index_select(0, rows), labels.index_select(0, rows)
        grad_h = torch.zeros_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        if soft is not None:  # (mask, ids, probs) per position, restricted to the labelled rows
            s_mask, s_ids, s_p = (t.index_select(0, rows) for t in soft)
        for s in range(0, hv.shape[0], chunk):
            h, tgt = hv[s:s + chunk], tv[s:s + chunk]
            logits = (h @ weight.T).float()
            lse = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, tgt[:, None])[:, 0]
            sm = s_mask[s:s + chunk] if soft is not None else None
            if sm is not None and sm.any():
                si = sm.nonzero()[:, 0]
                ids, p = s_ids[s:s + chunk].index_select(0, si), s_p[s:s + chunk].index_select(0, si).float()
                picked = picked.index_copy(0, si, (logits.index_select(0, si).gather(1, ids) * p).sum(1))
            else:
                si = None
            total += (lse - picked).sum()
            if need_h or need_w:
                g = logits.sub_(lse[:, None]).exp_()  # softmax, in place
                if si is None:
                    g[torch.arange(len(tgt), device=g.device), tgt] -= 1
                else:
                    hard = (~sm).nonzero()[:, 0]
                    g[hard, tgt.index_select(0, hard)] -= 1
                    g.index_copy_(0, si, g.index_select(0, si).scatter_add_(1, ids, -p))
                if need_h:
                    grad_h[rows[s:s + chunk]] = (g.to(weight.dtype) @ weight).to(hidden.dtype)
                if need_w:
                    grad_w += g.T @ h.float()
        ctx.save_for_backward(n_valid, *(t for t in (grad_h, grad_w) if t is not None))
        ctx.need = (need_h, need_w)
        ctx.w_dtype = weight.dtype
        return total / n_valid

    @staticmethod
    def backward(ctx, grad_out):
        n_valid, *grads = ctx.saved_tensors
        scale = grad_out / n_valid
        grad_h = grads.pop(0) if ctx.need[0] else None
        grad_h = grad_h * scale.to(grad_h.dtype) if grad_h is not None else None
        grad_w = (grads.pop(0) * scale).to(ctx.w_dtype) if ctx.need[1] else None
        return grad_h, grad_w, None, None, None, None, None


Soft = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # mask (B, T), ids (B, T, k), probabilities (B, T, k)


def _flat_soft(soft: Soft | None, device) -> Soft | None:
    if soft is None:
        return None
    mask, ids, probs = soft
    k = ids.shape[-1]
    return mask.reshape(-1).to(device), ids.reshape(-1, k).to(device), probs.reshape(-1, k).to(device)


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                          chunk: int = 256, soft: Soft | None = None) -> torch.Tensor:
    """Mean cross-entropy of ``hidden @ weight.T`` against ``labels`` (``-100`` ignored); positions that
    ``soft`` marks are scored against its distribution instead of their label."""
    d = hidden.shape[-1]
    return _ChunkedLinearCrossEntropy.apply(hidden.reshape(-1, d), weight, labels.reshape(-1), chunk,
                                            hidden.requires_grad, weight.requires_grad,
                                            _flat_soft(soft, hidden.device))


def soft_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, soft: Soft) -> torch.Tensor:
    """:func:`chunked_cross_entropy`'s loss from full logits (the path for output projections it cannot
    take, e.g. trainable new-token rows)."""
    v = logits.shape[-1]
    flat, lab = logits.reshape(-1, v).float(), labels.reshape(-1)
    mask, ids, probs = _flat_soft(soft, logits.device)
    rows = (lab != IGNORE).nonzero()[:, 0]
    logp = flat.index_select(0, rows).log_softmax(-1)
    hard = -logp.gather(1, lab.index_select(0, rows)[:, None])[:, 0]
    smooth = -(logp.gather(1, ids.index_select(0, rows)) * probs.index_select(0, rows)).sum(1)
    return torch.where(mask.index_select(0, rows), smooth, hard).sum() / max(len(rows), 1)


def fused_lm_head(model: torch.nn.Module) -> torch.nn.Linear | None:
    """The plain bias-free output projection the chunked loss can replace, else ``None``
    (e.g. PEFT wrapped it to train new token rows: then the standard loss path is used)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = getattr(base, "proj_out", None)
    return head if type(head) is torch.nn.Linear and head.bias is None else None


@contextmanager
def hidden_states_as_logits(model: torch.nn.Module):
    """Within the block, the model's forward returns decoder hidden states in place of logits."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.proj_out
    base.proj_out = torch.nn.Identity()
    try:
        yield
    finally:
        base.proj_out = head
