"""A training step before and after a code change, interleaved in one process: the A/B a shared machine allows.

The "before" arm runs the chunked loss (``dama.train.loss``) and the cross-attention K/V cache's serving
forward (``dama.kv_cache``) as they were at git revision ``--before``; the "after" arm runs the working
tree's. Both drive the same real :class:`dama.train.trainer.Trainer` (set up as ``dama train`` does, K/V
cache on) on the same batches, alternating round by round, so the machine's load falls on both alike.
First, on one batch and without an optimizer step, the loss and every trainable gradient of the two arms
are compared (they must agree within float tolerance); then the timing rounds run.

    python benchmarks/step_ab.py --before 61d6a87 --data yoruba:train --hours 0.05 --methods dama,lora \\
        --out benchmarks/results/step_ab_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import flops  # noqa: E402  (build_trainer: a Trainer set up exactly as `dama train` does)

ROOT = Path(__file__).resolve().parents[1]


def module_at(rev: str, path: str, name: str) -> types.ModuleType:
    """The module ``path`` as it was at git revision ``rev`` (our own repository's code)."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True, capture_output=True,
                         text=True).stdout
    mod = types.ModuleType(name)
    exec(compile(src, f"{rev}:{path}", "exec"), mod.__dict__)  # noqa: S102
    return mod


def use(t, arm: dict) -> None:
    """Route ``t``'s loss and K/V serving through ``arm``'s implementations."""
    import dama.kv_cache
    import dama.train.trainer

    dama.train.trainer.chunked_cross_entropy = arm["loss"].chunked_cross_entropy
    dama.kv_cache._make_forward = arm["kv"]._make_forward
    t.kv.attach(t.adapted.model)


def grads_of(t, batch) -> tuple[float, dict[str, torch.Tensor]]:
    t.opt.zero_grad()
    loss = t.train_step(batch, 0, sync=False)
    g = {n: p.grad.detach().clone() for n, p in t.model.named_parameters() if p.grad is not None}
    t.opt.zero_grad()
    return loss, g


def measure(args, method: str, arms: dict, work: Path) -> dict:
    from dama.train.batches import bucket_batches

    t = flops.build_trainer(args, method, work / method, True)
    if t.kv is None:
        raise SystemExit(f"{method}: the K/V cache does not apply; nothing to compare")
    batches = bucket_batches(t.examples, args.batch_size, 0, 0)[: args.steps]
    t.model.train()
    check = {}
    for name, arm in arms.items():
        use(t, arm)
        check[name] = grads_of(t, batches[0])
    (la, ga), (lb, gb) = check["before"], check["after"]
    worst = max(((ga[n] - gb[n]).abs().max() / ga[n].abs().max().clamp(min=1e-12)).item() for n in ga)
    numerics = {"loss_before": la, "loss_after": lb, "loss_rel_diff": abs(la - lb) / abs(la),
                "max_rel_grad_diff": worst, "same_grad_tensors": sorted(ga) == sorted(gb)}
    if not (numerics["same_grad_tensors"] and numerics["loss_rel_diff"] < 1e-5 and worst < 1e-4):
        raise SystemExit(f"{method}: the arms disagree: {numerics}")
    secs: dict[str, list[float]] = {name: [] for name in arms}
    for arm in arms.values():  # warm-up
        use(t, arm)
        t.train_step(batches[0], 0)
    for _ in range(args.rounds):
        for name, arm in arms.items():
            use(t, arm)
            t0 = time.perf_counter()
            for b in batches:
                t.train_step(b, 0)
            secs[name].append((time.perf_counter() - t0) / len(batches))
            print(f"  {method} {name}: {secs[name][-1]:.2f} s/step (load {os.getloadavg()[0]:.1f})", flush=True)
    med = {name: statistics.median(v) for name, v in secs.items()}
    return {"method": method, "batches": len(batches), "numerics": numerics, "seconds_per_step_rounds": secs,
            "median_seconds_per_step": med, "speedup": med["before"] / med["after"],
            "per_round_speedups": [a / b for a, b in zip(secs["before"], secs["after"])]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True, help="git revision of the 'before' arm")
    ap.add_argument("--data", default="yoruba:train")
    ap.add_argument("--data-root")
    ap.add_argument("--hours", type=float, default=0.05)
    ap.add_argument("--methods", default="dama,lora")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4, help="batches per arm and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default="whisper-base")
    ap.add_argument("--work", help="folder for the caches (default: a temporary one)")
    ap.add_argument("--out", default="benchmarks/results/step_ab_cpu.json")
    args = ap.parse_args()
    from dama.outputs import atomic_write_text

    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.before], check=True,
                         capture_output=True, text=True).stdout.strip()
    arms = {"before": {"loss": module_at(rev, "src/dama/train/loss.py", "loss_before"),
                       "kv": module_at(rev, "src/dama/kv_cache.py", "kv_before")}}
    import dama.kv_cache
    import dama.train.loss

    arms["after"] = {"loss": dama.train.loss, "kv": dama.kv_cache}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        res = [measure(args, m, arms, work) for m in args.methods.split(",")]
    load.append(os.getloadavg()[0])
    out = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "torch_threads": torch.get_num_threads(),
                       "load_average_1min": {"start": load[0], "end": load[-1]},
                       "note": "shared machine: the arms alternate round by round, so their ratio is comparable; "
                               "absolute seconds depend on the load (re-run idle for absolute numbers)"},
           "setup": {**vars(args), "before": rev}, "results": res}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(out, indent=2) + "\n")
    for r in res:
        print(f"{r['method']}: before {r['median_seconds_per_step']['before']:.2f} s/step, after "
              f"{r['median_seconds_per_step']['after']:.2f} s/step: {r['speedup']:.2f}x; "
              f"loss rel diff {r['numerics']['loss_rel_diff']:.1e}, grads {r['numerics']['max_rel_grad_diff']:.1e}")


if __name__ == "__main__":
    main()
