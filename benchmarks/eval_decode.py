"""Evaluation decoding: ``generate`` (before) vs the lean greedy loop (unmerged, merged) and CTranslate2, side by side.

What `dama train` (validation) and a run's test split spend their time in: greedy decoding of
clips from cached encoder outputs with an adapted whisper-base. The same clips, the same
adapter, the same batch size, in one process; the variants run interleaved (round after round,
each variant once per round, the best round kept) so a shared machine's load falls on all of them
alike; transcripts compared one by one against ``generate``'s. The load average is recorded.

    DAMA_DATA=../shared/data python benchmarks/eval_decode.py \\
        --run benchmarks/results/swahili-full-dama --data swahili:test --limit 64 \\
        --out benchmarks/results/eval_decode_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="benchmarks/results/swahili-full-dama", help="a finished run folder")
    ap.add_argument("--data", default="swahili:test")
    ap.add_argument("--data-root")
    ap.add_argument("--limit", type=int, default=64, help="clips (the first N of the split)")
    ap.add_argument("--batch-size", type=int, default=16, help="as `dama train` validates (decode_batch_size)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--variants", default="generate,lean,lean-merged,ct2-merged",
                    help="comma-separated, generate first (the reference the others are compared with)")
    ap.add_argument("--cache-dir", help="encoder cache (default: a temporary one)")
    ap.add_argument("--out", default="benchmarks/results/eval_decode_cpu.json")
    args = ap.parse_args()

    from dama.data import load_data
    from dama.data.manifest import Manifest
    from dama.encoder_cache import ClipInputs
    from dama.evaluate.cached import decode_rows, decoding_view
    from dama.evaluate.metrics import corpus_errors
    from dama.evaluate.run import manifest_languages
    from dama.models.transcribe import DecodeOptions
    from dama.outputs import atomic_write_text
    from dama.runs import RunFolder

    run = RunFolder(args.run)
    w = run.load(device="cpu", merge=False)  # as during training: the adapter beside the base weights
    w = decoding_view(w, w.model)
    m = load_data(args.data, args.data_root)
    m.fill_durations()
    m = Manifest([u for u in m if (u.duration or 0) <= 30][: args.limit], name=m.name)
    langs = manifest_languages(m, run.read_config().get("language"))
    opts = DecodeOptions(batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = ClipInputs(w, m, True, args.cache_dir or tmp, log=lambda *a: None)
        rows = list(range(len(m)))
        variants = {"generate": {"lean": False, "merge": False, "ct2": False},
                    "lean": {"lean": True, "merge": False, "ct2": False},
                    "lean-merged": {"lean": True, "merge": True, "ct2": False},
                    "ct2-merged": {"lean": True, "merge": True, "ct2": True}}
        picked = args.variants.split(",")
        if picked[0] != "generate" or not set(picked) <= set(variants):
            ap.error(f"--variants: generate first, then any of {', '.join(variants)}")
        variants = {name: variants[name] for name in picked}
        res: dict[str, dict] = {}
        hyps: dict[str, list[str]] = {}
        times: dict[str, list[float]] = {name: [] for name in variants}
        load = [os.getloadavg()[0]]
        for _ in range(args.repeats):
            for name, kw in variants.items():
                t = time.perf_counter()
                hyps[name] = decode_rows(w, inputs, m, rows, langs, opts, desc=name, **kw)
                times[name].append(time.perf_counter() - t)
                load.append(os.getloadavg()[0])
        for name in variants:
            best = min(times[name])
            err = corpus_errors([u.text for u in m], hyps[name])
            res[name] = {"seconds": best, "seconds_all_rounds": times[name], "seconds_per_clip": best / len(m),
                         "wer": err.wer, "cer": err.cer,
                         "identical_to_generate": sum(a == b for a, b in zip(hyps[name], hyps["generate"])),
                         "clips": len(m)}
    for name in res:
        res[name]["speedup_vs_generate"] = res["generate"]["seconds"] / res[name]["seconds"]
    out = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(),
                    "load_average_1min": {"start": load[0], "max": max(load), "mean": sum(load) / len(load)},
                    "note": ("shared machine: variants interleaved over the rounds, best round kept; "
                             if args.repeats > 1 else
                             "shared machine: ONE round, so the variants ran one after another and the load "
                             "may have changed between them; ")
                            + "absolute seconds depend on the load (re-run idle for absolute numbers)"},
        "setup": vars(args), "audio_seconds": m.seconds, "variants": res,
        "differing": {name: [{"clip": m[i].id, "generate": hyps["generate"][i], name: hyps[name][i]}
                             for i in range(len(m)) if hyps[name][i] != hyps["generate"][i]]
                      for name in res if name != "generate"},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    for name, r in res.items():
        print(f"{name:>12}: {r['seconds']:.1f} s ({r['seconds_per_clip']:.2f} s/clip), "
              f"{r['speedup_vs_generate']:.2f}x, "
              f"WER {r['wer']:.4f}, identical {r['identical_to_generate']}/{r['clips']}")


if __name__ == "__main__":
    main()
