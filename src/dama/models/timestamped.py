"""Timestamp-mode decoding from encoder outputs, lean: what long-form transcription spends its time in.

:func:`dama.longform._decode_windows_generate` decodes a batch of 30 s windows with transformers'
``GenerationMixin.generate`` (Whisper's timestamp grammar, loop guard, scores for the fallback test).
This loop computes the same tokens with less work, as :mod:`dama.models.greedy` does for short clips:

* a finished row (end of text or a loop) leaves the batch at once, with its slice of the key/value
  cache, instead of being decoded as padding until the longest row ends. In timestamp mode this
  matters more than for short clips: a window of hallucinated text runs to the token budget (up to
  ~440 tokens) while the others end after ~150;
* the output projection runs on the last position only and the log-probability of the chosen token
  is read as it is chosen (``generate`` keeps every step's full score matrix to be stacked after);
* p(``<|nospeech|>``) comes from the prompt pass itself (the position of ``<|startoftranscript|>``;
  the decoder is causal, so it is the logit a separate one-token pass gives), not from a second pass;
* the caller passes the encoder output, so a window is encoded once however many temperatures it is
  decoded at.

The rules are ``generate``'s: Whisper's suppress list plus every id past the timestamps, then
transformers' own ``WhisperTimeStampLogitsProcessor`` (the very object ``generate`` is given, so the
timestamp grammar cannot drift), then the temperature (sampling) or argmax; the batch's token budget and
the text loop guard stop rows as ``generate``'s stopping criterion does. A row's logits do not depend on
the other rows, so greedy tokens are the same (float rounding aside, which
``tests/longform/test_timestamped.py`` and ``benchmarks/longform_speed.py`` check); sampled rows are
draws from the same distribution but not the same draws (the random stream is consumed per batch shape).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from dama.models.greedy import _unwrap, drop_rows
from dama.models.load import Whisper


@dataclass
class Decoded:
    """One window's decoding: generated ids up to (not including) the end of text, the mean
    log-probability of the chosen tokens (as ``generate``'s scores give it), p(no speech)."""

    tokens: list[int]
    logprob: float
    no_speech: float


@torch.no_grad()
def decode_timestamped(w: Whisper, encoder_hidden: torch.Tensor, prompt: list[int], budget: int,
                       suppress: torch.Tensor, timestamp_rules, loop_stop, temperature: float = 0.0,
                       no_speech_id: int | None = None, seed: int | None = None) -> list[Decoded]:
    """Decode every row of ``encoder_hidden`` (rows, frames, d_model) from ``prompt``.

    ``suppress``: bool mask over the vocabulary (applied every step); ``timestamp_rules``: a
    ``WhisperTimeStampLogitsProcessor`` with ``begin_index=len(prompt)``; ``loop_stop(generated ids)``:
    whether a row has become a loop; ``budget``: new tokens at most (every row); ``temperature`` 0:
    argmax, else sampling (``seed`` seeds torch's global generator first, as the generate path does).
    """
    model = _unwrap(w.model)
    decoder, head = model.model.decoder, model.proj_out
    eot = w.generation_config.eos_token_id
    first = next(decoder.parameters())
    device, dtype = first.device, first.dtype
    n = encoder_hidden.shape[0]
    p_len = len(prompt)
    enc = encoder_hidden.to(device=device, dtype=dtype)
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    seqs = [list(prompt) for _ in range(n)]
    logps: list[list[float]] = [[] for _ in range(n)]
    no_speech = [0.0] * n
    alive = list(range(n))
    step_ids = torch.tensor(seqs, device=device)
    sample = temperature > 0
    if sample and seed is not None:
        torch.manual_seed(seed)
    for step in range(budget):
        hidden = decoder(input_ids=step_ids, encoder_hidden_states=enc, cache=cache, use_cache=True)[0]
        if step == 0 and no_speech_id is not None:  # the distribution right after <|startoftranscript|>
            no_speech = head(hidden[:, 0]).float().softmax(-1)[:, no_speech_id].tolist()
        logits = head(hidden[:, -1]).float()
        scores = logits.masked_fill(suppress[: logits.shape[-1]], float("-inf"))
        scores = timestamp_rules(torch.tensor([seqs[r] for r in alive], device=device), scores)
        if sample:
            scores = scores / temperature
            nxt_t = torch.multinomial(scores.softmax(-1), num_samples=1).squeeze(1)
        else:
            nxt_t = scores.argmax(-1)
        chosen = scores.log_softmax(-1).gather(-1, nxt_t[:, None])[:, 0].tolist()
        nxt = nxt_t.tolist()
        keep = []
        for pos, (row, tok) in enumerate(zip(alive, nxt)):
            seqs[row].append(tok)
            logps[row].append(chosen[pos])
            if tok == eot or loop_stop(seqs[row][p_len:]):
                continue
            keep.append(pos)
        if not keep:
            break
        if len(keep) < len(alive):
            enc, alive, idx = drop_rows(cache, enc, alive, keep)
            nxt_t = nxt_t.index_select(0, idx)
        step_ids = nxt_t[:, None]
    out = []
    for row in range(n):
        gen = seqs[row][p_len:]
        k = gen.index(eot) if eot in gen else len(gen)
        lp = logps[row][: max(k, 1)]
        out.append(Decoded(gen[:k], float(torch.tensor(lp).clamp(min=-1e4).mean()) if lp else 0.0,
                           float(no_speech[row])))
    return out


__all__ = ["Decoded", "decode_timestamped"]
