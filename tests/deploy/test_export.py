"""Export of trained runs: merged transformers folders and CTranslate2 folders for faster-whisper."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dama.data import SAMPLE_RATE, load_audio, load_data
from dama.deploy import export_run
from dama.errors import DamaError, ModelError
from dama.models.load import load_whisper
from dama.models.transcribe import DecodeOptions, decode_features
from dama.runs import load_run
from dama.testing import make_corpus, make_tiny_ct2


def _train(root, **kw) -> tuple:
    from dama.cli.main import main

    base = make_tiny_ct2(root / "base", decoder_layers=6)
    corpus = make_corpus(root / "data")
    args = ["train", "--method", "lora", "--rank", "4", "--model", str(base), "--data", "swahili:train",
            "--data-root", str(corpus), "--out", str(root / "run"), "--epochs", "2", "--lr", "3e-2",
            "--val", "none", "--test", "none", "--cache-dir", str(root / "cache")]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}", v]
    assert main(args) == 0
    return base, corpus, root / "run"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("tiny"))


def _greedy(w, corpus, language="sw"):
    m = load_data("swahili:test", corpus)
    feats = w.feature_extractor([load_audio(u.audio) for u in m], sampling_rate=SAMPLE_RATE,
                                return_tensors="pt").input_features
    prompts = [w.prompt_ids(language)] * len(m)
    return feats, prompts, decode_features(w, feats, prompts, [20] * len(m), DecodeOptions(loop_repeats=10_000))


def test_hf_export_equals_adapter_on_base(tiny_run, tmp_path):
    base, corpus, run = tiny_run
    out = export_run(run, "hf", tmp_path / "merged", log=lambda *a: None)
    merged = load_whisper(out)
    unmerged = load_run(run, merge=False)
    assert _greedy(merged, corpus)[2] == _greedy(unmerged, corpus)[2]
    plain = load_whisper(base)  # the adapter did change the model
    a, b = merged.model.state_dict(), plain.model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in b if "decoder.layers" in k)
    assert json.loads((out / "dama_export.json").read_text())["format"] == "hf"


def test_ct2_export_float32_matches_merged_model(tiny_run, tmp_path):
    ctranslate2 = pytest.importorskip("ctranslate2")
    _, corpus, run = tiny_run
    out = export_run(run, "ct2", tmp_path / "ct2", quantization="float32", log=lambda *a: None)
    assert {"model.bin", "tokenizer.json", "config.json", "dama_export.json"} <= {p.name for p in out.iterdir()}
    merged = load_run(run)
    feats, prompts, ours = _greedy(merged, corpus)
    ct = ctranslate2.models.Whisper(str(out), device="cpu", compute_type="float32")
    res = ct.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(feats.numpy())), prompts,
                      beam_size=1, max_length=len(prompts[0]) + 20, suppress_blank=False,
                      suppress_tokens=list(merged.model.generation_config.suppress_tokens or []))
    eot = merged.model.generation_config.eos_token_id
    for mine, r in zip(ours, res):
        theirs = [t for t in r.sequences_ids[0] if t != eot]
        assert mine[: len(theirs)] == theirs


def test_export_refuses_bad_requests_and_leaves_nothing(tiny_run, tmp_path):
    _, _, run = tiny_run
    with pytest.raises(DamaError, match="unknown export format"):
        export_run(run, "onnx", tmp_path / "x")
    with pytest.raises(DamaError, match="unknown quantization"):
        export_run(run, "ct2", tmp_path / "x", quantization="int4")
    (tmp_path / "taken").mkdir()
    with pytest.raises(DamaError, match="--force"):
        export_run(run, "hf", tmp_path / "taken")
    out = export_run(run, "hf", tmp_path / "taken", force=True, log=lambda *a: None)
    assert (out / "dama_export.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no temporary folders left


def test_export_checks_the_base_model(tiny_run, tmp_path):
    base, _, run = tiny_run
    other = make_tiny_ct2(tmp_path / "other", decoder_layers=6, seed=1)  # same shapes, other weights
    with pytest.raises(ModelError, match="not the one its adapter was trained on"):
        export_run(run, "hf", tmp_path / "x", base=other)
    with pytest.raises(ModelError, match="cannot load the base model"):
        export_run(run, "hf", tmp_path / "x", base=tmp_path / "missing")
    assert not (tmp_path / "x").exists()


def test_cli_export(tiny_run, tmp_path, capsys):
    from dama.cli.main import main

    _, _, run = tiny_run
    rc = main(["export", "--adapter", str(run), "--format", "ct2", "--quantization", "int8",
               "--out", str(tmp_path / "ct2"), "--json", str(tmp_path / "e.json")])
    res = json.loads((tmp_path / "e.json").read_text())
    assert rc == 0 and res["quantization"] == "int8" and res["bytes"] > 0
    assert capsys.readouterr().out.strip().endswith("ct2")
    assert main(["export", "--adapter", str(run), "--out", str(tmp_path / "ct2")]) != 0  # exists, no --force
    assert "--force" in capsys.readouterr().err
