"""Training cost of every adapter method, side by side in one run on the same clips.

The grid's per-run epoch times come from runs made hours apart, some beside other work;
this measures them together, on an otherwise idle machine, so "which method trains
fastest" is a like-for-like comparison. Each method trains in its own `dama train`
process (so peak RSS is its own) on the same clips, batch size, epochs and precision,
from one encoder cache built up front (cache building is not timed), with no validation
or test decoding. Writes a JSON results file.

    python benchmarks/method_speed.py --data swahili:train --hours 0.5 --epochs 3 \
        --out benchmarks/results/method_speed_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dama.machine import cpu_name

METHODS = ("dama", "lora", "dora", "lora-fa", "adalora", "pissa")  # `full` on request: its epochs are much longer
GRID_CACHE = Path(__file__).parent / "cpu-whisper-base" / "runs" / ".encoder-cache"


def build_cache(args) -> None:
    """Encode the training clips once, in this process, so no timed run pays for it."""
    from dama.data.audio import CHUNK_SECONDS
    from dama.data.spec import load_data
    from dama.encoder_cache import EncoderCache
    from dama.models.load import load_whisper

    w = load_whisper(args.model, device="cpu")
    m = load_data(args.data, args.data_root)
    if args.hours:
        m = m.subset(args.hours, args.data_seed)
    m.fill_durations()
    m = type(m)([u for u in m if (u.duration or 0) <= CHUNK_SECONDS], name=m.name)
    EncoderCache.build(w, m, args.cache_dir)


def run_method(args, method: str, workdir: Path) -> dict:
    js = workdir / f"{method}.json"
    cmd = [sys.executable, "-m", "dama", "train", "--method", method, "--data", args.data,
           "--out", str(workdir / method), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--val", "none", "--test", "none", "--cache-dir", str(args.cache_dir), "--model", args.model,
           "--seed", "0", "--data-seed", str(args.data_seed), "--precision", "no", "--json", str(js)]
    if args.hours:
        cmd += ["--hours", str(args.hours)]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t
    r = json.loads(js.read_text())
    later = r["epoch_seconds"][1:] or r["epoch_seconds"]
    return {"epoch_seconds": r["epoch_seconds"], "epoch_seconds_after_first": sum(later) / len(later),
            "train_seconds": r["train_seconds"], "process_seconds": wall, "peak_memory_mb": r["peak_memory_mb"],
            "trainable_params": r["trainable_params"], "utterances": r["train_utterances"], "steps": r["steps"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="swahili:train")
    ap.add_argument("--data-root")
    ap.add_argument("--hours", type=float, default=0.5)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--model", default="whisper-base")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated; the first is the reference")
    ap.add_argument("--cache-dir", type=Path, default=GRID_CACHE,
                    help="encoder cache (default: the bench grid's, so clips it already holds are not re-encoded)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/method_speed_cpu.json"))
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.epochs < 2:
        ap.error("--epochs must be at least 2: the first epoch is reported apart from the rest")
    build_cache(args)
    with tempfile.TemporaryDirectory() as tmp:
        res = {m: run_method(args, m, Path(tmp)) for m in methods}
    ref = res[methods[0]]
    for r in res.values():
        r["epoch_time_vs_reference"] = r["epoch_seconds_after_first"] / ref["epoch_seconds_after_first"]
        r["params_vs_reference"] = r["trainable_params"] / ref["trainable_params"] if ref["trainable_params"] else None
    out = {"machine": {"platform": platform.platform(), "cpu": cpu_name(), "cpus": os.cpu_count(),
                       "python": platform.python_version()},
           "setup": {"data": args.data, "hours": args.hours, "data_seed": args.data_seed, "epochs": args.epochs,
                     "batch_size": args.batch_size, "model": args.model, "reference": methods[0]},
           "methods": res}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    for m, r in res.items():
        print(f"{m:>10}  {r['epoch_seconds_after_first']:6.1f} s/epoch  ({r['epoch_time_vs_reference']:.2f}x)  "
              f"peak {r['peak_memory_mb']:.0f} MB  trainable {r['trainable_params']:,}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
