"""Training speed: the standard Hugging Face recipe vs `dama train`, same job, side by side.

Both sides adapt whisper-base with uniform LoRA (r=64, lora_alpha=128) on the same
decoder modules, on the same clips, with the same batch size, epochs, optimiser
(AdamW, lr 1e-3, linear decay after 10 % warm-up) and precision:

- hf:   `Seq2SeqTrainer` on 30 s padded log-Mel features (computed once up front, as
        in the Hugging Face fine-tuning guide); the frozen encoder runs at every step.
- dama: `dama train --method lora` (encoder outputs and the frozen cross-attention keys/values
        cached once, decoder-only steps), run three times: as is, with `--low-memory` (pinned
        malloc threshold), and with `--no-kv-cache` (keys/values computed in every step: before).

Each side runs in its own process so peak RSS is its own. End-to-end time includes
process start, model loading and feature extraction (hf) or the encoder cache (dama). Writes a JSON results file.

    python benchmarks/train_speed.py --data yoruba:train --hours 0.1 --epochs 5 \
        --out benchmarks/results/train_speed_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def hf_worker(args) -> dict:
    """The standard recipe, in this process."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

    from dama.adapt.peft_compat import target_regex
    from dama.data import SAMPLE_RATE, load_audio, load_data
    from dama.models.load import load_whisper
    from dama.train.batches import make_examples

    torch.manual_seed(0)
    t0 = time.perf_counter()
    w = load_whisper(args.model, device="cpu")
    m = load_data(args.data, args.data_root)
    if args.hours:
        m = m.subset(args.hours, 0)
    m.fill_durations()
    examples, _ = make_examples(w, m, [u.language for u in m])  # same tokenisation and 30 s filter
    rows = []
    for e in examples:
        u = m[e.row]
        feats = w.feature_extractor(load_audio(u.audio), sampling_rate=SAMPLE_RATE,
                                    return_tensors="pt").input_features[0]
        rows.append({"input_features": feats, "labels": e.tokens[1:], "decoder_input_ids": e.tokens[:-1],
                     "n_prompt": e.n_prompt})
    prep = time.perf_counter() - t0

    def collate(batch):
        width = max(len(b["labels"]) for b in batch)
        dec = torch.full((len(batch), width), w.generation_config.pad_token_id)
        lab = torch.full((len(batch), width), -100)
        for i, b in enumerate(batch):
            dec[i, : len(b["decoder_input_ids"])] = torch.tensor(b["decoder_input_ids"])
            lab[i, : len(b["labels"])] = torch.tensor(b["labels"])
            lab[i, : b["n_prompt"] - 1] = -100
        return {"input_features": torch.stack([b["input_features"] for b in batch]),
                "decoder_input_ids": dec, "labels": lab}

    model = get_peft_model(w.model, LoraConfig(r=64, lora_alpha=128, target_modules=target_regex()))
    epoch_times = []

    class EpochTimer(TrainerCallback):
        def on_epoch_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_epoch_end(self, *a, **k):
            epoch_times.append(time.perf_counter() - self.t)

    targs = Seq2SeqTrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs,
        learning_rate=1e-3, warmup_steps=0.1, lr_scheduler_type="linear", weight_decay=0.01, max_grad_norm=1.0,
        save_strategy="no", eval_strategy="no", report_to=[], logging_steps=10, remove_unused_columns=False,
        dataloader_num_workers=0, use_cpu=True, seed=0, disable_tqdm=True,
    )
    trainer = Seq2SeqTrainer(model=model, args=targs, train_dataset=rows, data_collator=collate,
                             callbacks=[EpochTimer()])
    t1 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t1
    return {"side": "hf", "prepare_seconds": prep, "train_seconds": train_s, "end_to_end_seconds": prep + train_s,
            "epoch_seconds": epoch_times, "utterances": len(rows),
            "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_dama(args, workdir: Path, tag: str = "dama", extra: tuple[str, ...] = ()) -> dict:
    """One `dama train` process, with its own (empty) encoder cache: end to end means end to end."""
    out = workdir / f"{tag}-run"
    js = workdir / f"{tag}.json"
    cmd = [sys.executable, "-m", "dama", "train", "--method", "lora", "--data", args.data, "--out", str(out),
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--val", "none", "--test", "none",
           "--cache-dir", str(workdir / f"cache-{tag}"), "--model", args.model, "--json", str(js),
           "--precision", "no", *extra]
    if args.hours:
        cmd += ["--hours", str(args.hours)]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t
    r = json.loads(js.read_text())
    return {"side": tag, "options": list(extra), "end_to_end_seconds": wall, "train_seconds": r["train_seconds"],
            "epoch_seconds": r["epoch_seconds"], "utterances": r["train_utterances"],
            "peak_memory_mb": r["peak_memory_mb"], "trainable_params": r["trainable_params"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="yoruba:train")
    ap.add_argument("--data-root")
    ap.add_argument("--hours", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--model", default="whisper-base")
    ap.add_argument("--out", default="benchmarks/results/train_speed_cpu.json")
    ap.add_argument("--hf-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hf_worker:
        print(json.dumps(hf_worker(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cmd = [sys.executable, __file__, "--hf-worker", "--data", args.data, "--hours", str(args.hours),
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--model", args.model]
        if args.data_root:
            cmd += ["--data-root", args.data_root]
        t = time.perf_counter()
        proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
        hf = json.loads(proc.stdout.strip().splitlines()[-1])
        hf["process_seconds"] = time.perf_counter() - t
        dama = run_dama(args, workdir)
        low = run_dama(args, workdir, "dama_low_memory", ("--low-memory",))
        no_kv = run_dama(args, workdir, "dama_no_kv_cache", ("--no-kv-cache",))  # before the K/V cache

    def later(x):
        return sum(x[1:]) / max(len(x) - 1, 1)

    res = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "setup": vars(args),
        "hf": hf,
        "dama": dama,
        # whole processes on both sides: interpreter start, imports, model load, features/cache, training
        "speedup_end_to_end": hf["process_seconds"] / dama["end_to_end_seconds"],
        "speedup_per_epoch_after_first": later(hf["epoch_seconds"]) / later(dama["epoch_seconds"]),
        "memory_ratio_dama_over_hf": dama["peak_memory_mb"] / hf["peak_memory_mb"],
        "dama_low_memory": low,
        "low_memory": {
            "speedup_end_to_end": hf["process_seconds"] / low["end_to_end_seconds"],
            "speedup_per_epoch_after_first": later(hf["epoch_seconds"]) / later(low["epoch_seconds"]),
            "memory_ratio_dama_over_hf": low["peak_memory_mb"] / hf["peak_memory_mb"],
        },
        "dama_no_kv_cache": no_kv,
        "no_kv_cache": {
            "speedup_end_to_end": hf["process_seconds"] / no_kv["end_to_end_seconds"],
            "speedup_per_epoch_after_first": later(hf["epoch_seconds"]) / later(no_kv["epoch_seconds"]),
            "memory_ratio_dama_over_hf": no_kv["peak_memory_mb"] / hf["peak_memory_mb"],
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps({k: res[k] for k in ("speedup_end_to_end", "speedup_per_epoch_after_first",
                                          "memory_ratio_dama_over_hf", "low_memory", "no_kv_cache")}, indent=2))


if __name__ == "__main__":
    main()
