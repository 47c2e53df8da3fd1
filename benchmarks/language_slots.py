"""Does the Whisper token a new language borrows (--language-slot) change accuracy, against a new token?

    python benchmarks/language_slots.py --data pidgin:train --slots en,yo,sw --hours 0.25 --epochs 3 \\
        --test-limit 60 --work /tmp/slots --out benchmarks/results/language_slots.json

Trains the same data with the same seed once with a new token (dama's default for a language Whisper
lacks) and once per slot, all sharing one encoder cache, and writes each run's test WER/CER and
training time. Short runs: the point is the comparison between slots, not the best WER.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="pidgin:train")
    ap.add_argument("--slots", default="en,yo,sw")
    ap.add_argument("--method", default="dama")
    ap.add_argument("--hours", type=float, default=0.25)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", default="3e-3")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-limit", type=int, default=60)
    ap.add_argument("--val-max-utts", type=int, default=20)
    ap.add_argument("--val", default=None, help="passed to dama train (e.g. none: no validation, for a 1-epoch run)")
    ap.add_argument("--parallel", action="store_true",
                    help="train the variants at once (one process each; the test split's encoder outputs are then "
                         "computed by each run)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="/tmp/dama-language-slots")
    ap.add_argument("--out", default="benchmarks/results/language_slots.json")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    variants = [("new-token", [])] + [(f"slot-{s}", ["--language-slot", s]) for s in args.slots.split(",") if s]
    cmds, t0, procs = {}, {}, {}
    for name, flags in variants:
        cmds[name] = [sys.executable, "-m", "dama", "train", "--method", args.method, "--data", args.data,
                      "--hours", str(args.hours), "--epochs", str(args.epochs), "--lr", args.lr,
                      "--seed", str(args.seed),
                      "--test-limit", str(args.test_limit), "--val-max-utts", str(args.val_max_utts),
                      *(["--val", args.val] if args.val else []),
                      "--threads", str(args.threads), "--cache-dir", str(work / "cache"), "--out", str(work / name),
                      "--json", str(work / f"{name}.json"), *flags]
    todo = [name for name, _ in variants if not (work / f"{name}.json").is_file()]
    for name in todo:
        t0[name] = time.perf_counter()
        procs[name] = subprocess.Popen(cmds[name])
        if not args.parallel:
            procs[name].wait()
    walls = {}
    for name in todo:
        if procs[name].wait() != 0:
            raise SystemExit(f"{name} failed: {' '.join(cmds[name])}")
        walls[name] = time.perf_counter() - t0[name]
    rows = []
    for name, _ in variants:
        res = json.loads((work / f"{name}.json").read_text())
        cfg = json.loads((work / name / "config.json").read_text())
        rows.append({"variant": name, "slot": (cfg.get("language_slot") or {}).get("slot"),
                     "new_token": (cfg.get("new_language") or {}).get("code"), "wer": res["wer"], "cer": res["cer"],
                     "n": res["n"], "best_val_wer": res.get("best_val_wer"), "train_hours": res.get("train_hours"),
                     "train_seconds": res.get("train_seconds"), "wall_seconds": walls.get(name),
                     "command": " ".join(cmds[name][2:])})
        print(f"{name:>12}: test WER {res['wer']:.4f} CER {res['cer']:.4f} (n={res['n']})", flush=True)
    from dama.evaluate.stats import paired_compare, read_hyps

    ref = read_hyps(work / variants[0][0] / "test.hyps.jsonl")
    for row in rows[1:]:  # each slot minus the new token, paired over the same test clips (WER points)
        c = paired_compare(read_hyps(work / row["variant"] / "test.hyps.jsonl"), ref).to_dict()
        row["minus_new_token"] = {k: (round(v * 100, 1) if k in ("diff",) else v) for k, v in c.items()
                                  if k in ("diff", "p_bootstrap", "wins", "losses", "p_sign")}
        row["minus_new_token"]["ci"] = [round(x * 100, 1) for x in c["ci"]]
        print(f"{row['variant']:>12} minus new-token: {c['diff'] * 100:+.1f} WER points "
              f"[{c['ci'][0] * 100:+.1f}, {c['ci'][1] * 100:+.1f}] p={c['p_bootstrap']:.2f}", flush=True)
    out = {"data": args.data, "method": args.method, "hours": args.hours, "epochs": args.epochs, "lr": args.lr,
           "seed": args.seed, "test_limit": args.test_limit, "val": args.val, "parallel": args.parallel,
           "machine": f"{os.cpu_count()} CPU cores (shared), no GPU",
           "platform": platform.platform(), "runs": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
