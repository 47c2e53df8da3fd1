"""Training options for large models, checked on a tiny random Whisper where the CPU can run them:
gradient checkpointing, token-weighted gradient accumulation, an effective batch, bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from dama.adapt.dama import DamaMethod
from dama.data import load_data
from dama.errors import DamaError
from dama.models.load import load_whisper
from dama.runs import RunFolder
from dama.testing import make_corpus
from dama.train.batches import bucket_batches
from dama.train.checkpoint import TrainingError
from dama.train.config import TrainConfig
from dama.train.run import run_training
from dama.train.trainer import Trainer, n_target_tokens


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "data", n_train=6)


def _trainer(model_dir, corpus, tmp_path, name, **cfg) -> Trainer:
    """A Trainer set up to the point of its first step (what fit() does before the loop)."""
    torch.manual_seed(0)
    cfg = TrainConfig(**{"epochs": 1, "cache_dir": str(tmp_path / "cache"), "max_grad_norm": 0.0, **cfg})
    t = Trainer(load_whisper(model_dir), DamaMethod(), load_data("swahili:train", corpus), None,
                RunFolder(tmp_path / name), cfg, None, log=lambda *a: None)
    t._prepare_data()
    t._build_model()
    t._build_optimizer()
    t._prepare_loop()
    t.model.train()
    return t


def _grads(t: Trainer, batches, weights) -> dict[str, torch.Tensor]:
    for b, w in zip(batches, weights):
        t.train_step(b, 0, weight=w, sync=False)  # backward only: the gradients stay in .grad
    return {n: p.grad.clone() for n, p in t.model.named_parameters() if p.grad is not None}


def _all(t: Trainer):
    return sorted(t.examples, key=lambda e: e.row)


def test_gradient_checkpointing_gives_identical_gradients(tiny6_ct2_dir, corpus, tmp_path):
    plain = _trainer(tiny6_ct2_dir, corpus, tmp_path, "a", batch_size=6)
    ckpt = _trainer(tiny6_ct2_dir, corpus, tmp_path, "b", batch_size=6, gradient_checkpointing=True)
    base = ckpt.adapted.model.get_base_model()
    assert base.model.decoder.gradient_checkpointing and base.model.decoder.training
    g0, g1 = _grads(plain, [_all(plain)], [1.0]), _grads(ckpt, [_all(ckpt)], [1.0])
    assert g0.keys() == g1.keys() and len(g0) > 0
    for n in g0:
        assert torch.allclose(g0[n], g1[n], rtol=1e-5, atol=1e-8), n


def test_accumulated_batches_give_the_large_batch_gradient(tiny6_ct2_dir, corpus, tmp_path):
    big = _trainer(tiny6_ct2_dir, corpus, tmp_path, "big", batch_size=6)
    acc = _trainer(tiny6_ct2_dir, corpus, tmp_path, "acc", batch_size=3, grad_accum=2)
    ex = _all(acc)
    halves = [ex[:3], ex[3:]]
    tokens = [n_target_tokens(h) for h in halves]
    assert tokens[0] != tokens[1]  # else plain averaging would be right too and the test would prove little
    g_big = _grads(big, [_all(big)], [1.0])
    g_acc = _grads(acc, halves, [n / sum(tokens) for n in tokens])
    for n in g_big:
        assert torch.allclose(g_big[n], g_acc[n], rtol=1e-4, atol=1e-7), n
    # what the training loop does: one epoch of 2 batches of 3 is one optimizer step
    batches = bucket_batches(acc.examples, 3, 0, 0)
    assert len(batches) == 2 and acc.total_steps == 1


def test_effective_batch_sets_the_accumulation_and_runs(tiny6_ct2_dir, corpus, tmp_path):
    assert TrainConfig(batch_size=4, effective_batch=16).accumulation == 4
    assert TrainConfig(batch_size=4, grad_accum=3).accumulation == 3
    with pytest.raises(DamaError, match="multiple of --batch-size 4"):
        TrainConfig(batch_size=4, effective_batch=10)
    with pytest.raises(DamaError, match="not both"):
        TrainConfig(batch_size=4, effective_batch=8, grad_accum=2)
    tr = load_data("swahili:train", corpus)
    res = run_training(str(tiny6_ct2_dir), DamaMethod(), tr, None, None, tmp_path / "run",
                       TrainConfig(epochs=2, batch_size=2, effective_batch=4, cache_dir=str(tmp_path / "c")),
                       log=lambda *a: None)
    assert res["steps"] == 2 * 2  # 3 batches of 2 per epoch -> groups of 2 + 1


def test_bf16_autocast_trains_on_cpu_and_fp16_is_refused_before_work(tiny6_ct2_dir, corpus, tmp_path):
    tr = load_data("swahili:train", corpus)
    res = run_training(str(tiny6_ct2_dir), DamaMethod(), tr, None, None, tmp_path / "bf16",
                       TrainConfig(epochs=1, batch_size=3, precision="bf16", cache_dir=str(tmp_path / "c")),
                       log=lambda *a: None)
    assert res["precision"] == "bf16" and res["steps"] == 2
    with pytest.raises(TrainingError, match="fp16 needs a CUDA GPU"):
        run_training(str(tiny6_ct2_dir), DamaMethod(), tr, None, None, tmp_path / "fp16",
                     TrainConfig(epochs=1, precision="fp16", cache_dir=str(tmp_path / "c2")), log=lambda *a: None)
    assert not (tmp_path / "c2").exists()  # refused before any clip was encoded
