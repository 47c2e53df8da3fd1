"""Batched Whisper decoding with a forced language/task prompt and a guard against loops.

We call the generic ``GenerationMixin.generate`` (not Whisper's override, which may
run language detection, long-form seeking and timestamp logic we do not want) with
encoder outputs we computed ourselves. That gives one code path for plain models,
PEFT-adapted ones and (later) cached encoder outputs, and a prompt we control fully —
including language tokens Whisper never had.

Repetition guard: whisper-base loops on unfamiliar languages ("'ja' 'ja' 'ja' ...").
Each row stops as soon as its tail is an n-gram repeated ``loop_repeats`` times, and
the loop is trimmed to one copy; each row also gets a token budget proportional to its
audio length. Clips longer than Whisper's 30 s window (``CHUNK_SECONDS``) are cut at the
quietest point before each window's end and the pieces' transcripts joined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import GenerationConfig, GenerationMixin
from transformers.generation import (
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
)
from transformers.utils import logging as hf_logging

from dama.data.audio import CHUNK_SECONDS, SAMPLE_RATE
from dama.models.load import Whisper


@dataclass
class DecodeOptions:
    """How to decode. Defaults: greedy, loop guard on, ~tokens_per_second budget."""

    language: str | None = None
    task: str = "transcribe"
    num_beams: int = 1
    batch_size: int = 8
    tokens_per_second: float = 15.0  # budget; real speech here peaks near 10 tokens/s
    min_tokens: int = 16
    loop_repeats: int = 4  # stop when the tail n-gram repeats this many times
    loop_max_ngram: int = 16
    suppress: bool = True  # Whisper's usual suppress lists


def find_tail_loop(tokens: Sequence[int], repeats: int, max_ngram: int, min_span: int = 8) -> int | None:
    """If ``tokens`` ends in an n-gram repeated at least ``repeats`` times and over at
    least ``min_span`` tokens (so "ha ha ha" is not a loop), return the length to keep
    (through the first copy of the loop); else None."""
    n_tok = len(tokens)
    for n in range(1, max_ngram + 1):
        need = max(repeats, -(-min_span // n))
        if n * need > n_tok:
            continue
        tail = list(tokens[n_tok - n:])
        if all(list(tokens[n_tok - (k + 1) * n: n_tok - k * n]) == tail for k in range(1, need)):
            start = n_tok - n * need  # walk back while the loop continues, to keep only its first copy
            while start - n >= 0 and list(tokens[start - n: start]) == tail:
                start -= n
            return start + n
    return None


class _LoopAndBudgetGuard(StoppingCriteria):
    """Per-row stop: token budget reached, or the tail has become a loop."""

    def __init__(self, prompt_len: int, budgets: list[int], opts: DecodeOptions):
        self.prompt_len = prompt_len
        self.budgets = torch.tensor(budgets)
        self.opts = opts

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        n_new = input_ids.shape[1] - self.prompt_len
        rows = input_ids.shape[0]
        beams = rows // len(self.budgets)
        done = torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
        gen = input_ids[:, self.prompt_len:].tolist()
        for i in range(rows):
            if n_new >= int(self.budgets[i // beams]):
                done[i] = True
            elif find_tail_loop(gen[i], self.opts.loop_repeats, self.opts.loop_max_ngram) is not None:
                done[i] = True
        return done


def split_long(audio: np.ndarray, max_seconds: float = CHUNK_SECONDS, search_seconds: float = 5.0) -> list[np.ndarray]:
    """Cut audio longer than ``max_seconds`` at the quietest 100 ms within the last
    ``search_seconds`` before each limit, so words are rarely split."""
    limit = int(max_seconds * SAMPLE_RATE)
    if len(audio) <= limit:
        return [audio]
    out, start = [], 0
    win = SAMPLE_RATE // 10
    while len(audio) - start > limit:
        lo = start + limit - int(search_seconds * SAMPLE_RATE)
        seg = audio[lo: start + limit]
        frames = len(seg) // win
        energy = (seg[: frames * win].reshape(frames, win) ** 2).mean(axis=1)
        cut = lo + int(np.argmin(energy)) * win + win // 2
        out.append(audio[start:cut])
        start = cut
    out.append(audio[start:])
    return out


def _generation_config(w: Whisper, opts: DecodeOptions, max_new_tokens: int) -> GenerationConfig:
    gc = w.generation_config
    return GenerationConfig(
        decoder_start_token_id=gc.decoder_start_token_id,
        eos_token_id=gc.eos_token_id,
        pad_token_id=gc.pad_token_id,
        bos_token_id=gc.bos_token_id,
        num_beams=opts.num_beams,
        do_sample=False,
        max_new_tokens=max_new_tokens,
        # Empty, not None: None would inherit the model's lists. Our own processors
        # (begin index = our prompt length) are the only suppression applied.
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )


@torch.no_grad()
def decode_features(w: Whisper, features: torch.Tensor, prompts: list[list[int]], budgets: list[int],
                    opts: DecodeOptions, encoder_outputs=None) -> list[list[int]]:
    """Decode a batch of log-Mel ``features`` (B, n_mels, 3000) or precomputed encoder outputs.

    Returns the generated text token ids per row (prompt and special tokens removed,
    loops trimmed).
    """
    model = w.model
    if encoder_outputs is None:
        encoder_outputs = model.get_encoder()(features.to(w.device, dtype=model.dtype))
    prompt = torch.tensor(prompts, device=w.device)
    p_len = prompt.shape[1]
    max_new = min(max(budgets), model.config.max_target_positions - p_len)
    processors = LogitsProcessorList()
    gc = w.generation_config
    if opts.suppress and gc.suppress_tokens:
        processors.append(SuppressTokensLogitsProcessor(gc.suppress_tokens, device=w.device))
    if opts.suppress and gc.begin_suppress_tokens:
        processors.append(SuppressTokensAtBeginLogitsProcessor(gc.begin_suppress_tokens, p_len, device=w.device))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # silence notes about the defaults we override on purpose
    try:
        out = GenerationMixin.generate(
            model,
            encoder_outputs=encoder_outputs,
            decoder_input_ids=prompt,
            generation_config=_generation_config(w, opts, max_new),
            logits_processor=processors,
            stopping_criteria=StoppingCriteriaList([_LoopAndBudgetGuard(p_len, budgets, opts)]),
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    return [text_tokens(row, gc.eos_token_id, opts) for row in out[:, p_len:].tolist()]


def text_tokens(generated: Sequence[int], eot: int, opts: DecodeOptions) -> list[int]:
    """A row's generated ids as text tokens: up to <|endoftext|>, specials and timestamps (all ids >= it)
    dropped, a loop at the tail trimmed to one copy."""
    toks = []
    for t in generated:
        if t == eot:
            break
        if t < eot:
            toks.append(t)
    keep = find_tail_loop(toks, opts.loop_repeats, opts.loop_max_ngram)
    return toks[:keep] if keep is not None else toks


def token_budget(seconds: float, opts: DecodeOptions) -> int:
    return max(opts.min_tokens, math.ceil(seconds * opts.tokens_per_second))


def transcribe(w: Whisper, audios: Sequence[np.ndarray], language: str | Sequence[str] | None = None,
               opts: DecodeOptions | None = None, progress=None) -> list[str]:
    """Transcribe 16 kHz mono float32 arrays; ``language`` is one code or one per clip.

    ``progress`` is called with the number of clips finished after each batch.
    """
    opts = opts or DecodeOptions()
    langs = [language] * len(audios) if language is None or isinstance(language, str) else list(language)
    if len(langs) != len(audios):
        raise ValueError(f"{len(langs)} languages for {len(audios)} clips")
    pieces: list[tuple[int, int, np.ndarray]] = []  # (clip index, piece index, samples)
    for i, a in enumerate(audios):
        for j, piece in enumerate(split_long(a)):
            pieces.append((i, j, piece))
    order = sorted(range(len(pieces)), key=lambda k: -len(pieces[k][2]))
    texts: dict[tuple[int, int], list[int]] = {}
    n_pieces = [0] * len(audios)
    for i, _, _ in pieces:
        n_pieces[i] += 1
    finished = [0] * len(audios)
    for b in range(0, len(order), opts.batch_size):
        batch = [pieces[k] for k in order[b: b + opts.batch_size]]
        feats = w.feature_extractor([p[2] for p in batch], sampling_rate=SAMPLE_RATE, return_tensors="pt")
        feats = feats.input_features
        prompts = [w.prompt_ids(langs[i] or opts.language, opts.task) for i, _, _ in batch]
        budgets = [token_budget(len(p[2]) / SAMPLE_RATE, opts) for p in batch]
        for (i, j, _), toks in zip(batch, decode_features(w, feats, prompts, budgets, opts)):
            texts[(i, j)] = toks
            finished[i] += 1
        if progress is not None:
            progress(len({i for i, _, _ in batch if finished[i] == n_pieces[i]}))
    out = []
    for i in range(len(audios)):
        parts = [w.tokenizer.decode(texts[(i, j)], skip_special_tokens=True).strip() for j in range(n_pieces[i])]
        out.append(" ".join(p for p in parts if p))
    return out
