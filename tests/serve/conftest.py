"""Fixtures for dama serve: two tiny trained runs (swahili, yoruba) on one tiny random base, real clips."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> dict[str, Path]:
    """``sw`` and ``yo`` LoRA runs (a few steps each) on one tiny random Whisper, in one folder."""
    from dama.cli.main import main
    from dama.testing import make_corpus, make_tiny_ct2

    root = tmp_path_factory.mktemp("serve-runs")
    base = make_tiny_ct2(root / "base", decoder_layers=6)
    corpus = make_corpus(root / "data", n_train=4, n_val=0, n_test=2)
    runs = {}
    for key, seed in (("sw", "0"), ("yo", "1")):
        args = ["train", "--method", "lora", "--rank", "4", "--model", str(base), "--data", "swahili:train",
                "--data-root", str(corpus), "--out", str(root / "runs" / key), "--epochs", "1", "--lr", "5e-2",
                "--seed", seed, "--val", "none", "--test", "none", "--cache-dir", str(root / "cache"),
                "--language", key]
        assert main(args) == 0
        runs[key] = root / "runs" / key
    return runs


def real_clip(corpus: str, n: int = 0) -> Path:
    """The n-th test clip of a corpus in the shared data (skips when the data is absent)."""
    import os

    if corpus == "fleurs-control":
        clips = sorted((SHARED_DATA / corpus).glob("fleurs-en-*.ogg"))
    else:
        clips = sorted((SHARED_DATA / corpus / "data" / "records" / "test").glob("*.opus"))
    if not clips:
        msg = f"real clips of {corpus} not found under {SHARED_DATA} (set DAMA_DATA)"
        if os.environ.get("DAMA_REQUIRE_INTEGRATION"):
            pytest.fail(msg)
        pytest.skip(msg)
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
