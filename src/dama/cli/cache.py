"""``dama cache info|prune``: inspect, repair and prune an encoder-output cache."""

from __future__ import annotations

from pathlib import Path

from dama.cli.common import add_json_arg, write_json
from dama.errors import DamaError


def cmd_cache_info(args) -> dict:
    """Report (and with --repair drop) what is in a cache and what is wrong with it; exit 1 while
    problems remain, so scripts can check a shared cache before trusting it."""
    from dama.encoder_cache import cache_info, repair_cache

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
    write_json(args.json, out)
    if n:
        raise SystemExit(1)
    return out


def cmd_cache_prune(args) -> dict:
    from dama.data.spec import load_data
    from dama.encoder_cache import prune_cache

    keep = [u for spec in args.keep for u in load_data(spec, args.data_root)]
    out = prune_cache(args.dir, keep, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path in out["removed"]:
        print(f"{verb} {path}")
    print(f"{verb} {len(out['removed'])} file(s), {out['freed_bytes'] / 2**30:.2f} GiB; kept {out['kept_shards']} "
          f"shard(s) serving the {out['clips_to_keep']} clips of {', '.join(args.keep)}")
    write_json(args.json, out)
    return out


def register(sub) -> None:
    cache = sub.add_parser("cache", help="inspect and prune an encoder-output cache")
    csub = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    p = csub.add_parser("info", help="clips, shards and disk use of each encoder folder")
    p.add_argument("dir", help="the cache folder (a run's ../.encoder-cache, a bench's runs/.encoder-cache)")
    p.add_argument("--quick", action="store_true",
                   help="check sizes, headers and key lists only, not every row's checksum (~0.4 ms per MiB)")
    p.add_argument("--repair", action="store_true", help="delete damaged shards (their clips are re-encoded)")
    add_json_arg(p)
    p.set_defaults(func=cmd_cache_info)
    p = csub.add_parser("prune", help="delete what none of the named data sets needs")
    p.add_argument("dir", help="the cache folder")
    p.add_argument("--keep", required=True, nargs="+", metavar="DATA",
                   help="data specs whose clips stay cached (e.g. swahili:train+val+test fleurs-control)")
    p.add_argument("--data-root")
    p.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    add_json_arg(p)
    p.set_defaults(func=cmd_cache_prune)
