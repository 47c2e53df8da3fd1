"""Greedy decoding from encoder outputs, lean: what validation and test decoding spend their time in.

:func:`dama.models.transcribe.decode_features` runs ``GenerationMixin.generate``; on whisper-base
on a CPU most of a run's evaluation wall time goes there. This loop computes the same tokens with
less work per step:

* rows that are finished (end of text, token budget, or a loop) leave the batch at once, with
  their slice of the key/value cache, instead of being decoded as padding until the longest row
  ends (rows are sorted by length, but token counts still differ by 2-3x within a batch);
* the output projection runs on the last position only, straight from the decoder's hidden
  state, with no generation machinery (logits processors, stopping-criteria objects, per-step
  ``tolist()`` of the whole batch) in between;
* PEFT adapters can be decoded merged (``merged_decoder``): one dense matmul per projection
  instead of the base one plus a low-rank path and PEFT's dispatch, in a decoder copy, so the
  model being trained is untouched.

The rules are those of ``decode_features``: the same prompt, Whisper's suppress lists (all steps)
and begin-suppress list (first step), argmax, the per-row token budget and tail-loop guard, and the
same post-processing. A row's logits do not depend on the other rows, so the tokens are the same;
only float rounding can differ with batch shape (and with merged weights), which
``benchmarks/eval_decode.py`` measures on real clips (transcripts compared one by one).
"""

from __future__ import annotations

import copy

import torch
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from dama.models.load import Whisper


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def drop_rows(cache: EncoderDecoderCache, enc: torch.Tensor, alive: list[int],
              keep: list[int]) -> tuple[torch.Tensor, list[int], torch.Tensor]:
    """Keep only batch positions ``keep`` of a decoding batch whose other rows have finished: their slices
    of the key/value ``cache`` (in place) and of ``enc``, and their original row ids ``alive``. Returns the
    new ``enc``, ``alive`` and the kept positions as a tensor (to select any other per-row state)."""
    idx = torch.tensor(keep, device=enc.device)
    cache.batch_select_indices(idx)
    return enc.index_select(0, idx), [alive[p] for p in keep], idx


def merged_decoder(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model``'s decoder with every vanilla LoRA layer merged into a plain ``nn.Linear``
    (weight + scaling x B A, PEFT's own ``get_delta_weight``); layers of other kinds (DoRA, AdaLoRA)
    are kept as they are. The model itself is not changed."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    decoder = copy.deepcopy(_unwrap(model).model.decoder)
    for name, module in list(decoder.named_modules()):
        if type(module) is not LoraLinear or module.lora_variant or module.merged or module.disable_adapters:
            continue
        base = module.base_layer
        weight = base.weight.detach().clone()
        for adapter in module.active_adapters:
            if adapter in module.lora_A:
                weight += module.get_delta_weight(adapter).to(weight.dtype)
        dense = torch.nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                                device=weight.device, dtype=weight.dtype)
        dense.weight.data.copy_(weight)
        if base.bias is not None:
            dense.bias.data.copy_(base.bias.detach())
        parent_name, _, child = name.rpartition(".")
        setattr(decoder.get_submodule(parent_name) if parent_name else decoder, child, dense)
    decoder.eval()
    return decoder


@torch.no_grad()
def greedy_decode(w: Whisper, encoder_hidden: torch.Tensor, prompts: list[list[int]], budgets: list[int],
                  opts, decoder: torch.nn.Module | None = None) -> list[list[int]]:
    """Text token ids per row (prompt and special tokens removed, loops trimmed), as
    :func:`dama.models.transcribe.decode_features` returns them for greedy decoding.

    ``encoder_hidden``: (rows, frames, d_model); ``decoder``: e.g. :func:`merged_decoder`'s copy
    (default: the model's own)."""
    from dama.models.transcribe import find_tail_loop, text_tokens

    model = _unwrap(w.model)
    decoder = decoder if decoder is not None else model.model.decoder
    head = model.proj_out
    gc = w.generation_config
    eot = gc.eos_token_id
    first = next(decoder.parameters())
    dtype, device = first.dtype, first.device
    n = len(prompts)
    prompt = torch.tensor(prompts, device=device)
    p_len = prompt.shape[1]
    max_new = min(max(budgets), model.config.max_target_positions - p_len)
    suppress = begin = None

    enc = encoder_hidden.to(device=device, dtype=dtype)
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    alive = list(range(n))  # original row of each batch position
    out: list[list[int]] = [[] for _ in range(n)]
    step_ids = prompt
    for step in range(max_new):
        hidden = decoder(input_ids=step_ids, encoder_hidden_states=enc, cache=cache, use_cache=True)[0]
        logits = head(hidden[:, -1]).float()
        if suppress is None:  # the vocabulary may hold new language tokens: sized from the logits
            suppress = torch.zeros(logits.shape[-1], dtype=torch.bool, device=device)
            if opts.suppress:
                suppress[[t for t in (gc.suppress_tokens or []) if t < len(suppress)]] = True
                begin = suppress.clone()
                begin[[t for t in (gc.begin_suppress_tokens or []) if t < len(suppress)]] = True
            else:
                begin = suppress
        logits.masked_fill_(begin if step == 0 else suppress, float("-inf"))
        nxt = logits.argmax(dim=-1).tolist()
        keep = []
        for pos, (row, tok) in enumerate(zip(alive, nxt)):
            out[row].append(tok)
            gen = out[row]
            if tok == eot or len(gen) >= budgets[row] or \
                    find_tail_loop(gen, opts.loop_repeats, opts.loop_max_ngram) is not None:
                continue
            keep.append(pos)
        if not keep:
            break
        if len(keep) < len(alive):
            enc, alive, _ = drop_rows(cache, enc, alive, keep)
            nxt_t = torch.tensor([nxt[p] for p in keep], device=device)
        else:
            nxt_t = torch.tensor(nxt, device=device)
        step_ids = nxt_t[:, None]
    return [text_tokens(gen, eot, opts) for gen in out]


__all__ = ["greedy_decode", "merged_decoder"]
