"""Transcription speed of an adapted model as users would deploy it, side by side in one run.

Variants, all greedy, batch 8, same clips, same log-Mel features and prompts:
- hf-unmerged: the base model with the run's PEFT adapter applied on the fly (dama's decoder);
- hf-merged:   the adapter merged into the weights (what `dama export --format hf` saves);
- ct2-float32 / ct2-int8: `dama export --format ct2`, decoded by CTranslate2
  (``ctranslate2.models.Whisper.generate``, the engine under faster-whisper).
Decoding time excludes model loading and includes feature extraction. Each variant gets
the same per-clip token budget (15 tokens per second of audio). Writes a JSON file with
RTF, WER and CER per variant, and against the first variant run (the baseline): the
speed-up and the WER difference with a paired bootstrap interval over utterances.

    python benchmarks/deploy_speed.py --adapter RUN_DIR --data swahili:test \\
        --out benchmarks/results/deploy_speed_cpu.json
    python benchmarks/deploy_speed.py --adapter RUN_DIR --variants ct2-float32,ct2-int8 \\
        --out benchmarks/results/deploy_int8_cpu.json   # the int8 WER cost on every test clip
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

VARIANTS = ("hf-unmerged", "hf-merged", "ct2-float32", "ct2-int8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--adapter", required=True, help="a finished `dama train` run directory")
    ap.add_argument("--data", default="swahili:test")
    ap.add_argument("--data-root")
    ap.add_argument("--limit", type=int, default=0, help="first N clips only (0 = all)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated, in order; the first is the baseline the others are compared with")
    ap.add_argument("--out", default="benchmarks/results/deploy_speed_cpu.json")
    args = ap.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or set(variants) - set(VARIANTS):
        ap.error(f"--variants: choose from {', '.join(VARIANTS)}")

    import ctranslate2
    import torch

    from dama.data import SAMPLE_RATE, load_audio, load_data
    from dama.data.audio import CHUNK_SECONDS
    from dama.data.manifest import Manifest
    from dama.deploy import export_run
    from dama.evaluate.run import manifest_languages
    from dama.evaluate.stats import UtteranceErrors, paired_compare
    from dama.models.load import load_whisper
    from dama.models.transcribe import DecodeOptions, decode_features, token_budget
    from dama.runs import load_run

    full = load_data(args.data, args.data_root)
    full.raise_problems()
    full.fill_durations()
    m = Manifest([u for u in full if (u.duration or 0) <= CHUNK_SECONDS], name=full.name)  # one 30 s window each
    if args.limit:
        m[:] = m[: args.limit]
    audios = [load_audio(u.audio) for u in m]
    durations = [len(a) / SAMPLE_RATE for a in audios]
    langs = manifest_languages(m, None)
    refs = [u.text for u in m]
    opts = DecodeOptions(loop_repeats=10_000)
    budgets = [token_budget(d, opts) for d in durations]
    audio_seconds = sum(durations)
    results, per_utt = {}, {}

    def run_torch(name, w):
        texts, t = [], time.perf_counter()
        with torch.no_grad():
            for s in range(0, len(m), args.batch_size):
                sl = slice(s, s + args.batch_size)
                feats = w.feature_extractor(audios[sl], sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
                prompts = [w.prompt_ids(lang) for lang in langs[sl]]
                toks = decode_features(w, feats, prompts, budgets[sl], opts)
                texts += [w.tokenizer.decode(x, skip_special_tokens=True) for x in toks]
        record(name, texts, time.perf_counter() - t)

    def run_ct2(name, folder, compute_type, w):
        ct = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type=compute_type,
                                        intra_threads=torch.get_num_threads())
        gen = w.model.generation_config
        texts, t = [], time.perf_counter()
        for s in range(0, len(m), args.batch_size):
            sl = slice(s, s + args.batch_size)
            feats = w.feature_extractor(audios[sl], sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
            prompts = [w.prompt_ids(lang) for lang in langs[sl]]
            res = ct.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(feats)), prompts, beam_size=1,
                              max_length=len(prompts[0]) + max(budgets[sl]), suppress_blank=False,
                              suppress_tokens=list(gen.suppress_tokens or []))
            texts += [w.tokenizer.decode([x for x in r.sequences_ids[0][:b] if x != gen.eos_token_id],
                                         skip_special_tokens=True) for r, b in zip(res, budgets[sl])]
        record(name, texts, time.perf_counter() - t)

    def record(name, texts, secs):
        per_utt[name] = e = UtteranceErrors.from_texts([u.id for u in m], refs, texts)
        results[name] = {"seconds": secs, "rtf": secs / audio_seconds, "wer": e.wer, "cer": e.cer}
        print(f"{name:12s} RTF {secs / audio_seconds:.3f}  WER {e.wer:.4f}  CER {e.cer:.4f}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = export_run(args.adapter, "hf", Path(tmp) / "hf", log=lambda *a: None)
        merged = load_whisper(hf_dir, device="cpu")  # also the CT2 runs' feature extractor and prompts
        for name in variants:
            if name == "hf-unmerged":
                run_torch(name, load_run(args.adapter, device="cpu", merge=False))
            elif name == "hf-merged":
                run_torch(name, merged)
            else:
                q = name.removeprefix("ct2-")
                run_ct2(name, export_run(args.adapter, "ct2", Path(tmp) / q, quantization=q, log=lambda *a: None),
                        q, merged)

    base = results[variants[0]]
    for name, r in results.items():
        r["speedup_vs_baseline"] = base["seconds"] / r["seconds"]
        r["wer_minus_baseline"] = r["wer"] - base["wer"]
        if name != variants[0]:
            c = paired_compare(per_utt[name], per_utt[variants[0]])
            r["paired_vs_baseline"] = {"diff": c.diff, "ci": list(c.ci), "p_bootstrap": c.p_bootstrap,
                                       "wins": c.wins, "losses": c.losses, "p_sign": c.p_sign}
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    out = {"machine": machine,
           "setup": {**vars(args), "baseline": variants[0], "clips": len(m), "audio_seconds": audio_seconds},
           "variants": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps({k: round(v["speedup_vs_baseline"], 2) for k, v in results.items()}))


if __name__ == "__main__":
    main()
