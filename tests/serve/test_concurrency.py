"""Requests arriving together are decoded together (per adapter); a full queue answers 503; SIGTERM lets
requests in flight finish. Real server (uvicorn) on loopback, tiny models, real clips."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dama.serve.local import LocalServer
from dama.serve.options import ServeOptions
from tests.serve.conftest import get, post_form, real_clip

REPO = Path(__file__).resolve().parents[2]


def _options(tiny_runs, **kw) -> ServeOptions:
    return ServeOptions(adapters={k: str(v) for k, v in tiny_runs.items()}, port=0, **kw)


def _transcribe(url: str, clip: Path, model: str, fmt: str = "json"):
    return post_form(url + "/v1/audio/transcriptions", {"file": (clip.name, clip.read_bytes())},
                     {"model": model, "response_format": fmt})


def test_requests_arriving_together_are_batched_per_adapter(tiny_runs):
    clips = [real_clip("swahili", i) for i in range(4)] + [real_clip("yoruba", i) for i in range(2)]
    models = ["sw"] * 4 + ["yo"] * 2
    with LocalServer(_options(tiny_runs, batch_size=1)) as s:  # batching off: the reference
        alone = [_transcribe(s.url, c, m).json()["text"] for c, m in zip(clips, models)]
    with LocalServer(_options(tiny_runs, batch_size=8, batch_window_ms=400)) as s:
        with ThreadPoolExecutor(len(clips)) as pool:
            replies = list(pool.map(lambda cm: _transcribe(s.url, *cm), zip(clips, models)))
        stats = get(s.url + "/health").json()["served"]
    assert [r.status_code for r in replies] == [200] * len(clips)
    assert [r.json()["text"] for r in replies] == alone  # same text batched or not, each from its adapter
    assert [r.json()["dama"]["adapter"] for r in replies] == models
    assert stats["requests"] == len(clips) and stats["largest_batch"] >= 2 and stats["batches"] < len(clips)


def test_a_full_queue_answers_503_and_loses_nothing(tiny_runs):
    clip = real_clip("swahili")
    with LocalServer(_options(tiny_runs, batch_size=8, batch_window_ms=1500, max_queue=2)) as s:
        with ThreadPoolExecutor(6) as pool:
            replies = list(pool.map(lambda _: _transcribe(s.url, clip, "sw"), range(6)))
        codes = sorted(r.status_code for r in replies)
        assert codes.count(200) >= 2 and codes.count(503) >= 1 and set(codes) <= {200, 503}
        busy = next(r for r in replies if r.status_code == 503).json()["error"]
        assert busy["code"] == "server_busy" and "--max-queue 2" in busy["message"]
        texts = {r.json()["text"] for r in replies if r.status_code == 200}
        assert len(texts) == 1
        assert _transcribe(s.url, clip, "sw").status_code == 200  # room again once those are answered


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sigterm_finishes_requests_in_flight(tiny_runs):
    clip = real_clip("swahili")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    adapters = ",".join(f"{k}={v}" for k, v in tiny_runs.items())
    proc = subprocess.Popen([sys.executable, "-m", "dama", "serve", "--adapters", adapters, "--port", str(port),
                             "--batch-window-ms", "2000"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if get(url + "/health").status_code == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(_transcribe, url, clip, "sw") for _ in range(3)]
            time.sleep(0.7)  # accepted, waiting in the batch window
            proc.send_signal(signal.SIGTERM)
            replies = [f.result() for f in futures]
        assert [r.status_code for r in replies] == [200] * 3
        # uvicorn re-raises the signal once shut down, so the exit status says "terminated by SIGTERM"
        assert proc.wait(60) in (0, -signal.SIGTERM)
        assert "Finished server process" in proc.stdout.read().decode()
        with pytest.raises(OSError):
            get(url + "/health")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
