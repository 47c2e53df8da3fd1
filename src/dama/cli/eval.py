"""``dama eval``: WER/CER of a model (or a run's adapter) on a corpus or manifest."""

from __future__ import annotations

import sys
from pathlib import Path

from dama.cli.common import (
    add_dataset_args,
    add_decode_args,
    add_longform_args,
    dataset_columns,
    decode_opts,
    load_model,
    safe_name,
    setup_torch,
    write_json,
)


def cmd_eval(args) -> dict:
    from dama.data.spec import load_data

    setup_torch(args)
    m = load_data(args.data, args.data_root, columns=dataset_columns(args))
    if args.limit_per_language:
        m = m.per_language(args.limit_per_language)
    if args.limit:
        m[:] = m[: args.limit]
    w = load_model(args)
    model_label = Path(args.adapter).name if args.adapter else Path(str(args.model)).name
    default_hyps = f"{safe_name(model_label)}__{safe_name(args.data)}.hyps.jsonl"
    hyps = args.hyps or Path("dama_runs") / "eval" / default_hyps
    if args.long or "-long" in args.data:  # long recordings: VAD + timestamps, boundaries scored too
        from dama.cli.transcribe import longform_opts
        from dama.evaluate.longform import evaluate_long

        res = evaluate_long(w, m, longform_opts(args), language=args.language, hyps_path=hyps,
                            log=lambda s: print(s, file=sys.stderr))
        res["model"] = w.name
        if res.get("boundary_median_ms") is not None:
            print(f"segment boundaries: median {res['boundary_median_ms']:.0f} ms, 90th percentile "
                  f"{res['boundary_p90_ms']:.0f} ms over {res['n_boundaries']}; hypotheses with a loop: {res['loops']}")
    elif args.cache_dir:  # encoder outputs from (or into) a cache keyed by the encoder's weights
        from dama.evaluate.cached import evaluate_cached

        res = evaluate_cached(w, m, args.language, hyps, args.cache_dir, opts=decode_opts(args),
                              log=lambda s: print(s, file=sys.stderr))
        res.update(data=m.name, model=w.name, rtf=res.get("rtf_cached", res.get("rtf", 0.0)))
    else:
        from dama.evaluate.run import evaluate

        res = evaluate(w, m, language=args.language, opts=decode_opts(args), hyps_path=hyps)
    res["params"] = sum(p.numel() for p in w.model.parameters())  # what inference carries (adapter merged)
    print(f"{res['data']}  model={res['model']}  n={res['n']}  WER={res['wer']:.4f}  CER={res['cer']:.4f}  "
          f"RTF={res['rtf']:.3f}")
    if len(res["by_language"]) > 1:
        for lang, r in res["by_language"].items():
            print(f"  {lang}: WER={r['wer']:.4f}  CER={r['cer']:.4f}")
    print(f"per-utterance hypotheses: {hyps}")
    write_json(args.json, res)
    return res


def register(sub) -> None:
    p = sub.add_parser("eval", help="WER/CER of a model on a corpus or manifest")
    p.add_argument("--data", required=True, help="swahili:test, yoruba:test, fleurs-control[:en], or a manifest")
    p.add_argument("--data-root", help="folder holding the corpora (default: $DAMA_DATA)")
    add_dataset_args(p)
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N utterances")
    p.add_argument("--limit-per-language", type=int, default=0, metavar="N",
                   help="evaluate only the first N utterances of each language (a balanced cut)")
    p.add_argument("--hyps", help="where to write per-utterance hypotheses (JSONL)")
    p.add_argument("--cache-dir", help="reuse/keep encoder outputs here (keyed by the encoder's weights); "
                   "RTF then excludes the encoder")
    p.add_argument("--long", action="store_true",
                   help="transcribe each recording with the long-form path (VAD + timestamps; automatic for "
                        "CORPUS:SPLIT-long data) and score segment boundaries where the true ones are known")
    add_longform_args(p)
    add_decode_args(p)
    p.set_defaults(func=cmd_eval)
