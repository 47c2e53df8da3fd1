"""``dama estimate``: trainable parameters, peak memory (CPU and GPU), encoder-cache disk and whether a run
fits a GPU, before any work (also ``dama train --dry-run``). See :mod:`dama.estimate`."""

from __future__ import annotations

from dama.cli.common import DEFAULT_MODEL, add_field_arguments, add_json_arg, write_json


def resolve_batch_size(args, method) -> str | None:
    """Set ``args.batch_size`` to the model's default (:func:`dama.estimate.default_batch_size`) when
    ``--batch-size`` was not given; the reason, to print, or None when it was given."""
    if args.batch_size is not None:
        return None
    from dama.estimate import default_batch_size

    args.batch_size, why = default_batch_size(args.model, method, getattr(args, "device", None) or "auto",
                                              args.precision or "auto", args.gpu_memory,
                                              bool(args.gradient_checkpointing),
                                              getattr(args, "effective_batch", None) or 0)
    return f"--batch-size {args.batch_size} ({why})"


def run_estimate(args, method) -> dict:
    """The estimate for the parsed flags (shared with ``dama train --dry-run`` / ``--gpu-memory``)."""
    from dama.estimate import check_fits, estimate, format_estimate

    if why := resolve_batch_size(args, method):
        print(why)
    est = estimate(args.model, method, batch_size=args.batch_size, precision=args.precision or "auto",
                   gradient_checkpointing=bool(args.gradient_checkpointing), gpu_memory=args.gpu_memory,
                   kv_cache=not getattr(args, "no_kv_cache", None))
    print(format_estimate(est))
    res = est.to_dict()
    if args.gpu_memory:
        from dama.estimate import largest_batch

        res["largest_batch"] = largest_batch(args.model, method, args.gpu_memory, est.precision)
        res["largest_batch_checkpointing"] = largest_batch(args.model, method, args.gpu_memory, est.precision, True)
        print(f"largest batch predicted to fit {args.gpu_memory}: {res['largest_batch']} "
              f"({res['largest_batch_checkpointing']} with --gradient-checkpointing); reach a larger effective "
              "batch with --effective-batch")
    check_fits(est)
    return res


def cmd_estimate(args) -> dict:
    from dama.adapt import make_method
    from dama.cli.train import method_options

    res = run_estimate(args, make_method(args.method, **method_options(args)))
    write_json(args.json, res)
    return res


def register(sub) -> None:
    from dama.adapt.options import OPTION_CLASSES
    from dama.train.config import PRECISIONS
    from dama.train.config import cli_fields as _fields

    p = sub.add_parser("estimate", help="trainable parameters, peak memory and cache disk of a run, before it")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="a size (tiny, base, small, medium, large-v2, large-v3, large-v3-turbo), a name dama "
                        "fetches, or a model folder (only its config.json and tokenizer are read)")
    p.add_argument("--method", default="dama", help="dama, lora, dora, lora-fa, adalora, pissa, full")
    p.add_argument("--batch-size", type=int, help="clips per step (default: dama train's default for the model and "
                                                  "--device: the largest of 8 (16 on a GPU), 4, 2, 1 predicted within "
                                                  "80%% of --gpu-memory, else of 24 GB)")
    p.add_argument("--device", default="auto", help="cpu or cuda: where the run will train (default: this machine's); "
                                                    "only the default batch depends on it")
    p.add_argument("--precision", choices=PRECISIONS, help="GPU precision (default: auto = bf16)")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--gpu-memory", metavar="AMOUNT", help="e.g. 24GB: exit 2 if the run is predicted not to fit")
    p.add_argument("--no-kv-cache", action="store_true",
                   help="the run will not cache cross-attention keys/values (dama train --no-kv-cache)")
    for cls in OPTION_CLASSES:
        add_field_arguments(p, cls, _fields(cls))
    add_json_arg(p)
    p.set_defaults(func=cmd_estimate, allocation=None, allocation_measure=None)
