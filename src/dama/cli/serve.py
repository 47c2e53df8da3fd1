"""``dama serve``: the OpenAI-compatible HTTP server; ``dama lid train``: its language router."""

from __future__ import annotations

from dama.cli.common import write_json
from dama.errors import DamaError


def parse_adapters(text: str | None, flag: str = "--adapters") -> dict[str, str]:
    """``sw=runs/sw,yo=runs/yo`` -> {"sw": "runs/sw", "yo": "runs/yo"}."""
    runs: dict[str, str] = {}
    for item in (text or "").split(","):
        key, sep, run = item.strip().partition("=")
        if not sep or not key or not run:
            raise DamaError(f"{flag} expects KEY=RUN_DIR[,KEY=RUN_DIR...], got {item!r}")
        if key in runs:
            raise DamaError(f"{flag}: key {key!r} given twice")
        runs[key] = run
    return runs


def cmd_serve(args) -> None:
    import logging

    from dama.serve.app import serve
    from dama.serve.options import ServeOptions

    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    opts = ServeOptions(adapters=parse_adapters(args.adapters), model=args.model, lid=args.lid, host=args.host,
                        port=args.port, max_upload_mb=args.max_upload_mb, max_queue=args.max_queue,
                        batch_size=1 if args.no_batching else args.batch_size, batch_window_ms=args.batch_window_ms,
                        device=args.device, threads=args.threads, beams=args.beams)
    if opts.max_upload_mb <= 0 or opts.max_queue < 1 or opts.batch_size < 1:
        raise DamaError("--max-upload-mb, --max-queue and --batch-size must be positive")
    serve(opts)


def cmd_lid_train(args) -> dict:
    from dama.serve.lid_train import LidTrainOptions, train_router

    opts = LidTrainOptions(adapters=parse_adapters(args.adapters), other=args.other, out=args.out, model=args.model,
                           data_root=args.data_root, max_per_class=args.max_per_class, c=args.c, device=args.device,
                           layers=_layers(args.layers), min_language_clips=args.min_language_clips, val=args.val,
                           other_val=args.other_val, max_val_per_class=args.max_val_per_class,
                           threshold=args.threshold, cache=args.cache, crops=args.crops, val_crops=args.val_crops,
                           crop_seconds=_seconds_range(args.crop_seconds),
                           encoder_caches=tuple(args.cache_dir.split(",")) if args.cache_dir else None)
    if opts.threshold is not None and not 0 <= opts.threshold <= 1:
        raise DamaError(f"--threshold {opts.threshold}: give a probability between 0 and 1")
    _, _, report = train_router(opts)
    write_json(args.json, report)
    print(report["out"])
    return report


def _seconds_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise DamaError(f"--crop-seconds expects two lengths in seconds, e.g. 2,8; got {text!r}") from None
    if not 0 < lo <= hi:
        raise DamaError(f"--crop-seconds {text}: give 0 < shortest <= longest, e.g. 2,8")
    return lo, hi


def _layers(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise DamaError(f"--layers expects comma-separated layer numbers, e.g. 3,6; got {text!r}") from None


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve adapters over HTTP (OpenAI audio API, web page at /)")
    p.add_argument("--adapters", required=True, metavar="KEY=RUN,...",
                   help="runs to serve on one base model; KEY is the model id clients send, e.g. sw=runs/sw,yo=runs/yo")
    p.add_argument("--model", default=None, help="base model (default: the one the adapters were trained on)")
    p.add_argument("--lid", metavar="DIR", help="language router from `dama lid train` (default: lid/ beside the runs)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="largest audio upload (default: %(default)s)")
    p.add_argument("--max-queue", type=int, default=64,
                   help="requests waiting or in progress before new ones get 503 (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="requests decoded together per adapter (default: 8)")
    p.add_argument("--batch-window-ms", type=float, default=20.0,
                   help="how long to wait for more requests to fill a batch (default: %(default)s)")
    p.add_argument("--no-batching", action="store_true", help="serve requests one by one (for comparison)")
    p.add_argument("--beams", type=int, default=1)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.set_defaults(func=cmd_serve)

    lid = sub.add_parser("lid", help="language router for dama serve")
    lsub = lid.add_subparsers(dest="lid_command", required=True, metavar="SUBCOMMAND")
    t = lsub.add_parser("train", help="fit the router on the adapters' training clips (+ --other languages)")
    t.add_argument("--adapters", required=True, metavar="KEY=RUN,...", help="the runs dama serve will serve")
    t.add_argument("--other", metavar="SPEC", help="clips of languages no adapter serves (routed to the base model), "
                   "e.g. amharic:train,fleurs-control")
    t.add_argument("--out", help="router folder (default: lid/ beside the run folders, where dama serve looks)")
    t.add_argument("--model", default=None, help="base model (default: the adapters')")
    t.add_argument("--data-root", help="folder holding the corpora (default: $DAMA_DATA)")
    t.add_argument("--max-per-class", type=int, default=200, help="clips per class, evenly spread (default: 200)")
    t.add_argument("--min-language-clips", type=int, default=20,
                   help="an --other language with a Whisper token and this many clips gets its own class, served by "
                   "the base model in that language (default: 20); the rest are left to Whisper's detection")
    t.add_argument("--val", metavar="SPEC", help="the adapters' validation clips, to calibrate the threshold "
                   "(default: each training corpus's val split; 'none': no calibration, threshold 0)")
    t.add_argument("--other-val", metavar="SPEC", help="validation clips of the --other languages "
                   "(default: their corpora's val splits, where they have one)")
    t.add_argument("--max-val-per-class", type=int, default=60, help="validation clips per language (default: 60)")
    t.add_argument("--threshold", type=float, default=None,
                   help="router confidence below which Whisper's own detection decides (default: calibrated)")
    t.add_argument("--cache", metavar="FILE.npz",
                   help="keep every clip's encoder statistics here, so a re-fit runs no encoder pass")
    t.add_argument("--cache-dir", metavar="DIR[,DIR]", help="dama train's encoder-output caches to read clips from "
                   "(default: the runs' own; last layer only)")
    t.add_argument("--crops", type=int, default=50,
                   help="short crops of each class's training clips, so every class spans the same clip lengths "
                   "(an encoder pass each, cached; 0: whole clips only; default: %(default)s)")
    t.add_argument("--val-crops", type=int, default=20,
                   help="short crops of each language's validation clips, for the calibration (default: %(default)s)")
    t.add_argument("--crop-seconds", default="2,8", metavar="LO,HI",
                   help="crop lengths, drawn uniformly between these (default: %(default)s)")
    t.add_argument("--c", type=float, default=None,
                   help="inverse L2 strength of the logistic regression (default: chosen by cross-validation)")
    t.add_argument("--layers", metavar="I,J",
                   help="encoder layers whose states are pooled (0 = input embeddings; default: the last)")
    t.add_argument("--device", default=None)
    t.add_argument("--json", metavar="PATH")
    t.set_defaults(func=cmd_lid_train)
