"""The OpenAI audio API, called with the official ``openai`` client on a server started here (tiny models,
real clips): every response format, /v1/models, /health, and each bad request's 4xx with the server
still serving."""

from __future__ import annotations

import json

import pytest

from dama.data.audio import load_audio
from dama.serve.local import LocalServer
from dama.serve.options import ServeOptions
from tests.serve.conftest import get, post_form, real_clip

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def server(tiny_runs):
    opts = ServeOptions(adapters={k: str(v) for k, v in tiny_runs.items()}, port=0, max_upload_mb=0.2,
                        batch_window_ms=5)
    with LocalServer(opts) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def offline(server, key, path, language=None):
    """The same clip transcribed without the server: the run's own model, as `dama transcribe --adapter` does."""
    from dama.models.transcribe import transcribe
    from dama.runs import load_run

    w = load_run(server.options.adapters[key], merge=False)
    return transcribe(w, [load_audio(path)], language or key, server.engine.decode)[0]


def offline_long(server, key, audio, language=None):
    """Long-form segments without the server, as `dama transcribe --adapter RUN --format json` makes them."""
    from dama.longform import LongformOptions, transcribe_long
    from dama.runs import load_run

    w = load_run(server.options.adapters[key], merge=False)
    d = server.engine.decode
    return transcribe_long(w, audio, LongformOptions(language=language or key, batch_size=d.batch_size,
                                                     num_beams=d.num_beams, loop_repeats=d.loop_repeats))


def test_every_response_format(server, client):
    clip = real_clip("swahili")
    want = offline(server, "sw", clip)
    with clip.open("rb") as f:
        got = client.audio.transcriptions.create(file=f, model="sw", response_format="json")
    assert got.text == want
    with clip.open("rb") as f:
        text = client.audio.transcriptions.create(file=f, model="sw", response_format="text")
    assert text.strip() == want
    with clip.open("rb") as f:
        verbose = client.audio.transcriptions.create(file=f, model="sw", response_format="verbose_json",
                                                     timestamp_granularities=["segment"])
    # formats with times come from the long-form path: Whisper's own segment times, as `dama transcribe --format`
    timed = offline_long(server, "sw", load_audio(clip))
    assert [(s.start, s.end, s.text) for s in verbose.segments] == [(round(s.start, 3), round(s.end, 3), s.text)
                                                                   for s in timed]
    assert verbose.text == " ".join(s.text for s in timed) and verbose.language == "swahili"
    duration = len(load_audio(clip)) / 16_000
    assert verbose.duration == pytest.approx(duration, abs=1e-3)
    with clip.open("rb") as f:
        srt = client.audio.transcriptions.create(file=f, model="sw", response_format="srt")
    with clip.open("rb") as f:
        vtt = client.audio.transcriptions.create(file=f, model="sw", response_format="vtt")
    assert srt.count(" --> ") == vtt.count(" --> ") == len(timed)
    assert vtt.startswith("WEBVTT\n\n") and all(s.text in srt and s.text in vtt for s in timed)


def test_a_long_recording_gets_long_form_segments(server, client, tmp_path):
    """Over a minute of real speech (the start of swahili:test-long's first recording: real clips joined)
    through the openai client: segments of the long-form path with times across the whole recording, equal to
    the offline long-form transcript. (Cut to 70 s: the random tiny model decodes every window to its token
    budget at each fallback temperature.)"""
    import soundfile as sf

    from tests.serve.conftest import long_recording

    audio = long_recording("swahili", seconds=70)
    assert len(audio) == 70 * 16_000
    path = tmp_path / "talk.flac"
    sf.write(path, audio, 16_000, subtype="PCM_16")
    opts = ServeOptions(adapters=server.options.adapters, port=0, max_upload_mb=25)
    with LocalServer(opts, engine=server.engine) as big:  # same models, an upload limit that fits minutes
        c = openai.OpenAI(base_url=big.url + "/v1", api_key="unused", max_retries=0)
        with path.open("rb") as f:
            got = c.audio.transcriptions.create(file=f, model="sw", response_format="verbose_json")
        with path.open("rb") as f:
            text = c.audio.transcriptions.create(file=f, model="sw", response_format="json").text
    want = offline_long(server, "sw", load_audio(path))
    assert [(s.start, s.end, s.text) for s in got.segments] == [(round(s.start, 3), round(s.end, 3), s.text)
                                                               for s in want]
    assert got.duration == pytest.approx(len(audio) / 16_000, abs=1e-2)
    starts = [s.start for s in got.segments]
    assert starts == sorted(starts) and (not starts or all(s.end <= got.duration + 1e-3 for s in got.segments))
    assert text == got.text  # over 30 s even json goes through the long-form path


def test_language_picks_the_adapter_and_model_picks_the_base(server, client):
    clip = real_clip("yoruba")
    with clip.open("rb") as f:  # model auto (what OpenAI clients send) + language yo -> the yo adapter
        got = client.audio.transcriptions.create(file=f, model="whisper-1", language="yo", response_format="json")
    assert got.model_extra["dama"]["adapter"] == "yo" and got.text == offline(server, "yo", clip)
    base = server.engine.base_name
    with clip.open("rb") as f:  # the base model's name -> no adapter
        got = client.audio.transcriptions.create(file=f, model=base, language="en", response_format="json")
    assert got.model_extra["dama"]["adapter"] is None
    from dama.models.load import load_whisper
    from dama.models.transcribe import transcribe
    from dama.runs import RunFolder

    bare = load_whisper(RunFolder(server.options.adapters["sw"]).read_config()["model"])
    assert got.text == transcribe(bare, [load_audio(clip)], "en", server.engine.decode)[0]


def test_models_and_health(server, client):
    ids = {m.id: m for m in client.models.list()}
    assert {"auto", server.engine.base_name, "sw", "yo"} <= set(ids)
    assert ids["yo"].model_extra["language"] == "yo"
    h = get(server.url + "/health").json()
    assert h["status"] == "ok" and h["adapters"] == {"sw": "sw", "yo": "yo"}


def _post(server, files=None, **data):
    return post_form(server.url + "/v1/audio/transcriptions", files, data)


def test_bad_requests_get_their_4xx_and_the_server_keeps_serving(server, client, tmp_path):
    clip = real_clip("swahili")
    audio = clip.read_bytes()
    cases = {
        "no file": (_post(server, model="sw"), 400, "file"),
        "empty file": (_post(server, files={"file": ("a.wav", b"")}, model="sw"), 400, "file"),
        "not audio": (_post(server, files={"file": ("a.wav", b"GIF89a not audio at all" * 10)}, model="sw"), 400,
                      "file"),
        "too large": (_post(server, files={"file": ("big.wav", b"\0" * 300_000)}, model="sw"), 413, "file"),
        "unknown model": (_post(server, files={"file": ("a.opus", audio)}, model="xx"), 404, "model"),
        "unknown language": (_post(server, files={"file": ("a.opus", audio)}, model="auto", language="klingon"), 400,
                             "language"),
        "bad format": (_post(server, files={"file": ("a.opus", audio)}, model="sw", response_format="docx"), 400,
                       "response_format"),
        "word timestamps": (_post(server, files={"file": ("a.opus", audio)}, model="sw",
                                  **{"timestamp_granularities[]": "word"}), 400, "timestamp_granularities[]"),
        "not multipart": (post_form(server.url + "/v1/audio/transcriptions", raw=b'{"model": "sw"}'), 400, "file"),
    }
    for name, (r, status, param) in cases.items():
        assert r.status_code == status, (name, r.text)
        err = r.json()["error"]
        assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"], name
    with pytest.raises(openai.NotFoundError, match="unknown model"):
        with clip.open("rb") as f:
            client.audio.transcriptions.create(file=f, model="nope")
    with pytest.raises(openai.BadRequestError, match="response_format"):
        with clip.open("rb") as f:
            client.audio.transcriptions.create(file=f, model="sw", response_format="docx")
    with clip.open("rb") as f:  # still serving
        assert client.audio.transcriptions.create(file=f, model="sw").text == offline(server, "sw", clip)
    r = _post(server, files={"file": ("a.opus", audio)}, model="sw", prompt="habari")
    assert r.status_code == 200 and "prompt ignored" in r.headers["x-dama-note"]


def test_web_page_is_served(server):
    r = get(server.url + "/")
    assert r.status_code == 200 and "<title>dama serve</title>" in r.text
    assert json.loads(get(server.url + "/v1/models").text)["object"] == "list"
