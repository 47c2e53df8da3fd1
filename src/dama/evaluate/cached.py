"""Decoding from cached encoder outputs: validation during training, a run's test split, ``dama eval
--cache-dir``.

With a frozen encoder a clip's encoder output is the same for every method, run and epoch, so it
comes from :mod:`dama.encoder_cache` and decoding runs only the decoder. A cache row holds one
30 s window (``CHUNK_SECONDS``), so longer clips are transcribed from their audio in windows,
as :func:`dama.evaluate.run.evaluate` does for every clip.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dama.data.audio import CHUNK_SECONDS, load_audio
from dama.data.manifest import Manifest
from dama.encoder_cache import ClipInputs
from dama.evaluate.run import check_languages, evaluate, manifest_languages, score_hyps
from dama.models.load import Whisper
from dama.models.transcribe import DecodeOptions, decode_features, token_budget, transcribe

RESULT_KEYS = ("wer", "cer", "n", "word_errors", "ref_words", "char_errors", "ref_chars", "by_language", "rtf",
               "rtf_cached", "long_clips_from_audio")


def decoding_view(w: Whisper, model: torch.nn.Module) -> Whisper:
    """A :class:`Whisper` over the (possibly PEFT-wrapped) model for generation."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return Whisper(base, w.tokenizer, w.feature_extractor, w.name)


@torch.no_grad()
def decode_rows(w: Whisper, inputs: ClipInputs, m: Manifest, rows: list[int], langs: list[str],
                opts: DecodeOptions, batch_size: int | None = None, desc: str = "decode",
                lean: bool = True, merge: bool = True, ct2: bool = True) -> list[str]:
    """Greedy-decode manifest rows from their cached encoder outputs (or features); ``langs`` is per
    manifest row. The model is left in the mode (train/eval) it was in.

    ``lean`` (greedy only): :func:`dama.models.greedy.greedy_decode` instead of ``generate`` (the same
    rules, finished rows leave the batch); ``merge``: adapters merged into a decoder copy for it;
    ``ct2`` (with ``merge``): that copy decoded by CTranslate2 (:mod:`dama.models.ct2_greedy`, the same
    tokens, about 1.6x faster than ``generate`` on a CPU) where it can represent it exactly, else by the PyTorch loop
    (``benchmarks/eval_decode.py`` measures each against ``generate``, transcript by transcript)."""
    from dama.models.ct2_greedy import ct2_decoder
    from dama.models.greedy import greedy_decode, merged_decoder

    model = w.model
    was_training = model.training
    model.eval()
    batch_size = batch_size or opts.batch_size
    lean = lean and opts.num_beams == 1
    decoder = merged_decoder(model) if lean and merge else None
    fast = ct2_decoder(w, decoder) if decoder is not None and ct2 else None
    if fast is not None:  # more rows per call amortise each step's read of the weights (rows_per_call)
        batch_size = max(batch_size, fast.rows_per_call)
    order = sorted(rows, key=lambda r: -(m[r].duration or 0))
    hyps: dict[int, str] = {}
    for b in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        chunk = order[b:b + batch_size]
        kw = inputs.model_kwargs(chunk, w.device, model.dtype)
        enc = kw.get("encoder_outputs") or model.get_encoder()(kw["input_features"])
        prompts = [w.prompt_ids(langs[r]) for r in chunk]
        budgets = [token_budget(m[r].duration or CHUNK_SECONDS, opts) for r in chunk]
        if fast is not None:
            toks = fast.decode(w, enc.last_hidden_state, prompts, budgets, opts)
        elif lean:
            toks = greedy_decode(w, enc.last_hidden_state, prompts, budgets, opts, decoder)
        else:
            toks = decode_features(w, None, prompts, budgets, opts, encoder_outputs=enc)
        for r, t in zip(chunk, toks):
            hyps[r] = w.tokenizer.decode(t, skip_special_tokens=True).strip()
    model.train(was_training)
    return [hyps[r] for r in rows]


def evaluate_cached(w: Whisper, m: Manifest, language: str | None, hyps_path: str | Path, cache_root: str | Path,
                    opts: DecodeOptions | None = None, use_cache: bool = True, log=print) -> dict:
    """Greedy decoding of ``m`` — clips up to 30 s from encoder outputs cached under ``cache_root``,
    longer ones chunked from audio — scored and written per utterance to ``hyps_path``. Without
    ``use_cache`` (the encoder was trained) every clip is decoded from audio."""
    m.raise_problems()
    m.fill_durations()
    hyps_path = Path(hyps_path)
    label = hyps_path.name.split(".")[0]
    opts = opts or DecodeOptions()
    short = [i for i, u in enumerate(m) if (u.duration or 0) <= CHUNK_SECONDS]
    if not use_cache or not short:
        res = evaluate(w, m, language=language, opts=opts, hyps_path=hyps_path)
    else:
        langs = manifest_languages(m, language)
        check_languages(w, m, langs)  # as evaluate() does: an unknown code is named with its manifest line
        short_m = Manifest([m[i] for i in short], name=m.name)
        inputs = ClipInputs(w, short_m, True, cache_root, log)
        t = time.perf_counter()
        hyps: list[str] = [""] * len(m)
        decoded = decode_rows(w, inputs, short_m, list(range(len(short))), [langs[i] for i in short], opts,
                              opts.batch_size, desc=label)
        for i, h in zip(short, decoded):
            hyps[i] = h
        secs = time.perf_counter() - t
        long = sorted(set(range(len(m))) - set(short))
        if long:  # the encoder runs on each 30 s window of these
            texts = transcribe(w, [load_audio(m[i].audio, m[i].where) for i in long], [langs[i] for i in long], opts)
            for i, h in zip(long, texts):
                hyps[i] = h
        res = score_hyps(m, langs, hyps, hyps_path)
        res["rtf_cached"] = secs / short_m.seconds if short_m.seconds else 0.0
        res["long_clips_from_audio"] = len(long)
    log(f"{label} {m.name}: WER {res['wer']:.4f} CER {res['cer']:.4f} (n={res['n']})")
    return {k: res[k] for k in RESULT_KEYS if k in res}


__all__ = ["decode_rows", "decoding_view", "evaluate_cached"]
