"""How close to the machine's limit: peak fp32 matmul throughput vs what a training step and the
encoder pass achieve.

Three measurements, side by side in one process (same threads, same moment):

- **peak**: ``torch.mm`` in fp32 on the shapes that matter (decoder projections of a batch's
  tokens, the cross-attention K/V projections of 1500 encoder frames, the FFN, a 256-row chunk of
  the 51,865-way output projection, the encoder's projections, a square 2048 reference); the
  best of several repeats after a warm-up. The machine's peak is the best of these.
- **training step**: the real :class:`dama.train.trainer.Trainer` step (cached encoder outputs,
  chunked loss, fused LoRA forward, AdamW) on real clips, timed over several batches, with the
  frozen cross-attention keys/values computed in the step (before) and served from
  :mod:`dama.kv_cache` (after); its FLOPs
  are counted per operator from the shapes by ``torch.utils.flop_counter.FlopCounterMode``
  (matmuls, attention, convolutions: forward and backward as executed), and the forward part is
  cross-checked against the closed-form count of :func:`decoder_forward_flops`.
- **encoder pass** (what builds the encoder cache): 30 s inputs, counted and timed the same way.

Achieved FLOP/s = counted FLOPs / measured seconds; fraction of peak = achieved / peak. Element-wise
work (softmax, layer norm, GELU, AdamW) is not counted as FLOPs: it is the memory-bound part, and it is
what keeps the fraction below 1.

    python benchmarks/flops.py --data yoruba:train --hours 0.05 --methods lora,dama \\
        --out benchmarks/results/flops_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode


# (name, M, K, N): an M x K by K x N fp32 matmul
def peak_shapes(batch: int, tokens: int, d: int, ffn: int, vocab: int, frames: int = 1500) -> list[tuple]:
    return [
        ("square 2048", 2048, 2048, 2048),
        ("decoder projection (batch x tokens, d, d)", batch * tokens, d, d),
        ("decoder FFN in (batch x tokens, d, ffn)", batch * tokens, d, ffn),
        ("cross-attention K/V of encoder frames (batch x 1500, d, d)", batch * frames, d, d),
        ("output projection chunk (256, d, vocab)", 256, d, vocab),
        ("encoder projection (batch x 1500, d, d)", batch * frames, d, d),
        ("encoder FFN in (batch x 1500, d, ffn)", batch * frames, d, ffn),
    ]


def time_best(fn, repeats: int, min_seconds: float = 0.2) -> float:
    """Best per-call seconds over ``repeats`` rounds, each at least ``min_seconds`` long."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            el = time.perf_counter() - t0
            if el >= min_seconds:
                break
        best = min(best, el / n)
    return best


def measure_peak(shapes: list[tuple], repeats: int) -> list[dict]:
    rows = []
    for name, m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        out = torch.empty(m, n)
        s = time_best(lambda a=a, b=b, out=out: torch.mm(a, b, out=out), repeats)
        rows.append({"shape": name, "m": m, "k": k, "n": n, "seconds": s, "gflops": 2 * m * k * n / s / 1e9})
    return rows


def decoder_forward_flops(batch: int, tokens: int, frames: int, d: int, ffn: int, layers: int, vocab: int,
                          lora_ranks: list[int] | None = None) -> dict:
    """Closed-form matmul FLOPs of one decoder forward (2 per multiply-add), by part.

    ``lora_ranks``: the rank of each adapted linear layer (its extra ``x A^T B^T`` costs
    2·N·r·(d_in + d_out)). All decoder projections here are d x d (attention) or d x ffn (FFN)."""
    n = batch * tokens
    parts = {
        "self-attention projections": layers * 4 * 2 * n * d * d,
        "self-attention scores and values": layers * 2 * 2 * batch * tokens * tokens * d,
        "cross-attention q and out projections": layers * 2 * 2 * n * d * d,
        "cross-attention K/V of encoder frames": layers * 2 * 2 * batch * frames * d * d,
        "cross-attention scores and values": layers * 2 * 2 * batch * tokens * frames * d,
        "FFN": layers * 2 * 2 * n * d * ffn,
        "output projection": 2 * n * d * vocab,
    }
    if lora_ranks:
        parts["LoRA low-rank paths (approx., d x d layers)"] = sum(2 * n * r * 2 * d for r in lora_ranks)
    parts["total"] = sum(parts.values())
    return parts


def counted(fn) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return int(fc.get_total_flops())


def build_trainer(args, method_name: str, run_dir: Path, kv: bool):
    """A real Trainer, set up exactly as ``dama train`` does, stopped before its first epoch."""
    from dama.adapt.options import method_config_from_options
    from dama.data import load_data
    from dama.models.load import load_whisper
    from dama.runs import RunFolder
    from dama.train.config import TrainConfig
    from dama.train.trainer import Trainer

    w = load_whisper(args.model, device="cpu")
    m = load_data(args.data, args.data_root)
    if args.hours:
        m = m.subset(args.hours, 0)
    method = method_config_from_options(method_name)  # defaults: LoRA r=64, alpha 128 (as train_speed.py)
    cfg = TrainConfig(batch_size=args.batch_size, epochs=1, precision="no", cache_dir=str(run_dir.parent / "cache"),
                      kv_cache=kv)
    t = Trainer(w, method, m, None, RunFolder(run_dir / "run"), cfg, None, log=lambda *a: None)
    t._prepare_data()
    t._build_model()
    t._build_optimizer()
    t._prepare_loop()
    return t


def measure_step(args, method_name: str, workdir: Path, kv: bool) -> dict:
    from dama.adapt.peft_compat import count_trainable
    from dama.train.batches import bucket_batches

    t = build_trainer(args, method_name, workdir / f"{method_name}-{kv}", kv)
    batches = bucket_batches(t.examples, args.batch_size, 0, 0)[: args.steps]
    t.model.train()
    t.train_step(batches[0], 0)  # warm-up (allocator, thread pools)
    flops = [counted(lambda b=b: t.train_step(b, 0)) for b in batches]
    secs = []
    for b in batches:
        t0 = time.perf_counter()
        t.train_step(b, 0)
        secs.append(time.perf_counter() - t0)
    # the forward alone, counted, against the closed form (mean-shaped batch)
    cfg = t.w.model.config
    b0 = batches[0]
    tokens = max(len(e.tokens) - 1 for e in b0)
    from dama.train.batches import collate

    cols = collate(b0, t.pad)
    kw = t.train_inputs.model_kwargs(cols.pop("rows").tolist(), "cpu", t.w.model.dtype)
    with torch.no_grad():
        fwd_counted = counted(lambda: t.model(**kw, decoder_input_ids=cols["decoder_input_ids"]))  # all computed
    ranks = []
    for mod in t.model.modules():
        if hasattr(mod, "lora_A") and "default" in getattr(mod, "lora_A", {}):
            ranks.append(mod.lora_A["default"].weight.shape[0])
    closed = decoder_forward_flops(len(b0), tokens, 1500, cfg.d_model, cfg.decoder_ffn_dim, cfg.decoder_layers,
                                   cfg.vocab_size, ranks)
    total_flops, total_s = sum(flops), sum(secs)
    return {
        "method": method_name, "kv_cache": t.kv is not None, "batches": len(batches), "batch_size": args.batch_size,
        "trainable_params": count_trainable(t.model, t.adapted.frozen),
        "step_seconds": secs, "step_gflop": [f / 1e9 for f in flops],
        "median_step_seconds": statistics.median(secs),
        "achieved_gflops": total_flops / total_s / 1e9,
        "forward_check": {"batch_clips": len(b0), "tokens": tokens, "counted_gflop": fwd_counted / 1e9,
                          "closed_form_gflop": {k: v / 1e9 for k, v in closed.items()},
                          "counted_over_closed_form": fwd_counted / closed["total"]},
    }


def measure_encoder(args, batch: int) -> dict:
    from dama.models.load import load_whisper

    w = load_whisper(args.model, device="cpu")
    enc = w.model.get_encoder()
    feats = torch.randn(batch, w.model.config.num_mel_bins, 3000)
    with torch.no_grad():
        flops = counted(lambda: enc(feats))
        s = time_best(lambda: enc(feats), repeats=3, min_seconds=0.0)
    return {"batch_clips": batch, "seconds": s, "gflop": flops / 1e9, "achieved_gflops": flops / s / 1e9,
            "seconds_per_30s_clip": s / batch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="yoruba:train")
    ap.add_argument("--data-root")
    ap.add_argument("--hours", type=float, default=0.05)
    ap.add_argument("--methods", default="lora,dama")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6, help="batches timed per method")
    ap.add_argument("--repeats", type=int, default=5, help="rounds of each peak matmul (best kept)")
    ap.add_argument("--model", default="whisper-base")
    ap.add_argument("--label", default="", help="e.g. 'before' / 'after' a change, kept in the file")
    ap.add_argument("--out", default="benchmarks/results/flops_cpu.json")
    args = ap.parse_args()
    from dama.models.fetch import fetch_model

    if not Path(args.model).is_dir():
        args.model = str(fetch_model(args.model, log=lambda *a: None))
    from transformers import WhisperConfig

    cfg = WhisperConfig.from_pretrained(args.model)
    peak = measure_peak(peak_shapes(args.batch_size, 64, cfg.d_model, cfg.decoder_ffn_dim, cfg.vocab_size),
                        args.repeats)
    peak_gflops = max(r["gflops"] for r in peak)
    with tempfile.TemporaryDirectory() as tmp:
        steps = [measure_step(args, m, Path(tmp), kv) for m in args.methods.split(",") for kv in (False, True)]
    encoder = measure_encoder(args, args.batch_size)
    for s in steps:
        s["fraction_of_peak"] = s["achieved_gflops"] / peak_gflops
    encoder["fraction_of_peak"] = encoder["achieved_gflops"] / peak_gflops
    res = {
        "label": args.label,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "setup": {k: v for k, v in vars(args).items() if k != "out"},
        "peak_matmul": peak, "peak_gflops": peak_gflops,
        "training_step": steps, "encoder_pass": encoder,
    }
    from dama.outputs import atomic_write_text

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(res, indent=2) + "\n")
    print(f"peak fp32 matmul: {peak_gflops:.1f} GFLOP/s ({torch.get_num_threads()} threads)")
    for s in steps:
        kv = "K/V cached" if s["kv_cache"] else "computed  "
        print(f"{s['method']:>6} {kv} step: {s['median_step_seconds']:.3f} s median, "
              f"{s['achieved_gflops']:.1f} GFLOP/s "
              f"= {100 * s['fraction_of_peak']:.0f} % of peak (forward counted/closed form "
              f"{s['forward_check']['counted_over_closed_form']:.3f})")
    print(f"encoder pass: {encoder['seconds_per_30s_clip']:.3f} s per 30 s clip, {encoder['achieved_gflops']:.1f} "
          f"GFLOP/s = {100 * encoder['fraction_of_peak']:.0f} % of peak")


if __name__ == "__main__":
    main()
