"""lhotse manifests (the k2/icefall/NeMo world) as a data source, and dama data written as them.

Read through lhotse itself: a CutSet, or a RecordingSet with its SupervisionSet (lhotse's recipes write
``{corpus}_recordings_{split}.jsonl.gz`` beside ``{corpus}_supervisions_{split}.jsonl.gz``), given as
the file, either file of the pair, or the folder with ``:SPLIT``. Each supervision is one utterance
(``cuts.trim_to_supervisions``): its text, language (a name such as ``Swahili`` becomes ``sw``),
speaker and id. A supervision that is a whole single-file recording is used in place; a segment of a
longer recording (or audio lhotse holds in memory) is cut by lhotse and stored once as FLAC in the
content-addressed audio store (:mod:`dama.data.store`).

Untrusted files never run code: a recording whose audio source is a shell ``command`` (which lhotse
would execute to get the audio) is refused.

Writing (``dama data prepare --format lhotse``): one Recording per clip (``Recording.from_file``), one
Supervision covering it, and the CutSet of the two, under lhotse's recipe names.
"""

from __future__ import annotations

import io
from pathlib import Path

from dama.data.manifest import Manifest, Utterance
from dama.errors import DataError

SUFFIXES = (".jsonl.gz", ".jsonl", ".json")
KINDS = ("recordings", "supervisions", "cuts")


def _lhotse():
    try:
        import lhotse
    except ImportError:
        raise DataError("reading or writing lhotse manifests needs lhotse: pip install 'dama[lhotse]'") from None
    return lhotse


def is_lhotse_manifest(path: Path) -> bool:
    """A ``.jsonl.gz`` file, or a ``.jsonl`` whose first record is a cut, a recording or a supervision."""
    name = path.name.lower()
    if name.endswith(".jsonl.gz"):
        return path.is_file()
    if not name.endswith(".jsonl") or not path.is_file():
        return False
    import json

    with path.open("rb") as f:
        first = f.readline()
    try:
        rec = json.loads(first)
    except ValueError:
        return False
    if not isinstance(rec, dict) or "audio_filepath" in rec:
        return False
    return ("recording" in rec and "supervisions" in rec) or {"sources", "sampling_rate"} <= set(rec) or \
        {"recording_id", "start", "duration"} <= set(rec)


def lhotse_folder_split(path: Path, split: str | None) -> tuple[Path, Path | None] | None:
    """The manifests of ``split`` in a folder as lhotse's recipes name them: (cuts, None) or
    (recordings, supervisions); None when the folder holds none."""
    if not path.is_dir():
        return None
    files = sorted(p for p in path.iterdir() if p.name.endswith(SUFFIXES[:2]))
    tag = f"_{split}." if split else ""

    def pick(kind: str) -> list[Path]:
        return [p for p in files if f"_{kind}" in p.name and tag in p.name]

    cuts, recs, sups = pick("cuts"), pick("recordings"), pick("supervisions")
    if not (cuts or recs or sups):
        return None
    if len(cuts) == 1:
        return cuts[0], None
    if len(recs) == 1 and len(sups) == 1:
        return recs[0], sups[0]
    found = sorted(p.name for p in cuts + recs + sups)
    raise DataError(f"{path}{':' + split if split else ''}: cannot tell which lhotse manifests to read among {found}; "
                    "give the cuts file, or name the split (DIR:SPLIT)")


def _partner(path: Path, kind: str) -> Path:
    """``x_supervisions_train.jsonl.gz`` -> ``x_recordings_train.jsonl.gz`` (its pair)."""
    other = "recordings" if kind == "supervisions" else "supervisions"
    p = path.with_name(path.name.replace(kind, other))
    if p == path or not p.is_file():
        raise DataError(f"{path}: a lhotse {kind} manifest needs its {other} manifest beside it "
                        f"(expected {p.name}); or give a CutSet")
    return p


def load_lhotse(path: Path, partner: Path | None = None) -> Manifest:
    """The utterances of a lhotse CutSet, or of a RecordingSet + SupervisionSet pair (either file)."""
    lhotse = _lhotse()
    try:
        first = lhotse.load_manifest(path)
    except Exception as e:  # lhotse raises ValueError/KeyError/JSON errors for a file it cannot read
        raise DataError(f"{path}: not a lhotse manifest lhotse can read ({type(e).__name__}: {e})") from None
    if isinstance(first, lhotse.CutSet):
        cuts = first
    else:
        kind = "recordings" if isinstance(first, lhotse.RecordingSet) else "supervisions"
        if not isinstance(first, lhotse.RecordingSet | lhotse.SupervisionSet):
            raise DataError(f"{path}: a lhotse {type(first).__name__}; dama reads a CutSet or recordings + "
                            "supervisions")
        other = lhotse.load_manifest(partner or _partner(path, kind))
        recs, sups = (first, other) if kind == "recordings" else (other, first)
        cuts = lhotse.CutSet.from_manifests(recordings=recs, supervisions=sups)
    return _to_manifest(cuts, str(path))


def _refuse_commands(cut, where: str) -> None:
    rec = getattr(cut, "recording", None)
    for src in (rec.sources if rec is not None else []):
        if src.type == "command":
            raise DataError(f"{where}: recording {rec.id} gets its audio by running a shell command "
                            f"({src.source!r}); dama does not run commands from data files. Convert the audio "
                            "to files first")


def _whole_file(cut) -> Path | None:
    """The audio file when the cut is one whole single-source, single-channel file recording."""
    rec = getattr(cut, "recording", None)
    if rec is None or len(rec.sources) != 1 or rec.sources[0].type != "file" or rec.transforms:
        return None
    if len(rec.channel_ids) != 1 or cut.start > 1e-3 or abs(cut.duration - rec.duration) > 1e-3:
        return None
    return Path(rec.sources[0].source)


def _segment_file(cut, where: str) -> Path:
    import soundfile as sf

    from dama.data.store import store_audio

    try:
        audio = cut.load_audio()
    except Exception as e:
        raise DataError(f"{where}: lhotse cannot load the audio of {cut.id} ({type(e).__name__}: {e})") from None
    buf = io.BytesIO()
    sf.write(buf, audio.mean(axis=0) if audio.ndim == 2 else audio, int(cut.sampling_rate), format="FLAC")
    return store_audio(buf.getvalue(), ".flac")


def _to_manifest(cuts, source: str) -> Manifest:
    from dama.languages import code_of

    items = []
    for i, cut in enumerate(cuts.trim_to_supervisions(keep_overlapping=False)):
        where = f"{source}#{i}"
        _refuse_commands(cut, where)
        sup = cut.supervisions[0] if cut.supervisions else None
        if sup is None:
            continue
        path = _whole_file(cut) or _segment_file(cut, where)
        items.append(Utterance(id=sup.id, audio=path, text=sup.text or "", duration=float(cut.duration),
                               language=code_of(sup.language), speaker=sup.speaker or None, where=where))
    if not items:
        raise DataError(f"{source}: no supervisions (transcribed segments) in the lhotse manifest")
    return Manifest(items, name=source)


def write_lhotse(m: Manifest, out: str | Path, corpus: str = "dama", split: str = "all") -> dict[str, Path]:
    """``m`` as lhotse manifests in ``out``: ``{corpus}_{recordings,supervisions,cuts}_{split}.jsonl.gz``."""
    lhotse = _lhotse()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    recs, sups = [], []
    for u in m:
        try:
            rec = lhotse.Recording.from_file(str(u.audio), recording_id=u.id)
        except Exception as e:
            raise DataError(f"{u.where or u.audio}: lhotse cannot read {u.audio} ({type(e).__name__}: {e})") from None
        recs.append(rec)
        sups.append(lhotse.SupervisionSegment(id=u.id, recording_id=u.id, start=0.0, duration=rec.duration, channel=0,
                                              text=u.text, language=u.language, speaker=u.speaker))
    rset = lhotse.RecordingSet.from_recordings(recs)
    sset = lhotse.SupervisionSet.from_segments(sups)
    cset = lhotse.CutSet.from_manifests(recordings=rset, supervisions=sset)
    paths = {kind: out / f"{corpus}_{kind}_{split}.jsonl.gz" for kind in KINDS}
    from dama.outputs import atomic_write

    for kind, manifest in zip(KINDS, (rset, sset, cset)):
        # lhotse writes to a path; written to a temporary name first, so a killed run leaves no half file
        atomic_write(paths[kind], lambda f, man=manifest: f.write(_gz_jsonl(man)))
    return paths


def _gz_jsonl(manifest) -> bytes:
    import gzip
    import json

    body = "".join(json.dumps(item.to_dict(), ensure_ascii=False) + "\n" for item in manifest)
    return gzip.compress(body.encode("utf-8"), mtime=0)


__all__ = ["is_lhotse_manifest", "lhotse_folder_split", "load_lhotse", "write_lhotse"]
