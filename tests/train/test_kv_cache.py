"""The cross-attention key/value cache: the same loss, gradients and adapter as computing them each step."""

from __future__ import annotations

import contextlib

import pytest
import torch
from safetensors.torch import load_file

from dama import kv_cache
from dama.adapt import make_method
from dama.data import load_data
from dama.encoder_cache import clip_keys
from dama.models.load import load_whisper
from dama.runs import RunFolder
from dama.testing import make_corpus
from dama.train.batches import bucket_batches, collate
from dama.train.config import TrainConfig
from dama.train.run import run_training
from dama.train.trainer import Trainer


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "data")


def _trainer(model_dir, method, corpus, tmp_path, **cfg) -> Trainer:
    w = load_whisper(model_dir, device="cpu")
    cfg = TrainConfig(**{"epochs": 1, "batch_size": 3, "cache_dir": str(tmp_path / "cache"), **cfg})
    t = Trainer(w, method, load_data("swahili:train", corpus), None, RunFolder(tmp_path / "run"), cfg, None,
                log=lambda *a: None)
    t._prepare_data()
    t._build_model()
    t._build_optimizer()
    t._prepare_loop()
    return t


def _loss_and_grads(t: Trainer, batch, served: bool) -> tuple[torch.Tensor, dict]:
    cols = collate(batch, t.pad)
    rows = cols.pop("rows").tolist()
    kw = t.train_inputs.model_kwargs(rows, "cpu", torch.float32)
    t.opt.zero_grad()
    ctx = t.kv.serving(kw["encoder_outputs"].last_hidden_state, rows) if served else contextlib.nullcontext()
    with ctx:  # backward inside too, as Trainer.train_step does (checkpointed layers recompute there)
        out = t.model(**kw, decoder_input_ids=cols["decoder_input_ids"], labels=cols["labels"])
        out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in t.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method", ["lora", "dama", "lora-fa", "pissa"])
def test_served_keys_values_give_the_uncached_loss_and_gradients(tiny6_ct2_dir, corpus, tmp_path, method):
    t = _trainer(tiny6_ct2_dir, make_method(method, **({"r": 4} if method != "dama" else {})), corpus, tmp_path)
    assert t.kv is not None, "the cache applies to vanilla LoRA layers over frozen k/v projections"
    batch = bucket_batches(t.examples, 3, 0, 0)[0]
    loss_plain, g_plain = _loss_and_grads(t, batch, served=False)
    hits = t.kv.hits
    loss_kv, g_kv = _loss_and_grads(t, batch, served=True)
    layers = t.w.model.config.decoder_layers
    assert t.kv.hits - hits == 2 * layers, "every layer's k and v came from the cache"
    assert torch.allclose(loss_plain, loss_kv, rtol=1e-5, atol=1e-6)
    assert g_plain.keys() == g_kv.keys() and g_plain
    for n in g_plain:
        assert torch.allclose(g_plain[n], g_kv[n], rtol=1e-4, atol=1e-6), n
    # what is served is the base projection of the cached encoder outputs
    enc = t.train_inputs.cache.get([batch[0].row]).float()
    k0 = t.w.model.model.decoder.layers[0].encoder_attn.k_proj
    base = getattr(k0, "base_layer", k0)
    assert torch.allclose(t.kv.get([batch[0].row], 0, 0), base(enc).detach(), atol=1e-5)


@pytest.mark.parametrize("method,why", [("dora", "rescales"), ("adalora", "SVDLinear"), ("full", "train")])
def test_methods_it_cannot_serve_say_why_and_train_as_before(tiny6_ct2_dir, corpus, tmp_path, method, why):
    t = _trainer(tiny6_ct2_dir, make_method(method), corpus, tmp_path)
    assert t.kv is None
    assert why in kv_cache.applies(t.adapted.model)


def test_training_with_the_cache_ends_where_training_without_it_does(tiny6_ct2_dir, corpus, tmp_path):
    tr, va = load_data("swahili:train", corpus), load_data("swahili:val", corpus)
    outs = {}
    for on in (True, False):
        cfg = TrainConfig(epochs=2, batch_size=3, cache_dir=str(tmp_path / "cache"), kv_cache=on)
        res = run_training(str(tiny6_ct2_dir), make_method("lora", r=4), tr, va, None, tmp_path / f"run-{on}", cfg,
                           log=lambda *a: None)
        assert res["kv_cache"] is on
        outs[on] = load_file(tmp_path / f"run-{on}" / "adapter" / "adapter_model.safetensors")
    sd = outs
    assert sd[True] and sd[True].keys() == sd[False].keys()
    for n in sd[True]:
        assert torch.allclose(sd[True][n], sd[False][n], rtol=1e-4, atol=1e-6), n
    files = list((tmp_path / "cache").glob("enc-*/kv-*/*.npy"))
    assert len(files) == len(tr)


def test_a_damaged_file_is_discarded_and_computed_again(tiny6_ct2_dir, corpus, tmp_path):
    t = _trainer(tiny6_ct2_dir, make_method("lora", r=4), corpus, tmp_path)
    good = t.kv.get([0], 1, 1).clone()
    victim = t.kv._files[0]
    raw = bytearray(victim.read_bytes())
    raw[-7] ^= 0x40  # one bit, same size
    victim.write_bytes(bytes(raw))
    logs: list[str] = []
    again = kv_cache.CrossKVCache.build(t.adapted.model, t.train_inputs.cache.path, clip_keys(t.train_m),
                                        t.train_inputs.cache.get, log=logs.append)
    assert any("damaged" in m and str(victim) in m for m in logs)
    assert torch.equal(again.get([0], 1, 1), good)


def test_cache_prune_drops_key_value_files_of_clips_no_data_set_needs(tiny6_ct2_dir, corpus, tmp_path):
    from dama.encoder_cache import prune_cache

    t = _trainer(tiny6_ct2_dir, make_method("lora", r=4), corpus, tmp_path)
    n = len(list(t.kv.path.glob("*.npy")))
    keep = list(load_data("swahili:train", corpus))[:2]
    res = prune_cache(tmp_path / "cache", keep)
    left = list(t.kv.path.glob("*.npy"))
    assert len(left) == 2 and n > 2
    assert sum(1 for r in res["removed"] if "/kv-" in r) == n - 2


def test_no_kv_cache_flag_turns_it_off():
    from dama.train.config import TrainConfig as C

    assert C.from_options(no_kv_cache=True).kv_cache is False
    assert C.from_options().kv_cache is True


def test_recomputed_forward_gets_the_base_values_again(tiny6_ct2_dir, corpus, tmp_path):
    """Activation checkpointing runs a layer's forward twice in a step; the second must not see the
    first's LoRA update (added in place into the served block)."""
    t = _trainer(tiny6_ct2_dir, make_method("lora", r=4), corpus, tmp_path)
    batch = bucket_batches(t.examples, 3, 0, 0)[0]
    loss_plain, g_plain = _loss_and_grads(t, batch, served=False)
    base = t.adapted.model.get_base_model()
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    base.train()
    hits = t.kv.hits
    loss_kv, g_kv = _loss_and_grads(t, batch, served=True)
    assert t.kv.hits - hits > 2 * t.w.model.config.decoder_layers, "the backward pass recomputed layers"
    assert torch.allclose(loss_plain, loss_kv, rtol=1e-5, atol=1e-6)
    for n in g_plain:
        assert torch.allclose(g_plain[n], g_kv[n], rtol=1e-4, atol=1e-6), n


def test_a_disk_too_small_for_the_cache_leaves_training_computing_them(tiny6_ct2_dir, corpus, tmp_path,
                                                                       monkeypatch):
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(kv_cache.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    logs: list[str] = []
    w = load_whisper(tiny6_ct2_dir, device="cpu")
    cfg = TrainConfig(epochs=1, batch_size=3, cache_dir=str(tmp_path / "cache"))
    t = Trainer(w, make_method("lora", r=4), load_data("swahili:train", corpus), None, RunFolder(tmp_path / "run"),
                cfg, None, log=logs.append)
    t._prepare_data()
    t._build_model()
    assert t.kv is None
    assert any("not enough disk space" in m and "training goes on" in m for m in logs)
    assert not list((tmp_path / "cache").glob("enc-*/kv-*/*.npy"))
