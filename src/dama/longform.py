"""Long-form, timestamped transcription: any length of audio in, segments with times out.

One entry point, :func:`transcribe_long` (``model, audio, options -> segments``), used by
``dama transcribe``, ``dama eval`` and anything that serves transcripts. Two strategies:

* ``vad`` (default): Silero VAD finds speech; consecutive speech regions are packed into windows
  of at most 30 s (contiguous slices of the audio, so times map back by an offset); the windows are
  decoded in batches in Whisper's timestamp mode (prompt without ``<|notimestamps|>``, Whisper's
  timestamp grammar enforced by transformers' ``WhisperTimeStampLogitsProcessor``) with dama's own
  prompt, so adapters and new language tokens work as in short-form decoding. Silence and noise
  that the VAD rejects are never decoded.
* ``sequential``: transformers' own long-form ``generate`` (OpenAI's sequential 30 s windows
  driven by the last timestamp, temperature fallback, compression-ratio / log-prob / no-speech
  thresholds), for comparison; it decodes every window, speech or not.

The VAD is the Silero VAD v6 ONNX model that faster-whisper ships (``faster_whisper.vad``): it is
maintained upstream, needs only onnxruntime (no second torch model, no network), and is the very
VAD the deployed path (faster-whisper's ``vad_filter=True``) uses, so both runtimes cut the audio
the same way.

Guards, per window: the loop guard of short-form decoding on the text tokens (a row stops when its
tail n-gram repeats ``loop_repeats`` times; the loop is trimmed); temperature fallback (greedy
first; a window whose text compresses more than ``compression_ratio_threshold`` with zlib, or
whose mean log-probability is below ``logprob_threshold``, is decoded again with sampling at the
next temperature); and Whisper's no-speech rule (window dropped when p(``<|nospeech|>``) exceeds
``no_speech_threshold`` and the log-probability is low).

Segment times (``timing``, default ``words-vad``): Whisper's timestamp tokens place segments only
coarsely (they tend to start a segment at the window's start or in the silence before the speech). With
``words``, every window's text is aligned to its audio by the cross-attention of the model's alignment
heads and dynamic time warping (:mod:`dama.alignment`, what openai-whisper's and faster-whisper's
``word_timestamps`` do): each segment gets its words (start, end, word, probability) and its edges at its
first and last word. ``words-vad`` then splits segments at pauses of at least ``split_pause_s`` (1 s) found
by a second, fine Silero VAD pass (300 ms minimum silence, no padding) or between words, and snaps every
segment edge to the speech edges of that pass (:func:`refine_times`). ``vad`` snaps the token times
without words; ``tokens`` keeps them as decoded. faster-whisper gets the same: its own
``word_timestamps=True``, then the same refinement.

Memory: the decoded waveform plus one batch of windows' features; nothing grows with the length.

The deployed runtime is :func:`transcribe_long_ct2` (faster-whisper on a ``dama export --format
ct2`` folder) with the same options and the same segments out.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from dama.data.audio import CHUNK_SECONDS, SAMPLE_RATE
from dama.errors import DamaError, ModelError
from dama.models.load import Whisper
from dama.models.transcribe import find_tail_loop

STRATEGIES = ("vad", "sequential")
TIMINGS = ("tokens", "vad", "words", "words-vad")
TIME_PRECISION = 0.02  # seconds per timestamp token
N_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|>


@dataclass
class LongformOptions:
    """How to transcribe a long recording (defaults: Whisper's and faster-whisper's own)."""

    language: str | None = None
    task: str = "transcribe"
    strategy: str = "vad"
    batch_size: int = 8  # windows decoded at once (vad strategy)
    num_beams: int = 1
    max_window_s: float = CHUNK_SECONDS
    # Silero VAD (faster-whisper's VadOptions defaults, but windows of at most max_window_s)
    vad_threshold: float = 0.5
    min_silence_ms: int = 2000
    speech_pad_ms: int = 400
    # Whisper's guards
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float = 2.4
    logprob_threshold: float = -1.0
    no_speech_threshold: float = 0.6
    loop_repeats: int = 4
    loop_max_ngram: int = 16
    tokens_per_second: float = 15.0  # text budget per window; timestamps come on top
    # a window that fails at every temperature keeps: "last" (OpenAI's transcribe: the last, most random
    # decoding) or "best" (faster-whisper: the highest mean log-probability among the attempts that pass the
    # compression test, else among all)
    fallback_pick: str = "last"
    # the lean decoding loop (dama.models.timestamped); False: transformers' generate, the reference
    lean: bool = True
    # segment times (module doc): tokens = Whisper's timestamp tokens; vad = those edges snapped to a fine
    # second VAD pass; words = word timings (cross-attention alignment heads + DTW), segment edges at the
    # words, split at word gaps >= split_pause_s; words-vad = words, split at fine-VAD pauses >= split_pause_s,
    # edges snapped to the fine VAD
    timing: str = "words-vad"
    fine_min_silence_ms: int = 300  # the fine VAD pass: Silero at vad_threshold, no speech padding
    fine_speech_pad_ms: int = 0
    split_pause_s: float = 1.0
    snap_max_s: float = 1.0  # a segment edge is moved outwards to the speech edge by at most this much

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise DamaError(f"unknown long-form strategy {self.strategy!r}; choose from {', '.join(STRATEGIES)}")
        if self.fallback_pick not in ("last", "best"):
            raise DamaError(f"fallback_pick must be 'last' or 'best', got {self.fallback_pick!r}")
        if self.timing not in TIMINGS:
            raise DamaError(f"unknown timing {self.timing!r}; choose from {', '.join(TIMINGS)}")
        if not 0 < self.max_window_s <= CHUNK_SECONDS:
            raise DamaError(f"max_window_s must be in (0, {CHUNK_SECONDS:.0f}], got {self.max_window_s}")
        self.temperatures = tuple(self.temperatures) or (0.0,)


@dataclass
class Segment:
    start: float  # seconds from the start of the recording
    end: float
    text: str
    words: list | None = None  # WordTiming (dama.alignment) when word timings were asked for
    tokens: list[int] = field(default_factory=list, repr=False, compare=False)  # text tokens (dama's path)
    decoded: tuple[float, float] | None = field(default=None, repr=False, compare=False)  # the timestamp
    # tokens' (start, end), kept when word timings move the edges (dama's path), to compare the two

    def to_json(self) -> dict:
        out = {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text}
        if self.words is not None:
            out["words"] = [x.to_json() for x in self.words]
        return out


@dataclass
class Window:
    """A contiguous slice of the recording decoded at once (samples)."""

    start: int
    end: int
    tokens: list[int] = field(default_factory=list)


def speech_regions(audio: np.ndarray, opts: LongformOptions) -> list[tuple[int, int]]:
    """Silero VAD speech regions (sample offsets), each at most ``max_window_s`` long."""
    try:
        from faster_whisper.vad import VadOptions, get_speech_timestamps
    except ImportError:
        raise DamaError("long-form transcription (audio over 30 s, --format) needs faster-whisper, which ships the "
                        "Silero VAD model: pip install 'dama[longform]'") from None
    vo = VadOptions(threshold=opts.vad_threshold, min_silence_duration_ms=opts.min_silence_ms,
                    speech_pad_ms=opts.speech_pad_ms, max_speech_duration_s=opts.max_window_s - 0.5)
    return [(int(r["start"]), int(r["end"])) for r in get_speech_timestamps(audio, vo)]


def pack_windows(regions: list[tuple[int, int]], max_seconds: float) -> list[Window]:
    """Consecutive speech regions joined into windows of at most ``max_seconds`` (the silence between
    them included, so a window is one slice of the audio)."""
    limit = int(max_seconds * SAMPLE_RATE)
    out: list[Window] = []
    for s, e in regions:
        if out and e - out[-1].start <= limit:
            out[-1].end = e
        else:
            out.append(Window(s, min(e, s + limit)))
    return out


def compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def segments_from_tokens(tokens: list[int], timestamp_begin: int, offset: float, duration: float,
                         decode) -> list[Segment]:
    """Whisper's ``<|t0|> text <|t1|><|t1|> text <|t2|>`` -> segments (times plus ``offset``). Text after the
    last timestamp runs to the end of the window (``duration``); no time lies past it."""
    out: list[Segment] = []
    start: float | None = None
    text: list[int] = []
    for t in tokens:
        if timestamp_begin <= t < timestamp_begin + N_TIMESTAMPS:
            time = min((t - timestamp_begin) * TIME_PRECISION, duration)  # a window's times end with the window
            if text:  # closes a segment; the next one starts here unless a timestamp follows
                s = start if start is not None else 0.0
                out.append(Segment(offset + s, offset + max(time, s), decode(text), tokens=text))
                text = []
            start = time
        elif t < timestamp_begin:
            text.append(t)
    if text:
        s = start if start is not None else 0.0
        out.append(Segment(offset + s, offset + max(duration, s), decode(text), tokens=text))
    return [s for s in out if s.text.strip()]


class _TextLoopGuard:
    """Stop a row when the text tokens (timestamps ignored) end in a loop, or at its token budget."""

    def __init__(self, prompt_len: int, budget: int, eot: int, opts: LongformOptions):
        self.prompt_len, self.budget, self.eot, self.opts = prompt_len, budget, eot, opts

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if input_ids.shape[1] - self.prompt_len >= self.budget:
            return done | True
        for i, row in enumerate(input_ids[:, self.prompt_len:].tolist()):
            text = [t for t in row if t < self.eot]
            if find_tail_loop(text, self.opts.loop_repeats, self.opts.loop_max_ngram) is not None:
                done[i] = True
        return done


def _timestamp_prompt(w: Whisper, language: str | None, task: str) -> list[int]:
    ids = w.prompt_ids(language, task)
    assert ids[-1] == w.generation_config.no_timestamps_token_id
    return ids[:-1]


def _no_speech_id(w: Whisper) -> int | None:
    for tok in ("<|nospeech|>", "<|nocaptions|>"):
        tid = w.tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != w.tokenizer.unk_token_id:
            return tid
    return None


def _encode_windows(w: Whisper, audio: np.ndarray, windows: list[Window]) -> torch.Tensor:
    """Encoder output (rows, frames, d_model) of ``windows``: computed once per batch, reused at every
    temperature of the fallback."""
    model = w.model
    feats = w.feature_extractor([audio[x.start:x.end] for x in windows], sampling_rate=SAMPLE_RATE,
                                return_tensors="pt").input_features.to(w.device, dtype=model.dtype)
    with torch.no_grad():
        return model.get_encoder()(feats).last_hidden_state


def _decode_setup(w: Whisper, windows: list[Window], opts: LongformOptions):
    """Prompt, token budget (from the longest window), suppress ids and the timestamp grammar of one decode
    call: the same for both decoders."""
    from transformers.generation import WhisperTimeStampLogitsProcessor

    model, gc = w.model, w.generation_config
    if model.config.vocab_size < gc.no_timestamps_token_id + 1 + N_TIMESTAMPS:
        raise ModelError(f"{w.name} has no timestamp tokens (<|0.00|> ... <|30.00|>); long-form transcription "
                         "needs a Whisper model with them")
    prompt = _timestamp_prompt(w, opts.language, opts.task)
    ts_begin = gc.no_timestamps_token_id + 1
    longest = max(x.end - x.start for x in windows) / SAMPLE_RATE
    budget = min(model.config.max_target_positions - len(prompt),
                 math.ceil(longest * opts.tokens_per_second * 1.3) + 16)
    suppress = list(gc.suppress_tokens or [])
    suppress += list(range(ts_begin + N_TIMESTAMPS, model.config.vocab_size))  # added language tokens
    return prompt, budget, suppress, WhisperTimeStampLogitsProcessor(gc, begin_index=len(prompt))


@torch.no_grad()
def _decode_windows(w: Whisper, enc: torch.Tensor, windows: list[Window], opts: LongformOptions,
                    temperature: float) -> list[tuple[list[int], float, float]]:
    """Decode ``windows`` (encoder output ``enc``) as one batch in timestamp mode: (tokens, mean log-prob,
    p(no speech)) each. Greedy and sampling run :func:`dama.models.timestamped.decode_timestamped` (the lean
    loop); beam search, or ``lean=False``, transformers' ``generate`` (:func:`_decode_windows_generate`)."""
    if opts.num_beams > 1 or not opts.lean:
        return _decode_windows_generate(w, enc, windows, opts, temperature)
    from dama.models.timestamped import decode_timestamped

    prompt, budget, suppress, rules = _decode_setup(w, windows, opts)
    mask = torch.zeros(w.model.config.vocab_size, dtype=torch.bool, device=w.device)
    mask[suppress] = True
    eot = w.generation_config.eos_token_id

    def loop_stop(gen: list[int]) -> bool:
        return find_tail_loop([t for t in gen if t < eot], opts.loop_repeats, opts.loop_max_ngram) is not None

    got = decode_timestamped(w, enc, prompt, budget, mask, rules, loop_stop, temperature, _no_speech_id(w),
                             seed=int(temperature * 1000) if temperature > 0 else None)
    return [(d.tokens, d.logprob, d.no_speech) for d in got]


@torch.no_grad()
def _decode_windows_generate(w: Whisper, enc: torch.Tensor, windows: list[Window], opts: LongformOptions,
                             temperature: float) -> list[tuple[list[int], float, float]]:
    """The reference decoder: transformers' ``generate`` with the same prompt, rules, budget and guard (the
    lean loop is checked against it; it also does beam search)."""
    from transformers import GenerationConfig, GenerationMixin
    from transformers.generation import LogitsProcessorList, StoppingCriteriaList, SuppressTokensLogitsProcessor
    from transformers.modeling_outputs import BaseModelOutput
    from transformers.utils import logging as hf_logging

    model, gc = w.model, w.generation_config
    prompt, budget, suppress, rules = _decode_setup(w, windows, opts)
    p_len = len(prompt)
    enc = BaseModelOutput(last_hidden_state=enc)
    ids = torch.tensor([prompt] * len(windows), device=w.device)
    # p(no speech) is read where Whisper reads it: the distribution right after <|startoftranscript|>
    no_speech = [0.0] * len(windows)
    ns_id = _no_speech_id(w)
    if ns_id is not None:
        first = model(encoder_outputs=enc, decoder_input_ids=ids[:, :1]).logits[:, 0].float().softmax(-1)
        no_speech = first[:, ns_id].tolist()
    processors = LogitsProcessorList([SuppressTokensLogitsProcessor(suppress, device=w.device), rules])
    sample = temperature > 0
    cfg = GenerationConfig(
        decoder_start_token_id=gc.decoder_start_token_id, eos_token_id=gc.eos_token_id,
        pad_token_id=gc.pad_token_id, bos_token_id=gc.bos_token_id,
        num_beams=1 if sample else opts.num_beams, do_sample=sample, temperature=temperature if sample else None,
        top_k=0 if sample else None, max_new_tokens=budget, suppress_tokens=[], begin_suppress_tokens=[],
        output_scores=True, return_dict_in_generate=True,
    )
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        if sample:
            torch.manual_seed(int(temperature * 1000))
        out = GenerationMixin.generate(
            model, encoder_outputs=enc, decoder_input_ids=ids, generation_config=cfg, logits_processor=processors,
            stopping_criteria=StoppingCriteriaList([_TextLoopGuard(p_len, budget, gc.eos_token_id, opts)]))
    finally:
        hf_logging.set_verbosity(verbosity)
    seqs = out.sequences[:, p_len:]
    if out.scores and opts.num_beams == 1 or sample:
        logp = torch.stack([s.float().log_softmax(-1) for s in out.scores], dim=1)  # (B, steps, V)
        chosen = logp.gather(-1, seqs[:, : logp.shape[1], None])[..., 0]
    else:
        chosen = None
    result = []
    eot = gc.eos_token_id
    for i, row in enumerate(seqs.tolist()):
        n = row.index(eot) if eot in row else len(row)
        toks = row[:n]
        lp = float(chosen[i, : max(n, 1)].clamp(min=-1e4).mean()) if chosen is not None else 0.0
        result.append((toks, lp, float(no_speech[i])))
    return result


def _trim_text_loop(tokens: list[int], eot: int, opts: LongformOptions) -> list[int]:
    text_pos = [k for k, t in enumerate(tokens) if t < eot]
    keep = find_tail_loop([tokens[k] for k in text_pos], opts.loop_repeats, opts.loop_max_ngram)
    if keep is None or keep >= len(text_pos):
        return tokens
    return tokens[: text_pos[keep]]


def _transcribe_vad(w: Whisper, audio: np.ndarray, opts: LongformOptions) -> list[Segment]:
    windows = pack_windows(speech_regions(audio, opts), opts.max_window_s)
    eot = w.generation_config.eos_token_id
    ts_begin = w.generation_config.no_timestamps_token_id + 1

    def text_of(toks: list[int]) -> str:
        return w.tokenizer.decode([t for t in toks if t < eot], skip_special_tokens=True).strip()

    segments: list[Segment] = []
    last_speech = 0.0  # end of the last segment with words (openai-whisper's guard on a first word's length)
    for b in range(0, len(windows), opts.batch_size):
        batch = windows[b: b + opts.batch_size]
        enc = _encode_windows(w, audio, batch)
        pending = list(range(len(batch)))
        attempts: list[list[tuple[list[int], float, float]]] = [[] for _ in batch]  # (tokens, log-prob, ratio)
        for temp in opts.temperatures:
            rows = enc if len(pending) == len(batch) else enc[pending]
            got = _decode_windows(w, rows, [batch[i] for i in pending], opts, temp)
            retry = []
            for i, (toks, logprob, p_ns) in zip(pending, got):
                toks = _trim_text_loop(toks, eot, opts)
                batch[i].tokens = toks
                if p_ns > opts.no_speech_threshold and logprob < opts.logprob_threshold:
                    batch[i].tokens = []  # Whisper's no-speech rule: nothing said here
                    continue
                ratio = compression_ratio(text_of(toks))
                attempts[i].append((toks, logprob, ratio))
                bad = ratio > opts.compression_ratio_threshold or logprob < opts.logprob_threshold
                if bad and temp != opts.temperatures[-1]:
                    retry.append(i)
                elif bad and opts.fallback_pick == "best":  # every temperature failed: faster-whisper's choice
                    ok = [a for a in attempts[i] if a[2] <= opts.compression_ratio_threshold] or attempts[i]
                    batch[i].tokens = max(ok, key=lambda a: a[1])[0]
            pending = retry
            if not pending:
                break
        window_segs = []
        for x in batch:
            segs = segments_from_tokens(x.tokens, ts_begin, x.start / SAMPLE_RATE, (x.end - x.start) / SAMPLE_RATE,
                                        lambda t: w.tokenizer.decode(t, skip_special_tokens=True).strip())
            for seg in segs:
                seg.tokens = [t for t in seg.tokens if t < eot]
                seg.decoded = (seg.start, seg.end)
            window_segs.append(segs)
        if opts.timing in ("words", "words-vad"):  # one teacher-forced decoder pass for the batch
            from dama.alignment import align_words, attach_words

            texts = [[t for seg in segs for t in seg.tokens] for segs in window_segs]
            frames = [(x.end - x.start) // (SAMPLE_RATE // 50) for x in batch]
            aligned = align_words(w, enc, texts, frames, opts.language, opts.task)
            for x, segs, words in zip(batch, window_segs, aligned):
                last_speech = attach_words(segs, words, x.start / SAMPLE_RATE, last_speech)
        for segs in window_segs:
            segments += segs
    return segments


@torch.no_grad()
def _transcribe_sequential(w: Whisper, audio: np.ndarray, opts: LongformOptions) -> list[Segment]:
    """transformers' long-form generate (sequential windows moved by the last timestamp)."""
    from transformers.utils import logging as hf_logging

    gc = w.generation_config
    lang = f"<|{opts.language}|>" if opts.language else None
    if len(audio) <= CHUNK_SECONDS * SAMPLE_RATE:
        inputs = w.feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt")
    else:
        inputs = w.feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt", truncation=False,
                                     padding="longest", return_attention_mask=True)
    kw = {"attention_mask": inputs.attention_mask.to(w.device)} if "attention_mask" in inputs else {}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        out = w.model.generate(
            inputs.input_features.to(w.device, dtype=w.model.dtype), **kw, language=lang, task=opts.task,
            return_timestamps=True, return_segments=True, num_beams=opts.num_beams,
            temperature=opts.temperatures if len(opts.temperatures) > 1 else opts.temperatures[0],
            compression_ratio_threshold=opts.compression_ratio_threshold, logprob_threshold=opts.logprob_threshold,
            no_speech_threshold=opts.no_speech_threshold, condition_on_prev_tokens=False,
            generation_config=gc)
    finally:
        hf_logging.set_verbosity(verbosity)
    eot = gc.eos_token_id
    segs = []
    for s in (out["segments"][0] if isinstance(out, dict) and "segments" in out else []):
        toks = [int(t) for t in s["tokens"].tolist() if int(t) < eot]
        toks = toks[: find_tail_loop(toks, opts.loop_repeats, opts.loop_max_ngram) or len(toks)]
        text = w.tokenizer.decode(toks, skip_special_tokens=True).strip()
        if text:
            segs.append(Segment(float(s["start"]), float(s["end"]), text))
    return segs


def transcribe_long(model, audio: np.ndarray, options: LongformOptions | None = None) -> list[Segment]:
    """Transcribe 16 kHz mono float32 ``audio`` of any length into timestamped segments.

    ``model``: a :class:`~dama.models.load.Whisper` (dama's transformers path, adapters merged or not) or a
    ``faster_whisper.WhisperModel`` (the deployed path, :func:`transcribe_long_ct2`). Pure silence or
    noise gives ``[]``. Segment times follow ``options.timing`` (:func:`refine_times`).
    """
    opts = options or LongformOptions()
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    return refine_times(decode_segments(model, audio, opts), audio, opts)


def decode_segments(model, audio: np.ndarray, opts: LongformOptions) -> list[Segment]:
    """The decoding half of :func:`transcribe_long`: segments with the decoder's times, and words when
    ``opts.timing`` asks for them (edges at the words), before :func:`refine_times` splits and snaps them."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise DamaError(f"transcribe_long takes mono audio (1-D), got shape {audio.shape}")
    if not len(audio):
        return []
    if not isinstance(model, Whisper):
        return transcribe_long_ct2(model, audio, opts)
    if opts.strategy == "sequential":  # no word timings on this path: its segments keep their token times
        return _transcribe_sequential(w=model, audio=audio, opts=opts)
    return _transcribe_vad(model, audio, opts)


def fine_speech_regions(audio: np.ndarray, opts: LongformOptions) -> list[tuple[float, float]]:
    """Speech regions (seconds) of the fine VAD pass: Silero at ``vad_threshold``, silences from
    ``fine_min_silence_ms`` split regions, no padding: where speech starts and stops, not windows to decode."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    vo = VadOptions(threshold=opts.vad_threshold, min_silence_duration_ms=opts.fine_min_silence_ms,
                    speech_pad_ms=opts.fine_speech_pad_ms)
    return [(r["start"] / SAMPLE_RATE, r["end"] / SAMPLE_RATE) for r in get_speech_timestamps(audio, vo)]


def refine_times(segments: list[Segment], audio: np.ndarray, opts: LongformOptions) -> list[Segment]:
    """Segment times as ``opts.timing`` asks (segments with words come from the word-timing paths):

    * ``tokens``: as decoded;
    * ``words``: split where the gap between consecutive words is at least ``split_pause_s``;
    * ``vad``: each edge snapped to the fine VAD (:func:`snap_to_speech`);
    * ``words-vad``: split at word gaps or fine-VAD silences of at least ``split_pause_s``
      (:func:`split_at_pauses`), then snapped.
    """
    if not segments or opts.timing == "tokens":
        return segments
    regions = fine_speech_regions(audio, opts) if opts.timing in ("vad", "words-vad") else []
    if opts.timing in ("words", "words-vad"):
        gaps = [(a[1], b[0]) for a, b in zip(regions, regions[1:]) if b[0] - a[1] >= opts.split_pause_s]
        segments = split_at_pauses(segments, gaps, opts.split_pause_s)
    if regions:
        segments = snap_to_speech(segments, regions, opts.snap_max_s)
    return segments


def split_at_pauses(segments: list[Segment], gaps: list[tuple[float, float]], min_pause: float) -> list[Segment]:
    """Split segments with words between two consecutive words that are ``min_pause`` apart, or that have one
    of ``gaps`` (silences, sorted, in seconds) between them: the gap's middle lies between the two words'
    middles (word timings often reach into a pause); those two words are then pulled out of the gap. A
    subtitle then never spans a long silence."""
    import bisect

    centres = [(g0 + g1) / 2 for g0, g1 in gaps]
    out: list[Segment] = []
    for seg in segments:
        words = seg.words or []
        if len(words) < 2:
            out.append(seg)
            continue
        groups = [[words[0]]]
        for a, b in zip(words, words[1:]):
            cut = b.start - a.end >= min_pause
            k = bisect.bisect_left(centres, (a.start + a.end) / 2)
            if k < len(gaps) and centres[k] < (b.start + b.end) / 2:
                cut = True
                g0, g1 = gaps[k]
                a.end, b.start = max(a.start, min(a.end, g0)), min(b.end, max(b.start, g1))
            if cut:
                groups.append([b])
            else:
                groups[-1].append(b)
        if len(groups) == 1:
            out.append(seg)
            continue
        for k, g in enumerate(groups):
            start = seg.start if k == 0 else g[0].start
            end = seg.end if k == len(groups) - 1 else g[-1].end
            out.append(Segment(min(start, g[0].start), max(end, g[-1].end), "".join(x.word for x in g).strip(),
                               words=g, tokens=[t for x in g for t in x.tokens]))
    return [x for x in out if x.text]


def snap_to_speech(segments: list[Segment], regions: list[tuple[float, float]], max_out: float) -> list[Segment]:
    """Move each segment's edges to the speech edges of the fine VAD ``regions`` (sorted, seconds): the start
    to the start of the first region overlapping the segment, the end to the end of the last one. An edge
    moves inwards freely (the segment began or ended in silence), outwards by at most ``max_out`` seconds and
    never across a neighbouring segment; a segment no region overlaps keeps its times. The first and last
    words follow the edges; no word lies outside its segment."""
    import bisect

    starts = [r[0] for r in regions]
    ends = [r[1] for r in regions]
    for i, seg in enumerate(segments):
        lo = bisect.bisect_right(ends, seg.start)  # first region ending after the segment starts
        hi = bisect.bisect_left(starts, seg.end)  # regions starting before the segment ends: [lo, hi)
        if lo >= hi:
            continue
        prev_end = segments[i - 1].end if i else 0.0
        next_start = segments[i + 1].start if i + 1 < len(segments) else float("inf")
        s0, e1 = regions[lo][0], regions[hi - 1][1]
        start = s0 if s0 >= seg.start or (seg.start - s0 <= max_out and s0 >= prev_end) else seg.start
        end = e1 if e1 <= seg.end or (e1 - seg.end <= max_out and e1 <= next_start) else seg.end
        if end <= start:
            continue
        seg.start, seg.end = start, end
        if seg.words:
            seg.words[0].start = start
            seg.words[-1].end = end
            for x in seg.words:
                x.start = min(max(x.start, start), end)
                x.end = min(max(x.end, x.start), end)
    return segments


def transcribe_long_ct2(fw_model, audio: np.ndarray, opts: LongformOptions) -> list[Segment]:
    """faster-whisper's own ``WhisperModel.transcribe(..., vad_filter=True)`` with timestamps: the deployed
    path of a ``dama export --format ct2`` folder (load it with :func:`dama.deploy.export.load_faster_whisper`,
    which teaches faster-whisper a new language token). Word timings (``opts.timing`` words or words-vad) are
    faster-whisper's own ``word_timestamps=True`` (the same alignment heads and DTW, in CTranslate2);
    :func:`transcribe_long` then refines the times as on dama's path."""
    from faster_whisper.vad import VadOptions

    from dama.alignment import WordTiming

    words = opts.timing in ("words", "words-vad")
    vo = VadOptions(threshold=opts.vad_threshold, min_silence_duration_ms=opts.min_silence_ms,
                    speech_pad_ms=opts.speech_pad_ms)
    segs, _info = fw_model.transcribe(
        audio, language=opts.language, task=opts.task, beam_size=opts.num_beams, vad_filter=True,
        vad_parameters=asdict(vo), without_timestamps=False, condition_on_previous_text=False,
        temperature=list(opts.temperatures), compression_ratio_threshold=opts.compression_ratio_threshold,
        log_prob_threshold=opts.logprob_threshold, no_speech_threshold=opts.no_speech_threshold,
        word_timestamps=words)
    out = []
    for s in segs:
        if not s.text.strip():
            continue
        ws = [WordTiming(x.word, [], float(x.start), float(x.end), float(x.probability)) for x in s.words or []]
        out.append(Segment(float(s.start), float(s.end), s.text.strip(), words=ws if words else None))
    return out


def text_of(segments: list[Segment]) -> str:
    return " ".join(s.text.strip() for s in segments if s.text.strip())
