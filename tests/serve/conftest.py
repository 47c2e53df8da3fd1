"""Fixtures for dama serve: two tiny trained runs (swahili, yoruba) on one tiny random base, real clips."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import SHARED_DATA


def _real_manifest(path: Path, spec: str, n: int, language: str | None = None) -> Path:
    """A JSONL manifest of the first ``n`` clips of a real corpus split (each run learns from its own language)."""
    import json

    from dama.data import load_data

    if not SHARED_DATA.is_dir():
        _missing(f"real data not found at {SHARED_DATA} (set DAMA_DATA)")
    utts = list(load_data(spec, SHARED_DATA))[:n]
    # a few words only: the tiny model's decoder holds 64 byte-level tokens (the text need not fit the audio here)
    rows = [{"audio_filepath": str(u.audio), "text": " ".join(u.text.split()[:3])[:30],
             "language": language or u.language} for u in utts]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _missing(msg: str):
    import os

    if os.environ.get("DAMA_REQUIRE_INTEGRATION"):
        pytest.fail(msg)
    pytest.skip(msg)


def train_tiny(root: Path, base: Path, key: str, spec: str, language: str, name: str | None = None) -> Path:
    """A LoRA run (one epoch, four real clips of ``spec``) on the tiny base; ``name``: a new language's name."""
    from dama.cli.main import main

    manifest = _real_manifest(root / f"{key}.jsonl", spec, 4, language)
    out = root / "runs" / key
    args = ["train", "--method", "lora", "--rank", "4", "--model", str(base), "--data", str(manifest),
            "--out", str(out), "--epochs", "1", "--lr", "5e-2", "--seed", "0", "--cache-dir", str(root / "cache"),
            "--language", language] + (["--language-name", name] if name else [])
    assert main(args) == 0
    return out


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    from dama.testing import make_tiny_ct2

    # with Whisper's timestamp tokens: the long-form path (segment times) decodes in timestamp mode
    return make_tiny_ct2(tmp_path_factory.mktemp("serve-base") / "base", decoder_layers=6, timestamps=True)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory, tiny_base) -> dict[str, Path]:
    """``sw`` and ``yo`` LoRA runs (one epoch on four real clips each) on one tiny random Whisper, in one folder."""
    root = tmp_path_factory.mktemp("serve-runs")
    return {key: train_tiny(root, tiny_base, key, f"{corpus}:train", key)
            for key, corpus in (("sw", "swahili"), ("yo", "yoruba"))}


def long_recording(corpus: str = "swahili", seconds: float | None = None):
    """The first recording of ``CORPUS:test-long`` (real clips joined, minutes long; built once into the cache),
    as 16 kHz audio, cut to its first ``seconds`` if given."""
    from dama.data import load_data
    from dama.data.audio import load_audio

    if not (SHARED_DATA / corpus).is_dir():
        _missing(f"real data of {corpus} not found under {SHARED_DATA} (set DAMA_DATA)")
    first = next(iter(load_data(f"{corpus}:test-long", SHARED_DATA)))
    audio = load_audio(first.audio, first.where)
    return audio[: int(seconds * 16_000)] if seconds else audio


def real_clip(corpus: str, n: int = 0) -> Path:
    """The n-th test clip of a corpus in the shared data (skips when the data is absent)."""
    if corpus == "fleurs-control":
        clips = sorted((SHARED_DATA / corpus).glob("fleurs-en-*.ogg"))
    else:
        clips = sorted((SHARED_DATA / corpus / "data" / "records" / "test").glob("*.opus"))
    if not clips:
        _missing(f"real clips of {corpus} not found under {SHARED_DATA} (set DAMA_DATA)")
    return clips[n]


class Reply:
    """An HTTP answer read with the standard library (so raw, malformed requests can be sent too)."""

    def __init__(self, status: int, headers, body: bytes):
        self.status_code, self.headers, self.content = status, {k.lower(): v for k, v in headers.items()}, body

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self):
        import json

        return json.loads(self.content)


def _send(req) -> Reply:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return Reply(r.status, dict(r.headers), r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, dict(e.headers), e.read())


def get(url: str) -> Reply:
    import urllib.request

    return _send(urllib.request.Request(url))


def post_form(url: str, files: dict | None = None, data: dict | None = None, raw: bytes | None = None) -> Reply:
    """POST multipart/form-data (``files``: field -> (name, bytes)); ``raw``: a JSON body instead."""
    import urllib.request
    import uuid

    if raw is not None:
        return _send(urllib.request.Request(url, data=raw, headers={"Content-Type": "application/json"}))
    boundary = uuid.uuid4().hex
    parts = []
    for k, v in (data or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for k, (name, content) in (files or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
                     "Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return _send(urllib.request.Request(url, data=body,
                                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}))
