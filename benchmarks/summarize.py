"""Print the Markdown tables the README quotes, from the committed result files only."""

from __future__ import annotations

import json
from pathlib import Path

from dama.evaluate.stats import UtteranceErrors, paired_compare, read_hyps

HERE = Path(__file__).parent


def _vs(run: Path, lora: Path, lora_errors: UtteranceErrors | None) -> str:
    """This run minus the LoRA run on the same test utterances (paired bootstrap), in WER points."""
    if lora_errors is None or run == lora:
        return "–"
    c = paired_compare(read_hyps(run / "test.hyps.jsonl"), lora_errors)
    return f"{100 * c.diff:+.1f} [{100 * c.ci[0]:+.1f}, {100 * c.ci[1]:+.1f}] ({c.p_bootstrap:.2f})"


def main() -> None:
    zs = {p.stem: json.loads(p.read_text()) for p in (HERE / "zero-shot").glob("*.json")}
    # Quality runs only: they shared the CPU with other work, so their timings and RSS (in each
    # results.json) are not speed measurements; those come from train_speed.py below.
    print("| language | train data | method | lr | trainable params | test WER | test CER | WER change vs zero-shot "
          "| best epoch | minus LoRA, paired [95 % CI] (p) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for lang, corpus in (("yoruba", "yoruba_test"), ("swahili", "swahili_test")):
        runs = sorted((HERE / "results").glob(f"{lang}-*/results.json"))
        if not runs:
            continue
        z = zs[corpus]
        print(f"| {lang} | – | zero-shot | – | 0 | {z['wer']:.3f} | {z['cer']:.3f} | – | – | – |")
        lora = HERE / "results" / f"{lang}-full-lora"
        lora_errors = read_hyps(lora / "test.hyps.jsonl") if (lora / "test.hyps.jsonl").is_file() else None
        for p in runs:
            r = json.loads(p.read_text())
            cfg = json.loads((p.parent / "config.json").read_text())
            method, amount = cfg["method"]["method"], p.parent.name.split("-")[1]
            lr = cfg["train"]["lr"] or 1e-3  # runs made before config.json recorded the rate: the 1e-3 default
            print(f"| {lang} | {amount} | {method} | {lr:g} | {r['trainable_params']:,} | {r['wer']:.3f} | "
                  f"{r['cer']:.3f} | "
                  f"{100 * (r['wer'] / z['wer'] - 1):+.0f} % | {r['best_epoch']} of {len(r['epoch_seconds'])} | "
                  f"{_vs(p.parent, lora, lora_errors)} |")
    speed = HERE / "results" / "train_speed_cpu.json"
    if speed.is_file():
        s = json.loads(speed.read_text())
        print(f"\nTraining speed ({s['setup']['data']}, {s['setup']['hours']} h, {s['setup']['epochs']} epochs, batch "
              f"{s['setup']['batch_size']}, LoRA r=64 on both sides):\n")
        print("| | HF Seq2SeqTrainer recipe | dama train | ratio | dama train --low-memory | ratio |")
        print("|---|---|---|---|---|---|")
        hf, dm, lm, lo = s["hf"], s["dama"], s["dama_low_memory"], s["low_memory"]

        def later(x):
            return sum(x[1:]) / (len(x) - 1)

        print(f"| end to end (s) | {hf['process_seconds']:.0f} | {dm['end_to_end_seconds']:.0f} | "
              f"{s['speedup_end_to_end']:.2f}x | {lm['end_to_end_seconds']:.0f} | {lo['speedup_end_to_end']:.2f}x |")
        print(f"| per epoch after the first (s) | {later(hf['epoch_seconds']):.1f} | "
              f"{later(dm['epoch_seconds']):.1f} | "
              f"{s['speedup_per_epoch_after_first']:.2f}x | {later(lm['epoch_seconds']):.1f} | "
              f"{lo['speedup_per_epoch_after_first']:.2f}x |")
        print(f"| peak RSS (MB) | {hf['peak_memory_mb']:.0f} | {dm['peak_memory_mb']:.0f} | "
              f"{s['memory_ratio_dama_over_hf']:.2f} | {lm['peak_memory_mb']:.0f} | "
              f"{lo['memory_ratio_dama_over_hf']:.2f} |")


if __name__ == "__main__":
    main()
