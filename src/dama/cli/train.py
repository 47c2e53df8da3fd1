"""``dama train``: adapt a model with DAMA or a baseline method.

The training flags are TrainConfig's fields (:mod:`dama.train.config`) and the method flags the
method options' (:mod:`dama.adapt.options`): flag, help and default come from there.
"""

from __future__ import annotations

import sys

from dama.cli.common import (
    DEFAULT_MODEL,
    add_dataset_args,
    add_field_arguments,
    add_json_arg,
    dataset_columns,
    given,
    setup_torch,
    write_json,
)


def method_options(args) -> dict:
    """The method's config fields from the parsed flags (see :func:`dama.adapt.options.method_settings`)."""
    from dama.adapt.options import method_option_names, method_settings

    return method_settings(args.method, **given(args, method_option_names()))


def train_config(args):
    from dama.train.config import TrainConfig, cli_fields, option_name

    return TrainConfig.from_options(**given(args, [option_name(f) for f in cli_fields()]))


def cmd_train(args) -> dict:
    from dama.adapt import make_method
    from dama.data.spec import held_out_spec, load_data
    from dama.languages import resolve_language
    from dama.train.run import run_training

    setup_torch(args)
    slot = _language_slot(args)
    if not args.language and not args.language_name:
        from dama.data.recipes import new_language_of

        if nl := new_language_of(args.data):  # kinyarwanda:train brings <|rw|> "Kinyarwanda" itself
            args.language, args.language_name = nl
            print(f"{args.data}: Whisper has no token for {nl[1]}; adding <|{nl[0]}|> (as --language {nl[0]} "
                  f"--language-name {nl[1]!r})", file=sys.stderr)
    if args.language and not args.language_name:
        from dama.data.recipes import NEW_LANGUAGES

        if args.language in NEW_LANGUAGES:  # --language rw: the recipes know its name
            args.language_name = NEW_LANGUAGES[args.language]
        else:
            args.language = resolve_language(args.language)  # unknown code without a name: clear error
    method = make_method(args.method, **method_options(args))
    known = _preflight(args.model)  # an unknown architecture or a mismatched tokenizer fails here, before any work
    if known:
        from dama.cli.estimate import resolve_batch_size

        if why := resolve_batch_size(args, method):
            print(why, file=sys.stderr)
    cfg = train_config(args)
    if known and not args.dry_run:
        _warn_over_ram(args, method, cfg)
    if args.dry_run or args.gpu_memory:  # before any data is read or model loaded
        from dama.cli.estimate import run_estimate

        est = run_estimate(args, method)
        if args.dry_run:
            write_json(args.json, est)
            return est
    cols = dataset_columns(args)
    train_m = load_data(args.data, args.data_root, language=args.language, columns=cols, max_hours=args.hours)
    if args.hours is not None:  # --hours 0 is an error (select_hours says so), not "the whole split"
        train_m = train_m.subset(args.hours, cfg.seed if args.data_seed is None else args.data_seed)
    val_spec = held_out_spec(args.val, args.data, "val")
    test_spec = held_out_spec(args.test, args.data, "test")
    val_m = load_data(val_spec, args.data_root, language=args.language, columns=cols) if val_spec else None
    test_m = load_data(test_spec, args.data_root, language=args.language, columns=cols) if test_spec else None
    if test_m is not None and args.test_limit:
        test_m[:] = test_m[: args.test_limit]
    print(f"{args.method}: {len(train_m)} training clips ({train_m.hours:.3f} h) from {args.data}"
          + (f", val {val_spec}" if val_spec else "") + (f", test {test_spec}" if test_spec else ""))
    res = run_training(args.model, method, train_m, val_m, test_m, args.out, cfg, language=args.language,
                       resume=args.resume, device=args.device,
                       data_specs={"train": args.data, "hours": args.hours, "data_seed": args.data_seed,
                                   "val": val_spec, "test": test_spec},
                       log=lambda m: print(m, file=sys.stderr), language_name=args.language_name,
                       language_slot=slot,
                       zero_shot=args.compare_zero_shot)
    from dama.train.distributed import world

    if not world(args.device).is_main:  # one of several processes: the main one reports and writes the card
        return res
    _write_card(args)
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
    write_json(args.json, res)
    return res


def _preflight(model: str) -> bool:
    """Read the model's config.json and tokenizer (:func:`dama.estimate.read_model_shape`) before any data or
    weights: a folder that is not a complete Whisper or whose tokenizer is not the model's vocabulary is a
    ModelError here. False for a name only the loader resolves (a hub id): it checks the same when loading."""
    from dama.estimate import UnknownModelName, read_model_shape

    try:
        read_model_shape(model)
    except UnknownModelName:
        return False
    return True


def _warn_over_ram(args, method, cfg) -> None:
    """On CPU, warn before any work when the predicted peak is over the machine's RAM."""
    from dama.estimate import device_kind, estimate, ram_warning

    if device_kind(args.device) != "cpu":
        return
    est = estimate(args.model, method, cfg.batch_size, "no", cfg.gradient_checkpointing, kv_cache=cfg.kv_cache)
    if warning := ram_warning(est):
        print(warning, file=sys.stderr)


def _language_slot(args) -> dict | None:
    """--language-slot yo: the data's language (a recipe's, or --language/--language-name) trains on
    Whisper's existing <|yo|> instead of a new token; from here on the run's language is the slot."""
    if not args.language_slot:
        return None
    from dama.data.recipes import NEW_LANGUAGES, RECIPES, new_language_of
    from dama.languages import WHISPER_LANGUAGES, resolve_language

    slot = resolve_language(args.language_slot)
    nl = new_language_of(args.data)
    recipe_langs = {RECIPES[p.split(":")[0]].language if p.split(":")[0] in RECIPES else None
                    for p in args.data.split(",")}
    code = args.language or (nl[0] if nl else None) or (recipe_langs.pop() if len(recipe_langs) == 1 else None)
    name = args.language_name or (nl[1] if nl else NEW_LANGUAGES.get(code or "")) or WHISPER_LANGUAGES.get(code or "")
    print(f"{args.data}: training {name or code or 'the data'} on Whisper's existing token <|{slot}|> "
          "(--language-slot); no new token is added", file=sys.stderr)
    args.language, args.language_name = slot, None
    return {"code": code, "name": name, "slot": slot}


def _write_card(args) -> None:
    """The run's Hugging Face model card (README.md in adapter/ or model/), with the command that made it."""
    import shlex

    from dama.deploy.card import write_run_card
    from dama.runs import RunFolder

    run = RunFolder(args.out)
    if run.is_finished():
        write_run_card(run, command=shlex.join(["dama", "train", *getattr(args, "argv", [])]))


def register(sub) -> None:
    from dama.adapt.options import ALLOCATION_MEASURES, OPTION_CLASSES
    from dama.train.config import TrainConfig, cli_fields

    p = sub.add_parser("train", help="adapt a model with DAMA or a baseline method")
    p.add_argument("--method", default="dama", help="dama, lora, dora, lora-fa, adalora, pissa, full, zero-shot")
    p.add_argument("--data", required=True,
                   help="training data, e.g. swahili:train, a manifest or hf:NAME[:CONFIG]:SPLIT")
    p.add_argument("--data-root", help="folder holding the corpora (default: $DAMA_DATA)")
    add_dataset_args(p)
    p.add_argument("--hours", type=float, help="train on a reproducible subset of about this many hours")
    p.add_argument("--data-seed", type=int, help="which clips make up the --hours subset (default: --seed)")
    p.add_argument("--val", help="validation data (default: the corpus's val split; 'none' to skip)")
    p.add_argument("--test", help="test data (default: the corpus's test split; 'none' to skip)")
    p.add_argument("--test-limit", type=int, default=0, help="evaluate only the first N test utterances")
    p.add_argument("--compare-zero-shot", action="store_true",
                   help="also score the untouched base model on the test split (same cache) and report both")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--dry-run", action="store_true",
                   help="print trainable parameters, predicted peak memory and encoder-cache disk, then stop")
    p.add_argument("--gpu-memory", metavar="AMOUNT",
                   help="e.g. 24GB: refuse (exit 2, before any work) a run predicted not to fit")
    add_field_arguments(p, TrainConfig, cli_fields(TrainConfig))
    for cls in OPTION_CLASSES:
        add_field_arguments(p, cls, cli_fields(cls))
    p.add_argument("--allocation", metavar="PROBE_JSON",
                   help="dama: ranks and segments from a dama probe result (see dama plan)")
    p.add_argument("--allocation-measure", choices=ALLOCATION_MEASURES, default=ALLOCATION_MEASURES[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--language", help="language code (default: the data's own)")
    p.add_argument("--language-name", help="name of a language Whisper has no token for (e.g. Luganda): "
                   "a new token <|CODE|> is added and trained")
    p.add_argument("--language-slot", metavar="CODE",
                   help="train the language on this existing Whisper token (e.g. yo) instead of adding a new one, "
                        "so the model runs unmodified in faster-whisper, whisper.cpp and OpenAI-compatible servers")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    add_json_arg(p)
    p.set_defaults(func=cmd_train, out_kind="dir")
