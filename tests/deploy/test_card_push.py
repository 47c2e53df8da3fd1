"""Model cards (README.md with Hub metadata) on every run and export, and `dama push`'s payload, offline.

The cards are read back with huggingface_hub itself (``ModelCard.load`` parses ``model-index`` into
``EvalResult``s and rejects a malformed one); what `dama push` would upload is checked through
``--dry-run`` (no network here).
"""

from __future__ import annotations

import json
import shutil

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.repocard import metadata_load

from dama.cli.main import main
from dama.deploy import export_run
from dama.deploy.card import base_model_id
from dama.deploy.push import push_payload
from dama.errors import DamaError
from dama.testing import make_corpus, make_tiny_ct2


@pytest.fixture(scope="module")
def tested_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    base = make_tiny_ct2(root / "base", decoder_layers=6)
    corpus = make_corpus(root / "data", n_train=4, n_val=2, n_test=2)
    args = ["train", "--method", "dama", "--model", str(base), "--data", "swahili:train", "--data-root", str(corpus),
            "--out", str(root / "run"), "--epochs", "1", "--val", "none", "--cache-dir", str(root / "cache")]
    assert main(args) == 0
    return root / "run", args


def _meta(path) -> dict:
    card = ModelCard.load(path)  # model-index parsed into EvalResults: raises if malformed
    return {**card.data.to_dict(), "eval_results": card.data.eval_results}


def test_run_card_has_hub_metadata_results_and_command(tested_run):
    run, args = tested_run
    results = json.loads((run / "results.json").read_text())
    meta = _meta(run / "adapter" / "README.md")
    assert meta["library_name"] == "peft" and meta["language"] == ["sw"]
    assert meta["pipeline_tag"] == "automatic-speech-recognition"
    assert {"whisper", "dama", "peft"} <= set(meta["tags"])
    assert "base_model" not in meta  # a local base folder is no Hub id
    by_metric = {e.metric_type: e for e in meta["eval_results"]}
    assert by_metric["wer"].metric_value == round(100 * results["wer"], 2)
    assert by_metric["cer"].metric_value == round(100 * results["cer"], 2)
    assert by_metric["wer"].dataset_name == "swahili:test" and by_metric["wer"].dataset_split == "test"
    d = meta["dama"]
    assert d["method"] == "dama" and d["ranks"] == results["ranks"] and d["train_hours"] > 0
    assert d["command"].startswith("dama train --method dama") and "--epochs 1" in d["command"]
    raw = metadata_load(run / "adapter" / "README.md")  # the plain YAML the Hub reads
    assert raw["model-index"][0]["results"][0]["metrics"][0]["type"] == "wer"


def test_exports_carry_a_card(tested_run, tmp_path):
    run, _ = tested_run
    out = export_run(run, "hf", tmp_path / "hf", log=lambda *a: None)
    meta = _meta(out / "README.md")
    assert meta["library_name"] == "transformers" and meta["dama"]["export"] == {"format": "hf",
                                                                                   "quantization": "float32"}
    assert meta["dama"]["command"].startswith("dama train")  # from the run's own card
    pytest.importorskip("ctranslate2")
    out = export_run(run, "ct2", tmp_path / "ct2", quantization="int8", log=lambda *a: None)
    assert _meta(out / "README.md")["library_name"] == "ctranslate2"
    export_run(run, "ct2", tmp_path / "ct2", quantization="int8", force=True, log=lambda *a: None)  # README is its own


def test_push_dry_run_payload(tested_run, tmp_path):
    run, _ = tested_run
    assert base_model_id("whisper-base") == "openai/whisper-base" and base_model_id("openai/whisper-small") == \
        "openai/whisper-small" and base_model_id(str(tmp_path)) is None
    assert main(["push", "--adapter", str(run), "--repo-id", "me/sw-dama", "--dry-run",
                 "--json", str(tmp_path / "p.json")]) == 0
    res = json.loads((tmp_path / "p.json").read_text())
    assert res["kind"] == "adapter" and res["dry_run"] and "commit" not in res
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "dama/config.json",
            "dama/results.json"} <= set(res["files"])
    # a run on a base the Hub knows: the uploaded adapter_config points there, not at the local folder
    hub_run = tmp_path / "hub-run"
    shutil.copytree(run, hub_run)
    cfg = json.loads((hub_run / "config.json").read_text())
    (hub_run / "config.json").write_text(json.dumps({**cfg, "model": "whisper-base"}))
    (hub_run / "adapter" / "README.md").unlink()  # a run from before cards: the card is made for the upload
    _, files = push_payload(hub_run)
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == "openai/whisper-base"
    assert metadata_load_bytes(files["README.md"])["base_model"] == "openai/whisper-base"
    out = export_run(run, "hf", tmp_path / "exp", log=lambda *a: None)
    kind, files = push_payload(out)
    assert kind == "hf" and {"README.md", "dama_export.json", "config.json", "model.safetensors"} <= set(files)
    with pytest.raises(DamaError, match="neither a dama run .* nor a dama export"):
        push_payload(tmp_path)


def metadata_load_bytes(data: bytes) -> dict:
    return ModelCard(data.decode()).data.to_dict()
