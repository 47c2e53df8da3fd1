"""dama serve measured: memory per adapter, language routing, WER routed vs given, load with and without batching.

Bounded to run in about a quarter of an hour on 2 CPU cores, so every part uses a small, fixed number
of real clips (the counts are in the output); read the numbers as a smoke-level measurement, not a
leaderboard. Parts:

- memory: resident memory (VmRSS) of a fresh process holding the base model and 0, 1, 3 and all the
  DAMA adapters of ``--runs``, after every weight was read once and ``malloc_trim``, the weights held
  in process memory as the server holds them (not the checkpoint file's pages, which another
  process's page-cache pressure can evict mid-measurement); the same with LoRA r=64
  adapters (``--lora-runs``; one LoRA run loaded under several keys when fewer are given: memory
  depends on the adapter's shape, not its values);
- routing: ``dama lid train`` on the adapters' own training clips and ``--other`` clips (Amharic and
  Malagasy get classes of their own, served by the base model in their language; even-numbered FLEURS clips
  pool into ``base``, left to Whisper's detection), its threshold calibrated on the val splits; then on each
  language's test clips and on held-out FLEURS control clips (odd-numbered): the share served right (adapter
  and language), the same for Whisper's own detection alone, and the confusion matrix;
- wer: WER with the language routed vs given, on every language; control-set WER with every adapter
  loaded and routing on vs the zero-shot base model with the true language (forgetting: 0 exactly when
  every control clip is routed to the base model in its language);
- load: 1, 4 and 16 concurrent clients over loopback HTTP (the openai client), languages given, batching
  on vs off: throughput (audio seconds per wall second), p50/p95 latency, and every response compared
  with the offline multi-adapter transcription (``dama transcribe --adapters``' path).

    python benchmarks/serve_load.py --runs sw=RUN,yo=RUN,rw=RUN,pcm=RUN --lora-runs sw=LORA_RUN \\
        --other amharic:train,malagasy:train --out benchmarks/results/serve.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CORPUS = {"sw": "swahili", "yo": "yoruba", "rw": "kinyarwanda", "pcm": "pidgin", "am": "amharic", "mg": "malagasy"}

MEMORY_CHILD = r"""
import gc, json, sys
import torch
torch.set_num_threads(1)
runs = json.loads(sys.argv[1])
from dama.models.load import model_fingerprint
if runs:
    from dama.deploy.serve import MultiAdapterWhisper
    keep = MultiAdapterWhisper(runs)
    model = keep.peft
else:
    from dama.deploy.serve import own_weights
    from dama.models.load import load_whisper
    keep = load_whisper("whisper-base", device="cpu")
    model = keep.model
    own_weights(model)  # as the server holds them (MultiAdapterWhisper): in process memory, not the file's pages
model_fingerprint(model)  # read every weight: safetensors are memory-mapped, resident only once touched
gc.collect()
import ctypes
try:  # hand back what loading freed (the base's weights hash, file buffers): measure what stays resident
    ctypes.CDLL("libc.so.6").malloc_trim(0)
except OSError:
    pass
rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))
print(json.dumps({"rss_mb": rss / 1024}))
"""


def parse_runs(text: str | None) -> dict[str, str]:
    out = {}
    for item in (text or "").split(","):
        if item.strip():
            k, _, v = item.strip().partition("=")
            out[k] = v
    return out


def rss_of(runs: dict[str, str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, json.dumps(runs)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["rss_mb"]


def memory(dama_runs: dict[str, str], lora_runs: dict[str, str], log) -> dict:
    """RSS with 0, 1, 3 and all adapters; LoRA: the given runs, repeated under new keys up to the DAMA count."""
    n_all = len(dama_runs)
    counts = sorted({1, min(3, n_all), n_all})
    base = rss_of({})
    log(f"memory: base alone {base:.0f} MB")
    out = {"base_only_mb": round(base, 1), "dama": {}, "lora_r64": {}}
    for kind, runs in (("dama", dama_runs), ("lora_r64", lora_runs)):
        if not runs:
            continue
        items = list(runs.items())
        for n in counts:
            chosen = {f"{items[i % len(items)][0]}{i}": items[i % len(items)][1] for i in range(n)}
            rss = rss_of(chosen)
            out[kind][str(n)] = {"rss_mb": round(rss, 1), "over_base_mb": round(rss - base, 1),
                                 "per_adapter_mb": round((rss - base) / n, 2),
                                 "distinct_runs": len({v for v in chosen.values()})}
            log(f"memory: {kind} x{n}: {rss:.0f} MB ({(rss - base) / n:.1f} MB per adapter)")
    sizes = {k: (Path(v) / "adapter" / "adapter_model.safetensors") for k, v in {**dama_runs, **{
        f"lora-{k}": v for k, v in lora_runs.items()}}.items()}
    out["adapter_file_mb"] = {k: round(p.stat().st_size / 1e6, 2) for k, p in sizes.items() if p.is_file()}
    return add_marginal(out)


def add_marginal(mem: dict) -> dict:
    """Each extra adapter's cost: (RSS with the most adapters - RSS with one) / (the difference in count). The
    first adapter also pays for importing PEFT and wrapping the model, so per-adapter averages overstate it."""
    for kind in ("dama", "lora_r64"):
        rows = mem.get(kind) or {}
        counts = sorted(int(n) for n in rows)
        if len(counts) >= 2:
            lo, hi = counts[0], counts[-1]
            mem[kind]["extra_adapter_mb"] = round((rows[str(hi)]["rss_mb"] - rows[str(lo)]["rss_mb"]) / (hi - lo), 2)
    return mem


def test_clips(lang: str, n: int, root=None) -> list:
    from dama.data import load_data

    utts = list(load_data(f"{CORPUS[lang]}:test", root))
    return [utts[int(i * len(utts) / n)] for i in range(min(n, len(utts)))]


def fleurs_split(root=None) -> tuple[list, list]:
    """FLEURS control clips: even-numbered ones may train the router's base class, odd-numbered ones test."""
    from dama.data import load_data

    utts = list(load_data("fleurs-control", root))
    even = [u for u in utts if int(u.id.rsplit("-", 1)[-1]) % 2 == 0]
    odd = [u for u in utts if int(u.id.rsplit("-", 1)[-1]) % 2 == 1]
    return even, odd


def write_manifest(path: Path, utts) -> str:
    path.write_text("".join(json.dumps(u.to_json(), ensure_ascii=False) + "\n" for u in utts), encoding="utf-8")
    return str(path)


CONTROL_LANGS = ("en", "de", "es", "fr", "pt")


def route_of(adapter: str | None, language: str) -> str:
    """A confusion-matrix column: the adapter, or ``base:LANG`` (the bare base model in that language)."""
    return adapter if adapter else f"base:{language}"


def routing_and_wer(dama_runs: dict[str, str], other: str, n_test: int, per_class: int, n_control: int, work: Path,
                    log, progress=lambda out: None, cache: str | None = None, full_wer: str = "all",
                    encoder_caches: tuple[str, ...] = (), crops: int = 50, val_crops: int = 20,
                    test_crops: int = 0) -> dict:
    """Fit the router (calibrating its threshold on the val splits), then per test set: how each clip is
    routed (by the router, and by Whisper's own detection alone), accuracy, confusion counts, and WER with the
    language routed vs given (``progress(out)`` after each set, so a run stopped by a time limit keeps what it
    measured). ``cache``: the router feature file (:mod:`dama.serve.lid_cache`), so clips already encoded
    (training, validation or test) cost no encoder pass. A clip routed right is decoded exactly as with its
    language given (same adapter, same language token, same audio), so only misrouted clips can change the
    WER: sets not in ``full_wer`` (comma-separated names, ``all`` or ``none``) decode only those (both ways) and
    report the difference over all the set's reference words; sets in it also decode every clip with its
    language given, for the absolute WERs."""
    from dama.data import load_audio
    from dama.evaluate.metrics import corpus_errors
    from dama.serve.engine import ServeEngine
    from dama.serve.lid import whisper_decision
    from dama.serve.lid_cache import cached_stats, open_cache
    from dama.serve.lid_crops import cached_crop_stats, make_crops
    from dama.serve.lid_train import LidTrainOptions, train_router
    from dama.serve.options import ServeOptions

    even, odd = fleurs_split()
    other_spec = ",".join(s for s in [other, write_manifest(work / "fleurs-even.jsonl", even)] if s)
    t = time.perf_counter()
    runs_own = [Path(v).resolve().parent / ".encoder-cache" for v in dama_runs.values()]
    runs_own += [Path(c) for v in dama_runs.values()
                 if (c := (json.loads((Path(v) / "config.json").read_text()).get("train") or {}).get("cache_dir"))]
    enc_caches = tuple(dict.fromkeys([*map(str, runs_own), *encoder_caches]))
    router, lid_dir, report = train_router(LidTrainOptions(adapters=dama_runs, other=other_spec, out=work / "lid",
                                                           max_per_class=per_class, cache=cache,
                                                           encoder_caches=enc_caches, crops=crops,
                                                           val_crops=val_crops), log=log)
    fit_s = time.perf_counter() - t
    engine = ServeEngine(ServeOptions(adapters=dama_runs, lid=lid_dir, batch_size=8))
    router = engine.router  # as the server has it: read back from lid_dir (a save/load bug once hid here)
    layers = router.feature_layers(engine.whisper)
    stats_cache = open_cache(engine.whisper, cache, layers)
    sets = {lang: test_clips(lang, n_test) for lang in dama_runs}
    # the base model's own languages: the test splits of --other's corpora and the held-out FLEURS control clips
    other_langs = [k for k, corpus in CORPUS.items() if f"{corpus}:" in (other or "") and k not in dama_runs]
    sets.update({lang: test_clips(lang, n_test) for lang in other_langs})
    sets["control"] = [odd[int(i * len(odd) / n_control)] for i in range(min(n_control, len(odd)))]
    loaded = engine.adapter_languages
    by_lang = {v: k for k, v in loaded.items()}
    out = {"router": {"fit_seconds": round(fit_s, 1), **{k: v for k, v in report.items() if k != "out"}},
           "accuracy": {}, "whisper_only_accuracy": {}, "no_threshold_accuracy": {}, "deferred_to_whisper": {},
           "wer": {},
           "clips": {k: len(v) for k, v in sets.items()}}
    rows: dict[str, dict[str, int]] = {}  # true route -> served route -> clips
    for name, utts in sets.items():
        t = time.perf_counter()
        with engine.multi.using(None):
            es = cached_stats(engine.whisper, utts, stats_cache, encoder_caches=enc_caches, log=log)
        cf = es.features(layers)
        routed = router.decide(cf, loaded)
        route_s = time.perf_counter() - t
        truth = [(by_lang.get(u.language), u.language) for u in utts]
        whisper_only = [whisper_decision(p, cf.codes, loaded) for p in cf.whisper_probs]
        for (a, lang), d in zip(truth, routed):
            row = rows.setdefault(route_of(a, lang), {})
            row[route_of(d.adapter, d.language)] = row.get(route_of(d.adapter, d.language), 0) + 1
        ok = [(d.adapter, d.language) == tr for d, tr in zip(routed, truth)]
        out["accuracy"][name] = round(sum(ok) / len(ok), 4)
        out["whisper_only_accuracy"][name] = round(
            sum((d.adapter, d.language) == tr for d, tr in zip(whisper_only, truth)) / len(truth), 4)
        out["no_threshold_accuracy"][name] = round(  # the router alone, never deferring (threshold 0)
            sum((d.adapter, d.language) == tr for d, tr in zip(router.decide(cf, loaded, threshold=0.0), truth))
            / len(truth), 4)
        out["deferred_to_whisper"][name] = sum(d.by == "whisper" for d in routed)
        if test_crops:  # short requests: crops of these test clips (2-8 s, as dama lid train cuts), routing only
            cut = make_crops(utts, test_crops, seed=f"test-{name}")
            with engine.multi.using(None):
                ccf = cached_crop_stats(engine.whisper, cut, stats_cache, log=log).features(layers)
            got = router.decide(ccf, loaded)
            right = sum((d.adapter, d.language) == (by_lang.get(c.utt.language), c.utt.language)
                        for d, c in zip(got, cut))
            out.setdefault("crop_accuracy", {})[name] = round(right / len(cut), 4)
            out.setdefault("crops", {})[name] = len(cut)
        wrong = [i for i, good in enumerate(ok) if not good]
        refs = [u.text for u in utts]
        words = sum(len(r.split()) for r in refs)
        full = full_wer == "all" or name in full_wer.split(",")
        audios = {i: load_audio(utts[i].audio) for i in (range(len(utts)) if full else wrong)}
        given_rows = sorted(audios)
        given = dict(zip(given_rows, _decode(engine, [truth[i][0] for i in given_rows],
                                             [audios[i] for i in given_rows], [truth[i][1] for i in given_rows])))
        redo = dict(zip(wrong, _decode(engine, [routed[i].adapter for i in wrong], [audios[i] for i in wrong],
                                       [routed[i].language for i in wrong])))
        entry = {"misrouted": len(wrong), "words": words, "route_seconds_per_clip": round(route_s / len(utts), 3)}
        if wrong:
            e_given = corpus_errors([refs[i] for i in wrong], [given[i] for i in wrong])
            e_routed = corpus_errors([refs[i] for i in wrong], [redo[i] for i in wrong])
            diff = (e_routed.wer - e_given.wer) * sum(len(refs[i].split()) for i in wrong) / words
        else:
            diff = 0.0
        entry["routed_minus_given_points"] = round(100 * diff, 2)
        if full:
            hyps_given = [given[i] for i in range(len(utts))]
            w_given = corpus_errors(refs, hyps_given).wer
            w_routed = corpus_errors(refs, [redo.get(i, given[i]) for i in range(len(utts))]).wer
            entry.update({"given": round(w_given, 4), "routed": round(w_routed, 4),
                          "routed_minus_given_points": round(100 * (w_routed - w_given), 2)})
        out["wer"][name] = entry
        log(f"routing {name}: served right {out['accuracy'][name]:.3f} (Whisper alone "
            f"{out['whisper_only_accuracy'][name]:.3f}), deferred {out['deferred_to_whisper'][name]}, WER routed - "
            f"given {entry['routed_minus_given_points']:+.2f} points ({len(wrong)} misrouted of {len(utts)})")
        progress(out)
    served = sorted({c for r in rows.values() for c in r})
    order = [k for k in dama_runs] + sorted(k for k in rows if k not in dama_runs)
    columns = [k for k in dama_runs] + [c for c in order if c.startswith("base:")]
    columns += [c for c in served if c not in columns]
    out["confusion"] = {"rows": order, "columns": columns,
                        "counts": [[rows[r].get(c, 0) for c in columns] for r in order]}
    return out


def _decode(engine, adapters, audios, langs) -> list[str]:
    """Transcribe clips grouped by adapter (None: base) with the engine the server uses."""
    hyps = [""] * len(audios)
    for key in dict.fromkeys(adapters):
        rows = [i for i, a in enumerate(adapters) if a == key]
        segs = engine.transcribe(key, [audios[i] for i in rows], [langs[i] for i in rows])
        for i, s in zip(rows, segs):
            hyps[i] = " ".join(x.text for x in s)
    return hyps


def plot_confusion(conf: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.array(conf["counts"], dtype=float)
    share = counts / counts.sum(axis=1, keepdims=True)
    fig, ax = plt.subplots(figsize=(1.2 + 1.0 * len(conf["columns"]), 1.0 + 0.7 * len(conf["rows"])))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center",
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(conf["columns"])), conf["columns"], rotation=45, ha="right")
    ax.set_yticks(range(len(conf["rows"])), conf["rows"])
    ax.set_xlabel("served by (adapter, or base:LANG = bare whisper-base in LANG)")
    ax.set_ylabel("right route of the test clips")
    ax.set_title("dama serve: language routing of test clips (counts)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_test(dama_runs: dict[str, str], clients_list: list[int], clips_per_client: int, log) -> dict:
    """Concurrent openai clients over loopback, batching on vs off, responses checked against offline."""
    import openai

    from dama.data import load_audio
    from dama.serve.engine import ServeEngine
    from dama.serve.local import LocalServer
    from dama.serve.options import ServeOptions

    langs = list(dama_runs)
    pool_clips = {lang: test_clips(lang, max(clients_list) * clips_per_client // len(langs) + 1) for lang in langs}
    # each client: clips_per_client clips of one language (client i -> language i mod n)
    jobs_for = {}
    for n in clients_list:
        jobs = []
        for c in range(n):
            lang = langs[c % len(langs)]
            for k in range(clips_per_client):
                u = pool_clips[lang][(c // len(langs) * clips_per_client + k) % len(pool_clips[lang])]
                jobs.append((c, lang, u.audio))
        jobs_for[n] = jobs
    engine = ServeEngine(ServeOptions(adapters=dama_runs, batch_size=8))
    every = {(lang, str(p)) for jobs in jobs_for.values() for _, lang, p in jobs}
    offline = {}
    for lang in langs:  # offline reference: MultiAdapterWhisper, all of a language's clips in one call
        paths = sorted(p for lg, p in every if lg == lang)
        texts = engine.multi.transcribe([load_audio(p) for p in paths], [lang] * len(paths), opts=engine.decode)
        offline.update({(lang, p): t for p, t in zip(paths, texts)})
    seconds = {str(p): len(load_audio(p)) / 16_000 for _, p in every}
    results = {}
    for batching in (True, False):
        opts = ServeOptions(adapters=dama_runs, port=0, batch_size=8 if batching else 1, batch_window_ms=30,
                            max_queue=256)
        engine.options = opts
        with LocalServer(opts, engine) as server:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=600)
            for n in clients_list:
                jobs = jobs_for[n]

                def run_client(c, jobs=jobs, client=client):
                    out = []
                    for cc, lang, path in jobs:
                        if cc != c:
                            continue
                        t = time.perf_counter()
                        with open(path, "rb") as f:
                            text = client.audio.transcriptions.create(file=f, model="auto", language=lang,
                                                                      response_format="text")
                        out.append((lang, str(path), text.strip(), time.perf_counter() - t))
                    return out

                t0 = time.perf_counter()
                with ThreadPoolExecutor(n) as ex:
                    replies = [r for rs in ex.map(run_client, range(n)) for r in rs]
                wall = time.perf_counter() - t0
                lat = sorted(r[3] for r in replies)
                audio_s = sum(seconds[r[1]] for r in replies)
                same = sum(r[2] == offline[(r[0], r[1])] for r in replies)
                key = f"{'batching' if batching else 'no_batching'}/{n}_clients"
                results[key] = {"clients": n, "requests": len(jobs), "answered": len(replies), "same_as_offline": same,
                                "audio_seconds": round(audio_s, 1), "wall_seconds": round(wall, 2),
                                "throughput_audio_s_per_s": round(audio_s / wall, 3),
                                "latency_p50_s": round(statistics.median(lat), 2),
                                "latency_p95_s": round(lat[min(len(lat) - 1, int(np.ceil(0.95 * len(lat))) - 1)], 2),
                                "load_average_1min_after": round(os.getloadavg()[0], 2)}
                log(f"load {key}: {results[key]}")
            stats = server.app.state.queue.stats
            results[f"{'batching' if batching else 'no_batching'}/largest_batch"] = stats.largest_batch
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", required=True, help="DAMA runs to serve: sw=RUN,yo=RUN,...")
    ap.add_argument("--lora-runs", default="", help="LoRA r=64 runs for the memory comparison")
    ap.add_argument("--other", default="amharic:train,malagasy:train",
                    help="clips of languages no adapter serves, for the router's base class (+ even FLEURS clips)")
    ap.add_argument("--test-clips", type=int, default=60, help="test clips per language for routing and WER")
    ap.add_argument("--control-clips", type=int, default=25, help="held-out FLEURS control clips (odd-numbered)")
    ap.add_argument("--per-class", type=int, default=200, help="router training clips per class")
    ap.add_argument("--crops", type=int, default=50, help="router: short crops per class (dama lid train --crops)")
    ap.add_argument("--val-crops", type=int, default=20, help="router: short crops per language of the val clips")
    ap.add_argument("--test-crops", type=int, default=20,
                    help="routing only: short crops (2-8 s) of each set's test clips, scored like the clips")
    ap.add_argument("--cache", help="router feature file (.npz): clips encoded once, re-fits and re-scores are free")
    ap.add_argument("--encoder-cache", default="",
                    help="dama train encoder caches to read clips from (comma-separated; the runs' own always are)")
    ap.add_argument("--full-wer", default="all",
                    help="test sets (sw,...,control; all; none) whose every clip is decoded with its language given "
                    "(absolute WERs); the others decode only misrouted clips, both ways (the difference, over all "
                    "the set's words)")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--clips-per-client", type=int, default=2)
    ap.add_argument("--parts", default="memory,routing,load")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/serve.json")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    dama_runs, lora_runs = parse_runs(args.runs), parse_runs(args.lora_runs)
    parts = set(args.parts.split(","))
    out_path = Path(args.out)
    # each part is its own record (machine, command, adapters, seconds), so parts measured by separate
    # invocations (even at once) share one results file: save() merges this run's parts into the file as it is
    run_info = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU",
                "load_average_at_start": round(os.getloadavg()[0], 1), "torch_threads": args.threads,
                "model": "whisper-base", "adapters": {k: str(v) for k, v in dama_runs.items()},
                "lora_runs": {k: str(v) for k, v in lora_runs.items()},
                "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])}
    result: dict = {}
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    def save():
        out_path.parent.mkdir(parents=True, exist_ok=True)
        merged = json.loads(out_path.read_text()) if out_path.is_file() else {}
        for part, value in result.items():
            merged[part] = {**value, "run": {**run_info, "seconds": round(time.perf_counter() - t_start, 1)}}
        out_path.write_text(json.dumps(merged, indent=2, ensure_ascii=False) + "\n")

    if "memory" in parts:
        result["memory"] = memory(dama_runs, lora_runs, log)
        save()
    if "routing" in parts:
        with tempfile.TemporaryDirectory() as work:
            def progress(partial):
                result["routing"] = partial
                save()

            result["routing"] = routing_and_wer(dama_runs, args.other, args.test_clips, args.per_class,
                                                args.control_clips, Path(work), log, progress, args.cache,
                                                args.full_wer,
                                                tuple(c for c in args.encoder_cache.split(",") if c),
                                                args.crops, args.val_crops, args.test_crops)
        plot = out_path.with_name(out_path.stem + "_routing_confusion.png")
        plot_confusion(result["routing"]["confusion"], plot)
        result["routing"]["confusion_plot"] = plot.name
        save()
    if "load" in parts:
        result["load"] = load_test(dama_runs, [int(c) for c in args.clients.split(",")], args.clips_per_client, log)
    save()
    log(f"wrote {out_path}")


if __name__ == "__main__":
    main()
