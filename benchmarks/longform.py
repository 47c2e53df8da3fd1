"""Long-form transcription, measured: dama's own path (both strategies) and faster-whisper on the CTranslate2
export, side by side, zero-shot and with adapters trained with and without timestamps.

For each language (``LANG:test-long``: the first ``--recordings`` whole recordings, in the data's own order,
optionally cut to the clips that end within ``--max-seconds``) and each model (``zero-shot`` = whisper-base,
then every ``--adapters`` NAME=RUN_DIR trained on that language), it reports:

- per-clip WER: the same clips decoded one by one (dama's short-form path, encoder outputs cached), the
  reference point; with ``--test-clips N`` also each adapter's per-clip WER on the first N clips of
  ``LANG:test`` (-1: all), the accuracy cost of timestamp training (the subset's per-clip WER is then read
  from the same decoding);
- long-form WER per backend/strategy: ``dama``/``vad`` and ``dama``/``sequential``
  (:func:`dama.longform.transcribe_long`) and ``faster-whisper``/``vad`` (``WhisperModel.transcribe(...,
  vad_filter=True)`` on the float32 CTranslate2 export of the same merged model);
- segment boundary error against the true clip times (median and 90th percentile, ms);
- loops: long-form hypotheses with a word 4-gram repeated >= 4 times;
- real-time factor (decoding time / audio time, model loading and export excluded), every backend in one run;
- no speech: words emitted on 60 s of digital silence and 60 s of white noise (sigma 0.05), per backend.

The results file is rewritten after every row (atomically), so an interrupted run keeps what it measured;
``--append`` adds a run's rows to an existing file (e.g. adapters trained after the zero-shot run), listing
every command. Within one run, each model's backends run back to back on the same recordings.

    python benchmarks/longform.py --langs swahili,yoruba --recordings 1 --test-clips -1 \\
        --adapters no-ts=RUNS/sw-ts0,ts-0.5=RUNS/sw-ts05,no-ts=RUNS/yo-ts0,ts-0.5=RUNS/yo-ts05 \\
        --out benchmarks/results/longform.json

An adapter applies to the language it was trained on only (its config's data spec names the corpus).
"""

from __future__ import annotations

import argparse
import copy
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
    if out.is_dir():
        return out
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


class _EncoderMemo:
    """dama's VAD path encodes each recording's windows once for every model with the same encoder (DAMA
    and the other decoder-only adapters leave it frozen): the first model's encoder outputs, batch by batch
    (the same VAD windows and batches for every model), are kept and given to the next; the encoder time
    measured the first time is added to each later model's decoding time, so every RTF counts the encoder.
    Nothing is shared between models whose encoder weights differ (fingerprint of every encoder tensor)."""

    def __init__(self):
        import dama.longform as lf

        self.lf, self.orig = lf, lf._encode_windows
        self.memo: dict = {}
        self.key = None  # (encoder fingerprint, recording id) while a recording is transcribed
        self.charged = 0.0  # encoder seconds reused in the current call, added to its time
        lf._encode_windows = self._encode

    @staticmethod
    def fingerprint(w) -> str:
        import hashlib

        h = hashlib.sha256()
        model = w.model.get_base_model() if hasattr(w.model, "get_base_model") else w.model
        for name, t in sorted(model.model.encoder.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def _encode(self, w, audio, windows):
        if self.key is None:
            return self.orig(w, audio, windows)
        k = (*self.key, tuple((x.start, x.end) for x in windows))
        if k in self.memo:
            enc, secs = self.memo[k]
            self.charged += secs
            return enc
        t = time.perf_counter()
        enc = self.orig(w, audio, windows)
        self.memo[k] = (enc, time.perf_counter() - t)
        return enc


def _run_test_hyps(run: str, lang_name: str, n: int) -> dict | None:
    """A finished run's own hypotheses for the whole ``LANG:test`` split (test.hyps.jsonl), or None."""
    from dama.safeio import read_json

    cfg = read_json(Path(run) / "config.json")
    path = Path(run) / "test.hyps.jsonl"
    if cfg["data"].get("test") != f"{lang_name}:test" or cfg["train"].get("test_limit") or not path.is_file():
        return None
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return {r["id"]: r["hyp"] for r in rows} if len(rows) == n else None


def _merge(paths: list[str], out: str) -> None:
    from dama.outputs import atomic_write_text
    from dama.safeio import read_json

    parts = [read_json(Path(p)) for p in paths]
    merged = {**parts[0], "command": [], "subsets": {}, "test_wer": [], "rows": []}
    for d in parts:
        merged["command"] += [d["command"]] if isinstance(d["command"], str) else d["command"]
        for lang, sub in d.get("subsets", {}).items():  # another subset of a language gets its own entry
            key = lang
            while key in merged["subsets"] and merged["subsets"][key] != sub:
                key += "#"
            merged["subsets"][key] = sub
        seen = {(t["language"], t["model"], t["run"], t["data"]) for t in merged["test_wer"]}
        merged["test_wer"] += [t for t in d.get("test_wer", [])  # the same adapter scored again: once
                               if (t["language"], t["model"], t["run"], t["data"]) not in seen]
        merged["rows"] += d["rows"]
    atomic_write_text(out, json.dumps(merged, indent=1, default=str) + "\n")
    print(f"wrote {out} from {len(parts)} files")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--langs", default="swahili,yoruba")
    ap.add_argument("--recordings", type=int, default=1, help="first N long recordings per language (0 = all)")
    ap.add_argument("--max-seconds", type=float, default=0.0, help="cut each recording after the last clip "
                    "ending within this many seconds (0 = whole recordings)")
    ap.add_argument("--adapters", default="", help="NAME=RUN_DIR,... (each applies to its training language)")
    ap.add_argument("--backends", default="dama,faster-whisper")
    ap.add_argument("--strategies", default="vad,sequential", help="dama's long-form strategies to run")
    ap.add_argument("--timings", default="tokens,words-vad", help="segment-time variants to score (LongformOptions."
                    "timing: tokens, vad, words, words-vad); dama's come from one decoding with word timings")
    ap.add_argument("--sequential-models", default="", help="run the sequential strategy only for these model "
                    "names (comma-separated; default: every model)")
    ap.add_argument("--test-clips", type=int, default=0, help="also score each adapter per clip on the first N "
                    "clips of LANG:test (-1 = the whole split; 0 = only the subset's clips)")
    ap.add_argument("--no-zero-shot", action="store_true")
    ap.add_argument("--zero-shot-runs", default="", help="LANG=RUN_DIR,...: `dama train --method zero-shot` runs "
                    "whose test.hyps.jsonl (the whole LANG:test split) give zero-shot's per-clip WER without "
                    "decoding the clips again")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=None, help="encoder-output cache for the per-clip decoding")
    ap.add_argument("--out", default="benchmarks/results/longform.json")
    ap.add_argument("--append", action="store_true", help="add this run's rows to --out (same settings; its "
                    "command is listed beside the earlier ones) instead of replacing it")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="measure nothing: join these results files (runs "
                    "made at the same time, e.g. one per model) into --out")
    args = ap.parse_args()
    if args.merge:
        return _merge(args.merge, args.out)

    import torch

    torch.set_num_threads(args.threads)
    from dama.data.manifest import Manifest
    from dama.data.spec import load_data
    from dama.deploy.export import load_faster_whisper
    from dama.evaluate.cached import evaluate_cached
    from dama.evaluate.longform import boundary_errors_ms, has_loop, speech_truth, summarize_boundaries
    from dama.evaluate.run import score_hyps
    from dama.longform import LongformOptions, Segment, decode_segments, refine_times, text_of, transcribe_long
    from dama.models.load import load_whisper
    from dama.outputs import atomic_write_text
    from dama.runs import load_run
    from dama.safeio import read_json

    models = [] if args.no_zero_shot else [("zero-shot", None)]
    for item in filter(None, args.adapters.split(",")):
        name, _, run = item.partition("=")
        models.append((name, run))
    zs_runs = dict(item.split("=", 1) for item in filter(None, args.zero_shot_runs.split(",")))
    backends = args.backends.split(",")
    strategies = args.strategies.split(",")
    seq_models = set(filter(None, args.sequential_models.split(",")))
    timings = args.timings.split(",")
    silence = np.zeros(60 * SR, np.float32)
    noise = np.random.default_rng(0).normal(0, 0.05, 60 * SR).astype(np.float32)
    work = Path(tempfile.mkdtemp(prefix="longform-bench-"))
    cache = Path(args.cache_dir) if args.cache_dir else work / "encoder-cache"
    rows, subsets, test_wer = [], {}, []
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                          "note": "2 CPU cores shared with other jobs, no GPU: RTFs are upper bounds; every "
                                  "backend ran in this one run, back to back, on the same recordings"},
              "command": " ".join(["python benchmarks/longform.py", *sys.argv[1:]]),
              "settings": {"recordings": args.recordings, "max_seconds": args.max_seconds,
                           "subset_rule": "the first N recordings of LANG:test-long in the data's own order, whole "
                                          "(recordings = 0: all)" if not args.max_seconds else
                                          "the first N recordings, each cut after the last clip ending by max_seconds",
                           "longform": dict(LongformOptions().__dict__)},
              "subsets": subsets, "test_wer": test_wer, "rows": rows}
    if args.append and Path(args.out).is_file():
        before = read_json(Path(args.out))
        rows[:0], test_wer[:0] = before["rows"], before.get("test_wer", [])
        subsets.update(before.get("subsets", {}))
        result["command"] = [*([before["command"]] if isinstance(before["command"], str) else before["command"]),
                             result["command"]]

    def save() -> None:
        atomic_write_text(args.out, json.dumps(result, indent=1, default=str) + "\n")

    memo = _EncoderMemo()
    for lang_name in args.langs.split(","):
        m = load_data(f"{lang_name}:test-long")
        m = m[: args.recordings] if args.recordings else m
        clips_m = load_data(f"{lang_name}:test")
        by_id = {u.id: u for u in clips_m}
        recs = [(u, *_cut(u, args.max_seconds)) for u in m]
        recs = [(u, audio, truth, speech_truth(audio, truth)) for u, audio, truth in recs]
        code = m[0].language
        audio_s = sum(len(a) for _, a, _, _ in recs) / SR
        clip_list = Manifest([by_id[s.source] for _, _, truth, _ in recs for s in truth], name=f"{lang_name}:clips")
        lead = [sp.start - t.start for _, _, truth, speech in recs for t, sp in zip(truth, speech)]
        trail = [t.end - sp.end for _, _, truth, speech in recs for t, sp in zip(truth, speech)]
        subsets[lang_name] = {"recordings": [u.id for u, _, _, _ in recs], "clips": len(clip_list),
                              "silence_in_clips_s": {"lead_median": round(float(np.median(lead)), 2),
                                                     "trail_median": round(float(np.median(trail)), 2)},
                              "audio_seconds": round(audio_s, 1),
                              "recordings_in_set": len(load_data(f"{lang_name}:test-long"))}
        for name, run in models:
            if run and not read_json(Path(run) / "config.json")["data"]["train"].startswith(lang_name):
                continue
            w = load_run(run, device="cpu") if run else load_whisper("whisper-base", device="cpu")
            encoder_fp = memo.fingerprint(w)
            tag = f"{lang_name}-{name}"
            # per-clip reference: the same clips one by one (and, for an adapter, the whole test split)
            got = {}
            if run and args.test_clips:
                test_m = clips_m if args.test_clips < 0 else Manifest(clips_m[: args.test_clips], name=clips_m.name)
                first = "" if args.test_clips < 0 else f", first {len(test_m)}"
                own = _run_test_hyps(run, lang_name, len(clips_m)) if args.test_clips < 0 else None
                if own:  # the run decoded the whole test split when it finished: its hypotheses, not again
                    full = score_hyps(clips_m, [code] * len(clips_m), [own[u.id] for u in clips_m],
                                      work / f"{tag}.test.hyps.jsonl")
                else:
                    full = evaluate_cached(w, test_m, code, work / f"{tag}.test.hyps.jsonl", cache,
                                           log=lambda *a: None)
                entry = {"language": lang_name, "model": name, "run": run, "data": f"{lang_name}:test{first}",
                         "wer": round(full["wer"], 4), "cer": round(full["cer"], 4), "n": full["n"],
                         "timestamp_share": read_json(Path(run) / "config.json")["train"].get("timestamp_share", 0.0)}
                earlier = [t for t in test_wer if t["language"] == lang_name and t["data"] == entry["data"]]
                if earlier:  # paired bootstrap on the same clips against this language's first adapter
                    from dama.evaluate.stats import paired_compare, read_hyps

                    c = paired_compare(read_hyps(work / f"{tag}.test.hyps.jsonl"),
                                       read_hyps(work / f"{lang_name}-{earlier[0]['model']}.test.hyps.jsonl"))
                    entry["minus_first"] = {"vs": earlier[0]["model"], "diff": round(c.diff, 4),
                                            "ci95": [round(x, 4) for x in c.ci], "p_bootstrap": round(c.p_bootstrap, 3)}
                test_wer.append(entry)
                got = {json.loads(x)["id"]: json.loads(x)["hyp"]
                       for x in (work / f"{tag}.test.hyps.jsonl").read_text().splitlines()}
            if not run and lang_name in zs_runs:  # a zero-shot run folder's test hypotheses (the same decoding)
                got = _run_test_hyps(zs_runs[lang_name], lang_name, len(clips_m)) or {}
            if all(u.id in got for u in clip_list):  # the subset's clips were just decoded
                per_clip = score_hyps(clip_list, [code] * len(clip_list), [got[u.id] for u in clip_list])
            else:
                per_clip = evaluate_cached(w, clip_list, code, work / f"{tag}.clips.hyps.jsonl", cache,
                                           log=lambda *a: None)
            row_base = {"language": lang_name, "model": name, "run": run, "recordings": len(recs),
                        "clips": len(clip_list), "audio_seconds": round(audio_s, 1),
                        "per_clip_wer": round(per_clip["wer"], 4)}
            combos = [(b, "vad") for b in backends if b != "dama" or "vad" in strategies]  # the VAD paths first,
            combos += [("dama", "sequential")] if "dama" in backends and "sequential" in strategies and (
                not seq_models or name in seq_models) else []  # then the slowest
            for backend, strategy in combos:
                if backend == "dama":
                    engine = w
                else:
                    ct2 = _ct2_dir(tag if run else "zero-shot", run, work)
                    engine = load_faster_whisper(ct2, device="cpu", compute_type="float32", cpu_threads=args.threads)
                # one decoding with word timings gives every timing variant (refine_times on copies); the
                # token-time variants of faster-whisper need their own decoding (its word timings move its
                # segment edges), as does the sequential strategy (no word timings)
                word_run = strategy == "vad" and any(t.startswith("words") for t in timings)
                runs = [("words", [t for t in timings if t.startswith("words")] +
                         ([t for t in timings if not t.startswith("words")] if backend == "dama" else []))]
                if not word_run:
                    runs = [("tokens", [t for t in timings if not t.startswith("words")] or ["tokens"])]
                elif backend != "dama" and any(not t.startswith("words") for t in timings):
                    runs.append(("tokens", [t for t in timings if not t.startswith("words")]))
                for decode_timing, variants in runs:
                    opts = LongformOptions(language=code, strategy=strategy, timing=decode_timing)
                    got = {t: {"hyps": [], "errors": [], "speech": [], "secs": 0.0, "segments": 0} for t in variants}
                    loops, secs = 0, 0.0
                    load0 = os.getloadavg()[0]
                    for u, audio, truth, speech in recs:
                        memo.key, memo.charged = ((encoder_fp, u.id) if backend == "dama" else None), 0.0
                        t = time.perf_counter()
                        raw = decode_segments(engine, audio, opts)
                        secs += time.perf_counter() - t + memo.charged
                        memo.key = None
                        for variant in variants:
                            segs = copy.deepcopy(raw)
                            if variant in ("tokens", "vad") and decode_timing == "words":  # the decoder's own times
                                segs = [Segment(*(x.decoded or (x.start, x.end)), x.text) for x in segs]
                            t = time.perf_counter()
                            segs = refine_times(segs, audio, replace(opts, timing=variant))
                            got[variant]["secs"] += time.perf_counter() - t
                            got[variant]["hyps"].append(text_of(segs))
                            got[variant]["errors"] += boundary_errors_ms(truth, segs)
                            got[variant]["speech"] += boundary_errors_ms(speech, segs)
                            got[variant]["segments"] += len(segs)
                        loops += has_loop(text_of(raw))
                    refs = Manifest([replace(u, text=" ".join(s.text for s in truth)) for u, _, truth, _ in recs])
                    ns_opts = replace(opts, timing="words-vad" if decode_timing == "words" else variants[0])
                    no_speech = {k: len(text_of(transcribe_long(engine, a, ns_opts)).split())
                                 for k, a in (("silence_60s_words", silence), ("noise_60s_words", noise))}
                    for variant in variants:
                        g = got[variant]
                        scored = score_hyps(refs, [code] * len(refs), g["hyps"])
                        row = {**row_base, "backend": backend, "strategy": strategy, "timing": variant,
                               "long_wer": round(scored["wer"], 4),
                               "long_minus_per_clip": round(scored["wer"] - per_clip["wer"], 4),
                               **summarize_boundaries(g["errors"]),
                               **summarize_boundaries(g["speech"], "speech_boundary"), "segments": g["segments"],
                               "loops": loops, "rtf": round((secs + g["secs"]) / audio_s, 3), **no_speech,
                               "decoded_with": decode_timing,
                               "load_avg": [round(load0, 2), round(os.getloadavg()[0], 2)]}
                        rows.append(row)
                        save()
                        print(json.dumps(row), flush=True)
                del engine
            del w
    save()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
