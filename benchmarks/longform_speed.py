"""Where dama's own long-form path spends its time, and what the lean decoder saves: one recording, one run.

For each model (``zero-shot`` = whisper-base, or NAME=RUN_DIR) and each decoder variant (``generate``:
transformers' ``generate``, what long-form decoding used before; ``lean``: :mod:`dama.models.timestamped`;
``lean-best``: the same, a window failing at every temperature keeping its best attempt, not its last;
``faster-whisper``: the deployed path, ``vad_filter=True`` on the float32 CT2 export of the same model),
it transcribes the same recording of ``LANG:test-long`` (cut to ``--max-seconds``) with the default
:class:`dama.longform.LongformOptions` and records:

- wall time and real-time factor, split into VAD, encoder and decoding per temperature of the fallback
  (windows decoded at each temperature, tokens generated);
- the transcript: windows whose final decoding was greedy (temperature 0) must give the same tokens with
  either decoder; windows that fell back to sampling are draws, compared only in count;
- long-form WER against the recording's true text;
- with ``--profile N``, the N functions with the most cumulative time (cProfile) of the last variant.

Run it with PYTHONPATH pointing at another checkout's ``src`` (``--label``) to time that code: its own
``_decode_windows`` is wrapped the same way (windows and temperature are its 3rd and 5th arguments).

    OMP_NUM_THREADS=1 python benchmarks/longform_speed.py --lang swahili --max-seconds 60 \\
        --models zero-shot,dama=benchmarks/results/swahili-full-dama --threads 1 \\
        --out benchmarks/results/longform_speed_cpu.json
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import fields
from pathlib import Path

SR = 16_000


def _commit(src: str = "") -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(src) if src else Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class _Meter:
    """Wraps dama.longform's helpers to time them and record each window's final decoding."""

    def __init__(self, lf):
        self.lf = lf
        lf._dama_meter = self
        self.reset()

    def reset(self):
        self.secs = defaultdict(float)
        self.windows = defaultdict(int)
        self.tokens = defaultdict(int)
        self.final: dict[int, tuple[float, list[int]]] = {}

    def wrap(self):
        lf, meter = self.lf, self
        originals = {}
        for name, key in (("speech_regions", "vad"), ("_encode_windows", "encoder")):
            if hasattr(lf, name):
                originals[name] = getattr(lf, name)

                def timed(*a, _f=originals[name], _k=key, **k):
                    t = time.perf_counter()
                    try:
                        return _f(*a, **k)
                    finally:
                        meter.secs[_k] += time.perf_counter() - t
                setattr(lf, name, timed)
        originals["_decode_windows"] = lf._decode_windows

        def decode(*a, **k):
            windows, temp = a[2], a[4]
            t = time.perf_counter()
            got = originals["_decode_windows"](*a, **k)
            meter.secs[f"decode@{temp}"] += time.perf_counter() - t
            meter.windows[f"decode@{temp}"] += len(windows)
            for x, (toks, _lp, _ns) in zip(windows, got):
                meter.tokens[f"decode@{temp}"] += len(toks)
                meter.final[x.start] = (temp, list(toks))
            return got
        lf._decode_windows = decode
        return originals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lang", default="swahili")
    ap.add_argument("--recording", type=int, default=0, help="index in LANG:test-long")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="cut after the last clip ending by then (0: whole)")
    ap.add_argument("--models", default="zero-shot", help="zero-shot and/or NAME=RUN_DIR, comma-separated")
    ap.add_argument("--variants", default="generate,lean,lean-best",
                    help="decoders to time (generate first: the reference)")
    ap.add_argument("--label", default="", help="name this code (e.g. main@abc1234) instead of the variants")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", type=int, default=0, help="cProfile the last variant; keep the top N functions")
    ap.add_argument("--out", default="benchmarks/results/longform_speed_cpu.json")
    ap.add_argument("--append", action="store_true")
    ap.add_argument("--repeats", type=int, default=1, help="rounds, the variants interleaved in each; the best "
                    "round of each variant is kept")
    ap.add_argument("--before-src", default="", help="another checkout's src/ (e.g. /work/main/src): its "
                    "dama/longform.py is the 'before' variant, in this process")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import dama.longform as lf
    from dama.data.spec import load_data
    from dama.evaluate.metrics import corpus_errors
    from dama.models.load import load_whisper
    from dama.outputs import atomic_write_text
    from dama.runs import load_run
    from dama.safeio import read_json

    sys.path.insert(0, str(Path(__file__).parent))
    from longform import _cut  # noqa: E402  (benchmarks/longform.py: the same cut rule)

    u = load_data(f"{args.lang}:test-long")[args.recording]
    audio, truth = _cut(u, args.max_seconds)
    ref = " ".join(s.text for s in truth)
    work = Path(tempfile.mkdtemp(prefix="longform-speed-"))
    meter = _Meter(lf)
    meter.wrap()
    has_lean = "lean" in {f.name for f in fields(lf.LongformOptions)}
    variants = [args.label] if args.label or not has_lean else args.variants.split(",")
    out = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                       "note": "2 CPU cores shared with other jobs, no GPU; load average recorded per row"},
           "command": " ".join(["python benchmarks/longform_speed.py", *sys.argv[1:]]),
           "recording": {"id": u.id, "audio_seconds": round(len(audio) / SR, 1), "clips": len(truth)},
           "rows": []}
    if args.append and Path(args.out).is_file():
        before = read_json(Path(args.out))
        out["rows"] = before["rows"]
        out["command"] = [*([before["command"]] if isinstance(before["command"], str) else before["command"]),
                          out["command"]]
    before_lf = None
    if args.before_src:  # another checkout's dama/longform.py, run in this process on this dama's other modules
        import importlib.util

        spec = importlib.util.spec_from_file_location("dama_longform_before",
                                                      Path(args.before_src) / "dama" / "longform.py")
        before_lf = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = before_lf  # (dataclasses look their module up there)
        spec.loader.exec_module(before_lf)
        _Meter(before_lf).wrap()
    for item in args.models.split(","):
        name, _, run = item.partition("=")
        w = load_run(run, device="cpu") if run else load_whisper("whisper-base", device="cpu")
        code = u.language
        reference = None
        engines = {}
        best: dict[str, dict] = {}
        for rnd in range(args.repeats):  # variants interleaved, round after round: the load falls on all alike
            for k, variant in enumerate(variants):
                mod = before_lf if variant == "before" else lf
                opts = mod.LongformOptions(language=code) if variant == "before" or not has_lean or args.label else \
                    lf.LongformOptions(language=code, lean=variant != "generate",
                                       fallback_pick="best" if variant.endswith("-best") else "last")
                if variant == "faster-whisper" and variant not in engines:  # the deployed path, float32 CT2 export
                    from dama.deploy.export import load_faster_whisper
                    from longform import _ct2_dir

                    engines[variant] = load_faster_whisper(_ct2_dir(name, run or None, work), device="cpu",
                                                           compute_type="float32", cpu_threads=args.threads)
                engine = engines.get(variant, w)
                m = mod._dama_meter if hasattr(mod, "_dama_meter") else meter
                m.reset()
                prof = cProfile.Profile() if args.profile and k == len(variants) - 1 and rnd == 0 else None
                load0 = os.getloadavg()[0]
                t = time.perf_counter()
                if prof:
                    prof.enable()
                segs = mod.transcribe_long(engine, audio, opts)
                if prof:
                    prof.disable()
                secs = time.perf_counter() - t
                text = lf.text_of(segs)
                err = corpus_errors([ref], [text])
                label = f"{_commit(args.before_src)}, before" if variant == "before" else variant
                row = {"model": name, "run": run or None, "variant": label,
                       "code": args.label or (_commit(args.before_src) if variant == "before" else _commit()),
                       "seconds": round(secs, 2), "rtf": round(secs / (len(audio) / SR), 3),
                       "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2),
                       "split_seconds": {k2: round(v, 2) for k2, v in sorted(m.secs.items())},
                       "windows": dict(sorted(m.windows.items())), "tokens": dict(sorted(m.tokens.items())),
                       "segments": len(segs), "long_wer": round(err.wer, 4)}
                final = dict(m.final)
                if variant == "faster-whisper":
                    pass
                elif reference is None:
                    reference = final
                else:
                    greedy = [s for s in final if final[s][0] == 0.0 and reference.get(s, (None,))[0] == 0.0]
                    row["greedy_windows_same_tokens"] = \
                        f"{sum(final[s] == reference[s] for s in greedy)}/{len(greedy)}"
                    row["windows_sampled"] = f"{sum(v[0] > 0 for v in final.values())} (reference "
                    row["windows_sampled"] += f"{sum(v[0] > 0 for v in reference.values())})"
                if prof:
                    buf = io.StringIO()
                    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(args.profile)
                    row["profile_top"] = [line.strip() for line in buf.getvalue().splitlines()
                                          if line.strip() and line.strip()[0].isdigit()][: args.profile]
                print(json.dumps({k2: v for k2, v in row.items() if k2 != "profile_top"}), flush=True)
                prev = best.get(variant)
                row["rounds_seconds"] = [*(prev["rounds_seconds"] if prev else []), row["seconds"]]
                if prev and prev["seconds"] <= row["seconds"]:  # the best round is kept (its split with it)
                    prev["rounds_seconds"] = row["rounds_seconds"]
                else:
                    best[variant] = {**row, **({"profile_top": prev["profile_top"]} if prev and
                                               "profile_top" in prev else {})}
        out["rows"] += [best[v] for v in variants]
        atomic_write_text(args.out, json.dumps(out, indent=1) + "\n")
        del w, engines
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
