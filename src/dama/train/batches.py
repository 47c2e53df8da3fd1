"""Turn a manifest into decoder training examples and length-bucketed batches."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from dama.data.audio import CHUNK_SECONDS
from dama.data.manifest import Manifest, Problem
from dama.errors import DataError
from dama.evaluate.run import check_languages
from dama.models.load import Whisper
from dama.train.loss import IGNORE

TIME_PRECISION = 0.02  # seconds per Whisper timestamp token
N_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|>


@dataclass
class Example:
    row: int  # index into the manifest (and the encoder cache)
    tokens: list[int]  # prompt + text + <|endoftext|>
    n_prompt: int


def in_timestamp_mode(row: int, share: float, seed: int) -> bool:
    """Whether training example ``row`` is in timestamp mode: a fixed, seeded draw per example, so a share
    ``share`` of the examples is, the same ones in every epoch and on resume."""
    return share > 0 and random.Random(f"timestamps:{seed}:{row}").random() < share


def timestamp_token(w: Whisper, seconds: float) -> int:
    """``<|t|>`` for ``seconds`` on Whisper's 0.02 s grid (capped at ``<|30.00|>``)."""
    steps = min(N_TIMESTAMPS - 1, max(0, round(seconds / TIME_PRECISION)))
    return w.generation_config.no_timestamps_token_id + 1 + steps


def make_examples(w: Whisper, m: Manifest, languages: list[str], max_seconds: float = CHUNK_SECONDS,
                  timestamp_share: float = 0.0, seed: int = 0) -> tuple[list[Example], list[Problem]]:
    """Tokenise transcripts. Clips over 30 s (``CHUNK_SECONDS``, the encoder's window: audio and
    transcript would no longer match) and transcripts over the decoder's length are skipped and
    reported.

    A share ``timestamp_share`` of the examples (:func:`in_timestamp_mode`) is in Whisper's timestamp
    mode, so adaptation keeps the timestamps long-form decoding needs: the prompt without
    ``<|notimestamps|>``, then ``<|0.00|> text <|d|>`` with ``d`` the clip's duration on the 0.02 s grid
    (each clip is one segment). The timestamps are targets like the text; the rest are in
    ``<|notimestamps|>`` mode as before. A clip of unknown duration stays in ``<|notimestamps|>`` mode."""
    check_languages(w, m, languages)
    empty = [u.where or str(u.audio) for u in m if not u.text.strip()]
    if empty:  # an empty target teaches the model to emit nothing: almost always a data error
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise DataError(f"{m.name}: {len(empty)} training utterance(s) have an empty transcript ({shown}). "
                        "Remove them or fill in their text (`dama data check` lists them all).")
    max_len = w.model.config.max_target_positions
    eot = w.generation_config.eos_token_id
    out, skipped = [], []
    for i, (u, lang) in enumerate(zip(m, languages)):
        where = u.where or str(u.audio)
        if u.duration is not None and u.duration > max_seconds:
            skipped.append(Problem(where, f"{u.id}: {u.duration:.1f} s is over {max_seconds:.0f} s; skipped"))
            continue
        prompt = w.prompt_ids(lang)
        text = w.tokenizer(" " + u.text.strip(), add_special_tokens=False).input_ids
        if u.duration and in_timestamp_mode(i, timestamp_share, seed):
            prompt = prompt[:-1]  # drop <|notimestamps|>
            text = [timestamp_token(w, 0.0), *text, timestamp_token(w, u.duration)]
        tokens = prompt + text + [eot]
        if len(tokens) > max_len:
            skipped.append(Problem(where, f"{u.id}: {len(tokens)} tokens exceed the decoder's {max_len}; skipped"))
            continue
        out.append(Example(i, tokens, len(prompt)))
    return out, skipped


def bucket_batches(examples: list[Example], batch_size: int, seed: int, epoch: int) -> list[list[Example]]:
    """Sort by length so a batch pads little, cut into batches, shuffle the batch order.

    Deterministic in (seed, epoch): a resumed run replays exactly the same batches.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    ex = sorted(examples, key=lambda e: (len(e.tokens), e.row))
    batches = [ex[i:i + batch_size] for i in range(0, len(ex), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(batch: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """decoder_input_ids = tokens[:-1]; labels = tokens[1:] with the prompt and padding ignored."""
    width = max(len(e.tokens) for e in batch) - 1
    inp = torch.full((len(batch), width), pad_id, dtype=torch.long)
    lab = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for i, e in enumerate(batch):
        t = torch.tensor(e.tokens)
        inp[i, : len(t) - 1] = t[:-1]
        lab[i, : len(t) - 1] = t[1:]
        lab[i, : e.n_prompt - 1] = IGNORE  # do not learn to predict language/task tokens
    return {"decoder_input_ids": inp, "labels": lab, "rows": torch.tensor([e.row for e in batch])}
