"""The manifest: what every corpus is turned into before training or evaluation.

Readers are lenient: they record each structural problem (bad JSON, missing field,
unknown column) with its file and line in ``Manifest.problems`` and carry on, so one
``check`` lists everything wrong at once. ``Manifest.raise_problems`` turns them into
one error when a command needs clean data.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from dama.data.audio import audio_duration
from dama.errors import DataError

MAX_SHOWN_PROBLEMS = 20


@dataclass
class Utterance:
    """One transcribed clip. ``where`` says where it was declared (``file:line``)."""

    id: str
    audio: Path
    text: str
    duration: float | None = None
    language: str | None = None
    speaker: str | None = None
    split: str | None = None
    where: str | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["audio_filepath"] = str(d.pop("audio"))
        d.pop("where")
        return {k: v for k, v in d.items() if v is not None}


@dataclass
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class Manifest(list):
    """A list of :class:`Utterance` with a name and the problems found while reading it."""

    def __init__(self, items=(), name: str = "data", problems: list[Problem] | None = None):
        super().__init__(items)
        self.name = name
        self.problems: list[Problem] = list(problems or [])

    @property
    def seconds(self) -> float:
        self.fill_durations()
        return float(sum(u.duration or 0.0 for u in self))

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    def fill_durations(self) -> None:
        """Read missing durations from audio headers (cheap; no decoding)."""
        for u in self:
            if u.duration is None and u.audio.is_file():
                try:
                    u.duration = audio_duration(u.audio)
                except DataError as e:
                    self.problems.append(Problem(u.where or str(u.audio), str(e)))

    def raise_problems(self) -> None:
        if not self.problems:
            return
        shown = "\n".join(f"  {p}" for p in self.problems[:MAX_SHOWN_PROBLEMS])
        more = len(self.problems) - MAX_SHOWN_PROBLEMS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise DataError(
            f"{self.name}: {len(self.problems)} problem(s) in the data:\n{shown}{tail}\n"
            "Fix or remove these entries (`dama data check` lists them all)."
        )

    def subset(self, hours: float, seed: int = 0) -> Manifest:
        """A reproducible random subset totalling about ``hours`` of audio."""
        return select_hours(self, hours, seed)

    def per_language(self, n: int) -> Manifest:
        """The first ``n`` clips of each language, in order: a balanced cut of a multilingual set."""
        if n <= 0:
            raise DataError(f"clips per language must be positive, got {n}")
        seen: dict[str | None, int] = {}
        keep = []
        for u in self:
            seen[u.language] = seen.get(u.language, 0) + 1
            if seen[u.language] <= n:
                keep.append(u)
        return Manifest(keep, name=self.name, problems=self.problems)

    def write_jsonl(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for u in self:
                f.write(json.dumps(u.to_json(), ensure_ascii=False) + "\n")
        return path


def select_hours(manifest: Manifest, hours: float, seed: int = 0) -> Manifest:
    """Shuffle with ``seed`` and take clips until the total is as close to ``hours`` as it gets.

    Clips that would overshoot the target by more than they help are skipped, so the
    result lands within half a clip of the target. Order in the output follows the
    input order, so subsets of the same seed are nested prefixes for growing targets.
    """
    if hours <= 0:
        raise DataError(f"--hours must be positive, got {hours}")
    manifest.fill_durations()
    target = hours * 3600
    order = list(range(len(manifest)))
    random.Random(seed).shuffle(order)
    chosen, total = [], 0.0
    for i in order:
        d = manifest[i].duration or 0.0
        if total >= target:
            break
        if total + d <= target or (total + d - target) < (target - total):
            chosen.append(i)
            total += d
    chosen.sort()
    name = f"{manifest.name}[{hours:g}h,seed={seed}]"
    out = Manifest((manifest[i] for i in chosen), name=name, problems=manifest.problems)
    if not out:
        raise DataError(f"{manifest.name}: no clips selected for {hours} h (the data holds {manifest.hours:.3f} h)")
    return out


# ---------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------

def _utterance_from_fields(rec: dict, base: Path, where: str, problems: list[Problem]) -> Utterance | None:
    audio = rec.get("audio_filepath") or rec.get("audio") or rec.get("path")
    text = rec.get("text")
    if text is None:
        text = rec.get("sentence")
    if not audio:
        problems.append(Problem(where, "no 'audio_filepath' field"))
        return None
    if text is None:
        problems.append(Problem(where, "no 'text' field"))
        return None
    path = Path(str(audio)).expanduser()
    if not path.is_absolute():
        path = base / path
    duration = rec.get("duration")
    try:
        duration = float(duration) if duration not in (None, "") else None
    except ValueError:
        problems.append(Problem(where, f"duration {duration!r} is not a number"))
        duration = None
    return Utterance(
        id=str(rec.get("id") or rec.get("utt_id") or path.stem),
        audio=path,
        text=str(text),
        duration=duration,
        language=rec.get("language") or rec.get("locale") or rec.get("lang") or None,
        speaker=(str(rec["speaker"]) if rec.get("speaker") not in (None, "") else None)
        or (rec.get("client_id") or None),
        split=rec.get("split") or None,
        where=where,
    )


def read_utf8(path: Path, what: str = "file") -> str:
    """The text of ``path``; a file in another encoding is a DataError naming its line,
    not a UnicodeDecodeError traceback (spreadsheets often save CSV as Latin-1 or UTF-16)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the {what} ({e.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: the {what} is not UTF-8 text (byte {data[e.start]:#04x}); "
                        "save it as UTF-8") from None


def read_jsonl(path: str | Path) -> Manifest:
    """NeMo-style JSON lines: ``audio_filepath``, ``text``, optional ``duration``,
    ``language``, ``speaker``; relative paths are resolved against the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    problems: list[Problem] = []
    items = []
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            where = f"{path}:{n}"
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as e:
                problems.append(Problem(where, f"not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1}); "
                                               "save the manifest as UTF-8"))
                continue
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(Problem(where, f"invalid JSON ({e.msg})"))
                continue
            if not isinstance(rec, dict):
                problems.append(Problem(where, "a line must be a JSON object"))
                continue
            if (u := _utterance_from_fields(rec, path.parent, where, problems)) is not None:
                items.append(u)
    return Manifest(items, name=str(path), problems=problems)


def read_table(path: str | Path, audio_dir: str | Path | None = None) -> Manifest:
    """CSV or TSV with a header row naming the same fields as the JSONL manifest
    (Common Voice's ``path``/``sentence``/``locale``/``client_id`` are understood too)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    base = Path(audio_dir) if audio_dir else path.parent
    problems: list[Problem] = []
    items = []
    text = read_utf8(path, "manifest")
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f, delimiter=delim, quoting=csv.QUOTE_NONE if delim == "\t" else csv.QUOTE_MINIMAL)
        cols = set(reader.fieldnames or [])
        if not cols & {"audio_filepath", "audio", "path"} or not cols & {"text", "sentence"}:
            raise DataError(
                f"{path}:1: header {sorted(cols)} lacks an audio column (audio_filepath/path) "
                "or a text column (text/sentence)"
            )
        for n, row in enumerate(reader, 2):
            if (u := _utterance_from_fields(row, base, f"{path}:{n}", problems)) is not None:
                items.append(u)
    return Manifest(items, name=str(path), problems=problems)


def read_common_voice(folder: str | Path, split: str = "test") -> Manifest:
    """A Common Voice language folder: ``<split>.tsv`` plus ``clips/*.mp3``."""
    folder = Path(folder)
    tsv = folder / f"{split}.tsv"
    if not tsv.is_file():
        have = sorted(p.stem for p in folder.glob("*.tsv"))
        raise DataError(f"{tsv}: not found; this Common Voice folder has splits {have}")
    m = read_table(tsv, audio_dir=folder / "clips")
    for u in m:
        u.split = split
        if u.language is None:
            u.language = folder.name
    m.name = f"{folder}:{split}"
    return m
