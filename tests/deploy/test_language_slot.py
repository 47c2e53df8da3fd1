"""--language-slot: a language Whisper lacks, trained on (or exported onto) an existing Whisper token, so the
model runs unmodified in CTranslate2/faster-whisper (no patched language table)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dama.cli.main import main
from dama.deploy import export_run
from dama.errors import DamaError
from dama.models.load import load_whisper
from dama.runs import load_run
from dama.testing import make_corpus, make_tiny_ct2
from tests.deploy.test_export import _greedy


def _train(root, *flags):
    base = root / "base"
    if not base.exists():
        make_tiny_ct2(base, decoder_layers=6)
        make_corpus(root / "data", n_train=4, n_val=1, n_test=2)
    out = root / f"run{len(list(root.glob('run*')))}"
    assert main(["train", "--method", "lora", "--rank", "4", "--model", str(base), "--data", "swahili:train",
                 "--data-root", str(root / "data"), "--out", str(out), "--epochs", "2", "--lr", "3e-2",
                 "--val", "none", "--test", "none", "--cache-dir", str(root / "cache"), *flags]) == 0
    return base, root / "data", out


@pytest.fixture(scope="module")
def new_token_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("slot"), "--language", "xx", "--language-name", "Examplish")


def test_export_moves_the_new_token_onto_the_slot(new_token_run, tmp_path):
    base, corpus, run = new_token_run
    cfg = json.loads((run / "config.json").read_text())
    new_id = cfg["new_language"]["token_id"]
    plain = load_whisper(base)
    n_vocab = plain.model.get_input_embeddings().weight.shape[0]
    assert new_id >= n_vocab - 1 or "<|xx|>" not in plain.tokenizer.get_vocab()
    out = export_run(run, "hf", tmp_path / "hf", language_slot="sw", log=lambda *a: None)
    exp = load_whisper(out)
    assert exp.model.get_input_embeddings().weight.shape[0] == n_vocab == exp.model.config.vocab_size
    assert exp.model.proj_out.weight.shape[0] == n_vocab
    assert "<|xx|>" not in exp.tokenizer.get_vocab() and "<|xx|>" not in exp.generation_config.lang_to_id
    run_model = load_run(run)
    sw = exp.language_token_id("sw")
    assert torch.equal(exp.model.get_input_embeddings().weight[sw],
                       run_model.model.get_input_embeddings().weight[new_id])
    # the export on <|sw|> transcribes exactly as the run on <|xx|>
    assert _greedy(exp, corpus, "sw")[2] == _greedy(run_model, corpus, "xx")[2]
    meta = json.loads((out / "dama_export.json").read_text())
    assert meta["language"] == "sw" and meta["new_language"] is None and meta["language_slot"]["code"] == "xx"

    ctranslate2 = pytest.importorskip("ctranslate2")
    ct2 = export_run(run, "ct2", tmp_path / "ct2", language_slot="sw", log=lambda *a: None)
    feats, prompts, ours = _greedy(exp, corpus, "sw")
    ct = ctranslate2.models.Whisper(str(ct2), device="cpu", compute_type="float32")
    res = ct.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(feats.numpy())), prompts,
                      beam_size=1, max_length=len(prompts[0]) + 20, suppress_blank=False,
                      suppress_tokens=list(exp.generation_config.suppress_tokens or []))
    eot = exp.generation_config.eos_token_id
    for mine, r in zip(ours, res):
        theirs = [t for t in r.sequences_ids[0] if t != eot]
        assert mine[: len(theirs)] == theirs
    # (faster-whisper takes the tiny model for English-only: its vocabulary is too small to say otherwise)


def test_train_on_a_slot_and_refusals(new_token_run, tmp_path):
    base, corpus, run = new_token_run
    with pytest.raises(DamaError, match="unknown language 'zz'"):
        export_run(run, "hf", tmp_path / "x", language_slot="zz", log=lambda *a: None)
    _, _, slot_run = _train(run.parent, "--language-slot", "en")
    cfg = json.loads((slot_run / "config.json").read_text())
    en = load_whisper(base).language_token_id("en")
    assert cfg["language"] == "en" and cfg["new_language"] is None
    assert cfg["language_slot"] == {"code": "sw", "name": "swahili", "slot": "en", "token_id": en}
    ac = json.loads((slot_run / "adapter" / "adapter_config.json").read_text())
    assert ac["trainable_token_indices"] == {"embed_tokens": [en]}  # the slot's row trains, as a new token's would
    card = (slot_run / "adapter" / "README.md").read_text()
    assert "language_slot:" in card and "- sw" in card  # metadata: the language it transcribes
    with pytest.raises(DamaError, match="added no language token"):
        export_run(slot_run, "hf", tmp_path / "y", language_slot="en", log=lambda *a: None)
