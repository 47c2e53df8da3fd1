"""``dama push``: upload a run's adapter (with its model card) or an export to the Hugging Face Hub."""

from __future__ import annotations

import sys

from dama.cli.common import add_json_arg, write_json


def cmd_push(args) -> dict:
    from dama.deploy.push import push, push_payload

    source = args.adapter or args.export
    kind, files = push_payload(source)
    listing = {name: len(data) for name, data in files.items()}
    for name, size in listing.items():
        print(f"{size:>12,}  {name}")
    res = {"source": source, "kind": kind, "repo_id": args.repo_id, "files": listing, "dry_run": args.dry_run}
    if not args.dry_run:
        res["commit"] = push(source, args.repo_id, private=args.private, token=args.token,
                             log=lambda m: print(m, file=sys.stderr))
    else:
        print(f"(dry run: nothing uploaded to {args.repo_id})")
    write_json(args.json, res)
    return res


def register(sub) -> None:
    p = sub.add_parser("push", help="upload a run's adapter or an export, with its model card, to the Hugging Face Hub")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--adapter", metavar="RUN_DIR", help="a finished `dama train` run")
    src.add_argument("--export", metavar="DIR", help="a `dama export` folder")
    p.add_argument("--repo-id", required=True, help="the Hub repository, e.g. you/whisper-base-sw-dama")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--token", help="a Hub write token (default: huggingface-cli login or $HF_TOKEN)")
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded; upload nothing")
    add_json_arg(p)
    p.set_defaults(func=cmd_push)
