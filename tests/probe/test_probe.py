"""Probe measures against known answers, features on a tiny model, the allocation rule, the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest

from dama.adapt.allocation import allocate, allocation_from_file
from dama.cli.main import main
from dama.errors import DamaError
from dama.probe import language_variance, lid_probe, linear_cka
from dama.testing import write_wav


def blobs(sep: float, n: int = 12, d: int = 16, langs=("a", "b", "c"), seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(langs), d)) * sep
    x = np.concatenate([centres[i] + rng.normal(size=(n, d)) for i in range(len(langs))])
    return x, [lang for lang in langs for _ in range(n)]


def test_lid_probe_separates_separable_languages_and_not_noise():
    x, y = blobs(sep=3.0)
    strong = lid_probe(x, y, train_per_language=4, dims=4, repeats=10)
    assert strong["mean"] > 0.95 and strong["chance"] == pytest.approx(1 / 3)
    x, y = blobs(sep=0.0)
    null = lid_probe(x, y, train_per_language=4, dims=4, repeats=30)
    assert abs(null["mean"] - 1 / 3) < 0.12 and null["std"] > 0


def test_lid_probe_bad_input():
    x, y = blobs(sep=1.0, langs=("a",))
    with pytest.raises(DamaError, match="at least two languages"):
        lid_probe(x, y)
    x, y = blobs(sep=1.0, n=3)
    with pytest.raises(DamaError, match=r"too few clips.*a: 3"):
        lid_probe(x, y, train_per_language=5)


def test_language_variance_and_cka_known_values():
    x = np.array([[0.0], [0.0], [2.0], [2.0]])
    assert language_variance(x, ["a", "a", "b", "b"]) == pytest.approx(1.0)
    assert language_variance(np.array([[1.0], [-1.0], [1.0], [-1.0]]), ["a", "a", "b", "b"]) == pytest.approx(0.0)
    same = np.ones((4, 3)) * 5 + 1e-12 * np.arange(4)[:, None]  # identical rows up to float noise
    assert language_variance(same, ["a", "a", "b", "b"]) == 0.0
    assert np.isnan(linear_cka(same, same))
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 8))
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(a, 3 * a @ q + 1) == pytest.approx(1.0)  # rotation, scale and shift invariant
    assert linear_cka(a, rng.normal(size=(50, 8))) < 0.4
    with pytest.raises(DamaError, match="paired rows"):
        linear_cka(a, a[:10])


def test_allocation_rule():
    # U-shaped: high at both ends
    a = allocate([0.9, 0.5, 0.2, 0.2, 0.6, 1.0])
    assert (a.l_early, a.l_late) == (1, 5) and sum(a.ranks) == a.budget == 96  # 32+8+8+8+8+32
    assert a.ranks[0] > a.ranks[2] and a.ranks[5] >= a.ranks[4] > a.ranks[3] and min(a.ranks) >= 1
    assert a.train_flags() == f"--ranks {','.join(map(str, a.ranks))} --segments 1,5"
    flat = allocate([0.5] * 6)
    assert flat.ranks == [16] * 6 and (flat.l_early, flat.l_late) == (6, 7)  # no middle: nothing frozen
    rising = allocate([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert rising.l_early == 1 and rising.l_late == 4
    with pytest.raises(DamaError):
        allocate([0.1, float("nan")])


def make_probe_data(tmp_path, n_per_lang: int = 6):
    rows = []
    for li, lang in enumerate(["en", "sw", "yo"]):
        for i in range(n_per_lang):
            wav = write_wav(tmp_path / "clips" / f"{lang}{i}.wav", 1.0 + 0.1 * i, freq=200 + 150 * li + 7 * i)
            rows.append(json.dumps({"audio_filepath": str(wav), "text": f"word {i}", "language": lang}))
    p = tmp_path / "probe.jsonl"
    p.write_text("\n".join(rows) + "\n")
    return p


def test_probe_cli_on_tiny_model_writes_json_plot_and_plan(tiny6_ct2_dir, tmp_path, capsys):
    data = make_probe_data(tmp_path)
    out = tmp_path / "p" / "probe.json"
    cache = tmp_path / "cache"
    argv = ["probe", "--model", str(tiny6_ct2_dir), "--data", str(data), "--target", str(data), "--train-per-language",
            "3", "--repeats", "4", "--dims", "3", "--fisher-clips", "4", "--cache-dir", str(cache), "--out", str(out)]
    assert main(argv) == 0
    res = json.loads(out.read_text())
    assert len(res["stacks"]["decoder"]["layers"]) == 7 and len(res["stacks"]["encoder"]["layers"]) == 3
    dec = res["stacks"]["decoder"]["layers"]
    assert all(0 <= x["lid"]["mean"] <= 1 for x in dec) and "fisher" in dec[1] and "fisher" not in dec[0]
    assert all(x["fisher"] > 0 for x in dec[1:])
    assert res["languages"] == {"en": 6, "sw": 6, "yo": 6}
    assert set(res["allocations"]) == {"lid", "variance", "fisher"}
    assert (tmp_path / "p" / "probe.png").stat().st_size > 1000
    assert "allocation from lid" in capsys.readouterr().out
    # second run: features from the cache
    assert main(argv) == 0
    assert "probe features from cache" in capsys.readouterr().err
    # plan
    assert main(["plan", "--probe", str(out), "--measure", "fisher", "--json", str(tmp_path / "plan.json")]) == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert sum(plan["ranks"]) == 96 and len(plan["ranks"]) == 6
    assert "dama train --method dama --ranks" in capsys.readouterr().out
    assert allocation_from_file(out, "lid").ranks == res["allocations"]["lid"]["ranks"]


def test_transcript_mode_features_differ_from_prompt_mode(tiny6_ct2_dir, tmp_path):
    from dama.data import load_data
    from dama.models.load import load_whisper
    from dama.probe import layer_features

    w = load_whisper(tiny6_ct2_dir, device="cpu")
    m = load_data(str(make_probe_data(tmp_path, n_per_lang=2)))
    a = layer_features(w, m, "prompt", log=lambda *x: None)
    b = layer_features(w, m, "transcript", log=lambda *x: None)
    assert a.encoder.shape == (3, 6, 64) and a.decoder.shape == (7, 6, 64)
    np.testing.assert_allclose(a.encoder, b.encoder, rtol=1e-5)  # same audio, same encoder
    assert not np.allclose(a.decoder[1:], b.decoder[1:])
    with pytest.raises(DamaError, match="unknown probe feature mode"):
        layer_features(w, m, "words")
    m[0].language = None
    with pytest.raises(DamaError, match="no language"):
        layer_features(w, m, "prompt")


def test_probe_rejects_bad_input(tiny6_ct2_dir, tmp_path, capsys):
    data = make_probe_data(tmp_path, n_per_lang=2)
    assert main(["probe", "--model", str(tiny6_ct2_dir), "--data", str(data), "--out", str(tmp_path / "x.json"),
                 "--cache-dir", str(tmp_path / "c")]) == 2
    assert "too few clips" in capsys.readouterr().err
    assert main(["plan", "--probe", str(tmp_path / "missing.json")]) == 2
    (tmp_path / "bad.json").write_text("{}")
    assert main(["plan", "--probe", str(tmp_path / "bad.json")]) == 2
    assert "not a dama probe result" in capsys.readouterr().err


def test_train_allocation_flag_sets_ranks_and_segments(tmp_path):
    from dama.cli.main import build_parser
    from dama.cli.train import method_options

    layers = [{"lid": {"mean": v}, "language_variance": v} for v in (0.5, 0.9, 0.5, 0.2, 0.2, 0.6, 1.0)]
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"stacks": {"decoder": {"layers": layers}}}))
    args = build_parser().parse_args(["train", "--data", "x", "--out", "y", "--allocation", str(probe)])
    opts = method_options(args)
    want = allocate([0.9, 0.5, 0.2, 0.2, 0.6, 1.0])
    assert opts["ranks"] == tuple(want.ranks) and (opts["l_early"], opts["l_late"]) == (1, 5)
    bad = build_parser().parse_args(["train", "--data", "x", "--out", "y", "--allocation", str(probe), "--ranks", "8"])
    with pytest.raises(DamaError, match="--allocation sets ranks"):
        method_options(bad)
    lora = build_parser().parse_args(["train", "--method", "lora", "--data", "x", "--out", "y", "--allocation",
                                      str(probe)])
    with pytest.raises(DamaError, match="apply to --method dama only"):
        method_options(lora)


def test_parallel_pairs_match_content_across_languages():
    from dama.probe.run import parallel_pairs

    ids = [f"udhr-{n:02d}-{lang}" for lang in ("en", "sw", "de") for n in range(5)] + ["other-clip"]
    langs = ["en"] * 5 + ["sw"] * 5 + ["de"] * 4 + ["de", "en"]  # de's last id is udhr-04-de; "other-clip" unpaired
    pairs = parallel_pairs(ids, langs)
    assert set(pairs) == {("de", "en"), ("de", "sw"), ("en", "sw")}
    a, b = pairs[("en", "sw")]
    assert [ids[i] for i in a] == [f"udhr-{n:02d}-en" for n in range(5)] and [ids[i][:7] for i in b] == [ids[i][:7]
                                                                                                          for i in a]
    assert parallel_pairs(ids, langs, min_items=6) == {}


@pytest.mark.parametrize("language,measure,measured", [
    ("swahili", "fisher", 945_152), ("yoruba", "fisher", 885_248), ("swahili", "lid", 1_211_392)])
def test_plan_parameter_count_matches_the_trained_runs(language, measure, measured, tmp_path, capsys):
    """Counts `dama train` reported for these allocations on whisper-base (benchmarks/cpu-whisper-base/runs)."""
    from dama.adapt.allocation import allocation_fixed

    probe = Path(__file__).resolve().parents[2] / "benchmarks" / "probe" / f"whisper-base-prompt-{language}.json"
    assert allocation_from_file(probe, measure).trainable_params(512, 2048) == measured
    assert allocation_fixed(6).trainable_params(512, 2048) == 1_171_456
    model = tmp_path / "hf"  # a model folder with a transformers config: plan prints the count before training
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"d_model": 512, "decoder_ffn_dim": 2048}))
    mine = tmp_path / "probe.json"
    mine.write_text(json.dumps({**json.loads(probe.read_text()), "model": str(model)}))
    assert main(["plan", "--probe", str(mine), "--measure", measure]) == 0
    assert f"trainable parameters: {measured:,} (fixed 0.3/0.7 allocation: 1,171,456)" in capsys.readouterr().out
