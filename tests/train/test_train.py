"""The training harness on a tiny random 6-layer Whisper and a synthetic corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dama.adapt import make_method
from dama.adapt.dama import DamaMethod
from dama.data import SAMPLE_RATE, load_data
from dama.data.manifest import Manifest
from dama.errors import DamaError, DataError, ModelError
from dama.models.load import load_whisper
from dama.runs import load_run
from dama.safeio import save_checkpoint_file
from dama.testing import make_corpus
from dama.train.checkpoint import TrainingError, read_checkpoint
from dama.train.config import TrainConfig
from dama.train.run import run_training


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "data")


def _data(corpus):
    return (load_data("swahili:train", corpus), load_data("swahili:val", corpus), load_data("swahili:test", corpus))


def _cfg(tmp_path, **kw):
    return TrainConfig(**{"epochs": 2, "batch_size": 3, "cache_dir": str(tmp_path / "cache"), **kw})


def test_run_directory_is_complete_and_adapter_loads_in_plain_peft(tiny6_ct2_dir, corpus, tmp_path):
    from peft import PeftModel

    tr, va, te = _data(corpus)
    res = run_training(str(tiny6_ct2_dir), make_method("dama"), tr, va, te, tmp_path / "run", _cfg(tmp_path),
                       log=lambda *a: None)
    run = tmp_path / "run"
    for f in ("config.json", "metrics.jsonl", "checkpoint.pt", "plot.png", "results.json", "test.hyps.jsonl",
              "adapter/adapter_config.json", "adapter/adapter_model.safetensors"):
        assert (run / f).is_file(), f
    for k in ("trainable_params", "total_params", "peak_memory_mb", "train_seconds", "wer", "cer"):
        assert isinstance(res[k], (int, float)), k
    assert res["ranks"] == [32, 8, 8, 8, 8, 32] and res["steps"] == 6 and len(res["epoch_seconds"]) == 2
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["lr"] == 1e-3  # resolved, not None
    from dama.machine import cpu_name

    assert config["device"] == "cpu" and config["device_name"] == cpu_name() != ""  # what the numbers ran on
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "step" for r in rows) == 6 and all("val_wer" in r for r in rows if r["kind"] == "epoch")
    # plain PEFT, without dama: same weights, same ranks
    base = load_whisper(tiny6_ct2_dir).model
    plain = PeftModel.from_pretrained(base, run / "adapter")
    assert plain.base_model.model.model.decoder.layers[5].fc1.lora_A["default"].weight.shape[0] == 32
    # training moved B away from zero; dama's loader gives the same logits as plain PEFT
    b = plain.base_model.model.model.decoder.layers[0].fc1.lora_B["default"].weight
    assert b.abs().sum() > 0
    w = load_run(run)
    x = torch.randn(1, 80, 3000)
    ids = torch.tensor([[257, 259, 262, 266]])
    with torch.no_grad():
        assert torch.allclose(w.model(input_features=x, decoder_input_ids=ids).logits,
                              plain(input_features=x, decoder_input_ids=ids).logits, atol=1e-4)


def test_middle_A_stays_frozen_through_training(tiny6_ct2_dir, corpus, tmp_path):
    tr, va, _ = _data(corpus)
    w = load_whisper(tiny6_ct2_dir)
    a0 = DamaMethod().apply(load_whisper(tiny6_ct2_dir).model)
    before = {n: p.detach().clone() for n, p in a0.model.named_parameters() if "lora_A" in n}
    from dama.train.trainer import train

    adapted, _, _ = train(w, DamaMethod(), tr, va, tmp_path / "r", _cfg(tmp_path), log=lambda *a: None)
    after = dict(adapted.model.named_parameters())
    for n in adapted.frozen.names:
        assert torch.equal(after[n], before[n]), n
    moved = [n for n in before if n not in adapted.frozen and not torch.equal(after[n], before[n])]
    assert moved  # early/late A did train


def test_resume_after_interruption_matches_uninterrupted(tiny6_ct2_dir, corpus, tmp_path):
    tr, va, _ = _data(corpus)
    full_log = []
    full = run_training(str(tiny6_ct2_dir), make_method("lora", r=4), tr, va, None, tmp_path / "a",
                        _cfg(tmp_path, save_every=1), log=full_log.append)
    assert not any(str(m).startswith("resuming") for m in full_log)
    with pytest.raises(KeyboardInterrupt):
        run_training(str(tiny6_ct2_dir), make_method("lora", r=4), tr, va, None, tmp_path / "b",
                     _cfg(tmp_path, save_every=1, stop_after_steps=4), log=lambda *a: None)
    assert (tmp_path / "b" / "checkpoint.pt").is_file() and not (tmp_path / "b" / "results.json").exists()
    # what the interrupted process used is part of the run: pretend it peaked far higher and ran long
    ck = read_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert ck["state"]["peak_memory_mb"] > 0 and ck["state"]["elapsed_seconds"] > 0
    ck["state"].update(peak_memory_mb=1e6, elapsed_seconds=1000.0)
    save_checkpoint_file(tmp_path / "b" / "checkpoint.pt", ck)  # with its new checksum
    resumed_log = []
    resumed = run_training(str(tiny6_ct2_dir), make_method("lora", r=4), tr, va, None, tmp_path / "b",
                           _cfg(tmp_path, save_every=1), resume=True, log=resumed_log.append)
    said = [m for m in resumed_log if str(m).startswith("resuming")]
    assert said == [f"resuming {tmp_path / 'b'} at epoch 2, step 4"]  # once, where it resumed
    assert resumed["steps"] == full["steps"] == 6
    assert resumed["peak_memory_mb"] == 1e6 and resumed["resumed_seconds"] == 1000.0
    assert 1000.0 < resumed["total_seconds"] < 1000.0 + full["total_seconds"] * 5
    assert full["resumed_seconds"] == 0.0 and full["peak_memory_mb"] < 1e6
    from safetensors.torch import load_file

    a = load_file(tmp_path / "a" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


class _Poisoned(DamaMethod):
    """DAMA whose adapter turns to NaN after two optimizer steps."""

    def apply(self, model):
        adapted = super().apply(model)

        def hook(step):
            if step == 1:
                with torch.no_grad():
                    for n, p in adapted.model.named_parameters():
                        if "lora_B" in n:
                            p.fill_(float("nan"))

        adapted.step_hook = hook
        return adapted


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny6_ct2_dir, corpus, tmp_path):
    tr, va, te = _data(corpus)
    with pytest.raises(TrainingError, match="non-finite.*last good checkpoint"):
        run_training(str(tiny6_ct2_dir), _Poisoned(), tr, va, te, tmp_path / "r", _cfg(tmp_path, save_every=1),
                     log=lambda *a: None)
    ck = read_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert ck["state"]["step"] == 1 and all(torch.isfinite(t).all() for t in ck["tensors"].values())
    assert not (tmp_path / "r" / "results.json").exists()


def test_bad_input_leaves_no_run_directory(tiny6_ct2_dir, corpus, tmp_path):
    tr, va, te = _data(corpus)
    for u in tr:
        u.duration = 45.0  # every clip over 30 s: nothing to train on
    with pytest.raises(DataError, match="no usable training utterances"):
        run_training(str(tiny6_ct2_dir), make_method("dama"), tr, va, te, tmp_path / "r1", _cfg(tmp_path),
                     log=lambda *a: None)
    assert not (tmp_path / "r1").exists()
    with pytest.raises(DamaError, match="matches no adapted layer|5 ranks"):
        run_training(str(tiny6_ct2_dir), make_method("dama", ranks=(8,) * 5), *_data(corpus), tmp_path / "r2",
                     _cfg(tmp_path), log=lambda *a: None)
    assert not (tmp_path / "r2").exists()


def test_non_whisper_model_is_rejected(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         vocab_size=50)).save_pretrained(tmp_path / "bert")
    with pytest.raises(ModelError, match="bert model"):
        load_whisper(tmp_path / "bert")


def test_encoder_cache_is_reused_and_exact(tiny6_ct2_dir, corpus, tmp_path):
    from dama.data import load_audio
    from dama.encoder_cache import EncoderCache

    w = load_whisper(tiny6_ct2_dir)
    m = load_data("swahili:val", corpus)
    msgs = []
    c1 = EncoderCache.build(w, m, tmp_path / "c", log=msgs.append, show_progress=False)
    c2 = EncoderCache.build(w, m, tmp_path / "c", log=msgs.append, show_progress=False)
    assert c1.path == c2.path and "hit" in msgs[-1] and "MiB" in msgs[0]
    feats = w.feature_extractor([load_audio(m[1].audio)], sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    with torch.no_grad():
        ref = w.model.get_encoder()(feats).last_hidden_state[0]
    assert torch.allclose(c1.get([1])[0].float(), ref, atol=2e-2)
    # A subset (another run, another --hours) is served from the same shard, in its own order.
    sub = Manifest([m[2], m[0]], name="sub")
    c3 = EncoderCache.build(w, sub, tmp_path / "c", log=msgs.append, show_progress=False)
    assert "hit" in msgs[-1] and torch.equal(c3.get([1]), c1.get([0]))
    # A superset encodes only the missing clips, into a second shard.
    both = load_data("swahili:val+test", corpus)
    c4 = EncoderCache.build(w, both, tmp_path / "c", log=msgs.append, show_progress=False)
    assert f"of {len(both) - len(m)} clips ({len(m)} already cached)" in msgs[-1]
    assert torch.equal(c4.get([1]), c1.get([1]))
    files = sorted(p.name for p in c1.path.iterdir())
    assert len(files) == 4 and not any(f.startswith(".") for f in files)  # 2 shards + key lists, no temp files


def test_cache_prune_keeps_what_the_named_data_needs(tiny6_ct2_dir, corpus, tmp_path, capsys):
    import os
    import time

    from dama.cli.main import main
    from dama.encoder_cache import EncoderCache, cache_info

    w = load_whisper(tiny6_ct2_dir)
    val, test = load_data("swahili:val", corpus), load_data("swahili:test", corpus)
    EncoderCache.build(w, val, tmp_path / "c", log=lambda *_: None, show_progress=False)
    EncoderCache.build(w, test, tmp_path / "c", log=lambda *_: None, show_progress=False)
    train = load_data("swahili:train", corpus)
    EncoderCache.build(w, train, tmp_path / "c", log=lambda *_: None, show_progress=False)
    (folder,) = (tmp_path / "c").glob("enc-*")
    stale = folder / ".shard-dead.npy"  # left by a build killed two days ago
    stale.write_bytes(b"x" * 10)
    os.utime(stale, (time.time() - 2 * 86400,) * 2)
    (info,) = cache_info(tmp_path / "c")
    assert info["shards"] == 3 and info["clips"] == len(val) + len(test) + len(train) and info["partial"] == 1

    args = ["cache", "prune", str(tmp_path / "c"), "--keep", "swahili:val", "--data-root", str(corpus)]
    assert main([*args, "--dry-run"]) == 0
    assert "would remove 3 file(s)" in capsys.readouterr().out and cache_info(tmp_path / "c") == [info]
    assert main([*args, "--json", str(tmp_path / "p.json")]) == 0
    out = json.loads((tmp_path / "p.json").read_text())
    assert out["kept_shards"] == 1 and len(out["removed"]) == 3 and out["freed_bytes"] > 0
    (after,) = cache_info(tmp_path / "c")
    assert after["shards"] == 1 and after["clips"] == len(val) and after["partial"] == 0
    msgs = []  # what was kept still serves its clips; what went is encoded again on demand
    EncoderCache.build(w, val, tmp_path / "c", log=msgs.append, show_progress=False)
    assert "hit" in msgs[-1]
    EncoderCache.build(w, test, tmp_path / "c", log=msgs.append, show_progress=False)
    assert f"of {len(test)} clips (0 already cached)" in msgs[-1]
    assert main(["cache", "info", str(tmp_path / "nowhere")]) == 2
    assert "no such cache folder" in capsys.readouterr().err
    with pytest.raises(DataError, match="no encoder cache here"):
        cache_info(tmp_path / "nowhere")


def test_cache_prune_drops_shards_whose_clips_an_earlier_shard_serves(tmp_path):
    """Two builds racing over the same clips write the same keys twice; only the first copy is read."""
    import numpy as np

    from dama.data.manifest import Utterance
    from dama.encoder_cache import _read_index, clip_key, prune_cache
    from dama.testing import write_wav

    utts = [Utterance(f"u{i}", write_wav(tmp_path / f"u{i}.wav", 0.5, freq=200 + 50 * i), "x") for i in range(3)]
    k = [clip_key(u) for u in utts]
    folder = tmp_path / "c" / "enc-0123"
    folder.mkdir(parents=True)
    for name, keys in (("a", k[:2]), ("b", k[1:2]), ("c", k[2:])):
        np.save(folder / f"shard-{name}.npy", np.zeros((len(keys), 2, 2), np.float16))
        (folder / f"shard-{name}.keys.json").write_text(json.dumps(keys))
    out = prune_cache(tmp_path / "c", utts[:2])
    assert [p.rsplit("/", 1)[1] for p in out["removed"]] == ["shard-b.npy", "shard-c.npy"]
    assert set(_read_index(folder)) == set(k[:2])


def test_encoder_cache_follows_audio_content_not_path_or_mtime(corpus, tmp_path):
    """A copy of the data elsewhere, or with new timestamps, hits the cache; changed audio misses."""
    import os
    import shutil

    from dama.data.manifest import Utterance
    from dama.encoder_cache import clip_key

    src = Path(load_data("swahili:val", corpus)[0].audio)
    copy = tmp_path / "elsewhere" / src.name
    copy.parent.mkdir()
    shutil.copy(src, copy)
    os.utime(copy, (1_000_000_000, 1_000_000_000))
    assert clip_key(Utterance("a", src, "x")) == clip_key(Utterance("b", copy, "y"))
    data = bytearray(copy.read_bytes())
    data[-1] ^= 1  # one sample changes
    copy.write_bytes(bytes(data))
    os.utime(copy, (1_000_000_001, 1_000_000_001))
    assert clip_key(Utterance("b", copy, "y")) != clip_key(Utterance("a", src, "x"))


def test_validation_encodes_only_the_clips_it_decodes(tiny6_ct2_dir, corpus, tmp_path):
    from dama.encoder_cache import clip_key

    tr, va, _ = _data(corpus)
    assert len(va) == 3
    run_training(str(tiny6_ct2_dir), make_method("lora"), tr, va, None, tmp_path / "run",
                 _cfg(tmp_path, epochs=1, val_max_utts=1), log=lambda *a: None)
    cached = {k for f in (tmp_path / "cache").rglob("*.keys.json") for k in json.loads(f.read_text())}
    assert cached == {clip_key(u) for u in tr} | {clip_key(va[0])}  # not val[1:], which validation never reads
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in rows].count("epoch") == 1 and "val_wer" in rows[-1]


def test_cli_train_then_eval_adapter(tiny6_ct2_dir, corpus, tmp_path, capsys):
    from dama.cli.main import main

    rc = main(["train", "--method", "lora", "--rank", "4", "--model", str(tiny6_ct2_dir), "--data", "swahili:train",
               "--data-root", str(corpus), "--hours", "0.001", "--out", str(tmp_path / "run"), "--epochs", "1",
               "--cache-dir", str(tmp_path / "cache"), "--json", str(tmp_path / "t.json"), "--compare-zero-shot"])
    assert rc == 0
    t = json.loads((tmp_path / "t.json").read_text())
    assert t["trainable_params"] == 6 * 4 * (8 * 128 + 192 + 192) and "wer" in t
    zs = t["zero_shot"]
    zrows = [json.loads(x) for x in (tmp_path / "run" / "zero-shot.hyps.jsonl").read_text().splitlines()]
    assert len(zrows) == zs["n"] == t["n"] and zs["wer"] == pytest.approx(
        sum(r["word_errors"] for r in zrows) / sum(r["ref_words"] for r in zrows))
    assert t["wer_reduction_rel"] == pytest.approx(1 - t["wer"] / zs["wer"])
    assert "zero-shot WER" in capsys.readouterr().out
    # --resume on a finished run reports it again without training (what `make demo` relies on)
    again = ["train", "--method", "lora", "--rank", "4", "--model", str(tiny6_ct2_dir), "--data", "swahili:train",
             "--data-root", str(corpus), "--hours", "0.001", "--out", str(tmp_path / "run"), "--resume",
             "--compare-zero-shot"]
    assert main(again) == 0
    out = capsys.readouterr()
    assert "already finished" in out.err and f"WER={t['wer']:.4f}" in out.out and "zero-shot WER" in out.out
    rc = main(["eval", "--adapter", str(tmp_path / "run"), "--data", "swahili:test", "--data-root", str(corpus),
               "--json", str(tmp_path / "e.json"), "--hyps", str(tmp_path / "h.jsonl")])
    assert rc == 0 and json.loads((tmp_path / "e.json").read_text())["n"] == 3
    assert main(["train", "--method", "lora", "--ranks", "1,2", "--model", str(tiny6_ct2_dir), "--data", "x",
                 "--out", str(tmp_path / "x")]) == 2
    assert "apply to --method dama only" in capsys.readouterr().err


def test_new_language_token_trains_only_its_row_and_is_restored(tiny6_ct2_dir, corpus, tmp_path, capsys):
    from dama.cli.main import main

    # a language Whisper lacks, without a name: clear error
    assert main(["train", "--method", "dama", "--model", str(tiny6_ct2_dir), "--data", "swahili:train",
                 "--data-root", str(corpus), "--language", "lg", "--out", str(tmp_path / "x")]) == 2
    assert "--language-name" in capsys.readouterr().err and not (tmp_path / "x").exists()
    rc = main(["train", "--method", "dama", "--model", str(tiny6_ct2_dir), "--data", "swahili:train",
               "--data-root", str(corpus), "--language", "lg", "--language-name", "Luganda", "--epochs", "1",
               "--test", "none", "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c")])
    assert rc == 0
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["new_language"] == {"code": "lg", "name": "Luganda", "token_id": 267}
    base = load_whisper(tiny6_ct2_dir)
    w = load_run(tmp_path / "run")
    assert w.prompt_ids("lg") == [257, 267, 262, 266]
    emb, emb0 = w.model.get_input_embeddings().weight, base.model.get_input_embeddings().weight
    assert emb.shape[0] == 268
    init = emb0[[258, 259, 260]].mean(0)
    assert not torch.allclose(emb[267], init)  # the new row trained
    assert torch.equal(emb[:258], emb0[:258])  # every other row (text tokens) is untouched
    # and the tied output projection predicts with it
    assert w.model.proj_out.weight.data_ptr() == emb.data_ptr() or torch.equal(w.model.proj_out.weight, emb)
    # the adapter holds the new row, not the whole resized embedding (106 MB on whisper-base)
    from safetensors import safe_open

    saved = tmp_path / "run" / "adapter" / "adapter_model.safetensors"
    with safe_open(str(saved), "pt") as f:
        rows = {k: f.get_slice(k).get_shape() for k in f.keys() if "lora_" not in k}
    assert rows and all(k.endswith("trainable_tokens_delta") and shape[0] == 1 for k, shape in rows.items()), rows
    # an adapter saved the old way (whole embedding beside it) still loads, to the same model
    import shutil

    from peft import PeftModel

    from dama.runs import RunFolder

    old = tmp_path / "run-full-embedding"
    shutil.copytree(tmp_path / "run", old, ignore=shutil.ignore_patterns("adapter"))
    base_w = load_whisper(tiny6_ct2_dir)
    RunFolder(tmp_path / "run").restore_new_language(base_w)
    PeftModel.from_pretrained(base_w.model, tmp_path / "run" / "adapter").save_pretrained(
        old / "adapter", save_embedding_layers=True)
    with safe_open(str(old / "adapter" / "adapter_model.safetensors"), "pt") as f:
        assert any(k.endswith("base_layer.weight") for k in f.keys())
    assert torch.equal(load_run(old).model.get_input_embeddings().weight, emb)
    rc = main(["eval", "--adapter", str(tmp_path / "run"), "--data", "swahili:test", "--data-root", str(corpus),
               "--language", "lg", "--hyps", str(tmp_path / "h.jsonl")])
    assert rc == 0


def test_sigkill_then_resume_via_cli_matches_uninterrupted(tiny6_ct2_dir, tmp_path):
    """A real `kill -9` of `dama train` in the middle of training loses nothing: --resume
    finishes with the same adapter as a run that was never interrupted."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    corpus = make_corpus(tmp_path / "data", n_train=24)

    def cmd(out, *extra):
        return [sys.executable, "-m", "dama", "train", "--method", "lora", "--rank", "4", "--model",
                str(tiny6_ct2_dir), "--data", "swahili:train", "--data-root", str(corpus), "--epochs", "4",
                "--batch-size", "2", "--save-every", "1", "--val", "none", "--test", "none",
                "--out", str(tmp_path / out), "--cache-dir", str(tmp_path / "cache"), *extra]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny model: threads only add contention
    subprocess.run(cmd("whole"), check=True, capture_output=True, env=env)
    proc = subprocess.Popen(cmd("killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.is_file() and not (tmp_path / "killed" / "results.json").exists()
    step = read_checkpoint(ckpt)["state"]["step"]
    assert 1 <= step < 48
    subprocess.run(cmd("killed", "--resume"), check=True, capture_output=True, env=env)
    a = load_file(tmp_path / "whole" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "killed" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert json.loads((tmp_path / "killed" / "results.json").read_text())["steps"] == 48


def test_evaluate_split_caches_short_clips_and_chunks_long_ones(tiny_ct2_dir, tmp_path):
    """A test split with a clip over 30 s: the short clips decode from the encoder cache, the long
    one from audio in 30 s windows, and the hypotheses come back in manifest order."""
    from dama.data.audio import load_audio
    from dama.evaluate.cached import evaluate_cached
    from dama.models.transcribe import transcribe
    from dama.testing import write_wav

    rows = []
    for i, secs in enumerate([2.0, 35.0, 3.0]):
        wav = write_wav(tmp_path / f"c{i}.wav", secs, freq=250 + 60 * i)
        rows.append(json.dumps({"audio_filepath": str(wav), "text": f"neno {i}", "language": "sw"}))
    (tmp_path / "m.jsonl").write_text("\n".join(rows) + "\n")
    w = load_whisper(tiny_ct2_dir, device="cpu")
    m = load_data(str(tmp_path / "m.jsonl"))
    res = evaluate_cached(w, m, None, tmp_path / "t.hyps.jsonl", tmp_path / "cache", log=lambda *a: None)
    assert res["n"] == 3 and res["long_clips_from_audio"] == 1
    hyps = [json.loads(x) for x in (tmp_path / "t.hyps.jsonl").read_text().splitlines()]
    assert [h["ref"] for h in hyps] == ["neno 0", "neno 1", "neno 2"]
    assert hyps[1]["hyp"] == transcribe(w, [load_audio(m[1].audio)], "sw")[0]
    keys = json.loads(next((tmp_path / "cache").rglob("*.keys.json")).read_text())
    assert len(keys) == 2  # only the two short clips were encoded into the cache


def test_learning_rate_is_the_methods_default_unless_given():
    assert TrainConfig().learning_rate(make_method("lora")) == 1e-3
    assert TrainConfig().learning_rate(make_method("dama")) == 1e-3
    assert TrainConfig().learning_rate(make_method("full")) == 1e-5
    assert TrainConfig(lr=3e-3).learning_rate(make_method("full")) == 3e-3
