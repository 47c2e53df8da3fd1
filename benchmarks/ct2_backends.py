"""Which CTranslate2 GEMM backend is fastest on this CPU: the default vs Intel MKL forced.

    python benchmarks/ct2_backends.py --export-int8 DIR --export-float32 DIR \\
        [--data swahili:test] [--clips 16] --out benchmarks/results/ct2_backends_cpu.json

DIRs are `dama export --format ct2` folders. Each setting runs in its own process (CTranslate2
reads CT2_USE_MKL once, at load): greedy generation of the same clips, batch 8, after one warm-up
batch; then the encoder alone. Writes seconds per setting.
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


def worker(args) -> dict:
    import ctranslate2
    import numpy as np

    from dama.data import SAMPLE_RATE, load_audio, load_data
    from dama.models.load import load_whisper

    w = load_whisper("whisper-base", device="cpu")
    m = load_data(args.data)[: args.clips]
    feats = w.feature_extractor([load_audio(u.audio) for u in m], sampling_rate=SAMPLE_RATE,
                                return_tensors="np").input_features
    model = ctranslate2.models.Whisper(args.folder, device="cpu", compute_type=args.compute_type,
                                       intra_threads=os.cpu_count() or 1)
    prompt = w.prompt_ids(args.language)
    batches = [ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[s:s + 8]))
               for s in range(0, len(m), 8)]
    model.generate(batches[0], [prompt] * 8, beam_size=1, max_length=40)  # warm-up
    t = time.perf_counter()
    for b in batches:
        model.generate(b, [prompt] * b.shape[0], beam_size=1, max_length=200)
    gen = time.perf_counter() - t
    t = time.perf_counter()
    for b in batches:
        model.encode(b)
    return {"generate_seconds": gen, "encode_seconds": time.perf_counter() - t, "clips": len(m)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--export-int8", required=True)
    ap.add_argument("--export-float32", required=True)
    ap.add_argument("--data", default="swahili:test")
    ap.add_argument("--language", default="sw")
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--out", default="benchmarks/results/ct2_backends_cpu.json")
    ap.add_argument("--worker", nargs=2, metavar=("FOLDER", "COMPUTE_TYPE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.folder, args.compute_type = args.worker
        print(json.dumps(worker(args)))
        return
    rows = []
    for compute_type, folder in (("int8", args.export_int8), ("float32", args.export_float32)):
        for mkl in ("0", "1"):
            cmd = [sys.executable, __file__, "--worker", folder, compute_type, "--data", args.data,
                   "--language", args.language, "--clips", str(args.clips),
                   "--export-int8", args.export_int8, "--export-float32", args.export_float32]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                                 env={**os.environ, "CT2_USE_MKL": mkl}).stdout
            rows.append({"compute_type": compute_type, "CT2_USE_MKL": mkl, **json.loads(out.strip().splitlines()[-1])})
            print(rows[-1], flush=True)
    res = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu": platform.processor()},
           "setup": vars(args), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
