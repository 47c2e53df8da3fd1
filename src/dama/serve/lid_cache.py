"""Router features computed once per clip and kept in one file, so re-fitting or re-scoring a router is free.

The router's cost is one encoder pass per clip (a padded 30 s window: a second or two of one CPU core on
whisper-base). Fitting on hundreds of clips per language, calibrating on the validation splits and scoring
on the test splits pays that once per clip here: :class:`StatsCache` keeps every clip's
:class:`~dama.serve.lid.EncoderStats` (all encoder layers pooled, Whisper's language probabilities) keyed
by the content of its audio file (:func:`dama.encoder_cache.clip_key`, as the encoder cache keys clips), in
one ``.npz`` per encoder (its fingerprint is stored and checked). Any layer choice can then be sliced out.

Written atomically (a temporary file renamed over the old one) after every batch of new clips, so a run
stopped mid-way keeps what it computed; read with ``allow_pickle=False`` (no code runs on load). One writer
at a time: two processes adding to the same file would each keep only their own additions.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dama.data.audio import CHUNK_SECONDS, load_audio
from dama.data.manifest import Utterance
from dama.encoder_cache import cached_rows, clip_keys, encoder_fingerprint
from dama.models.load import Whisper
from dama.outputs import atomic_write_bytes
from dama.safeio import FileError
from dama.serve.lid import EncoderStats, encoder_stats, stats_from_encoder_outputs

FORMAT = "dama-lid-stats/2"  # /2: the pooled layers are listed (one file per layer choice)


class StatsCache:
    """``path``: the ``.npz`` file (created on the first save; None: kept in memory only). ``fingerprint``: the
    encoder's (:func:`dama.encoder_cache.encoder_fingerprint`); ``layers``: the hidden states pooled. A file
    written for another encoder or other layers is refused."""

    def __init__(self, path: str | Path | None, fingerprint: str, layers: Sequence[int]):
        self.path = Path(path) if path else None
        self.fingerprint, self.layers = fingerprint, tuple(int(i) for i in layers)
        self.rows: dict[str, int] = {}
        self.stats = np.zeros((0,), np.float32)
        self.probs = np.zeros((0,), np.float32)
        self.codes: list[str] = []
        if self.path is not None and self.path.is_file():
            self._read()

    def _read(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as z:
                meta = {k: str(z[k]) for k in ("format", "fingerprint")}
                if meta["format"] != FORMAT:
                    raise FileError(f"{self.path}: format {meta['format']!r}, expected {FORMAT}; delete it to start "
                                    "over")
                layers = tuple(int(i) for i in z["layers"])
                keys, self.stats, self.probs = list(z["keys"]), z["stats"], z["probs"]
                self.codes = [str(c) for c in z["codes"]]
        except (OSError, KeyError, ValueError) as e:
            raise FileError(f"{self.path}: not a readable router feature cache ({e}); delete it to start over") from e
        if meta["fingerprint"] != self.fingerprint:
            raise FileError(f"{self.path}: computed with another encoder ({meta['fingerprint']}, this one is "
                            f"{self.fingerprint}); use another file")
        if layers != self.layers:
            raise FileError(f"{self.path}: holds encoder layers {list(layers)}, not {list(self.layers)}; use "
                            "another file for this layer choice")
        self.rows = {str(k): i for i, k in enumerate(keys)}

    def __len__(self) -> int:
        return len(self.rows)

    def save(self) -> None:
        if self.path is None:
            return
        buf = io.BytesIO()
        keys = sorted(self.rows, key=self.rows.get)
        np.savez(buf, format=np.array(FORMAT), fingerprint=np.array(self.fingerprint),
                 layers=np.array(self.layers, dtype=np.int64), keys=np.array(keys, dtype="U64"),
                 stats=self.stats, probs=self.probs, codes=np.array(self.codes, dtype="U16"))
        atomic_write_bytes(self.path, buf.getvalue())

    def add(self, keys: Sequence[str], es: EncoderStats) -> None:
        if self.codes and es.codes != self.codes:
            raise FileError(f"{self.path}: its clips were scored over other Whisper languages; use another file")
        if es.layers != self.layers:
            es = EncoderStats(es.stats[:, [es.layers.index(i) for i in self.layers]], es.whisper_probs, es.codes,
                              self.layers)
        self.codes = list(es.codes)
        new = [i for i, k in enumerate(keys) if k not in self.rows]
        if not new:
            return
        start = len(self.rows)
        self.stats = es.stats[new] if start == 0 else np.concatenate([self.stats, es.stats[new]])
        self.probs = es.whisper_probs[new] if start == 0 else np.concatenate([self.probs, es.whisper_probs[new]])
        for j, i in enumerate(new):
            self.rows[keys[i]] = start + j

    def get(self, keys: Sequence[str]) -> EncoderStats:
        idx = [self.rows[k] for k in keys]
        return EncoderStats(self.stats[idx], self.probs[idx], list(self.codes), self.layers)


def cached_stats(w: Whisper, utts: Sequence[Utterance], cache: StatsCache, batch_size: int = 8,
                 save_every: int = 64, encoder_caches: Sequence[str | Path] = (),
                 log: Callable[[str], object] = print) -> EncoderStats:
    """:func:`~dama.serve.lid.encoder_stats` of ``utts`` for ``cache.layers``, computing only the clips the
    cache lacks and saving it every ``save_every`` new clips and at the end. When the router pools the last
    layer only, clips whose encoder outputs ``encoder_caches`` already hold (``dama train``'s caches: every
    adapter's training clips are there) cost a decoder step, not an encoder pass."""
    keys = clip_keys(utts)
    first = {k: i for i, k in reversed(list(enumerate(keys)))}
    todo = [first[k] for k in dict.fromkeys(keys) if k not in cache.rows]
    if todo and cache.layers == (w.model.config.encoder_layers,):
        for root in encoder_caches:
            rows = cached_rows(w, [keys[i] for i in todo], root, log)
            have = [i for i in todo if keys[i] in rows]
            for b in range(0, len(have), save_every):
                part = have[b: b + save_every]
                seconds = [_seconds(utts[i]) for i in part]
                cache.add([keys[i] for i in part], stats_from_encoder_outputs(w, [rows[keys[i]] for i in part],
                                                                              seconds, batch_size))
                cache.save()
            if have:
                log(f"lid features: {len(have)} clips from the encoder cache {root}")
            todo = [i for i in todo if keys[i] not in cache.rows]
    if todo:
        log(f"lid features: {len(todo)} of {len(utts)} clips to encode ({len(utts) - len(todo)} known already)")
    for b in range(0, len(todo), save_every):
        rows = todo[b: b + save_every]
        es = encoder_stats(w, [load_audio(utts[i].audio, utts[i].where) for i in rows], batch_size, cache.layers)
        cache.add([keys[i] for i in rows], es)
        cache.save()
    return cache.get(keys)


def _seconds(u: Utterance) -> float:
    """The clip's duration (its first 30 s count): from the manifest, else from the file's header."""
    if u.duration:
        return min(float(u.duration), CHUNK_SECONDS)
    import soundfile as sf

    return min(sf.info(str(u.audio)).duration, CHUNK_SECONDS)


def open_cache(w: Whisper, path: str | Path | None, layers: Sequence[int]) -> StatsCache:
    """The cache file at ``path`` for ``layers`` (None: one in memory, for this process only)."""
    return StatsCache(path, encoder_fingerprint(w.model), layers)
