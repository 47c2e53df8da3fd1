"""Long-form evaluation data built from a corpus's short clips: ``swahili:test-long``.

Every recipe's corpora are clips of a few seconds; what users transcribe are recordings of
minutes. ``CORPUS:SPLIT-long`` (any recipe, any split, e.g. ``yoruba:test-long``) concatenates
consecutive clips of ``CORPUS:SPLIT`` into recordings and knows where every clip starts and ends:
the ground truth for long-form WER and for segment timestamps.

The rule (deterministic; :data:`RULE_VERSION` changes when it does):

* clips in the split's own order (the recipe sorts them by file name), decoded to 16 kHz mono;
* each recording starts with :data:`LEAD_S` of silence, then clip, gap, clip, ... and ends with
  :data:`LEAD_S` of silence; a recording is closed as soon as it reaches :data:`TARGET_S` (3 min);
  a remainder shorter than :data:`MIN_LAST_S` is appended to the previous recording instead;
* the gap after clip ``k`` of recording ``r`` is drawn uniformly from [:data:`GAP_MIN_S`,
  :data:`GAP_MAX_S`] and rounded to 10 ms by ``random.Random(f"{corpus}:{split}:{r}:{k}")``:
  the same everywhere, and not so regular that a model could learn it;
* silence is digital zeros (the clips bring their own room noise).

Built audio (16-bit FLAC) and ground truth (``<id>.segments.json``) are written once, each file
atomically, into ``$DAMA_CACHE/longform/<corpus>/<split>-long-<key>/`` where ``key`` hashes the rule
and the source clips (ids, sizes), so a changed corpus or rule builds a new folder and the
read-only data folder is never written to.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dama.data.audio import SAMPLE_RATE, load_audio
from dama.data.manifest import Manifest, Utterance
from dama.errors import DataError

LONG_SUFFIX = "-long"
RULE_VERSION = 1
TARGET_S = 180.0  # a recording is closed once it is this long
MIN_LAST_S = 60.0  # a shorter remainder joins the previous recording
GAP_MIN_S, GAP_MAX_S = 0.5, 1.5  # silence between consecutive clips
LEAD_S = 0.5  # silence at the start and end of every recording


@dataclass
class TrueSegment:
    """Where one source clip lies in a long recording (seconds) and what is said in it."""

    start: float
    end: float
    text: str
    source: str  # the clip's utterance id

    def to_json(self) -> dict:
        return {"start": self.start, "end": self.end, "text": self.text, "source": self.source}


def is_long_split(split: str) -> bool:
    return split.endswith(LONG_SUFFIX) and len(split) > len(LONG_SUFFIX)


def base_split(split: str) -> str:
    return split[: -len(LONG_SUFFIX)]


def _gap(corpus: str, split: str, rec: int, k: int) -> float:
    return round(random.Random(f"{corpus}:{split}:{rec}:{k}").uniform(GAP_MIN_S, GAP_MAX_S), 2)


def plan_recordings(durations: list[float]) -> list[list[int]]:
    """Group clip indices (in order) into recordings by the rule in the module doc (gaps are counted at
    their mean, so the plan needs only the durations)."""
    groups: list[list[int]] = []
    cur: list[int] = []
    length = 2 * LEAD_S
    mean_gap = (GAP_MIN_S + GAP_MAX_S) / 2
    for i, d in enumerate(durations):
        cur.append(i)
        length += d + (mean_gap if len(cur) > 1 else 0.0)
        if length >= TARGET_S:
            groups.append(cur)
            cur, length = [], 2 * LEAD_S
    if cur:
        if groups and length < MIN_LAST_S:
            groups[-1].extend(cur)
        else:
            groups.append(cur)
    return groups


def cache_root() -> Path:
    from dama.paths import cache_dir

    return cache_dir() / "longform"


def _key(corpus: str, split: str, clips: Manifest) -> str:
    h = hashlib.sha256(f"rule{RULE_VERSION}:{TARGET_S}:{MIN_LAST_S}:{GAP_MIN_S}:{GAP_MAX_S}:{LEAD_S}".encode())
    for u in clips:
        size = u.audio.stat().st_size if u.audio.is_file() else -1
        h.update(f"{u.id}\t{size}\t{u.text}\n".encode())
    return h.hexdigest()[:12]


def read_truth(path: str | Path) -> tuple[float, list[TrueSegment]]:
    """The ground truth written beside a built recording (``<id>.segments.json``): duration, segments."""
    from dama.safeio import read_json

    data = read_json(Path(path), "long-form ground truth", "Delete it; it is rebuilt on next use.")
    try:
        return float(data["duration"]), [TrueSegment(float(s["start"]), float(s["end"]), str(s["text"]),
                                                     str(s["source"])) for s in data["segments"]]
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: malformed long-form ground truth ({e!r}). Delete it; it is rebuilt on "
                        "next use.") from None


def read_segments(audio: str | Path) -> list[TrueSegment]:
    """The true clip segments of a built recording, given its audio path."""
    return read_truth(segments_path(Path(audio)))[1]


def segments_path(audio: Path) -> Path:
    return audio.with_name(audio.name.removesuffix(".flac") + ".segments.json")


def _write_flac(path: Path, audio: np.ndarray) -> None:
    import soundfile as sf

    from dama.outputs import atomic_write_bytes

    buf = io.BytesIO()
    sf.write(buf, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    atomic_write_bytes(path, buf.getvalue())


def build_long(clips: Manifest, corpus: str, split: str, out_root: Path | None = None, log=None) -> Manifest:
    """The long-form manifest of ``clips`` (the clips of ``corpus:split``), building any recording
    not yet in the cache. Each utterance's text is its clips' texts joined; its ground truth is
    :func:`read_segments` of its audio."""
    from dama.outputs import atomic_write_text

    clips.raise_problems()
    if not clips:
        raise DataError(f"{corpus}:{split}: no clips to build {corpus}:{split}{LONG_SUFFIX} from")
    langs = sorted({u.language or "?" for u in clips})
    if len(langs) > 1:
        raise DataError(f"{corpus}:{split} mixes languages ({', '.join(langs)}); a long recording is one language: "
                        f"use {corpus}:LANG{LONG_SUFFIX} where the corpus has one split per language")
    clips.fill_durations()
    clips.raise_problems()
    folder = (out_root or cache_root()) / corpus / f"{split}{LONG_SUFFIX}-{_key(corpus, split, clips)}"
    groups = plan_recordings([u.duration or 0.0 for u in clips])
    out = Manifest(name=f"{corpus}:{split}{LONG_SUFFIX}")
    lead = np.zeros(int(LEAD_S * SAMPLE_RATE), dtype=np.float32)
    for r, group in enumerate(groups):
        rid = f"{corpus}-{split}{LONG_SUFFIX}-{r:03d}"
        audio_path = folder / f"{rid}.flac"
        seg_path = segments_path(audio_path)
        members = [clips[i] for i in group]
        if not (audio_path.is_file() and seg_path.is_file()):
            if log:
                log(f"building {audio_path} from {len(members)} clips")
            parts, segs, t = [lead], [], len(lead)
            for k, u in enumerate(members):
                a = load_audio(u.audio, u.where)
                segs.append(TrueSegment(round(t / SAMPLE_RATE, 6), round((t + len(a)) / SAMPLE_RATE, 6), u.text, u.id))
                parts.append(a)
                t += len(a)
                gap = np.zeros(int(round(_gap(corpus, split, r, k) * SAMPLE_RATE)), dtype=np.float32) \
                    if k < len(members) - 1 else lead
                parts.append(gap)
                t += len(gap)
            audio = np.concatenate(parts)
            peak = float(np.abs(audio).max()) if audio.size else 0.0
            if peak > 1.0:  # FLAC PCM_16 clips: keep the relative levels, scale the whole recording
                audio = audio / peak
            _write_flac(audio_path, audio)  # audio first: the segments file marks the recording complete
            atomic_write_text(seg_path, json.dumps({
                "id": rid, "duration": round(len(audio) / SAMPLE_RATE, 3), "rule_version": RULE_VERSION,
                "segments": [s.to_json() for s in segs]}, ensure_ascii=False, indent=1) + "\n")
        duration, truth = read_truth(seg_path)
        out.append(Utterance(rid, audio_path, " ".join(s.text.strip() for s in truth), duration=duration,
                             language=members[0].language, split=f"{split}{LONG_SUFFIX}",
                             where=f"{corpus}:{split}{LONG_SUFFIX}#{r} ({len(members)} clips from "
                                   f"{members[0].id} on)"))
    return out
