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
                 "--crops", "2", "--cache", str(tmp_path / "stats.npz"), "--json", str(tmp_path / "lid.json")]) == 0
    lid_dir = root / "runs" / "lid"  # beside the runs, where dama serve looks
    assert sorted(p.name for p in lid_dir.iterdir()) == ["lid.json", "lid.safetensors"]
    assert b"pickle" not in (lid_dir / "lid.safetensors").read_bytes()[:200]
    router = LanguageRouter.load(lid_dir)
    assert sorted(router.classes) == ["base", "pcm", "rw", "sw", "yo"]
    assert router.languages == {"sw": "sw", "yo": "yo", "rw": "rw", "pcm": "pcm"}
    report = json.loads((tmp_path / "lid.json").read_text())
    assert report["trained_on"] == {"sw": 4, "yo": 4, "rw": 4, "pcm": 4, "base": 4}
    assert report["crops"]["per_class"] == {"sw": 2, "yo": 2, "rw": 2, "pcm": 2, "base": 2}
    assert report["threshold"] == 0.0  # trained on manifests: no val split to calibrate on
    # the features were kept under the plain base encoder's key (adapters never touch the encoder)
    from dama.encoder_cache import encoder_fingerprint
    from dama.models.load import load_whisper
    from dama.serve.lid_cache import StatsCache

    plain = load_whisper(json.loads((runs["sw"] / "config.json").read_text())["model"], device="cpu")
    last = (plain.model.config.encoder_layers,)
    assert len(StatsCache(tmp_path / "stats.npz", encoder_fingerprint(plain.model), last)) == 20 + 5 * 2

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
            assert d["detected_by"] == want.by
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


def _router(threshold: float = 0.0) -> LanguageRouter:
    """Three classes read straight off a 3-number feature vector (identity weights): sw, rw (a new language),
    base-am (the bare base model in Amharic); the clip's own features set how sure the router is."""
    eye = np.eye(3, dtype=np.float32)
    return LanguageRouter(["sw", "rw", "base-am"], {"sw": "sw", "rw": "rw", "base-am": "am"}, eye * 10,
                          np.zeros(3, np.float32), np.zeros(3, np.float32), np.ones(3, np.float32),
                          threshold=threshold)


def _clips(rows, whisper_top="en"):
    from dama.serve.lid import ClipFeatures

    codes = ["en", "sw", "am"]
    wp = np.tile(np.array([[0.8 if c == whisper_top else 0.1 for c in codes]], np.float32), (len(rows), 1))
    return ClipFeatures(np.array(rows, np.float32), wp, codes)


LOADED = {"sw": "sw", "rw": "rw"}


def test_below_its_threshold_the_router_defers_to_whisper_and_not_above():
    sure, unsure = [1.0, 0.0, 0.0], [0.05, 0.0, 0.0]  # p(sw) ~ 1.0 vs ~ 0.45
    r = _router(threshold=0.6)
    d_sure, d_unsure = r.decide(_clips([sure, unsure]), LOADED)
    assert (d_sure.adapter, d_sure.language, d_sure.by) == ("sw", "sw", "router") and d_sure.probability > 0.99
    assert (d_unsure.adapter, d_unsure.language, d_unsure.by) == (None, "en", "whisper")
    assert d_unsure.probability == pytest.approx(0.8)
    # Whisper's own choice still goes to the adapter of its language when one is loaded
    (d,) = r.decide(_clips([unsure], whisper_top="sw"), LOADED)
    assert (d.adapter, d.language, d.by) == ("sw", "sw", "whisper")
    (d,) = _router(threshold=0.0).decide(_clips([unsure]), LOADED)  # threshold 0: the router always decides
    assert (d.adapter, d.by) == ("sw", "router")


def test_a_base_language_class_goes_to_the_bare_model_in_its_language():
    r = _router(threshold=0.5)
    (d,) = r.decide(_clips([[0.0, 0.0, 1.0]]), LOADED)
    assert (d.adapter, d.language, d.by) == (None, "am", "router")
    (d,) = r.decide(_clips([[0.0, 1.0, 0.0]]), {"sw": "sw"})  # rw's adapter not loaded: Whisper decides
    assert (d.adapter, d.language, d.by) == (None, "en", "whisper")


def test_calibration_picks_the_middle_of_the_best_thresholds_on_validation_clips():
    from dama.serve.lid import THRESHOLD_GRID

    r = _router()
    # a clip whose router probability is ~0.45 (wrong: it is English, Whisper is right) and a sure sw clip:
    # thresholds above 0.45 serve both right, 0 and 0.3 serve the first wrongly
    cf = _clips([[0.05, 0.0, 0.0], [1.0, 0.0, 0.0]])
    t = r.calibrate(cf, [(None, "en"), ("sw", "sw")], LOADED)
    cal = r.info["calibration"]
    best = [g for g, a in zip(THRESHOLD_GRID, cal["accuracy"]) if a == 1.0]
    assert best == [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99] and t == best[(len(best) - 1) // 2] == 0.8
    assert cal["accuracy"][0] == 0.5 and cal["accuracy_at_threshold"] == 1.0 and cal["clips"] == 2
    with pytest.raises(Exception, match="validation clips"):
        r.calibrate(_clips([[1.0, 0.0, 0.0]]), [], LOADED)


def test_a_fortran_ordered_weight_round_trips(tmp_path):
    """scikit-learn may hand back coef_ in Fortran order; safetensors writes raw buffers: the saved router must
    still decide as the fitted one (it did not: the served router was scrambled)."""
    rng = np.random.default_rng(0)
    w = np.asfortranarray(rng.normal(size=(3, 5)).astype(np.float32))
    r = LanguageRouter(["a", "b", "c"], {}, w, np.zeros(3), np.zeros(5), np.ones(5))
    r.save(tmp_path / "lid")
    x = rng.normal(size=(20, 5)).astype(np.float32)
    np.testing.assert_allclose(LanguageRouter.load(tmp_path / "lid").probabilities(x), r.probabilities(x), rtol=1e-6)
    np.testing.assert_array_equal(r.weight, w)


def test_the_threshold_round_trips_and_older_routers_load_without_one(tmp_path):
    r = _router(threshold=0.8)
    r.save(tmp_path / "lid")
    back = LanguageRouter.load(tmp_path / "lid")
    assert back.threshold == 0.8 and back.languages["base-am"] == "am"
    (d,) = back.decide(_clips([[0.05, 0.0, 0.0]]), LOADED)
    assert d.by == "whisper"  # the loaded threshold is in force
    meta = json.loads((tmp_path / "lid" / "lid.json").read_text())
    assert meta["format"] == "dama-lid/3"
    for old in ("dama-lid/2", "dama-lid/1"):  # written before thresholds existed: the router always decides
        (tmp_path / "lid" / "lid.json").write_text(json.dumps({**{k: v for k, v in meta.items() if k != "threshold"},
                                                                "format": old}))
        old_router = LanguageRouter.load(tmp_path / "lid")
        assert old_router.threshold == 0.0
        (d,) = old_router.decide(_clips([[0.05, 0.0, 0.0]]), LOADED)
        assert d.by == "router"
    (tmp_path / "lid" / "lid.json").write_text(json.dumps({**meta, "threshold": 7}))
    from dama.safeio import FileError

    with pytest.raises(FileError, match="threshold"):
        LanguageRouter.load(tmp_path / "lid")


def test_other_languages_get_a_class_of_their_own_only_with_enough_clips():
    from dama.data.manifest import Utterance
    from dama.serve.lid_train import other_classes

    def utts(lang, n):
        return [Utterance(f"{lang}-{i}", f"/x/{lang}{i}.wav", "t", language=lang) for i in range(n)]

    got = other_classes(utts("am", 30) + utts("en", 5) + utts("de", 5) + utts("rw", 40) + utts("sw", 50),
                        served={"sw"}, max_per_class=25, min_language_clips=20)
    assert sorted(got) == ["base", "base-am"]  # rw has no Whisper token; sw is an adapter's
    assert len(got["base-am"]) == 25
    assert sorted({u.language for u in got["base"]}) == ["de", "en", "rw"] and len(got["base"]) == 5 + 5 + 9


def test_the_feature_cache_encodes_each_clip_once_and_reads_dama_trains_encoder_cache(tmp_path, tiny_whisper,
                                                                                     monkeypatch):
    from dama.data import load_data
    from dama.data.manifest import Manifest
    from dama.encoder_cache import EncoderCache
    from dama.serve import lid_cache
    from dama.serve.lid import encoder_stats
    from dama.serve.lid_cache import cached_stats, open_cache
    from tests.helpers import SHARED_DATA, need_real_data

    need_real_data()
    w = tiny_whisper
    last = w.model.config.encoder_layers
    utts = list(load_data("swahili:test", SHARED_DATA))[:4]
    direct = encoder_stats(w, [load_audio(u.audio) for u in utts])
    assert direct.layers == tuple(range(last + 1)) and direct.stats.shape[:3] == (4, last + 1, 2)
    calls = []
    monkeypatch.setattr(lid_cache, "encoder_stats",
                        lambda w, a, b, layers: calls.append(len(a)) or encoder_stats(w, a, b, layers))
    first = cached_stats(w, utts[:2], open_cache(w, tmp_path / "f.npz", (1, last)))
    again = cached_stats(w, utts[:3], open_cache(w, tmp_path / "f.npz", (1, last)))  # read back from the file
    assert calls == [2, 1]
    np.testing.assert_allclose(again.stats, direct.stats[:3, [1, last]], atol=1e-5)
    np.testing.assert_allclose(first.whisper_probs, direct.whisper_probs[:2], atol=1e-6)
    assert again.features((last,)).features.shape == (3, 2 * w.model.config.d_model + len(again.codes))
    from dama.safeio import FileError

    with pytest.raises(FileError, match="another encoder"):
        lid_cache.StatsCache(tmp_path / "f.npz", "not-this-one", (1, last))
    with pytest.raises(FileError, match="layers"):
        open_cache(w, tmp_path / "f.npz", (last,))
    # the last layer alone: clips dama train has cached are pooled from its float16 outputs, no encoder pass
    EncoderCache.build(w, Manifest(utts[2:]), tmp_path / "enc", show_progress=False)
    calls.clear()
    got = cached_stats(w, utts, open_cache(w, None, (last,)), encoder_caches=[tmp_path / "enc"])
    assert calls == [2]  # the two clips the encoder cache lacks
    np.testing.assert_allclose(got.stats, direct.stats[:, [last]], rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(got.whisper_probs, direct.whisper_probs, atol=1e-2)


def test_short_crops_are_deterministic_within_their_clips_and_encoded_once(tmp_path, tiny_whisper, monkeypatch):
    """Every class gets crops of 2-8 s of its own clips (so no class is "the short one"); the same crops every
    run; each encoded as a clip of its own, exactly as the server encodes a short request, and only once."""
    import soundfile as sf

    from dama.data import load_data
    from dama.serve import lid_crops
    from dama.serve.lid import encoder_stats
    from dama.serve.lid_cache import open_cache
    from dama.serve.lid_crops import cached_crop_stats, make_crops
    from tests.helpers import SHARED_DATA, need_real_data

    need_real_data()
    w = tiny_whisper
    utts = list(load_data("swahili:test", SHARED_DATA))[:3]
    crops = make_crops(utts, 5, (2.0, 8.0), seed="sw")
    assert crops == make_crops(utts, 5, (2.0, 8.0), seed="sw") != make_crops(utts, 5, (2.0, 8.0), seed="yo")
    assert len(crops) == 5 and {c.utt.id for c in crops} == {u.id for u in utts}  # every clip in turn
    for c in crops:
        assert 2.0 <= c.seconds <= 8.0 and 0 <= c.start and c.start + c.seconds <= sf.info(str(c.utt.audio)).duration
    assert make_crops(utts, 0) == [] and make_crops(utts, 3, (60.0, 90.0)) == []  # no clip long enough
    calls = []
    monkeypatch.setattr(lid_crops, "encoder_stats",
                        lambda w, a, b, layers: calls.append(len(a)) or encoder_stats(w, a, b, layers))
    last = (w.model.config.encoder_layers,)
    got = cached_crop_stats(w, crops[:3], open_cache(w, tmp_path / "c.npz", last), log=lambda m: None)
    cached_crop_stats(w, crops, open_cache(w, tmp_path / "c.npz", last), log=lambda m: None)
    assert calls == [3, 2]
    c = crops[0]
    audio = load_audio(c.utt.audio)[int(round(c.start * 16000)): int(round((c.start + c.seconds) * 16000))]
    np.testing.assert_allclose(got.stats[0], encoder_stats(w, [audio], layers=last).stats[0], atol=1e-5)


def test_validation_report_separates_whole_clips_from_crops():
    from dama.serve.lid import ClipFeatures
    from dama.serve.lid_train import validation_report

    x = np.array([[-3.0], [3.0], [-3.0], [-3.0]], np.float32)
    router = LanguageRouter.fit(np.array([[-3.0], [-2.0], [2.0], [3.0]], np.float32), ["sw", "sw", "yo", "yo"],
                                {"sw": "sw", "yo": "yo"}, c=1.0)
    cf = ClipFeatures(x, np.full((4, 1), 1.0, np.float32), ["en"])
    truth = [("sw", "sw"), ("yo", "yo"), ("sw", "sw"), ("yo", "yo")]
    got = validation_report(router, cf, truth, 2, {"sw": "sw", "yo": "yo"})
    assert got == {"sw": {"clips": {"right": 1, "of": 1}, "crops": {"right": 1, "of": 1}},
                   "yo": {"clips": {"right": 1, "of": 1}, "crops": {"right": 0, "of": 1}}}
