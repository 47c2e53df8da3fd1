"""Greedy decoding from encoder outputs with CTranslate2: validation and test decoding, about 1.6x faster.

:func:`dama.models.greedy.greedy_decode` runs the decoder in PyTorch; on a CPU its time goes to
per-step framework work around small matrices (re-indexing the key/value caches as rows finish,
growing the self-attention cache by concatenation, dispatch of some 100 operators per token).
CTranslate2 runs the same float32 arithmetic with static caches and fused kernels, and its Whisper
``generate`` accepts encoder outputs directly, so the encoder cache is used as it is.

The model given to CTranslate2 is built in memory (no file is written) from the decoder copy that
:func:`dama.models.greedy.merged_decoder` makes, with every weight read *through the modules*
(``embed_tokens`` called on every id, ``proj_out`` on the identity), so PEFT wrappers such as
trainable new-token rows are honoured. A model CTranslate2 cannot represent exactly (an adapter
layer left unmerged, e.g. DoRA; an output projection that differs from the embeddings; a new
language token, whose id CTranslate2 takes for a timestamp and then echoes the prompt) is not
converted: :func:`ct2_decoder` returns None and the caller uses the PyTorch loop.

The rules are those of :func:`dama.models.transcribe.decode_features`: the same prompt, Whisper's
suppress lists, argmax. CTranslate2 has one length limit per call and no loop guard, so each row
is decoded to the batch's largest budget (or its end of text) and then cut exactly where the PyTorch
loop stops it: at its own budget or where :func:`dama.models.transcribe.find_tail_loop` first
fires. Greedy tokens do not depend on later ones, so the result is the same token for token; only
float rounding could differ, which ``benchmarks/eval_decode.py`` checks on real clips transcript by
transcript, and ``tests/models/test_ct2_greedy.py`` on random models.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import torch

from dama.models.load import Whisper


def ct2_available() -> bool:
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return False
    return True


@torch.no_grad()
def _effective_weights(w: Whisper, decoder: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """A plain ``WhisperForConditionalGeneration`` state dict of the decoding model, or None when a
    decoder layer is still an adapter layer (not merged) or the head is not the embedding matrix."""
    gc = w.generation_config
    if any(i > gc.no_timestamps_token_id for i in (gc.lang_to_id or {}).values()):
        return None  # a new language token sits where CTranslate2 expects timestamps (and it treats it so)
    if any(("lora_" in n or "base_layer" in n) and not n.startswith("embed_tokens.")
           for n, _ in decoder.named_parameters()):
        return None
    model = w.model.get_base_model() if hasattr(w.model, "get_base_model") else w.model
    cfg = model.config
    dev = next(decoder.parameters()).device
    embed = decoder.embed_tokens(torch.arange(cfg.vocab_size, device=dev)).float()
    head = model.proj_out(torch.eye(cfg.d_model, device=dev, dtype=embed.dtype)).T
    if head.shape != embed.shape or not torch.equal(head, embed):
        return None
    sd = {}
    for name, t in decoder.state_dict().items():
        if not name.startswith("embed_tokens."):
            sd[f"model.decoder.{name}"] = t
    sd["model.decoder.embed_tokens.weight"] = embed
    # The encoder does not run (encoder outputs are given) but the format needs its variables.
    for name, t in model.model.encoder.state_dict().items():
        if "lora_" in name:
            continue
        sd[f"model.encoder.{name.replace('.base_layer', '')}"] = t
    return sd


@dataclass
class Ct2Greedy:
    """A CTranslate2 Whisper holding a decoding model's weights, and its vocabulary size."""

    model: object
    vocab_size: int
    max_positions: int
    rows_per_call: int = 16

    @torch.no_grad()
    def decode(self, w: Whisper, encoder_hidden: torch.Tensor, prompts: list[list[int]], budgets: list[int],
               opts) -> list[list[int]]:
        """Text token ids per row, as :func:`dama.models.greedy.greedy_decode` returns them."""
        import ctranslate2

        from dama.models.transcribe import find_tail_loop, text_tokens

        gc = w.generation_config
        eot = gc.eos_token_id
        p_len = len(prompts[0])
        max_new = min(max(budgets), self.max_positions - p_len)
        enc = np.ascontiguousarray(encoder_hidden.detach().to("cpu", torch.float32).numpy())
        suppress = [t for t in (gc.suppress_tokens or []) if t < self.vocab_size] if opts.suppress else []
        # CTranslate2 4.x's Whisper makes at most max_length // 2 new tokens (measured; the tests pin it), and
        # more than max_new would need positions the model does not have.
        res = self.model.generate(ctranslate2.StorageView.from_array(enc), prompts, beam_size=1,
                                  max_length=2 * max_new + 1, suppress_blank=bool(opts.suppress),
                                  suppress_tokens=suppress, return_scores=False)
        out = []
        for r, budget in zip(res, budgets):
            budget = min(budget, max_new)
            gen: list[int] = []
            for tok in [*r.sequences_ids[0], eot]:  # CTranslate2 leaves the end of text out
                gen.append(tok)
                if tok == eot or len(gen) >= budget or \
                        find_tail_loop(gen, opts.loop_repeats, opts.loop_max_ngram) is not None:
                    break
            out.append(text_tokens(gen, eot, opts))
        return out


def ct2_decoder(w: Whisper, decoder: torch.nn.Module, threads: int | None = None) -> Ct2Greedy | None:
    """CTranslate2 greedy decoding of ``w`` with ``decoder`` (:func:`dama.models.greedy.merged_decoder`'s
    copy), or None when ctranslate2 is not installed or the model cannot be represented exactly."""
    first = next(decoder.parameters())
    if not ct2_available() or first.device.type != "cpu" or first.dtype != torch.float32:
        return None  # (GPU decoding and lower precisions stay with PyTorch, whose rounding they follow)
    import ctranslate2

    from dama.models.ct2 import hf_to_ct2, write_ct2

    sd = _effective_weights(w, decoder)
    if sd is None:
        return None
    model = w.model.get_base_model() if hasattr(w.model, "get_base_model") else w.model
    cfg = model.config
    buf = io.BytesIO()
    write_ct2(buf, hf_to_ct2(sd, cfg, dtype="float32"))
    tok = w.tokenizer
    names = tok.convert_ids_to_tokens(list(range(min(len(tok), cfg.vocab_size))))
    names += [f"<|dama_unused_{i}|>" for i in range(len(names), cfg.vocab_size)]
    gc = w.generation_config
    config = {"alignment_heads": [], "lang_ids": sorted((gc.lang_to_id or {}).values()),
              "suppress_ids": list(gc.suppress_tokens or []),
              "suppress_ids_begin": list(gc.begin_suppress_tokens or [])}
    files = {"model.bin": buf.getvalue(), "vocabulary.json": json.dumps(names, ensure_ascii=False).encode(),
             "config.json": json.dumps(config).encode()}
    ct = ctranslate2.models.Whisper("dama-decoding", device="cpu", compute_type="float32",
                                    intra_threads=threads or torch.get_num_threads(), files=files)
    return Ct2Greedy(ct, cfg.vocab_size, cfg.max_target_positions, rows_per_call(cfg))


# Memory CTranslate2 may hold for one call's cross-attention keys/values (float32), which set how many
# rows a call decodes: see rows_per_call.
CT2_KV_BUDGET_BYTES = 1.5 * 2**30


def rows_per_call(cfg, budget_bytes: float = CT2_KV_BUDGET_BYTES, cap: int = 64) -> int:
    """How many rows one CTranslate2 call should decode: as many as the cross-attention keys/values of
    ``budget_bytes`` hold, at most ``cap``.

    Why more than the decode batch: every greedy step reads the whole decoder and its 51,865-way output
    projection (about 190 MB in float32 on whisper-base) whatever the number of rows, so few rows per step
    leave the step bound by that read. Measured on 48 Swahili test clips (idle, 2 threads,
    ``benchmarks/results/eval_decode_b48_cpu.json``): 16 rows per call took 20.2 s, 48 rows 14.8 s, for
    the same tokens. Each row costs its keys/values, 2 x layers x 1500 frames x d_model floats (37 MB on
    whisper-base, 491 MB on large-v3), so the budget keeps large models at a handful of rows."""
    per_row = 2 * cfg.decoder_layers * cfg.max_source_positions * cfg.d_model * 4
    return max(1, min(cap, int(budget_bytes // per_row)))


__all__ = ["Ct2Greedy", "ct2_available", "ct2_decoder", "rows_per_call"]
