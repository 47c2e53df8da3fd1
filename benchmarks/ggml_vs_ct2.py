"""whisper.cpp (ggml export) against CTranslate2 (ct2 export) on the same adapted model and clips.

    python benchmarks/ggml_vs_ct2.py --adapter RUN_DIR --data swahili:test --language sw --clips 20 \\
        --work /tmp/ggml-bench --out benchmarks/results/ggml_vs_ct2.json

Exports the run with `dama export --format ct2` (float32) and `--format ggml` (float16), transcribes
the same clips greedily with faster-whisper and with whisper.cpp (the pywhispercpp wheel: one
segment, no timestamps, no temperature fallback), and writes each runtime's WER/CER against the
references, the share of clips with identical text, the WER between the two runtimes' outputs, and
seconds per clip. Target (issue 23): identical text on most clips, WER within 1 point.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--data", default="swahili:test")
    ap.add_argument("--language", default="sw")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128, help="cap per clip on both runtimes (a looping clip)")
    ap.add_argument("--ggml-quantizations", default="", help="also these ggml block types, e.g. q8_0,q5_0")
    ap.add_argument("--reuse", action="store_true", help="keep the runtimes --out already holds for this setting")
    ap.add_argument("--work", default="/tmp/dama-ggml-bench")
    ap.add_argument("--out", default="benchmarks/results/ggml_vs_ct2.json")
    args = ap.parse_args()

    from faster_whisper import WhisperModel

    from dama.data import load_audio, load_data
    from dama.deploy import export_run
    from dama.evaluate.metrics import corpus_errors
    from dama.models.ggml import FILE_NAME, whispercpp_model

    work = Path(args.work)
    exports = {"ct2": ("ct2", "float32"), "ggml-float16": ("ggml", "float16"),
               **{f"ggml-{q}": ("ggml", q) for q in args.ggml_quantizations.split(",") if q}}
    for name, (fmt, q) in exports.items():
        if not (work / name / "dama_export.json").is_file():
            export_run(args.adapter, fmt, work / name, quantization=q, force=True)
    clips = [u for u in load_data(args.data) if (u.duration or 0) <= 30][: args.clips]
    audio = [load_audio(u.audio) for u in clips]
    refs = [u.text for u in clips]
    hyps, secs = {}, {}
    old = json.loads(Path(args.out).read_text()) if args.reuse and Path(args.out).is_file() else {}
    if (old.get("adapter"), old.get("data"), old.get("max_tokens"), [c["id"] for c in old.get("per_clip", [])]) == (
            str(args.adapter), args.data, args.max_tokens, [u.id for u in clips]):
        for name, r in old["runtimes"].items():
            hyps[name] = [c[name] for c in old["per_clip"]]
            secs[name] = r["seconds_per_clip"]
    if "ct2" not in hyps:
        fw = WhisperModel(str(work / "ct2"), device="cpu", compute_type="float32", cpu_threads=args.threads)
        t = time.perf_counter()
        hyps["ct2"] = [" ".join(s.text.strip() for s in fw.transcribe(
            a, language=args.language, beam_size=1, temperature=0.0, without_timestamps=True,
            condition_on_previous_text=False, max_new_tokens=args.max_tokens)[0]).strip() for a in audio]
        secs["ct2"] = (time.perf_counter() - t) / len(audio)
        del fw
    for name in exports:
        if name in hyps:
            continue
        cpp = whispercpp_model(work / name / FILE_NAME, args.language, threads=args.threads,
                               max_tokens=args.max_tokens)
        t = time.perf_counter()
        hyps[name] = [" ".join(s.text.strip() for s in cpp.transcribe(a)).strip() for a in audio]
        secs[name] = (time.perf_counter() - t) / len(audio)
        del cpp
    runtimes = {}
    for name in exports:
        h = hyps[name]
        e = corpus_errors(refs, h)
        runtimes[name] = {"wer": e.wer, "cer": e.cer, "seconds_per_clip": secs[name],
                          "identical_to_ct2": sum(a == b for a, b in zip(h, hyps["ct2"])) / len(h),
                          "wer_vs_ct2": corpus_errors(hyps["ct2"], h).wer if name != "ct2" else 0.0,
                          "model_mib": round(sum(f.stat().st_size for f in (work / name).iterdir()
                                                 if f.name in ("model.bin", FILE_NAME)) / 2**20)}
        print(f"{name:>14}: WER {e.wer:.4f} CER {e.cer:.4f}  identical to ct2 "
              f"{runtimes[name]['identical_to_ct2']:.0%}  {secs[name]:.2f} s/clip", flush=True)
    out = {"adapter": str(args.adapter), "data": args.data,
           "exports": {k: v[1] for k, v in exports.items()}, "language": args.language, "clips": len(clips),
           "threads": args.threads, "max_tokens": args.max_tokens,
           "machine": "2 CPU cores (shared), no GPU", "platform": platform.platform(),
           "cpu_count": os.cpu_count(), "runtimes": runtimes,
           "per_clip": [{"id": u.id, "ref": u.text, **{k: hyps[k][i] for k in exports}} for i, u in enumerate(clips)]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
