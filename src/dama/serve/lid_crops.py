"""Short crops of training clips, so the language router does not learn clip length as language.

Why. The corpora behind the router's classes differ in how long their clips are: Nigerian Pidgin, Amharic
and Malagasy clips are mostly under 8 s, Swahili's median is 16 s (only 19 of its 186 training clips and 2 of
its 46 validation clips are shorter than 8 s). The router's features (the mean and standard deviation over
time of the encoder's states) shift with a clip's length, so a router fit on whole clips partly learns
"short" as "not Swahili": the Swahili test clips it misrouted were three 5-8 s readings of one sign-off
line ("Imetayarishwa na mwandishi wetu Washington DC."), sent to the Pidgin adapter or to Whisper. A server
gets clips of any length, so every class should span the same lengths: each class also gets ``n`` crops
of its own training clips, lengths drawn uniformly from ``seconds`` (default 2-8 s), cut at random places
(seeded by the class name: the same crops every run). Validation clips get crops the same way, so the
threshold is calibrated on short clips too. A crop is encoded as a clip of its own (padded as Whisper pads
it), exactly as the server will encode a short request; its statistics are kept in the router feature cache
(:mod:`dama.serve.lid_cache`) under the clip's key plus the crop's place, so each crop is encoded once.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dama.data.audio import SAMPLE_RATE, load_audio
from dama.data.manifest import Utterance
from dama.encoder_cache import clip_keys
from dama.models.load import Whisper
from dama.serve.lid import EncoderStats, encoder_stats
from dama.serve.lid_cache import StatsCache, _seconds

DEFAULT_SECONDS = (2.0, 8.0)


@dataclass(frozen=True)
class Crop:
    """``seconds`` of ``utt``'s audio from ``start`` (both in seconds, rounded to 10 ms)."""

    utt: Utterance
    start: float
    seconds: float


def make_crops(utts: Sequence[Utterance], n: int, seconds: tuple[float, float] = DEFAULT_SECONDS,
               seed: str = "") -> list[Crop]:
    """``n`` crops of ``utts`` (clips at least ``seconds[0]`` + 0.5 s long, taken in turn in a shuffled
    order), each of a length drawn uniformly from ``seconds`` (capped by its clip's length) at a random
    place. Deterministic: the generator is seeded by ``seed`` (the class name), not by a global seed."""
    lo, hi = seconds
    if not 0 < lo <= hi:
        raise ValueError(f"crop lengths {seconds}: give 0 < shortest <= longest seconds")
    durations = [_seconds(u) for u in utts]
    eligible = [i for i, d in enumerate(durations) if d >= lo + 0.5]
    if n <= 0 or not eligible:
        return []
    rng = np.random.default_rng(zlib.crc32(seed.encode()))
    order = [eligible[j] for j in rng.permutation(len(eligible))]
    crops = []
    for k in range(n):
        i = order[k % len(order)]
        length = float(rng.uniform(lo, min(hi, durations[i])))
        start = float(rng.uniform(0.0, durations[i] - length))
        crops.append(Crop(utts[i], round(start, 2), round(length, 2)))
    return crops


def crop_keys(crops: Sequence[Crop]) -> list[str]:
    """A crop's cache key: its clip's content key and its place (``KEY@start+seconds``)."""
    keys = clip_keys([c.utt for c in crops])
    return [f"{k}@{c.start:.2f}+{c.seconds:.2f}" for k, c in zip(keys, crops)]


def cached_crop_stats(w: Whisper, crops: Sequence[Crop], cache: StatsCache, batch_size: int = 8,
                      save_every: int = 64, log: Callable[[str], object] = print) -> EncoderStats:
    """:func:`~dama.serve.lid.encoder_stats` of each crop (an encoder pass each, for the ones ``cache`` lacks;
    saved every ``save_every`` new crops)."""
    keys = crop_keys(crops)
    first = {k: i for i, k in reversed(list(enumerate(keys)))}
    todo = [first[k] for k in dict.fromkeys(keys) if k not in cache.rows]
    if todo:
        log(f"lid features: {len(todo)} of {len(crops)} short crops to encode")
    audio: dict[str, np.ndarray] = {}
    for b in range(0, len(todo), save_every):
        rows = todo[b: b + save_every]
        clips = []
        for i in rows:
            c = crops[i]
            src = str(c.utt.audio)
            if src not in audio:
                audio[src] = load_audio(c.utt.audio, c.utt.where)
            a = int(round(c.start * SAMPLE_RATE))
            clips.append(audio[src][a: a + int(round(c.seconds * SAMPLE_RATE))])
        cache.add([keys[i] for i in rows], encoder_stats(w, clips, batch_size, cache.layers))
        cache.save()
        if len(audio) > 256:  # decoded clips are a few MB each at most; keep memory bounded
            audio.clear()
    return cache.get(keys)
