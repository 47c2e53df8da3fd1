"""whisper.cpp (ggml export) against CTranslate2 (ct2 export) on the same adapted model and clips.

    python benchmarks/ggml_vs_ct2.py --adapter RUN_DIR --data swahili:test --language sw --clips 60 \\
        --ggml-quantizations q8_0 --transformers --threads 1 --work /tmp/ggml-bench \\
        --out benchmarks/results/ggml_vs_ct2.json

Exports the run with `dama export --format ct2` (float32) and `--format ggml` (float16, and any
--ggml-quantizations), and transcribes the same clips greedily (one segment, no timestamps, no
temperature fallback, no carried context, non-speech tokens suppressed, each runtime's own token limit:
224 new tokens in CTranslate2, 220 in whisper.cpp) in these runtimes:

- ``ct2``: faster-whisper given the clip as is (what a user gets by default);
- ``ct2-pad30``: faster-whisper given the clip padded with silence to 30 s (:func:`dama.deploy.pad_to_window`),
  the features transformers and whisper.cpp compute;
- ``ggml-float16`` (and ``ggml-q8_0`` ...): whisper.cpp with dama's settings (:func:`dama.models.ggml.whispercpp_model`:
  flash attention off);
- ``ggml-float16-fa``: whisper.cpp with flash attention on, its 1.8 default;
- ``transformers`` (with --transformers): the merged model in transformers, the runtime dama trains and
  evaluates with;
- with --diagnostics, two runtimes that isolate causes: ``ggml-float16-hfmel``, whisper.cpp (flash attention
  off) given transformers' log-mel instead of computing its own (``whisper_set_mel``), and
  ``transformers-f16w``, transformers with every weight rounded to float16 (whisper.cpp's weights) but
  float32 arithmetic.

Writes each runtime's WER/CER, and against each other runtime the share of clips with identical text and
the WER between their outputs, plus the per-clip texts. Target (issue 23): whisper.cpp and CTranslate2
give identical text on most clips and WER within 1 point. The file is rewritten after each runtime, so
an interrupted run keeps what it finished; --reuse then picks up from there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

SETTINGS = 2  # bump when the decoding settings change: --reuse keeps only rows made with these


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--data", default="swahili:test")
    ap.add_argument("--language", default="sw")
    ap.add_argument("--clips", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ggml-quantizations", default="", help="also these ggml block types, e.g. q8_0,q5_0")
    ap.add_argument("--transformers", action="store_true", help="also decode in transformers (the training runtime)")
    ap.add_argument("--diagnostics", action="store_true",
                    help="also whisper.cpp on transformers' mel, and transformers on float16-rounded weights")
    ap.add_argument("--reuse", action="store_true", help="keep the runtimes --out already holds for this setting")
    ap.add_argument("--work", default="/tmp/dama-ggml-bench")
    ap.add_argument("--out", default="benchmarks/results/ggml_vs_ct2.json")
    args = ap.parse_args()

    import numpy as np

    from dama.data import load_audio, load_data
    from dama.deploy import export_run, pad_to_window
    from dama.evaluate.metrics import corpus_errors
    from dama.models.ggml import FILE_NAME

    work = Path(args.work)
    exports = {"ct2": ("ct2", "float32"), "ggml-float16": ("ggml", "float16"),
               **{f"ggml-{q}": ("ggml", q) for q in args.ggml_quantizations.split(",") if q}}
    if args.transformers or args.diagnostics:
        exports["hf"] = ("hf", "float32")
    for name, (fmt, q) in exports.items():
        if not (work / name / "dama_export.json").is_file():
            export_run(args.adapter, fmt, work / name, quantization=q if fmt != "hf" else None, force=True)
    # runtime -> (export folder, how it runs)
    runtimes: dict[str, tuple[str, dict]] = {
        "ct2": ("ct2", {"pad": False}), "ct2-pad30": ("ct2", {"pad": True}),
        "ggml-float16": ("ggml-float16", {"flash_attn": False}),
        "ggml-float16-fa": ("ggml-float16", {"flash_attn": True}),
        **{f"ggml-{q}": (f"ggml-{q}", {"flash_attn": False}) for q in args.ggml_quantizations.split(",") if q}}
    if args.transformers:
        runtimes["transformers"] = ("hf", {})
    if args.diagnostics:
        runtimes["ggml-float16-hfmel"] = ("ggml-float16", {"flash_attn": False, "mel": "transformers"})
        runtimes["transformers-f16w"] = ("hf", {"weights": "float16-rounded"})
    clips = [u for u in load_data(args.data) if (u.duration or 0) <= 30][: args.clips]
    audio = [load_audio(u.audio) for u in clips]
    refs = [u.text for u in clips]
    hyps: dict[str, list[str]] = {}
    secs: dict[str, float] = {}
    old = json.loads(Path(args.out).read_text()) if args.reuse and Path(args.out).is_file() else {}
    if (old.get("adapter"), old.get("data"), old.get("settings"), [c["id"] for c in old.get("per_clip", [])]) == (
            str(args.adapter), args.data, SETTINGS, [u.id for u in clips]):
        for name, r in old["runtimes"].items():
            if name in runtimes:
                hyps[name] = [c[name] for c in old["per_clip"]]
                secs[name] = r["seconds_per_clip"]

    def decode(name: str) -> list[str]:
        folder, how = runtimes[name]
        if folder == "ct2":
            from faster_whisper import WhisperModel

            fw = WhisperModel(str(work / folder), device="cpu", compute_type="float32", cpu_threads=args.threads)
            # no max_new_tokens: CTranslate2 caps a Whisper decode at half the total length it is given
            # (OpenNMT/CTranslate2#1856), so max_new_tokens=N stops at about N/2 tokens; its own cap is 224
            return [" ".join(s.text.strip() for s in fw.transcribe(
                pad_to_window(a) if how["pad"] else a, language=args.language, beam_size=1, temperature=0.0,
                without_timestamps=True, condition_on_previous_text=False)[0]).strip() for a in audio]
        if folder == "hf":
            import torch
            from transformers import WhisperForConditionalGeneration, WhisperProcessor

            torch.set_num_threads(args.threads)
            model = WhisperForConditionalGeneration.from_pretrained(work / folder).eval()
            if how.get("weights"):
                with torch.no_grad():
                    for p in model.parameters():
                        p.copy_(p.half().float())
            proc = WhisperProcessor.from_pretrained(work / folder)
            out = []
            with torch.no_grad():
                for a in audio:
                    feats = proc.feature_extractor(a, sampling_rate=16000, return_tensors="pt").input_features
                    ids = model.generate(feats, language=args.language, task="transcribe", num_beams=1,
                                         do_sample=False, max_new_tokens=224)
                    out.append(proc.tokenizer.decode(ids[0], skip_special_tokens=True).strip())
            return out
        from dama.models.ggml import whispercpp_model

        cpp = whispercpp_model(work / folder / FILE_NAME, args.language, threads=args.threads,
                               flash_attn=how["flash_attn"])
        if how.get("mel") != "transformers":
            return [" ".join(s.text.strip() for s in cpp.transcribe(a)).strip() for a in audio]
        import _pywhispercpp as pw
        from transformers import WhisperFeatureExtractor

        fe = WhisperFeatureExtractor.from_pretrained(work / "hf")
        out = []
        for a in audio:  # whisper_full with no samples decodes the mel set before (pywhispercpp's own handles)
            mel = np.ascontiguousarray(fe(a, sampling_rate=16000, return_tensors="np").input_features[0], np.float32)
            assert pw.whisper_set_mel(cpp._ctx, mel.ravel(), mel.shape[1], mel.shape[0]) == 0
            assert pw.whisper_full(cpp._ctx, cpp._params, np.zeros(0, np.float32), 0) == 0
            out.append(" ".join(pw.whisper_full_get_segment_text(cpp._ctx, i).decode("utf-8", "replace").strip()
                                for i in range(pw.whisper_full_n_segments(cpp._ctx))).strip())
        return out

    def write() -> None:
        done = [n for n in runtimes if n in hyps]
        table = {}
        for name in done:
            h = hyps[name]
            e = corpus_errors(refs, h)
            folder = runtimes[name][0]
            table[name] = {
                "wer": e.wer, "cer": e.cer, "seconds_per_clip": secs[name], "export": folder,
                "quantization": exports[folder][1], **{k: v for k, v in runtimes[name][1].items()},
                "model_mib": round(sum(f.stat().st_size for f in (work / folder).iterdir()
                                       if f.name in ("model.bin", FILE_NAME, "model.safetensors")) / 2**20),
                "vs": {o: {"identical": sum(a == b for a, b in zip(h, hyps[o])) / len(h),
                           "wer": corpus_errors(hyps[o], h).wer} for o in done if o != name}}
        out = {"adapter": str(args.adapter), "data": args.data, "language": args.language, "clips": len(clips),
               "settings": SETTINGS, "threads": args.threads,
               "decoding": "greedy, one segment, no timestamps, no temperature fallback, no carried context, "
                           "non-speech tokens suppressed; token limits: CTranslate2 224, whisper.cpp 220",
               "machine": "2 CPU cores (shared), no GPU", "platform": platform.platform(),
               "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
               "longest_reference_s": round(max(len(a) for a in audio) / 16000, 1), "runtimes": table,
               "per_clip": [{"id": u.id, "ref": u.text, **{k: hyps[k][i] for k in done}} for i, u in enumerate(clips)]}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")

    for name in runtimes:
        if name not in hyps:
            t = time.perf_counter()
            hyps[name] = decode(name)
            secs[name] = (time.perf_counter() - t) / len(audio)
            write()
        e = corpus_errors(refs, hyps[name])
        same = {o: np.mean([a == b for a, b in zip(hyps[name], hyps[o])]) for o in hyps if o != name}
        print(f"{name:>16}: WER {e.wer:.4f} CER {e.cer:.4f}  {secs[name]:.2f} s/clip  same text as "
              + ", ".join(f"{o} {v:.0%}" for o, v in same.items()), flush=True)
    write()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
