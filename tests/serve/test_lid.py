"""The language router: fit by `dama lid train` on the adapters' own clips, saved as safetensors + JSON beside
the runs, found and used by the server when a request gives no language; languages Whisper has no token
for (two of them, sharing one new token id) are routable. Tiny models, real clips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dama.data.audio import load_audio
from dama.serve.engine import ServeEngine
from dama.serve.lid import LanguageRouter
from dama.serve.local import LocalServer
from dama.serve.options import ServeOptions
from tests.serve.conftest import post_form, real_clip, train_tiny


@pytest.fixture(scope="module")
def four_runs(tmp_path_factory, tiny_base):
    """sw, yo and two new languages (rw, pcm: no Whisper token; both get the first free id)."""
    root = tmp_path_factory.mktemp("lid-runs")
    runs = {key: train_tiny(root, tiny_base, key, f"{corpus}:train", key, name)
            for key, corpus, name in (("sw", "swahili", None), ("yo", "yoruba", None),
                                      ("rw", "kinyarwanda", "Kinyarwanda"), ("pcm", "pidgin", "Nigerian Pidgin"))}
    return root, runs


def test_lid_train_saves_a_router_the_server_loads_and_uses(four_runs, tmp_path):
    from dama.cli.main import main

    root, runs = four_runs
    ids = {json.loads((r / "config.json").read_text())["new_language"]["token_id"] for k, r in runs.items()
           if k in ("rw", "pcm")}
    assert len(ids) == 1  # the two new languages were trained on the same new id
    adapters = ",".join(f"{k}={v}" for k, v in runs.items())
    assert main(["lid", "train", "--adapters", adapters, "--other", "fleurs-control:en", "--max-per-class", "4",
                 "--json", str(tmp_path / "lid.json")]) == 0
    lid_dir = root / "runs" / "lid"  # beside the runs, where dama serve looks
    assert sorted(p.name for p in lid_dir.iterdir()) == ["lid.json", "lid.safetensors"]
    assert b"pickle" not in (lid_dir / "lid.safetensors").read_bytes()[:200]
    router = LanguageRouter.load(lid_dir)
    assert sorted(router.classes) == ["base", "pcm", "rw", "sw", "yo"]
    assert router.languages == {"sw": "sw", "yo": "yo", "rw": "rw", "pcm": "pcm"}
    report = json.loads((tmp_path / "lid.json").read_text())
    assert report["trained_on"] == {"sw": 4, "yo": 4, "rw": 4, "pcm": 4, "base": 4}

    opts = ServeOptions(adapters={k: str(v) for k, v in runs.items()}, port=0)
    engine = ServeEngine(opts)
    assert engine.router_path == lid_dir
    clips = {"sw": real_clip("swahili"), "pcm": real_clip("pidgin"), "rw": real_clip("kinyarwanda")}
    plans = [engine.plan("auto", None)] * len(clips)
    resolved = engine.route([load_audio(c) for c in clips.values()], plans)
    with LocalServer(opts, engine) as s:
        for clip, want in zip(clips.values(), resolved):
            r = post_form(s.url + "/v1/audio/transcriptions", {"file": (clip.name, clip.read_bytes())},
                          {"model": "auto", "response_format": "verbose_json"})
            assert r.status_code == 200, r.text
            d = r.json()["dama"]
            assert d["detected"] and d["adapter"] == want.adapter and d["language"] == want.language
            assert 0 < d["language_probability"] <= 1
        for key in ("rw", "pcm"):  # a new language, asked for by code: its own adapter and token
            clip = clips[key]
            r = post_form(s.url + "/v1/audio/transcriptions", {"file": (clip.name, clip.read_bytes())},
                          {"model": "auto", "language": key, "response_format": "json"})
            assert r.json()["dama"]["adapter"] == key and not r.json()["dama"]["detected"]
            from dama.models.transcribe import transcribe
            from dama.runs import load_run

            alone = load_run(runs[key], merge=False)
            assert r.json()["text"] == transcribe(alone, [load_audio(clip)], key, engine.decode)[0]
        r = post_form(s.url + "/v1/audio/transcriptions", {"file": ("a.opus", clips["rw"].read_bytes())},
                      {"model": engine.base_name, "language": "rw"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "language"


def test_router_round_trips_and_refuses_a_foreign_file(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (20, 6)), rng.normal(3, 1, (20, 6))]).astype(np.float32)
    labels = ["sw"] * 20 + ["base"] * 20
    r = LanguageRouter.fit(x, labels, {"sw": "sw"}, layers=(3, 6))  # no c: chosen by cross-validation
    from dama.serve.lid import C_GRID

    assert r.info["c"] in C_GRID
    r.save(tmp_path / "lid")
    back = LanguageRouter.load(tmp_path / "lid")
    np.testing.assert_allclose(back.probabilities(x), r.probabilities(x), rtol=1e-6)
    assert (np.array(back.classes)[back.probabilities(x).argmax(1)] == np.array(labels)).mean() > 0.9
    assert back.layers == (3, 6) and back.info["c"] == r.info["c"]
    meta = json.loads((tmp_path / "lid" / "lid.json").read_text())  # a router saved before layers were listed
    meta.pop("layers")
    (tmp_path / "lid" / "lid.json").write_text(json.dumps({**meta, "format": "dama-lid/1"}))
    old = LanguageRouter.load(tmp_path / "lid")
    from types import SimpleNamespace as NS

    six_layers = NS(model=NS(config=NS(encoder_layers=6)))
    assert old.layers is None and old.feature_layers(six_layers) == (6,)  # /1 routers pooled the last layer
    (tmp_path / "lid" / "lid.json").write_text('{"format": "something-else"}')
    from dama.safeio import FileError

    with pytest.raises(FileError, match="not a dama language router"):
        LanguageRouter.load(tmp_path / "lid")
