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
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="/tmp/dama-language-slots")
    ap.add_argument("--out", default="benchmarks/results/language_slots.json")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    variants = [("new-token", [])] + [(f"slot-{s}", ["--language-slot", s]) for s in args.slots.split(",") if s]
    rows = []
    for name, flags in variants:
        run = work / name
        cmd = [sys.executable, "-m", "dama", "train", "--method", args.method, "--data", args.data,
               "--hours", str(args.hours), "--epochs", str(args.epochs), "--lr", args.lr, "--seed", str(args.seed),
               "--test-limit", str(args.test_limit), "--val-max-utts", str(args.val_max_utts),
               "--threads", str(args.threads), "--cache-dir", str(work / "cache"), "--out", str(run),
               "--json", str(work / f"{name}.json"), *flags]
        if (work / f"{name}.json").is_file():
            res = json.loads((work / f"{name}.json").read_text())
        else:
            t = time.perf_counter()
            subprocess.run(cmd, check=True)
            res = json.loads((work / f"{name}.json").read_text())
            res["wall_seconds"] = time.perf_counter() - t
        cfg = json.loads((run / "config.json").read_text())
        rows.append({"variant": name, "slot": (cfg.get("language_slot") or {}).get("slot"),
                     "new_token": (cfg.get("new_language") or {}).get("code"), "wer": res["wer"], "cer": res["cer"],
                     "n": res["n"], "best_val_wer": res.get("best_val_wer"), "train_hours": res.get("train_hours"),
                     "train_seconds": res.get("train_seconds"), "command": " ".join(cmd[2:])})
        print(f"{name:>12}: test WER {res['wer']:.4f} CER {res['cer']:.4f} (n={res['n']})", flush=True)
    out = {"data": args.data, "method": args.method, "hours": args.hours, "epochs": args.epochs, "lr": args.lr,
           "seed": args.seed, "test_limit": args.test_limit, "machine": f"{os.cpu_count()} CPU cores, no GPU",
           "platform": platform.platform(), "runs": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
