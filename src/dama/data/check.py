"""Find every problem in a manifest at once, instead of dying on the first bad clip."""

from __future__ import annotations

from dama.data.audio import CHUNK_SECONDS, SAMPLE_RATE, audio_duration, load_audio
from dama.data.manifest import Manifest, Problem
from dama.errors import DataError
from dama.languages import WHISPER_LANGUAGES

MAX_SECONDS = CHUNK_SECONDS  # longer clips are transcribed in chunks (a warning, not an error)


def check_manifest(
    m: Manifest, decode: bool = False, extra_languages: dict[str, str] | None = None
) -> tuple[list[Problem], list[Problem]]:
    """Return (errors, warnings). ``decode`` also decodes every clip (slow but thorough)."""
    errors = list(m.problems)
    warnings: list[Problem] = []
    known = set(WHISPER_LANGUAGES) | set(extra_languages or {})
    seen: dict[str, str] = {}
    for u in m:
        where = u.where or str(u.audio)
        if not u.text.strip():
            errors.append(Problem(where, f"empty transcript for {u.id}"))
        if u.language is not None and u.language not in known:
            errors.append(Problem(where, f"unknown language code {u.language!r} (not a Whisper language)"))
        if u.id in seen:
            warnings.append(Problem(where, f"duplicate id {u.id!r} (also at {seen[u.id]})"))
        seen.setdefault(u.id, where)
        if not u.audio.is_file():
            errors.append(Problem(where, f"audio file not found: {u.audio}"))
            continue
        try:
            dur = audio_duration(u.audio)
            if decode:
                dur = len(load_audio(u.audio)) / SAMPLE_RATE
        except DataError as e:
            errors.append(Problem(where, str(e)))
            continue
        if dur <= 0:
            errors.append(Problem(where, f"zero-length audio: {u.audio}"))
            continue
        u.duration = dur
        if dur > MAX_SECONDS:
            warnings.append(Problem(where, f"{u.id} is {dur:.1f} s (> {MAX_SECONDS:.0f} s): transcribed in chunks"))
    return errors, warnings
