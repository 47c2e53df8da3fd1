"""One base model, several adapters: each request gets its adapter and language token."""

from __future__ import annotations

import json

import pytest

from dama.data import load_audio, load_data
from dama.deploy.serve import MultiAdapterWhisper
from dama.errors import DamaError, ModelError
from dama.models.transcribe import DecodeOptions, transcribe
from dama.runs import load_run
from dama.testing import make_corpus, make_tiny_ct2


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from dama.cli.main import main

    root = tmp_path_factory.mktemp("serve")
    base = make_tiny_ct2(root / "base", decoder_layers=6)
    corpus = make_corpus(root / "data")
    runs = {}
    for key, lang, seed in (("sw", None, "0"), ("yo", "yo", "1")):
        args = ["train", "--method", "lora", "--rank", "4", "--model", str(base), "--data", "swahili:train",
                "--data-root", str(corpus), "--out", str(root / key), "--epochs", "2", "--lr", "5e-2", "--seed", seed,
                "--val", "none", "--test", "none", "--cache-dir", str(root / "cache")]
        assert main(args + (["--language", lang] if lang else [])) == 0
        runs[key] = root / key
    return base, corpus, runs


def test_each_request_gets_its_adapter_and_language(two_runs):
    base, corpus, runs = two_runs
    audios = [load_audio(u.audio) for u in load_data("swahili:test", corpus)]
    multi = MultiAdapterWhisper(runs)
    assert multi.languages == {"sw": "sw", "yo": "yo"}
    keys = ["sw", "yo", "sw"][: len(audios)]
    opts = DecodeOptions(loop_repeats=10_000)
    got = multi.transcribe(audios, keys, opts=opts)
    for i, key in enumerate(keys):  # same as that run loaded on its own (unmerged), with its language
        alone = load_run(runs[key], merge=False)
        assert got[i] == transcribe(alone, [audios[i]], multi.languages[key], opts)[0]
    assert len({n.split(".lora_A.")[1].split(".")[0] for n, _ in multi.whisper.model.named_parameters()
                if ".lora_A." in n}) == 2  # both adapters live on one base


def test_cli_multi_adapter_transcribe(two_runs, tmp_path, capsys):
    from dama.cli.main import main

    _, corpus, runs = two_runs
    clips = sorted((corpus / "swahili" / "data" / "records" / "test").glob("*.wav"))[:2]
    rc = main(["transcribe", "--adapters", f"sw={runs['sw']},yo={runs['yo']}", "--language-from-adapter",
               f"sw={clips[0]}", f"yo={clips[1]}", "--json", str(tmp_path / "t.json")])
    res = json.loads((tmp_path / "t.json").read_text())
    assert rc == 0 and [r["adapter"] for r in res["results"]] == ["sw", "yo"]
    assert main(["transcribe", "--adapters", f"sw={runs['sw']},yo={runs['yo']}", "--language-from-adapter",
                 str(clips[0])]) == 2
    assert "KEY=PATH" in capsys.readouterr().err


def test_adapters_on_another_base_are_refused(two_runs, tmp_path):
    _, _, runs = two_runs
    cfg = json.loads((runs["yo"] / "config.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adapter").symlink_to(runs["yo"] / "adapter")
    (bad / "config.json").write_text(json.dumps({**cfg, "base_fingerprint": "0" * 32}))
    with pytest.raises(ModelError, match="not the one its adapter was trained on"):
        MultiAdapterWhisper({"sw": runs["sw"], "x": bad})
    with pytest.raises(DamaError, match="no adapters"):
        MultiAdapterWhisper({})
