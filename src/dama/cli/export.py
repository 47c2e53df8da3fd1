"""``dama export``: a run's adapter merged into its base, saved for transformers or CTranslate2."""

from __future__ import annotations

import sys
import time

from dama.cli.common import add_json_arg, write_json


def cmd_export(args) -> dict:
    from dama.deploy import export_run

    t = time.perf_counter()
    if args.quantization is None:
        args.quantization = "float16" if args.format == "ggml" else "float32"
    out = export_run(args.adapter, args.format, args.out, quantization=args.quantization, force=args.force,
                     base=args.model, log=lambda m: print(m, file=sys.stderr), language_slot=args.language_slot)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    res = {"path": str(out), "format": args.format, "quantization": args.quantization if args.format != "hf"
           else "float32", "bytes": size, "seconds": time.perf_counter() - t}
    print(out)
    write_json(args.json, res)
    return res


def register(sub) -> None:
    p = sub.add_parser("export", help="merge a run's adapter and save it as a transformers or CTranslate2 model")
    p.add_argument("--adapter", metavar="RUN_DIR", required=True, help="a finished `dama train` run directory")
    p.add_argument("--format", choices=("hf", "ct2", "ggml"), default="hf",
                   help="hf: transformers folder; ct2: CTranslate2 folder for faster-whisper; ggml: ggml-model.bin "
                        "for whisper.cpp (default: hf)")
    p.add_argument("--quantization", help="ct2: float32 (default), float16 or int8; ggml: float16 (default), "
                                          "q8_0, q5_0, q5_1, q4_0 or q4_1 (whisper.cpp's block types)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--force", action="store_true",
                   help="replace --out if it is an earlier export (a run or any other folder is refused)")
    p.add_argument("--model", help="where the base model is, if not where the run found it")
    p.add_argument("--language-slot", metavar="CODE",
                   help="put the run's new language token on this existing Whisper token (e.g. yo), so the export "
                        "runs unmodified in faster-whisper, whisper.cpp and OpenAI-compatible servers")
    add_json_arg(p)
    p.set_defaults(func=cmd_export, out_kind="dir")
