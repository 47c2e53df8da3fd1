"""Long-form transcription, measured: dama's own path and faster-whisper on the CTranslate2 export, side
by side, zero-shot and with adapters trained with and without timestamps.

For each language (``LANG:test-long``, the first ``--recordings`` recordings, each cut to the clips that
end within ``--max-seconds``) and each model (``zero-shot`` = whisper-base, then every ``--adapters``
NAME=RUN_DIR), it reports:

- per-clip WER: the same clips decoded one by one (dama's short-form path), the reference point;
- long-form WER per backend: ``dama`` (:func:`dama.longform.transcribe_long`, VAD strategy) and
  ``faster-whisper`` (``WhisperModel.transcribe(..., vad_filter=True)`` on ``dama export --format ct2``);
- segment boundary error against the true clip times (median and 90th percentile, ms);
- loops: long-form hypotheses with a word 4-gram repeated >= 4 times;
- real-time factor (decoding time / audio time, model loading excluded) per backend;
- no speech: words emitted on 60 s of digital silence and 60 s of white noise (sigma 0.05), per backend.

    python benchmarks/longform.py --langs swahili,yoruba --recordings 1 --max-seconds 90 \\
        --adapters without=RUNS/swahili-0.5h-dama-s0,with=RUNS/swahili-0.5h-dama-ts50-s0 \\
        --out benchmarks/results/longform.json

An adapter applies to the language it was trained on only (its config's data spec names the corpus).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

SR = 16_000


def _cut(u, max_seconds: float):
    """Audio of long recording ``u`` and its true segments, cut after the last clip ending by ``max_seconds``."""
    from dama.data.audio import load_audio
    from dama.data.longform import LEAD_S, read_segments

    audio = load_audio(u.audio)
    truth = read_segments(u.audio)
    if max_seconds:
        keep = [s for s in truth if s.end <= max_seconds] or truth[:1]
        truth = keep
        audio = audio[: int((truth[-1].end + LEAD_S) * SR)]
    return audio, truth


def _ct2_dir(name: str, run: str | None, work: Path) -> Path:
    out = work / f"ct2-{name}"
    if run:
        from dama.deploy.export import export_run

        export_run(run, "ct2", out, quantization="float32", log=lambda *a: None)
    else:
        from ctranslate2.converters import TransformersConverter

        from dama.models.fetch import fetch_model

        hf = fetch_model("whisper-base", log=lambda *a: None)
        TransformersConverter(str(hf), copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(
            str(out), quantization="float32")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--langs", default="swahili,yoruba")
    ap.add_argument("--recordings", type=int, default=1, help="first N long recordings per language")
    ap.add_argument("--max-seconds", type=float, default=0.0, help="cut each recording after the last clip "
                    "ending within this many seconds (0 = whole recordings)")
    ap.add_argument("--adapters", default="", help="NAME=RUN_DIR,... (each applies to its training language)")
    ap.add_argument("--backends", default="dama,faster-whisper")
    ap.add_argument("--no-zero-shot", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/longform.json")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from dama.data.spec import load_data
    from dama.deploy.export import load_faster_whisper
    from dama.evaluate.longform import boundary_errors_ms, has_loop, summarize_boundaries
    from dama.evaluate.run import score_hyps
    from dama.longform import LongformOptions, text_of, transcribe_long
    from dama.models.load import load_whisper
    from dama.models.transcribe import transcribe
    from dama.runs import load_run
    from dama.safeio import read_json

    models = [] if args.no_zero_shot else [("zero-shot", None)]
    for item in filter(None, args.adapters.split(",")):
        name, _, run = item.partition("=")
        models.append((name, run))
    backends = args.backends.split(",")
    silence = np.zeros(60 * SR, np.float32)
    noise = np.random.default_rng(0).normal(0, 0.05, 60 * SR).astype(np.float32)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="longform-bench-"))
    for lang_name in args.langs.split(","):
        m = load_data(f"{lang_name}:test-long")[: args.recordings]
        clips_m = load_data(f"{lang_name}:test")
        by_id = {u.id: u for u in clips_m}
        recs = [(u, *_cut(u, args.max_seconds)) for u in m]
        code = m[0].language
        audio_s = sum(len(a) for _, a, _ in recs) / SR
        for name, run in models:
            if run and not read_json(Path(run) / "config.json")["data"]["train"].startswith(lang_name):
                continue
            w = load_run(run, device="cpu") if run else load_whisper("whisper-base", device="cpu")
            # per-clip reference: the same clips, one by one
            from dama.data.audio import load_audio
            from dama.data.manifest import Manifest

            clip_list = Manifest([by_id[s.source] for _, _, truth in recs for s in truth], name=f"{lang_name}:clips")
            t = time.perf_counter()
            hyps = transcribe(w, [load_audio(u.audio) for u in clip_list], code)
            per_clip = score_hyps(clip_list, [code] * len(clip_list), hyps)
            per_clip_rtf = (time.perf_counter() - t) / audio_s
            row_base = {"language": lang_name, "model": name, "run": run, "recordings": len(recs),
                        "clips": len(clip_list), "audio_seconds": round(audio_s, 1),
                        "per_clip_wer": round(per_clip["wer"], 4), "per_clip_rtf": round(per_clip_rtf, 3)}
            for backend in backends:
                if backend == "dama":
                    engine = w
                else:
                    engine = load_faster_whisper(_ct2_dir(name, run, work), device="cpu", compute_type="float32",
                                                 cpu_threads=args.threads)
                opts = LongformOptions(language=code)
                hyps_long, errors, loops, secs = [], [], 0, 0.0
                for _u, audio, truth in recs:
                    t = time.perf_counter()
                    segs = transcribe_long(engine, audio, opts)
                    secs += time.perf_counter() - t
                    text = text_of(segs)
                    hyps_long.append(text)
                    loops += has_loop(text)
                    errors += boundary_errors_ms(truth, segs)
                refs = Manifest([replace(u, text=" ".join(s.text for s in truth)) for u, _, truth in recs])
                scored = score_hyps(refs, [code] * len(refs), hyps_long)
                no_speech = {k: len(text_of(transcribe_long(engine, a, opts)).split())
                             for k, a in (("silence_60s_words", silence), ("noise_60s_words", noise))}
                row = {**row_base, "backend": backend, "long_wer": round(scored["wer"], 4),
                       "long_minus_per_clip": round(scored["wer"] - per_clip["wer"], 4),
                       **summarize_boundaries(errors), "loops": loops, "rtf": round(secs / audio_s, 3), **no_speech}
                rows.append(row)
                print(json.dumps(row), flush=True)
            del w
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                          "note": "shared 2-core CPU, no GPU; other jobs ran at the same time: RTFs are upper "
                                  "bounds, and dama vs faster-whisper ran back to back, not in isolation"},
              "command": " ".join(["python benchmarks/longform.py", *sys.argv[1:]]),
              "settings": {"recordings": args.recordings, "max_seconds": args.max_seconds,
                           "longform": {k: v for k, v in LongformOptions().__dict__.items()}},
              "rows": rows}
    from dama.outputs import atomic_write_text

    atomic_write_text(args.out, json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
