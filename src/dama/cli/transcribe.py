"""``dama transcribe``: audio files to text, with one model or several runs' adapters on one base."""

from __future__ import annotations

import time
from pathlib import Path

from dama.cli.common import add_decode_args, decode_opts, explicit_base, load_model, setup_torch, write_json
from dama.data.audio import SAMPLE_RATE
from dama.errors import DamaError

TRANSCRIBE_BLOCK = 32  # audio files decoded into memory at a time by `dama transcribe`


def cmd_transcribe(args) -> dict:
    from dama.data.audio import load_audio
    from dama.models.transcribe import transcribe

    setup_torch(args)
    if args.adapters:
        return _transcribe_multi(args)
    if not args.language:
        raise DamaError("transcribe needs --language CODE (e.g. sw, yo, en)")
    for a in args.audio:  # a typo in the 100th file should not cost the first 99 decodes
        if not Path(a).is_file():
            raise DamaError(f"{a}: audio file not found")
    w = load_model(args)
    texts, audio_s, secs = [], 0.0, 0.0
    for start in range(0, len(args.audio), TRANSCRIBE_BLOCK):
        block = args.audio[start: start + TRANSCRIBE_BLOCK]
        audios = [load_audio(a) for a in block]  # a block at a time: memory does not grow with the file count
        audio_s += sum(len(a) for a in audios) / SAMPLE_RATE
        t = time.perf_counter()
        got = transcribe(w, audios, args.language, decode_opts(args))
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
    write_json(args.json, out)
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
    multi = MultiAdapterWhisper(runs, base=explicit_base(args), device=args.device)
    texts, audio_s, secs = [], 0.0, 0.0
    for start in range(0, len(paths), TRANSCRIBE_BLOCK):
        block, bkeys = paths[start: start + TRANSCRIBE_BLOCK], keys[start: start + TRANSCRIBE_BLOCK]
        audios = [load_audio(p) for p in block]
        audio_s += sum(len(a) for a in audios) / SAMPLE_RATE
        langs = None if args.language_from_adapter else [args.language] * len(audios)
        t = time.perf_counter()
        got = multi.transcribe(audios, bkeys, langs, decode_opts(args))
        secs += time.perf_counter() - t
        _print_transcripts(block, got, bkeys)
        texts += got
    return _report_transcripts(args, paths, audio_s, texts, secs, keys)


def register(sub) -> None:
    p = sub.add_parser("transcribe", help="transcribe audio files")
    p.add_argument("audio", nargs="+", help="audio files; with several --adapters, KEY=PATH")
    add_decode_args(p)
    p.add_argument("--adapters", metavar="KEY=RUN,...",
                   help="serve several runs' adapters from one base model, e.g. sw=runs/sw,yo=runs/yo")
    p.add_argument("--language-from-adapter", action="store_true",
                   help="use the language each adapter was trained on (with --adapters)")
    p.set_defaults(func=cmd_transcribe)
