"""A grid's results: every finished run read from its folder, the statistics on them (bootstrap
intervals over utterances, seeds averaged per utterance, paired tests, forgetting against zero-shot,
the accuracy–forgetting frontier), and ``results.json``/``results.csv``.

Every number the report prints is in the dictionary :func:`collect` returns and
:func:`write_results` writes; the verdicts (:mod:`dama.bench.report.findings`) and the rendering
(:mod:`dama.bench.report.markdown`, :mod:`dama.bench.report.figures`) read only that.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from dama.bench.config import BenchConfig, lr_label
from dama.bench.grid import (
    Cell,
    CellRun,
    cell_rate,
    cell_run,
    cells,
    choices,
    estimate_seconds,
    is_finished,
    made_elsewise,
    run_dir,
)
from dama.errors import DamaError
from dama.evaluate.stats import UtteranceErrors, bootstrap_ci, paired_compare, read_hyps, stack_seeds
from dama.outputs import atomic_write_text

RESULTS_FILE = "results.json"  # the grid's results, in its out folder: everything the report prints
RUNS_CSV = "results.csv"  # one row per run, RUN_COLUMNS
RUN_COLUMNS = [
    "run", "machine", "language", "method", "hours", "seed", "train_hours", "wer", "cer", "wer_lo", "wer_hi",
    "trainable_params", "extra_params_merged", "peak_memory_mb", "train_seconds", "first_epoch_seconds",
    "epoch_seconds", "epochs", "best_epoch", "val_wer", "lr", "control_wer", "control_wer_en", "forgetting",
    "forgetting_en",
]


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


MACHINE_KEYS = ("device", "device_name", "platform", "cpu_threads", "torch")


def machine_label(m: dict) -> str:
    """How a run's machine is named in the report, e.g. "cpu (AMD EPYC), 2 threads"."""
    if not m.get("device"):
        return "not recorded"
    return (f"{m.get('device')} ({m.get('device_name') or 'name not recorded'})"
            + (f", {m['cpu_threads']} threads" if m.get("device") == "cpu" and m.get("cpu_threads") else ""))


def run_machines(cfg: BenchConfig, finished: list[Cell]) -> dict[str, dict]:
    """Each finished run's machine, from its config.json: a grid made across sessions can span machines,
    and their times per epoch are not comparable. A run made before device names were recorded takes the
    name of a named run with the same platform string (the same machine image), if there is one."""
    conf = {c.name: _read(cell_run(cfg, c).config_path) or {} for c in finished}
    named = {rc.get("platform"): rc["device_name"] for rc in conf.values() if rc.get("device_name")}
    out = {}
    for name, rc in conf.items():
        m = {k: rc.get(k) for k in MACHINE_KEYS}
        m["device_name"] = m["device_name"] or named.get(m["platform"])
        out[name] = {**m, "label": machine_label(m)}
    return out


def _run_row(cfg: BenchConfig, cell: Cell, e: UtteranceErrors, machine: str | None = None) -> dict:
    """One run's row; ``e`` is its per-utterance test errors, ``machine`` its machine's label."""
    d = run_dir(cfg, cell)
    res = _read(d / CellRun.RESULTS)
    fg = _read(d / CellRun.FORGETTING) or {}
    epochs = res.get("epoch_seconds") or []
    lo, hi = bootstrap_ci(e, n_boot=cfg.n_boot)
    by_lang = fg.get("by_language", {})
    return {
        "run": cell.name, "machine": machine, "language": cell.language.name, "method": cell.method,
        "hours": cell.hours_label if cell.method != "zero-shot" else "-",
        "seed": cell.seed if cell.method != "zero-shot" else "-",
        "train_hours": res.get("train_hours", 0.0), "wer": res["wer"], "cer": res["cer"], "wer_lo": lo, "wer_hi": hi,
        "trainable_params": res["trainable_params"], "params_at_inference": fg.get("params"),
        "extra_params_merged": None, "peak_memory_mb": res["peak_memory_mb"], "train_seconds": res["train_seconds"],
        "first_epoch_seconds": epochs[0] if epochs else None,
        "epoch_seconds": float(np.mean(epochs[1:])) if len(epochs) > 1 else (epochs[0] if epochs else None),
        "later_epoch_seconds": list(epochs[1:]),  # the timing noise: how much epochs of one run differ
        "epochs": len(epochs) or None, "best_epoch": res.get("best_epoch"),
        "val_wer": res.get("best_val_wer"), "lr": res.get("lr"), "control_wer": fg.get("wer"),
        "control_wer_en": by_lang.get("en", {}).get("wer"), "control_by_language": by_lang,
        "control_words_en": by_lang.get("en", {}).get("ref_words"),
        "forgetting": None, "forgetting_en": None, "ranks": res.get("ranks"),
    }


def comparison_pairs(methods: list[str], base_method) -> list[tuple[str, str]]:
    """Which paired tests to run: DAMA against every other method, and each of DAMA's variants
    (ablations, other allocations, another learning rate) against every baseline, so that
    "does this variant close the gap to LoRA" is tested, not eyeballed."""
    dama_like = [m for m in methods if m == "dama" or base_method(m) == "dama"]
    return [(a, b) for a in dama_like for b in methods
            if b != a and (a == "dama" or (b not in dama_like and b != "zero-shot"))]


def collect(cfg: BenchConfig) -> dict:
    """Read every finished run of the grid; add intervals, forgetting and paired tests. In a tuned grid
    a tuned method's summary row, comparisons and verdicts are its chosen rate's runs only (none until
    the rate is chosen); every rate's runs are grid points of the frontier (``points``)."""
    rows, finished = [], [c for c in cells(cfg) if is_finished(cfg, c)]
    hyps: dict[tuple, dict] = defaultdict(dict)  # (language, hours, method) -> {seed: errors}
    control: dict[tuple, dict] = defaultdict(dict)  # the same, on the control clips
    settings: dict[tuple, dict] = defaultdict(dict)  # (language, hours, method, rate) -> {seed: (row, errors)}
    chosen = {(ch.language.name, _hours_label(ch.hours), ch.method): ch.chosen.lr
              for ch in choices(cfg) if ch.chosen is not None}
    machines = run_machines(cfg, finished)
    counted: set[str] = set()  # the runs the summary rows average (a tuned method: its chosen rate's)
    for cell in finished:
        e = read_hyps(cell_run(cfg, cell).hyps_path("test"))
        rows.append(_run_row(cfg, cell, e, machines[cell.name]["label"]))
        key, seed = (cell.language.name, rows[-1]["hours"], cell.method), rows[-1]["seed"]
        if cell.method != "zero-shot":
            settings[(*key, cell_rate(cfg, cell))][seed] = (rows[-1], e)
        if cfg.is_tuned(cell.method) and (key not in chosen or chosen[key] != cell.lr):
            continue  # a candidate at a rate not (yet) chosen: a point of the frontier, not the method's row
        counted.add(cell.name)
        hyps[key][seed] = e
        if (run_dir(cfg, cell) / CellRun.FORGETTING_HYPS).is_file():
            control[key][seed] = read_hyps(run_dir(cfg, cell) / CellRun.FORGETTING_HYPS)
    zero = {r["language"]: r for r in rows if r["method"] == "zero-shot"}
    for lang in cfg.languages:  # a grid without zero-shot (an ablation) measures forgetting against a shared one
        z = Cell(lang, "zero-shot", None, cfg.seeds[0])
        if lang.name not in zero and is_finished(cfg, z) and not made_elsewise(cfg, z):
            zero[lang.name] = _run_row(cfg, z, read_hyps(cell_run(cfg, z).hyps_path("test")))
            if (run_dir(cfg, z) / CellRun.FORGETTING_HYPS).is_file():
                control[(lang.name, "-", "zero-shot")] = {"-": read_hyps(run_dir(cfg, z) / CellRun.FORGETTING_HYPS)}
    for r in rows:
        z = zero.get(r["language"])
        for delta, field in (("extra_params_merged", "params_at_inference"), ("forgetting", "control_wer"),
                             ("forgetting_en", "control_wer_en")):  # each run against zero-shot
            if z and z[field] is not None and r[field] is not None:
                r[delta] = r[field] - z[field]

    groups, comparisons = [], []
    for lang in cfg.languages:
        for hours in [c.hours_label for c in cells(cfg) if c.method != "zero-shot" and c.language == lang]:
            if any(g["language"] == lang.name and g["hours"] == hours for g in groups):
                continue
            keys = {}  # method -> its key in hyps/control, for the methods finished here
            for method in cfg.methods:
                key = (lang.name, "-" if method == "zero-shot" else hours, method)
                if not hyps.get(key):
                    continue
                keys[method] = key
                s = stack_seeds(list(hyps[key].values()))
                mine = [r for r in rows if (r["language"], r["hours"], r["method"]) == key and r["run"] in counted]
                lo, hi = bootstrap_ci(s, n_boot=cfg.n_boot)
                clo, chi = bootstrap_ci(s, n_boot=cfg.n_boot, unit="char")
                zc = control.get((lang.name, "-", "zero-shot"))
                fg = {} if method == "zero-shot" else \
                    _forgetting_tests(_stack(control.get(key, {}), list(hyps[key])), zc and zc["-"], cfg.n_boot)
                groups.append({
                    "language": lang.name, "hours": hours, "method": method, "seeds": len(mine),
                    "machines": sorted({r["machine"] for r in mine if r["machine"]}),
                    "train_hours": float(np.mean([r["train_hours"] for r in mine])),
                    "wer": s.wer, "wer_lo": lo, "wer_hi": hi, "wer_seed_std": float(np.std([r["wer"] for r in mine])),
                    "wer_by_seed": {str(r["seed"]): r["wer"] for r in mine if r["seed"] != "-"},
                    "cer": s.cer, "cer_lo": clo, "cer_hi": chi,
                    **{k: _mean([r[k] for r in mine]) for k in (
                        "trainable_params", "extra_params_merged", "peak_memory_mb", "epoch_seconds",
                        "first_epoch_seconds", "train_seconds", "forgetting", "forgetting_en", "control_wer_en",
                        "control_words_en", "val_wer", "lr", "epochs")},
                    "later_epoch_seconds": [x for r in mine for x in r["later_epoch_seconds"]],
                    "timing": {m: {"epoch_seconds": _mean([r["epoch_seconds"] for r in mine if r["machine"] == m]),
                                   "later_epoch_seconds": [x for r in mine if r["machine"] == m
                                                           for x in r["later_epoch_seconds"]]}
                               for m in sorted({r["machine"] for r in mine if r["epoch_seconds"]})},
                    **{f"{k}_{end}": v for k, t in fg.items()  # forgetting_lo/_hi/_p, forgetting_en_lo/...
                       for end, v in (("lo", t["ci"][0]), ("hi", t["ci"][1]), ("p", t["p_bootstrap"]))},
                })
            by_seed = {g["method"]: g["wer_by_seed"] for g in groups if g["language"] == lang.name
                       and g["hours"] in (hours, "-")}
            for a, b in comparison_pairs(list(keys), cfg.base_method):
                key_a, key_b = keys[a], keys[b]
                ka, kb = _common_seeds(hyps[key_a], hyps[key_b])
                if not ka:  # no seed finished by both yet
                    continue
                pc = paired_compare(_stack(hyps[key_a], ka), _stack(hyps[key_b], kb), n_boot=cfg.n_boot)
                sa, sb = by_seed.get(a, {}), by_seed.get(b, {})  # training noise: does each seed agree?
                seeds = [str(k) for k in (kb if "-" in ka else ka) if k != "-"]
                comparisons.append({"language": lang.name, "hours": hours, "a": a, "b": b, **pc.to_dict(),
                                    "seeds": seeds, "all_seeds": len(ka) == len(hyps[key_a])
                                    and len(kb) == len(hyps[key_b]),
                                    "diff_by_seed": {k: sa[k] - sb[k] for k in sa if k in sb},
                                    **_forgetting_tests(_stack(control.get(key_a, {}), ka),
                                                        _stack(control.get(key_b, {}), kb), cfg.n_boot)})
    done = {c.name for c in finished}
    left = [c for c in cells(cfg) if c.name not in done]
    secs, known = estimate_seconds(cfg, left, finished)
    by_label: dict[str, dict] = {}
    for r in rows:
        by_label.setdefault(r["machine"], {**machines[r["run"]], "runs": 0})["runs"] += 1
    data = {"machines": sorted(by_label.values(), key=lambda m: (-m["runs"], m["label"])),  # most runs first
            "model": cfg.model, "methods": cfg.methods,
            "variants": {name: v["method"] for name, v in cfg.variants.items()},
            "languages": [x.name for x in cfg.languages],
            "hours": [("all" if h is None else f"{h:g}h") for h in cfg.hours], "seeds": cfg.seeds,
            "control": cfg.control, "control_per_language": cfg.control_per_language, "n_boot": cfg.n_boot,
            "runs_total": len(cells(cfg)), "runs_finished": len(rows),
            "estimate_left": {"hours": round(secs / 3600, 1), "runs": known},  # as `--dry-run` estimates
            "ranks": next((r["ranks"] for r in rows if r["method"] == "dama"), None),
            "runs": rows, "summary": groups, "comparisons": comparisons, "speed": read_speed(cfg.speed)}
    # keys only grids that need them carry, so the results of every other grid stay as they were
    tokens = zero_shot_tokens(cfg)
    if tokens:
        data["zero_shot_tokens"] = tokens
    if cfg.tune is not None:
        data["tune"] = {"lr": list(cfg.tune.lr), "methods": list(cfg.tune.methods), "seed": cfg.tune.seed,
                        "own_lr": {m: cfg.own_rate(m) for m in cfg.tune.methods}}
        data["tuning"] = [{"language": ch.language.name, "hours": _hours_label(ch.hours), "method": ch.method,
                           "chosen": ch.rate,
                           "candidates": [{"lr": x, "run": c.name, "val_wer": v, "own": c.lr is None}
                                          for c, x, v in ch.candidates]}
                          for ch in choices(cfg)]
        data["points"] = grid_points(cfg, settings, zero, chosen)
    return data


def _hours_label(hours: float | None) -> str:
    return "all" if hours is None else f"{hours:g}h"


def zero_shot_tokens(cfg: BenchConfig) -> dict[str, dict]:
    """For each language Whisper has no token for: the token its zero-shot run decoded with (from the
    run's config.json once it has run, else the one the grid will use) and the language's name."""
    out = {}
    if "zero-shot" not in cfg.methods:
        return out
    for lang in cfg.languages:
        name = lang.new_language()
        if not name:
            continue
        cell = Cell(lang, "zero-shot", None, cfg.seeds[0])
        conf = _read(cell_run(cfg, cell).config_path) if is_finished(cfg, cell) else None
        token = (conf or {}).get("language") or lang.zero_shot_language()
        out[lang.name] = {"token": token, "language": name, "from_run": bool(conf and conf.get("language"))}
    return out


def grid_points(cfg: BenchConfig, settings: dict[tuple, dict], zero: dict[str, dict],
                chosen: dict[tuple, float | None]) -> list[dict]:
    """Every (language, hours, method, rate) with a finished run: test WER (seeds averaged per utterance,
    with its bootstrap interval), validation WER and forgetting (means over its seeds), whether it is the
    method's chosen setting, and whether it lies on the Pareto frontier of its (language, hours)."""
    points = []
    for (lang, hours, method, rate), by_seed in settings.items():
        runs = [by_seed[k] for k in sorted(by_seed, key=str)]
        s = stack_seeds([e for _, e in runs])
        lo, hi = bootstrap_ci(s, n_boot=cfg.n_boot)
        tuned = cfg.is_tuned(method)
        key = (lang, hours, method)
        is_chosen = (key in chosen and math.isclose(rate, chosen[key] if chosen[key] is not None
                                                    else cfg.own_rate(method))) if tuned else None
        points.append({
            "language": lang, "hours": hours, "method": method, "lr": rate, "lr_label": lr_label(rate),
            "tuned": tuned, "chosen": is_chosen, "seeds": len(runs), "runs": [r["run"] for r, _ in runs],
            "wer": s.wer, "wer_lo": lo, "wer_hi": hi, "val_wer": _mean([r["val_wer"] for r, _ in runs]),
            "forgetting": _mean([r["forgetting"] for r, _ in runs]),
            "forgetting_en": _mean([r["forgetting_en"] for r, _ in runs]),
            "trainable_params": _mean([r["trainable_params"] for r, _ in runs]),
        })
    order = {m: i for i, m in enumerate(cfg.methods)}
    points.sort(key=lambda p: ([x.name for x in cfg.languages].index(p["language"]),
                               [_hours_label(h) for h in cfg.hours].index(p["hours"]), order[p["method"]], p["lr"]))
    for lang in {p["language"] for p in points}:
        for hours in {p["hours"] for p in points if p["language"] == lang}:
            block = [p for p in points if (p["language"], p["hours"]) == (lang, hours)]
            for p, on in zip(block, pareto([(p["wer"], p["forgetting"]) for p in block])):
                p["frontier"] = on
    for lang, z in zero.items():  # the untrained model: a reference in the plane, not a point of the frontier
        points.append({"language": lang, "hours": "-", "method": "zero-shot", "lr": None, "lr_label": "-",
                       "tuned": False, "chosen": None, "seeds": 1, "runs": [z["run"]], "wer": z["wer"],
                       "wer_lo": z["wer_lo"], "wer_hi": z["wer_hi"], "val_wer": None, "forgetting": 0.0,
                       "forgetting_en": 0.0, "trainable_params": 0, "frontier": False})
    return points


def pareto(xy: list[tuple[float | None, float | None]]) -> list[bool]:
    """Which of the (test WER, forgetting) points are on the Pareto frontier: no other point is at least as
    good on both (lower WER, lower forgetting) and better on one. A point without forgetting is not on it."""
    ok = [w is not None and f is not None for w, f in xy]
    out = []
    for i, (w, f) in enumerate(xy):
        out.append(ok[i] and not any(ok[j] and xy[j][0] <= w and xy[j][1] <= f and (xy[j][0] < w or xy[j][1] < f)
                                     for j in range(len(xy)) if j != i))
    return out


def _forgetting_tests(a: UtteranceErrors | None, b: UtteranceErrors | None, n_boot: int) -> dict:
    """Paired tests of control WER, a minus b, on all control clips and on English alone: against
    zero-shot that is a's forgetting with its interval; between two methods, which forgets more."""
    if a is None or b is None or a.ids != b.ids:
        return {}
    out = {"forgetting": paired_compare(a, b, n_boot=n_boot).to_dict()}
    if a.languages and b.languages and "en" in a.languages:
        out["forgetting_en"] = paired_compare(a.only("en"), b.only("en"), n_boot=n_boot).to_dict()
    return out


def _common_seeds(ha: dict, hb: dict) -> tuple[list, list]:
    """The seeds to compare two methods over: those both have finished, so that a method with a second
    seed is not set against one with only the first; a seedless run (zero-shot) goes with any."""
    if "-" in ha or "-" in hb:
        return list(ha), list(hb)
    both = [k for k in ha if k in hb]
    return both, both


def _stack(runs: dict, seeds: list) -> UtteranceErrors | None:
    """The runs of these seeds averaged per utterance; None unless every one of them is there."""
    return stack_seeds([runs[k] for k in seeds]) if seeds and all(k in runs for k in seeds) else None


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def comparison(comparisons: list[dict], lang: str, hours: str, a: str, b: str) -> dict | None:
    """The paired comparison of a minus b in one cell of the grid; None when the two were not compared."""
    return next((c for c in comparisons if (c["language"], c["hours"], c["a"], c["b"]) == (lang, hours, a, b)), None)


def timings(g: dict) -> dict[str | None, tuple[float, list[float]]]:
    """A summary row's time per epoch on each machine its runs were timed on: {machine: (mean s, the
    later epochs)}. Rows without ``timing`` (made by hand) count as timed on one unnamed machine."""
    if "timing" in g:
        return {m: (t["epoch_seconds"], t["later_epoch_seconds"]) for m, t in g["timing"].items()}
    ms = g.get("machines") or [None]
    return {ms[0]: (g["epoch_seconds"], g.get("later_epoch_seconds") or [])} \
        if len(ms) == 1 and g.get("epoch_seconds") else {}


def timing_margin(xa: list[float], xb: list[float]) -> float | None:
    """About a 95 % margin for the difference of two mean epoch times, from how much the epochs
    within each method's runs differ (None with fewer than two later epochs on a side)."""
    if len(xa) < 2 or len(xb) < 2:
        return None
    return 2 * float(np.sqrt(np.var(xa, ddof=1) / len(xa) + np.var(xb, ddof=1) / len(xb)))


def read_speed(paths: list[Path]) -> list[dict]:
    """Side-by-side timing files of benchmarks/method_speed.py, for the time target: the grid times its
    runs one at a time, across sessions and machines, some beside other work."""
    out = []
    for p in paths:
        try:
            r = json.loads(Path(p).read_text())
            methods = {m: {"epoch_seconds": float(v["epoch_seconds_after_first"]),
                           "later_epoch_seconds": [float(e) for e in v["epoch_seconds"][1:]]}
                       for m, v in r["methods"].items()}
            machine = f"{r['machine']['cpu']}, {r['machine']['cpus']} cores"
            data, hours = r["setup"]["data"], r["setup"]["hours"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise DamaError(f"{p}: not a results file of benchmarks/method_speed.py "
                            f"({type(e).__name__}: {e}); rerun it or drop the file from 'speed'") from None
        out.append({"file": Path(p).name, "machine": machine, "data": data, "hours": hours, "methods": methods})
    return out


def write_results(cfg: BenchConfig, data: dict) -> tuple[Path, Path]:
    cfg.out.mkdir(parents=True, exist_ok=True)
    jpath = atomic_write_text(cfg.out / RESULTS_FILE, json.dumps(data, indent=1, default=str))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=RUN_COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(data["runs"])
    cpath = atomic_write_text(cfg.out / RUNS_CSV, buf.getvalue())
    return jpath, cpath


__all__ = ["MACHINE_KEYS", "RESULTS_FILE", "RUNS_CSV", "RUN_COLUMNS", "collect", "comparison", "comparison_pairs",
           "grid_points", "machine_label", "pareto", "read_speed", "run_machines", "timing_margin", "timings",
           "write_results", "zero_shot_tokens"]
