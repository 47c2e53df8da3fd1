"""``dama bench``: a grid of methods x languages x hours x seeds, its results and report."""

from __future__ import annotations

from pathlib import Path

from dama.cli.common import add_json_arg, write_json
from dama.errors import DamaError


def cmd_bench(args) -> dict:
    import shlex

    from dama.bench import collect, load_config, run_grid, write_report, write_results
    from dama.bench.grid import check_launcher, check_settings

    cfg = load_config(args.config)
    if args.quick:
        cfg = cfg.quick()
    if args.out:
        cfg.out = Path(args.out).resolve()
    check_launcher(cfg)
    check_settings(cfg)
    only = [x.strip() for x in (args.only or "").split(",") if x.strip()]
    failed = [] if args.report_only else run_grid(cfg, log=print, dry_run=args.dry_run, only=only,
                                                     executor=args.executor)
    if args.dry_run:
        return {}
    data = collect(cfg)
    jpath, cpath = write_results(cfg, data)
    command, skip = [], False  # the command that reproduces the whole grid: no --only, no --report-only
    for a in args.argv:
        if not skip and a not in ("--report-only", "--dry-run", "--only", "--json") and not a.startswith(
                ("--only=", "--json=")):
            command.append(a)
        skip = a in ("--only", "--json")
    report = write_report(cfg, data, "dama bench " + " ".join(shlex.quote(a) for a in command))
    print(f"results: {jpath} and {cpath}\nreport:  {report}")
    for v in data["summary"]:
        print(f"  {v['language']:>10} {v['hours']:>5} {v['method']:>9}  WER {v['wer']:.3f} "
              f"[{v['wer_lo']:.3f}, {v['wer_hi']:.3f}]  seeds={v['seeds']}")
    write_json(args.json, {**data, "results_path": str(jpath), "report_path": str(report),
                           "failed": [c.name for c in failed]})
    if failed:
        raise DamaError(f"{len(failed)} run(s) failed: {', '.join(c.name for c in failed)}; their logs are in "
                        f"{cfg.logs_dir}. Fix the cause and re-run the same command: finished runs are kept.")
    return data


def register(sub) -> None:
    p = sub.add_parser("bench", help="run a grid of methods x languages x hours x seeds; write results and a report")
    p.add_argument("--config", required=True, help="benchmark YAML (see benchmarks/bench.yaml)")
    p.add_argument("--quick", action="store_true",
                   help="preset: first language, one seed, smallest amount, zero-shot/lora/dama, capped val/test")
    p.add_argument("--out", help="results folder (default: the config's out; --quick adds -quick)")
    p.add_argument("--report-only", action="store_true", help="rewrite results and report from finished runs")
    p.add_argument("--dry-run", action="store_true", help="print the runs still to do, run nothing")
    p.add_argument("--only", metavar="GLOBS",
                   help="run only the runs whose names match these comma-separated patterns, in that order "
                        "(e.g. 'yoruba-*-lora-s0,*-dama-s*'); the report still covers every finished run")
    p.add_argument("--executor", default="local", choices=["local", "submitit-local", "submitit-slurm"],
                   help="where the runs run: here one at a time (local), or as jobs, several at once: Slurm jobs "
                        "through submitit, or submitit's local processes; resources from the YAML's executor: "
                        "(docs/scaling.md)")
    add_json_arg(p, "also write the collected results (what results.json holds: every run, the summary per "
                    "language, hours and method) here, with the names of failed runs (not with --dry-run)")
    p.set_defaults(func=cmd_bench, out_kind="dir")
