"""``dama probe`` (per-layer measures of a model) and ``dama plan`` (a probe result -> DAMA's ranks)."""

from __future__ import annotations

import sys
from pathlib import Path

from dama.cli.common import DEFAULT_MODEL, add_json_arg, setup_torch, write_json


def cmd_probe(args) -> dict:
    from dama.data.spec import load_data
    from dama.models.load import load_whisper
    from dama.probe import run_probe, table, write_probe

    setup_torch(args)
    m = load_data(args.data, args.data_root)
    target = load_data(args.target, args.data_root) if args.target else None
    w = load_whisper(args.model, device=args.device)
    res = run_probe(w, m, target, mode=args.mode, train_per_language=args.train_per_language, dims=args.dims,
                    repeats=args.repeats, fisher_clips=args.fisher_clips, cache_dir=args.cache_dir,
                    log=lambda s: print(s, file=sys.stderr))
    print(table(res))
    path, png = write_probe(res, args.out)
    print(f"probe: {path}\nplot:  {png}")
    write_json(args.json, res)
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
    from dama.adapt.allocation import allocate, allocation_fixed, profile_from_probe, read_probe

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
    write_json(args.json, a.to_dict())
    return a.to_dict()


def register(sub) -> None:
    from dama.adapt.options import ALLOCATION_MEASURES, option_default

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
    add_json_arg(p, "also write the probe result here")
    p.set_defaults(func=cmd_probe, out_kind="file")

    p = sub.add_parser("plan", help="turn a probe result into DAMA per-layer ranks and segments")
    p.add_argument("--probe", required=True, help="a dama probe JSON")
    p.add_argument("--measure", choices=ALLOCATION_MEASURES, default=ALLOCATION_MEASURES[0])
    # DAMA's defaults (dama.adapt.options.DamaOptions)
    p.add_argument("--r-high", type=int, default=option_default("r_high"))
    p.add_argument("--r-low", type=int, default=option_default("r_low"))
    add_json_arg(p)
    p.set_defaults(func=cmd_plan)
