"""``dama transcribe``: audio files to text, with one model or several runs' adapters on one base."""

from __future__ import annotations

import time
from pathlib import Path

from dama.cli.common import (
    add_decode_args,
    add_longform_args,
    decode_opts,
    explicit_base,
    load_model,
    setup_torch,
    write_json,
)
from dama.data.audio import SAMPLE_RATE
from dama.errors import DamaError, DataError

TRANSCRIBE_BLOCK = 32  # audio files decoded into memory at a time by `dama transcribe`


def cmd_transcribe(args) -> dict:
    from dama.data.audio import load_audio

    setup_torch(args)
    if args.adapters:
        return _transcribe_multi(args)
    if not args.language:
        raise DamaError("transcribe needs --language CODE (e.g. sw, yo, en)")
    for a in args.audio:  # a typo in the 100th file should not cost the first 99 decodes
        if not Path(a).is_file():
            raise DamaError(f"{a}: audio file not found")
    if args.format:
        return _transcribe_long_files(args)
    w = load_model(args)
    texts, audio_s, secs = [], 0.0, 0.0
    for start in range(0, len(args.audio), TRANSCRIBE_BLOCK):
        block = args.audio[start: start + TRANSCRIBE_BLOCK]
        audios = [load_audio(a) for a in block]  # a block at a time: memory does not grow with the file count
        audio_s += sum(len(a) for a in audios) / SAMPLE_RATE
        t = time.perf_counter()
        got = _transcribe_any_length(w, audios, args)
        secs += time.perf_counter() - t
        _print_transcripts(block, got)
        texts += got
    return _report_transcripts(args, args.audio, audio_s, texts, secs)


def _transcribe_any_length(w, audios, args) -> list[str]:
    """Clips within Whisper's 30 s window in batches; longer files through the long-form path (VAD and
    timestamps) rather than cut blindly."""
    from dama.data.audio import CHUNK_SECONDS
    from dama.longform import text_of, transcribe_long
    from dama.models.transcribe import transcribe

    short = [i for i, a in enumerate(audios) if len(a) <= CHUNK_SECONDS * SAMPLE_RATE]
    out = [""] * len(audios)
    for i, text in zip(short, transcribe(w, [audios[i] for i in short], args.language, decode_opts(args))):
        out[i] = text
    from dataclasses import replace

    opts = replace(longform_opts(args), timing="tokens")  # text only: times are not printed
    for i in sorted(set(range(len(audios))) - set(short)):
        out[i] = text_of(transcribe_long(w, audios[i], opts))
    return out


def longform_opts(args):
    """The long-form options the decoding flags (and --long-strategy, --timing) ask for."""
    from dama.longform import LongformOptions

    return LongformOptions(language=args.language, strategy=args.long_strategy, batch_size=args.batch_size,
                           num_beams=args.beams, loop_repeats=args.loop_repeats,
                           timing=getattr(args, "timing", "words-vad"))


def _transcribe_long_files(args) -> dict:
    """--format txt|srt|vtt|json: each file of any length through :func:`dama.longform.transcribe_long`, one
    file at a time (memory: one decoded waveform). Every file's header is checked before any decoding, and
    with several files and --out-dir every file is decoded once before any transcription, so a non-audio,
    empty or truncated file fails the command before it writes anything; each transcript is written
    atomically as ``<stem>.<format>`` (a complete file or none)."""
    from dama.data.audio import audio_duration, load_audio, truncation
    from dama.longform import text_of, transcribe_long
    from dama.outputs import atomic_write_text, check_writable_dir
    from dama.subtitles import format_segments

    for a in args.audio:  # DataError naming the file: unreadable, not audio, unsupported container, empty
        if audio_duration(a) <= 0:
            raise DataError(f"{a}: audio is empty (0 samples). Remove it or replace the file.")
        if why := truncation(a):
            raise DataError(f"{a}: the file is truncated: {why}. Copy or export it again.")
    if args.out_dir and len(args.audio) > 1:
        # a file cut off mid-stream (a FLAC that loses sync) passes the header check and fails only when
        # decoded: decode every input once first (one at a time), so such a file fails the command before
        # any transcript is written, not after the earlier files' (decoding is ~1% of transcribing)
        for a in args.audio:
            load_audio(a)  # decoded and dropped at once
    out_dir = check_writable_dir(args.out_dir, "--out-dir") if args.out_dir else None
    if out_dir:
        stems = [Path(a).stem for a in args.audio]
        dup = sorted({s for s in stems if stems.count(s) > 1})
        if dup:
            raise DamaError(f"--out-dir: several inputs would write {dup[0]}.{args.format}; transcribe them "
                            "into separate folders")
    w = load_model(args)
    opts = longform_opts(args)
    results, audio_s, secs = [], 0.0, 0.0
    for a in args.audio:
        audio = load_audio(a)
        audio_s += len(audio) / SAMPLE_RATE
        t = time.perf_counter()
        segs = transcribe_long(w, audio, opts)
        secs += time.perf_counter() - t
        del audio
        doc = format_segments(segs, args.format, language=args.language, audio=str(a))
        if out_dir:
            dest = atomic_write_text(out_dir / f"{Path(a).stem}.{args.format}", doc)
            print(f"{a}\t{dest}", flush=True)
        else:
            print(doc, end="" if doc.endswith("\n") else "\n", flush=True)
        results.append({"audio": str(a), "text": text_of(segs), "language": args.language,
                        "segments": [s.to_json() for s in segs]})
    out = {"n": len(results), "rtf": secs / audio_s if audio_s else 0.0, "seconds": secs, "results": results}
    write_json(args.json, out)
    return out


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
    add_longform_args(p)
    p.add_argument("--format", choices=("txt", "srt", "vtt", "json"),
                   help="long-form, timestamped transcription of audio of any length (VAD + Whisper timestamps), "
                        "written as plain text, subtitles or JSON segments; without it, one line of text per file")
    p.add_argument("--out-dir", metavar="DIR", help="with --format: write <stem>.<format> per file here "
                   "(default: print)")
    p.set_defaults(func=cmd_transcribe)
