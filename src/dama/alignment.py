"""Word timings from Whisper's cross-attention: alignment heads + dynamic time warping.

What openai-whisper's ``add_word_timestamps`` (``whisper/timing.py``) and faster-whisper's
``word_timestamps=True`` do, on dama's own decoding path (adapters, new language tokens, batches of
windows):

1. the window's text tokens (timestamps removed) are fed, teacher-forced, after the prompt
   ``<|startoftranscript|> <|lang|> <|transcribe|> <|notimestamps|>`` and before ``<|endoftext|>``,
   in one decoder pass for the whole batch of windows;
2. the cross-attention of the model's *alignment heads* (``generation_config.alignment_heads``, the
   (layer, head) pairs OpenAI found to follow the audio; whisper-base has 8; a model without the list
   uses every head of the last half of the decoder layers, as openai-whisper does) is taken over the
   window's real frames only, softmaxed, standardised per frame over the tokens, median-filtered
   (width 7) along time and averaged over the heads;
3. dynamic time warping through ``-attention`` gives each token the encoder frame (20 ms) where the
   path reaches it; a word (tokens split at spaces, or at Unicode characters for languages written
   without spaces) starts at its first token's frame and ends at the next word's;
4. openai-whisper's clean-ups: punctuation merged into the neighbouring word, overlong words next to
   sentence ends or pauses cut to twice the median word duration (at most 0.7 s), segment edges moved
   to the first word's start and the last word's end unless that word is implausibly long.

The word's probability is the mean probability of its tokens in the same teacher-forced pass.
The cross-attention is computed from the attention modules' own projections (``q_proj``/``k_proj``, so
adapters on them count), captured by forward hooks, whatever attention implementation the model runs.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

FRAMES_PER_SECOND = 50  # encoder frames (20 ms each)
MEDFILT_WIDTH = 7
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
SENTENCE_END_MARKS = ".。!！?？"
# languages written without spaces between words: words are split at Unicode characters
UNICODE_SPLIT_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}


@dataclass
class WordTiming:
    word: str  # with its leading space, as the tokens decode
    tokens: list[int]
    start: float  # seconds from the start of the window (later: of the recording)
    end: float
    probability: float

    def to_json(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "word": self.word,
                "probability": round(self.probability, 4)}


def alignment_heads(model_config, generation_config) -> list[tuple[int, int]]:
    """(layer, head) pairs: the model's own list, else every head of the last half of the decoder layers."""
    heads = getattr(generation_config, "alignment_heads", None) or []
    layers, n_heads = model_config.decoder_layers, model_config.decoder_attention_heads
    out = [(int(h[0]), int(h[1])) for h in heads if 0 <= int(h[0]) < layers and 0 <= int(h[1]) < n_heads]
    if out:
        return out
    return [(layer, h) for layer in range(layers // 2, layers) for h in range(n_heads)]


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic time warping through ``cost`` (tokens x frames), openai-whisper's ``dtw_cpu`` (same steps and
    tie-breaking: diagonal, then up, then left), computed one anti-diagonal at a time. Returns the path
    as (token indices, frame indices)."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf, dtype=np.float64)
    trace = np.full((n + 1, m + 1), -1, dtype=np.int8)
    acc[0, 0] = 0.0
    x = cost.astype(np.float64)
    for d in range(2, n + m + 1):
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        c0, c1, c2 = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
        t = np.where((c0 < c1) & (c0 < c2), 0, np.where((c1 < c0) & (c1 < c2), 1, 2)).astype(np.int8)
        acc[i, j] = x[i - 1, j - 1] + np.choose(t, [c0, c1, c2])
        trace[i, j] = t
    trace[0, :] = 2
    trace[:, 0] = 1
    i, j = n, m
    path = []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        t = trace[i, j]
        if t == 0:
            i, j = i - 1, j - 1
        elif t == 1:
            i -= 1
        else:
            j -= 1
    arr = np.array(path[::-1]).T
    return arr[0], arr[1]


def median_filter(x: torch.Tensor, width: int = MEDFILT_WIDTH) -> torch.Tensor:
    """Median over a sliding window of ``width`` along the last axis (reflect padding), as openai-whisper."""
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    shape = x.shape
    y = F.pad(x.reshape(-1, 1, shape[-1]), (pad, pad), mode="reflect")
    return y.unfold(-1, width, 1).median(-1).values.reshape(shape)


def split_words(tokenizer, tokens: list[int], language: str | None) -> tuple[list[str], list[list[int]]]:
    """Text tokens -> words and each word's tokens: at Unicode characters (a token that ends inside a
    multi-byte character joins the next), then, unless the language is written without spaces, subwords
    joined into words at spaces and punctuation (openai-whisper's ``split_to_word_tokens``)."""
    full = tokenizer.decode(tokens)
    sub, sub_tokens, cur, offset = [], [], [], 0
    for t in tokens:
        cur.append(t)
        text = tokenizer.decode(cur)
        if "\ufffd" not in text or full[offset + text.index("\ufffd")] == "\ufffd":
            sub.append(text)
            sub_tokens.append(cur)
            cur = []
            offset += len(text)
    if cur:  # an incomplete character at the very end
        sub.append(tokenizer.decode(cur))
        sub_tokens.append(cur)
    if language in UNICODE_SPLIT_LANGUAGES:
        return sub, sub_tokens
    words: list[str] = []
    word_tokens: list[list[int]] = []
    for s, toks in zip(sub, sub_tokens):
        if not words or s.startswith(" ") or s.strip() in string.punctuation:
            words.append(s)
            word_tokens.append(list(toks))
        else:
            words[-1] += s
            word_tokens[-1].extend(toks)
    return words, word_tokens


def merge_punctuations(words: list[WordTiming], prepended: str = PREPEND_PUNCTUATIONS,
                       appended: str = APPEND_PUNCTUATIONS) -> None:
    """Opening punctuation joins the next word, closing punctuation the previous one (in place; the emptied
    entry keeps no tokens), as openai-whisper."""
    i, j = len(words) - 2, len(words) - 1
    while i >= 0:
        prev, nxt = words[i], words[j]
        if prev.word.startswith(" ") and prev.word.strip() in prepended:
            nxt.word, nxt.tokens = prev.word + nxt.word, prev.tokens + nxt.tokens
            prev.word, prev.tokens = "", []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(words):
        prev, nxt = words[i], words[j]
        if not prev.word.endswith(" ") and nxt.word in appended:
            prev.word, prev.tokens = prev.word + nxt.word, prev.tokens + nxt.tokens
            nxt.word, nxt.tokens = "", []
        else:
            i = j
        j += 1


def _decoder_parts(model):
    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    return m, m.model.decoder, m.proj_out


@torch.no_grad()
def cross_attention_qk(w, enc: torch.Tensor, ids: torch.Tensor, heads: list[tuple[int, int]]):
    """One teacher-forced decoder pass of ``ids`` (rows, tokens) over ``enc`` (rows, frames, d_model): the
    scaled query-key products of the cross-attention ``heads`` (rows, len(heads), tokens, frames; softmax over
    frames gives the attention weights) and the logits (rows, tokens, vocabulary)."""
    model, decoder, head = _decoder_parts(w.model)
    cfg = model.config
    layers = sorted({lyr for lyr, _ in heads})
    first = next(decoder.parameters())
    enc = enc.to(device=first.device, dtype=first.dtype)
    captured: dict[int, tuple] = {}
    handles = []
    for lyr in layers:
        def grab(module, args, kwargs, lyr=lyr):
            captured[lyr] = (kwargs.get("hidden_states", args[0] if args else None), kwargs.get("key_value_states"))

        handles.append(decoder.layers[lyr].encoder_attn.register_forward_pre_hook(grab, with_kwargs=True))
    try:
        hidden = decoder(input_ids=ids.to(first.device), encoder_hidden_states=enc, use_cache=False)[0]
    finally:
        for h in handles:
            h.remove()
    n_heads = cfg.decoder_attention_heads
    head_dim = cfg.d_model // n_heads
    qk = {}
    for lyr in layers:
        attn = decoder.layers[lyr].encoder_attn
        hs, kv = captured[lyr]
        q = (attn.q_proj(hs) * attn.scaling).view(*hs.shape[:2], n_heads, head_dim)
        k = attn.k_proj(enc if kv is None else kv).view(enc.shape[0], -1, n_heads, head_dim)
        sel = [h for lyr2, h in heads if lyr2 == lyr]
        got = torch.einsum("bthd,bshd->bhts", q[:, :, sel].float(), k[:, :, sel].float())
        for i, h in enumerate(sel):
            qk[(lyr, h)] = got[:, i]
    return torch.stack([qk[x] for x in heads], dim=1), head(hidden).float()


@torch.no_grad()
def align_words(w, encoder_hidden: torch.Tensor, texts: list[list[int]], n_frames: list[int],
                language: str | None, task: str = "transcribe") -> list[list[WordTiming]]:
    """Word timings (seconds from each window's start) of every row of ``encoder_hidden`` (rows, frames,
    d_model): ``texts[r]`` are the row's text tokens (no timestamps, no end of text), ``n_frames[r]`` its
    real encoder frames (the window's length at 50 per second; the rest is the 30 s padding)."""
    out: list[list[WordTiming]] = [[] for _ in texts]
    rows = [r for r, t in enumerate(texts) if t]
    if not rows:
        return out
    heads = alignment_heads(_decoder_parts(w.model)[0].config, w.generation_config)
    eot = w.generation_config.eos_token_id
    prompt = w.prompt_ids(language, task)  # ends with <|notimestamps|>
    p = len(prompt)
    longest = max(len(texts[r]) for r in rows)
    ids = torch.tensor([prompt + texts[r] + [eot] * (longest - len(texts[r]) + 1) for r in rows])
    qk, logits = cross_attention_qk(w, encoder_hidden[rows], ids, heads)
    for pos, r in enumerate(rows):
        n = len(texts[r])
        frames = max(1, min(int(n_frames[r]), qk.shape[-1]))
        weights = qk[pos, :, : p + n + 1, :frames].softmax(-1)  # prompt, text, end of text; real frames only
        std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
        weights = median_filter((weights - mean) / std.clamp(min=1e-8))
        matrix = weights.mean(0)[p - 1: p + n]  # the positions that predict each text token and the end
        text_idx, time_idx = dtw(-matrix.double().cpu().numpy())
        probs = logits[pos, p - 1: p - 1 + n, :eot].softmax(-1)
        token_p = probs[torch.arange(n), torch.tensor(texts[r])].tolist()
        words, word_tokens = split_words(w.tokenizer, texts[r], language)
        bounds = np.concatenate([[0], np.cumsum([len(t) for t in word_tokens])]).astype(int)
        jumps = np.concatenate([[True], np.diff(text_idx) != 0])
        jump_times = time_idx[jumps] / FRAMES_PER_SECOND
        out[r] = [WordTiming(word, toks, float(jump_times[s]), float(jump_times[e]), float(np.mean(token_p[s:e])))
                  for word, toks, s, e in zip(words, word_tokens, bounds[:-1], bounds[1:])]
    return out


def attach_words(segments: list, words: list[WordTiming], offset: float, last_speech: float = 0.0) -> float:
    """Give each of ``segments`` (a window's, in order, each with ``tokens``: its text tokens) its words
    (``words``: the window's alignment, times from the window start; ``offset``: the window's start in the
    recording) and move segment edges to the words, with openai-whisper's guards against implausibly long
    first/last words. Returns the end of the last segment with words (the next window's ``last_speech``)."""
    if not words:
        return last_speech
    durations = np.array([x.end - x.start for x in words])
    durations = durations[durations.nonzero()]
    median = min(0.7, float(np.median(durations))) if len(durations) else 0.0
    longest = median * 2
    if len(durations):  # overlong words next to a sentence end are cut
        for i in range(1, len(words)):
            if words[i].end - words[i].start > longest:
                if words[i].word in SENTENCE_END_MARKS:
                    words[i].end = words[i].start + longest
                elif words[i - 1].word in SENTENCE_END_MARKS:
                    words[i].start = words[i].end - longest
    merge_punctuations(words)
    k = 0
    for seg in segments:
        got: list[WordTiming] = []
        n_tok = 0
        while k < len(words) and n_tok < len(seg.tokens):
            x = words[k]
            if x.word:
                got.append(WordTiming(x.word, x.tokens, offset + x.start, offset + x.end, x.probability))
            n_tok += len(x.tokens)
            k += 1
        if got:
            first, last = got[0], got[-1]
            if first.end - last_speech > median * 4 and (
                    first.end - first.start > longest or (len(got) > 1 and got[1].end - first.start > longest * 2)):
                if len(got) > 1 and got[1].end - got[1].start > longest:
                    boundary = max(got[1].end / 2, got[1].end - longest)
                    first.end = got[1].start = boundary
                first.start = max(0.0, first.end - longest)
            if seg.start < first.end and seg.start - 0.5 > first.start:
                first.start = max(0.0, min(first.end - median, seg.start))
            else:
                seg.start = first.start
            if seg.end > last.start and seg.end + 0.5 < last.end:
                last.end = max(last.start + median, seg.end)
            else:
                seg.end = last.end
            last_speech = seg.end
        seg.words = got
    return last_speech


__all__ = ["WordTiming", "align_words", "alignment_heads", "attach_words", "cross_attention_qk", "dtw", "median_filter",
           "merge_punctuations", "split_words"]
