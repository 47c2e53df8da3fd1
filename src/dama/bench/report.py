"""Collect a grid's run directories into one results file, and write the report from it.

Every number in ``report.md`` is read from ``results.json`` (written here from the run
directories), so the report can be regenerated without re-running anything.

A grid with ``tune`` (learning rates chosen on validation) adds, per language: the validation WER of
every candidate rate with the chosen one marked; the chosen settings' test WER and forgetting; every
grid point (method x rate) in the accuracy–forgetting plane with its Pareto frontier
(``frontier.png``, :func:`pareto`); whether DAMA is on it; and the issue's goal per language
(:func:`goal_verdicts`). Every plot colours a method the same way (:func:`method_colours`).
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
from dama.outputs import atomic_write_bytes, atomic_write_text

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


def _timings(g: dict) -> dict[str | None, tuple[float, list[float]]]:
    """A summary row's time per epoch on each machine its runs were timed on: {machine: (mean s, the
    later epochs)}. Rows without ``timing`` (made by hand) count as timed on one unnamed machine."""
    if "timing" in g:
        return {m: (t["epoch_seconds"], t["later_epoch_seconds"]) for m, t in g["timing"].items()}
    ms = g.get("machines") or [None]
    return {ms[0]: (g["epoch_seconds"], g.get("later_epoch_seconds") or [])} \
        if len(ms) == 1 and g.get("epoch_seconds") else {}


def _timing_margin(xa: list[float], xb: list[float]) -> float | None:
    """About a 95 % margin for the difference of two mean epoch times, from how much the epochs
    within each method's runs differ (None with fewer than two later epochs on a side)."""
    if len(xa) < 2 or len(xb) < 2:
        return None
    return 2 * float(np.sqrt(np.var(xa, ddof=1) / len(xa) + np.var(xb, ddof=1) / len(xb)))


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def write_results(cfg: BenchConfig, data: dict) -> tuple[Path, Path]:
    cfg.out.mkdir(parents=True, exist_ok=True)
    jpath = atomic_write_text(cfg.out / "results.json", json.dumps(data, indent=1, default=str))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=RUN_COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(data["runs"])
    cpath = atomic_write_text(cfg.out / "results.csv", buf.getvalue())
    return jpath, cpath


# ---- report -------------------------------------------------------------------------------

def _f(x, spec=".3f", none="–") -> str:
    return none if x is None else format(x, spec)


def _pts(x: float) -> str:
    """A WER difference in points."""
    return f"{100 * x:+.1f}"


def seeds_cell(g: dict) -> str:
    """How many seeds a row averages and, with several, each seed's own test WER."""
    w = g.get("wer_by_seed") or {}
    if len(w) < 2:
        return str(g["seeds"])
    return f"{g['seeds']} ({', '.join(format(w[k], '.3f') for k in sorted(w, key=int))})"


def comparison(comparisons: list[dict], lang: str, hours: str, a: str, b: str) -> dict | None:
    """The paired comparison of a minus b in one cell of the grid; None when the two were not compared."""
    return next((c for c in comparisons if (c["language"], c["hours"], c["a"], c["b"]) == (lang, hours, a, b)), None)


def seed_note(c: dict) -> str:
    """The seeds a comparison was made over, e.g. "seed 0" ("" when it used every seed of both)."""
    if c.get("all_seeds", True) or not c.get("seeds"):
        return ""
    return f"seed{'s' * (len(c['seeds']) > 1)} {', '.join(c['seeds'])}"


def _params(x) -> str:
    if x is None:
        return "–"
    return f"{x / 1e6:.2f} M" if abs(x) >= 1e5 else f"{x:,.0f}"


def _save(fig, path: Path, made: list[Path], layout: bool = True) -> None:
    import matplotlib.pyplot as plt

    if layout:
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    atomic_write_bytes(path, buf.getvalue())
    plt.close(fig)
    made.append(path)


# One colour per method in every plot of every report: a reader who has learnt "DAMA is red" in one
# figure must not find it blue in the next. Variants (and methods not listed) take the extra colours in
# the order the grid lists them.
METHOD_COLOURS = {
    "dama": "#d62728", "lora": "#1f77b4", "dora": "#2ca02c", "lora-fa": "#9467bd", "adalora": "#8c564b",
    "pissa": "#e377c2", "full": "#ff7f0e", "zero-shot": "#7f7f7f",
}
EXTRA_COLOURS = ("#17becf", "#bcbd22", "#393b79", "#e6550d", "#637939", "#7b4173", "#843c39", "#3182bd",
                 "#31a354", "#756bb1", "#636363", "#fd8d3c")
# One marker shape per amount of training data (in the order the grid lists them), the same in every plot.
HOURS_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")


def method_colours(methods: list[str]) -> dict[str, str]:
    """The colour of each method of a grid: fixed for the methods dama knows, the next free extra colour
    for each variant, in the grid's order (so two plots of one report never disagree)."""
    out, extra = {}, iter(EXTRA_COLOURS * (1 + len(methods) // len(EXTRA_COLOURS)))
    for m in methods:
        out[m] = METHOD_COLOURS.get(m) or next(extra)
    return out


def hours_markers(hours: list[str]) -> dict[str, str]:
    """The marker of each amount of training data ("0.5h", "all"), in the grid's order."""
    return {h: HOURS_MARKERS[i % len(HOURS_MARKERS)] for i, h in enumerate(hours)}


def _legend_handles(colours: dict[str, str], markers: dict[str, str] | None = None) -> list:
    """Legend entries: a coloured line per method, then (with several amounts of data) a grey marker each."""
    from matplotlib.lines import Line2D

    out = [Line2D([], [], color=c, marker="o", ls="", label=m) for m, c in colours.items()]
    if markers and len(markers) > 1:
        out += [Line2D([], [], color="0.4", marker=mk, ls="", label=f"{h} of training audio")
                for h, mk in markers.items()]
    return out


def _label_points(ax, pts: list[tuple[float, float, str, str]], fontsize: float = 7) -> None:
    """Label points so that no label covers another label or any point: each label tries the four corners
    just beside its point, then places further up or down; a thin line leads back when it had to move
    away. Computed in screen pixels once the axis limits are fixed."""
    fig = ax.figure
    fig.canvas.draw()  # fixes the axis limits, so data -> pixel positions are final
    px_per_pt = fig.dpi / 72
    h, char_w, r = fontsize * 1.35 * px_per_pt, fontsize * 0.62 * px_per_pt, 4.5 * px_per_pt
    frame = ax.bbox
    marks = [tuple(ax.transData.transform((x, y))) for x, y, _, _ in pts]
    boxes: list[tuple[float, float, float, float]] = []

    def free(b: tuple[float, float, float, float], own: tuple[float, float]) -> bool:
        x0, y0, x1, y1 = b
        if x0 < frame.x0 or x1 > frame.x1 or y0 < frame.y0 or y1 > frame.y1:
            return False
        if any(x0 < q[2] and q[0] < x1 and y0 < q[3] and q[1] < y1 for q in boxes):
            return False
        return not any(m != own and x0 - r < m[0] < x1 + r and y0 - r < m[1] < y1 + r for m in marks)

    for (x, y, text, colour), own in sorted(zip(pts, marks), key=lambda t: (t[1][1], t[1][0])):
        w = len(text) * char_w
        tries = [(r, 0.2 * r), (r, -h - 0.2 * r), (-w - r, 0.2 * r), (-w - r, -h - 0.2 * r)]
        tries += [(r, sign * k * h / 2) for k in range(2, 12) for sign in (1, -1)]
        dx, dy = next(((dx, dy) for dx, dy in tries
                       if free((own[0] + dx, own[1] + dy, own[0] + dx + w, own[1] + dy + h), own)), tries[0])
        boxes.append((own[0] + dx, own[1] + dy, own[0] + dx + w, own[1] + dy + h))
        far = abs(dy) > h + r
        ax.annotate(text, (x, y), xytext=(dx / px_per_pt, dy / px_per_pt), textcoords="offset points",
                    fontsize=fontsize, color=colour, ha="left", va="bottom",
                    arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.5, "shrinkA": 0, "shrinkB": 3}
                    if far else None)


def plots(data: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    groups, langs, methods = data["summary"], data["languages"], data["methods"]
    colours, markers = method_colours(methods), hours_markers(data["hours"])
    made = []
    fig, axes = plt.subplots(1, len(langs), figsize=(5 * len(langs), 3.8), squeeze=False)
    for ax, lang in zip(axes[0], langs):
        for m in methods:
            g = [x for x in groups if x["language"] == lang and x["method"] == m]
            if not g:
                continue
            if m == "zero-shot":
                ax.axhline(g[0]["wer"], color=colours[m], ls=":", label="zero-shot")
                continue
            g.sort(key=lambda x: x["train_hours"])
            ax.errorbar([x["train_hours"] for x in g], [x["wer"] for x in g], marker="o", capsize=3, label=m,
                        color=colours[m],
                        yerr=[[x["wer"] - x["wer_lo"] for x in g], [x["wer_hi"] - x["wer"] for x in g]])
        ax.set(title=lang, xlabel="training audio (h)", ylabel="test WER")
    # the legend in the panel that has the most methods (the last one, where every panel has them all)
    legend_ax = max(reversed(axes[0]), key=lambda a: len(a.get_legend_handles_labels()[1]))
    legend_ax.legend(fontsize=8)
    _save(fig, out / "wer_vs_hours.png", made)

    # colour = method, shape = amount of data, one legend; names placed so none covers another or a point
    fig, axes = plt.subplots(1, len(langs), figsize=(5 * len(langs) + 1.6, 4.2), squeeze=False)
    shown: dict[str, str] = {}
    panels = []
    for ax, lang in zip(axes[0], langs):
        labels = []
        for x in groups:
            if x["language"] == lang and x["method"] != "zero-shot" and x["trainable_params"]:
                c = colours[x["method"]]
                ax.scatter(x["trainable_params"], x["wer"], color=c, marker=markers.get(x["hours"], "o"), s=36,
                           edgecolors="black", linewidths=0.4, alpha=0.85, zorder=3)
                shown[x["method"]] = c
                labels.append((x["trainable_params"], x["wer"], x["method"], c))
        ax.set(xscale="log", title=lang, xlabel="trainable parameters", ylabel="test WER")
        ax.margins(x=0.12, y=0.12)
        ax.grid(alpha=0.3)
        panels.append((ax, labels))
    fig.legend(handles=_legend_handles({m: c for m, c in colours.items() if m in shown}, markers),
               loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 1.6 / (5 * len(langs) + 1.6), 1))
    for ax, labels in panels:  # once the layout is final: labels are placed in screen space
        if labels:
            _label_points(ax, labels)
    _save(fig, out / "wer_vs_params.png", made, layout=False)

    cost = {m: [x for x in groups if x["method"] == m and x["epoch_seconds"]] for m in methods if m != "zero-shot"}
    cost = {m: g for m, g in cost.items() if g}
    if cost:
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
        names = list(cost)
        # one bar per machine: times per epoch from different machines are not one quantity; colour =
        # method as everywhere, the machine by its hatching
        labels = list(dict.fromkeys(lab for g in cost.values() for x in g for lab in _timings(x)))
        width = 0.8 / max(len(labels), 1)
        hatches = ("", "///", "...", "xxx", "\\\\", "ooo")
        for i, lab in enumerate(labels):
            ys = [np.mean([_timings(x)[lab][0] for x in cost[m] if lab in _timings(x)] or [0]) for m in names]
            ax[0].bar(np.arange(len(names)) + (i - (len(labels) - 1) / 2) * width, ys, width, label=lab,
                      color=[colours[m] for m in names], hatch=hatches[i % len(hatches)], edgecolor="white")
        ax[0].set_xticks(range(len(names)), names)
        ax[0].set(ylabel="s per epoch (after the first)", title="time per epoch")
        if len(labels) > 1:
            from matplotlib.patches import Patch

            ax[0].legend(handles=[Patch(facecolor="0.6", edgecolor="white", hatch=hatches[i % len(hatches)],
                                        label=lab) for i, lab in enumerate(labels)], fontsize=7)
        ax[1].bar(names, [max(x["peak_memory_mb"] for x in cost[m]) for m in names],
                  color=[colours[m] for m in names])
        ax[1].set(ylabel="MB", title="peak memory")
        for a in ax:
            a.tick_params(axis="x", rotation=30)
        _save(fig, out / "cost.png", made)

    if data.get("ranks"):
        r = data["ranks"]
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.bar(range(len(r)), r, color=colours.get("dama", METHOD_COLOURS["dama"]))
        ax.set(xlabel="decoder layer", ylabel="LoRA rank", title="DAMA rank per layer")
        _save(fig, out / "dama_ranks.png", made)

    if data.get("points"):
        frontier_plot(data, out / "frontier.png", made)
    return made


def frontier_plot(data: dict, path: Path, made: list[Path]) -> None:
    """Test WER against forgetting (all control clips) for every method and rate, one small panel per
    language, the Pareto frontier of each amount of data drawn through its points. Filled: the setting a
    method runs at (chosen on validation, or its only one); hollow: the other candidate rates; labels: rates."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    points, langs = data["points"], data["languages"]
    colours, markers = method_colours(data["methods"]), hours_markers(data["hours"])
    cols = min(3, len(langs))
    rows = -(-len(langs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols + 1.8, 3.1 * rows), squeeze=False)
    for ax in axes.flat[len(langs):]:
        ax.set_visible(False)
    panels = []
    for ax, lang in zip(axes.flat, langs):
        # zero-shot (no forgetting, by definition) goes into the title: as a point it would squeeze the rest
        zero = next((p for p in points if p["language"] == lang and p["method"] == "zero-shot"), None)
        mine = [p for p in points if p["language"] == lang and p["forgetting"] is not None
                and p["method"] != "zero-shot"]
        labels = []
        for p in mine:
            c = colours.get(p["method"], "black")
            filled = p["chosen"] is not False
            ax.scatter([100 * p["forgetting"]], [p["wer"]], marker=markers.get(p["hours"], "o"), s=40, zorder=3,
                       facecolors=c if filled else "white", edgecolors=c, linewidths=1.2)
            if p["tuned"]:
                labels.append((100 * p["forgetting"], p["wer"], p["lr_label"], c))
        for hours in dict.fromkeys(p["hours"] for p in mine if p["frontier"]):
            front = sorted((100 * p["forgetting"], p["wer"]) for p in mine if p["frontier"] and p["hours"] == hours)
            ax.step([x for x, _ in front], [y for _, y in front], where="post", color="black", ls="--", lw=0.9,
                    zorder=2)
        ax.set_title(lang + (f" (zero-shot WER {zero['wer']:.2f})" if zero else ""), fontsize=9)
        ax.set_xlabel("forgetting, all control clips (WER points)", fontsize=8)
        ax.set_ylabel("test WER", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.margins(x=0.15, y=0.15)
        ax.grid(alpha=0.3)
        if not mine:
            ax.text(0.5, 0.5, "no trained run finished yet", ha="center", va="center", transform=ax.transAxes,
                    fontsize=8, color="0.4")
            ax.set_xticks([])
            ax.set_yticks([])
        panels.append((ax, labels))
    handles = _legend_handles({m: c for m, c in colours.items() if m != "zero-shot"}, markers)
    handles += [Line2D([], [], color="0.3", marker="o", ls="", label="rate chosen on validation\n(or not tuned)"),
                Line2D([], [], color="0.3", marker="o", ls="", markerfacecolor="white", label="other rates"),
                Line2D([], [], color="black", ls="--", label="Pareto frontier")]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 1.8 / (3.6 * cols + 1.8), 1))
    for ax, labels in panels:  # once the layout is final: labels are placed in screen space
        if labels:
            _label_points(ax, labels)
    _save(fig, path, made, layout=False)


def _block(groups: list[dict], lang: str, hours: str) -> tuple[dict, dict | None]:
    """Methods of one (language, hours) block (zero-shot included) and the trained one with the lowest WER."""
    g = {x["method"]: x for x in groups if x["language"] == lang and x["hours"] in (hours, "-")}
    trained = [x for m, x in g.items() if m != "zero-shot"]
    return g, min(trained, key=lambda x: x["wer"]) if trained else None


def verdicts(data: dict) -> list[str]:
    """Plain statements of where DAMA wins and loses, from the summary and the paired tests."""
    out = []
    groups = data["summary"]
    for lang in data["languages"]:
        for hours in dict.fromkeys(g["hours"] for g in groups if g["language"] == lang and g["method"] != "zero-shot"):
            g, best = _block(groups, lang, hours)
            if "dama" not in g:
                continue
            d = g["dama"]
            cmp = {c["b"]: c for c in data["comparisons"]
                   if c["a"] == "dama" and c["language"] == lang and c["hours"] == hours}
            if not [m for m in g if m not in ("dama", "zero-shot")]:  # nothing to win against yet
                s = f"**{lang}, {hours}: DAMA {d['wer']:.3f}; no other adapted model has finished here yet**"
            elif best["method"] == "dama":
                s = f"**{lang}, {hours}: DAMA has the lowest WER ({d['wer']:.3f})**"
            else:
                c = cmp.get(best["method"])
                s = f"**{lang}, {hours}: {best['method']} has the lowest WER ({best['wer']:.3f}); DAMA {d['wer']:.3f} "
                if c and not c.get("all_seeds", True):  # the two rows average different seeds: compare shared ones
                    s += (f"over {d['seeds']} seeds; over {seed_note(c)}, which both have finished, DAMA is "
                          f"{100 * c['diff']:.1f} points behind, paired bootstrap p = {c['p_bootstrap']:.3f}**")
                else:
                    s += (f"is {100 * (d['wer'] - best['wer']):.1f} points behind"
                          + (f", paired bootstrap p = {c['p_bootstrap']:.3f}**" if c else "**"))
            better = [m for m, c in cmp.items() if c["diff"] < 0 and c["p_bootstrap"] < 0.05]
            worse = [m for m, c in cmp.items() if c["diff"] > 0 and c["p_bootstrap"] < 0.05]
            s += (f". Significantly better than: {', '.join(better) or 'none'}; significantly worse than: "
                  f"{', '.join(worse) or 'none'} (paired bootstrap over utterances, p < 0.05).")
            seeded = {m: c["diff_by_seed"] for m, c in cmp.items() if len(c.get("diff_by_seed") or {}) > 1}
            if seeded:  # the bootstrap covers test utterances, not training noise: show each seed's gap
                split = [m for m, v in seeded.items() if len({x > 0 for x in v.values() if x != 0}) > 1]
                s += (" Seed by seed (DAMA minus method, WER points): "
                      + "; ".join(f"{m} " + ", ".join(f"{_pts(v[k])} (seed {k})" for k in sorted(v, key=int))
                                  for m, v in seeded.items())
                      + f". The seeds disagree in sign against: {', '.join(split) or 'none'}.")
            if d.get("forgetting_lo") is not None:
                fg = {m: c["forgetting"] for m, c in cmp.items() if "forgetting" in c and m != "zero-shot"}
                less = [m for m, c in fg.items() if c["diff"] < 0 and c["p_bootstrap"] < 0.05]
                more = [m for m, c in fg.items() if c["diff"] > 0 and c["p_bootstrap"] < 0.05]
                s += (f" Forgetting on the control clips: DAMA {_pts(d['forgetting'])} "
                      f"[{_pts(d['forgetting_lo'])}, {_pts(d['forgetting_hi'])}] WER points against zero-shot"
                      + "".join(f"; {m} {_pts(g[m]['forgetting'])}" for m in fg if g[m].get("forgetting") is not None)
                      + f". DAMA forgets significantly less than: {', '.join(less) or 'none'}; significantly more "
                      f"than: {', '.join(more) or 'none'} (paired bootstrap over the control clips, p < 0.05).")
            out.append(s)
    return out


def targets(data: dict) -> list[str]:
    """The issue's targets, each checked against the results (reached or not, by how much)."""
    out = []
    variants = data.get("variants", {})
    # DAMA's own variants (ablations, other allocations) are not competitors for the targets
    groups = [x for x in data["summary"] if variants.get(x["method"]) != "dama"]
    for lang in data["languages"]:
        g, best = _block(groups, lang, "0.5h")
        if "dama" in g and len([m for m in g if m != "zero-shot"]) > 1:  # something to beat
            ok = best["method"] == "dama"
            out.append(f"DAMA lowest WER at 0.5 h on {lang}: {'reached' if ok else 'not reached'} "
                       f"(DAMA {g['dama']['wer']:.3f}, best {best['method']} {best['wer']:.3f})")
    ratio = [(x["language"], x["hours"], x["trainable_params"]) for x in groups if x["method"] == "dama"]
    lora = {(x["language"], x["hours"]): x["trainable_params"] for x in groups if x["method"] == "lora"}
    for lang, hours, p in ratio[:1]:
        if (lang, hours) in lora and lora[(lang, hours)]:
            r = p / lora[(lang, hours)]
            out.append(f"DAMA ≤ 30% of LoRA r=64's trainable parameters: {'reached' if r <= 0.3 else 'not reached'} "
                       f"({r:.1%})")
    side: dict[str, list[str]] = {}  # a side-by-side outcome -> the cells it decides
    for x in groups:
        adapters = [y for y in groups if y["language"] == x["language"] and y["hours"] == x["hours"]
                    and y["method"] not in ("dama", "zero-shot", "full") and y["epoch_seconds"]]
        if x["method"] != "dama" or not x["epoch_seconds"] or not adapters:  # no adapter timed here yet
            continue
        # equal quality: adapter methods whose WER interval overlaps DAMA's; is DAMA the fastest of them?
        # Times per epoch compare only on one machine: the one where DAMA and the most of them were timed.
        peers = [y for y in adapters if y["wer_lo"] <= x["wer_hi"] and y["wer_hi"] >= x["wer_lo"]]
        tx = _timings(x)
        on = max(tx, key=lambda m: sum(m in _timings(y) for y in peers), default=None)
        elsewhere = [y for y in peers if on not in _timings(y)]
        timed = [y for y in peers if on in _timings(y)]
        head = f"DAMA time per epoch lowest among adapters of equal quality ({x['language']}, {x['hours']}): "
        if elsewhere and not timed:
            out.append(head + f"not comparable yet (DAMA was timed on {' and '.join(map(str, tx))}; "
                       f"{', '.join(y['method'] for y in elsewhere)} only on other machines)")
            continue
        if peers:
            fastest = min(timed, key=lambda y: _timings(y)[on][0])
            (sx, lx), (sf, lf) = tx[on], _timings(fastest)[on]
            verdict, noise = _time_verdict(sx, lx, sf, lf)
            out.append(head + f"{verdict} (DAMA {sx:.1f} s vs {fastest['method']} {sf:.1f} s{noise}"
                       + (f"; timed on {on}" if on else "")
                       + "; grid runs are timed one at a time, some beside other work: benchmarks/method_speed.py "
                       "times the methods side by side"
                       + (f"; {', '.join(y['method'] for y in elsewhere)} timed on other machines only, not compared"
                          if elsewhere else "") + ")")
        else:
            out.append(f"DAMA time per epoch lowest among adapters of equal quality ({x['language']}, "
                       f"{x['hours']}): no adapter method has a WER interval overlapping DAMA's")
        for t in _side_by_side(data.get("speed") or [], [y["method"] for y in peers]):
            side.setdefault(t, []).append(f"{x['language']}, {x['hours']}")
    # one line per side-by-side outcome: a timing file is one measurement, whichever cells it decides
    out += [f"DAMA time per epoch lowest among adapters of equal quality ({'; '.join(c)}): {t}"
            for t, c in side.items()]
    for x in groups:
        if x["method"] != "dama" or x["forgetting_en"] is None:
            continue
        lo = next((y for y in groups if y["method"] == "lora" and y["language"] == x["language"]
                   and y["hours"] == x["hours"]), None)
        if lo and lo["forgetting_en"] is not None:
            words = x.get("control_words_en")
            comp = comparison(data["comparisons"], x["language"], x["hours"], "dama", "lora") or {}
            c, seeds = comp.get("forgetting_en"), seed_note(comp)
            # The averages may cover different seeds; the paired difference covers the seeds both finished.
            ok = c["diff"] <= 0 if c else x["forgetting_en"] <= lo["forgetting_en"]
            paired = "" if not c else (
                f"; paired over the English clips{f' of {seeds}, which both have finished,' if seeds else ''} "
                f"DAMA − LoRA {_pts(c['diff'])} [{_pts(c['ci'][0])}, "
                f"{_pts(c['ci'][1])}], p = {c['p_bootstrap']:.2f}: "
                + ("a significant difference" if c["p_bootstrap"] < 0.05 else "not a significant difference"))
            out.append(f"DAMA English forgetting ≤ LoRA's ({x['language']}, {x['hours']}): "
                       f"{'reached' if ok else 'not reached'} (DAMA {100 * x['forgetting_en']:+.1f} vs LoRA "
                       f"{100 * lo['forgetting_en']:+.1f} WER points"
                       + (f"; on {words:.0f} English words one word is {100 / words:.1f} points" if words else "")
                       + paired + ")")
    return out


def _time_verdict(sx: float, lx: list[float], sf: float, lf: list[float]) -> tuple[str, str]:
    """DAMA's time per epoch (sx; later epochs lx) against the fastest peer's: the verdict and its noise."""
    margin = _timing_margin(lx, lf)
    verdict = ("within timing noise" if margin is not None and abs(sf - sx) <= margin
               else "reached" if sf >= sx else "not reached")
    return verdict, "" if margin is None else f", ±{margin:.1f} s from the spread of epochs within runs"


def _side_by_side(speed: list[dict], peers: list[str]) -> list[str]:
    """The time target judged from each side-by-side timing file that has DAMA and some of its
    equal-quality peers: one machine, one data set, nothing else running between the methods."""
    out = []
    for s in speed:
        t, timed = s["methods"], [m for m in peers if m in s["methods"]]
        if "dama" not in t or not timed:
            continue
        f = min(timed, key=lambda m: t[m]["epoch_seconds"])
        (sx, lx), (sf, lf) = ((t[m]["epoch_seconds"], t[m]["later_epoch_seconds"]) for m in ("dama", f))
        verdict, noise = _time_verdict(sx, lx, sf, lf)
        missing = [m for m in peers if m not in t]
        amount = f"{s['hours']:g} h" if s["hours"] else "the whole split"  # method_speed.py: --hours 0 = all
        out.append(f"{verdict} when timed side by side (DAMA {sx:.1f} s vs {f} {sf:.1f} s, {sf / sx:.2f}x{noise}; "
                   f"{s['file']}: {s['machine']}, {s['data']} {amount}, the methods one after another"
                   + (f"; {', '.join(missing)} not in it" if missing else "") + ")")
    return out


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


def time_left(data: dict) -> str:
    """The time the unfinished runs should take, as `--dry-run` estimates it from the finished ones' times."""
    est, left = data.get("estimate_left") or {}, data["runs_total"] - data["runs_finished"]
    if not left or not est.get("runs"):
        return ""
    part = "" if est["runs"] == left else f" {est['runs']} of"
    return f"; `--dry-run` estimates about {est['hours']:.1f} h for{part} the {left} left"


def machine_tags(data: dict) -> dict[str, str]:
    """A letter per machine when the grid's runs span several (A = the one with most runs), else none."""
    ms = data.get("machines") or []
    return {m["label"]: chr(ord("A") + i) for i, m in enumerate(ms)} if len(ms) > 1 else {}


def _machines_line(data: dict) -> str:
    ms, tags = data.get("machines") or [], machine_tags(data)

    def one(m: dict) -> str:
        return f"{m['label']} · {m.get('platform')} · torch {m.get('torch')}"

    if not tags:
        return f"Machine: {one(ms[0])}." if ms else "Machine: none yet."
    return ("Machines (times per epoch compare only within one; each s/epoch below carries its machine's "
            "letter): " + "; ".join(f"{tags[m['label']]} = {one(m)} ({m['runs']} run{'s' * (m['runs'] > 1)})"
                                    for m in ms) + ".")


def _tagged(x: float | None, machines: list[str] | None, tags: dict[str, str]) -> str:
    """A time per epoch, with its machine's letter when the grid spans several."""
    t = "+".join(tags[m] for m in machines or [] if m in tags)
    return _f(x, ".1f") + (f" ({t})" if x is not None and t else "")


def zero_shot_note(token: dict) -> str:
    """Which token a new language's zero-shot run decoded with, and why not its own."""
    return (f"Zero-shot decoded with `<|{token['token']}|>`: Whisper has no {token['language']} token, and an "
            "untrained one would measure nothing, so the untrained model reads it as its closest language "
            "(the recipe's `zero_shot_proxy`)" + ("" if token.get("from_run") else "; not run yet") + ". "
            "Trained runs add and train the language's own token.")


def _setting(data: dict, g: dict) -> str:
    """A summary row's method, with its rate when the grid chose that rate on validation."""
    tuned = (data.get("tune") or {}).get("methods") or []
    return f"{g['method']} (lr {lr_label(g['lr'])})" if g["method"] in tuned and g.get("lr") else g["method"]


GOAL_WER_POINTS = 0.01  # the issue's goal: DAMA's test WER at most 1 point above LoRA r=64's ...
GOAL_FORGETTING_SHARE = 0.5  # ... while forgetting at most half as much, both settings chosen on validation


def goal_verdicts(data: dict) -> list[str]:
    """The issue's goal, per language (and amount of data): "a DAMA configuration whose test WER is within
    1 point of the best LoRA r=64 setting while forgetting at most half as much, chosen by validation
    only". Both sides are the settings chosen on validation (LoRA's best by test WER would be chosen on
    test); forgetting is on all control clips. Where LoRA forgets nothing (<= 0), half of it is 0.
    A verdict over fewer seeds than the grid's is marked provisional."""
    tune = data.get("tune") or {}
    out = []
    if not {"dama", "lora"} <= set(tune.get("methods") or []):
        return ["not evaluated: the goal compares settings chosen on validation; tune both dama and lora"]
    n_seeds = len(data["seeds"])
    for lang in data["languages"]:
        for hours in data["hours"]:
            head = f"{lang}, {hours}: "
            g = {x["method"]: x for x in data["summary"] if x["language"] == lang and x["hours"] == hours}
            state = {t["method"]: t for t in data.get("tuning", []) if (t["language"], t["hours"]) == (lang, hours)}
            d, lo = g.get("dama"), g.get("lora")
            if d is None or lo is None or d.get("forgetting") is None or lo.get("forgetting") is None:
                left = [f"{'DAMA' if m == 'dama' else 'LoRA'} {sum(c['val_wer'] is not None for c in t['candidates'])}"
                        f" of {len(t['candidates'])} candidates finished" for m, t in state.items()
                        if m in ("dama", "lora") and t["chosen"] is None]
                out.append(head + "**not yet run**" + (f" ({'; '.join(left)})" if left else
                                                       " (forgetting not measured yet)"))
                continue
            gap = d["wer"] - lo["wer"]
            limit = GOAL_FORGETTING_SHARE * max(lo["forgetting"], 0.0)
            wer_ok, fg_ok = gap <= GOAL_WER_POINTS + 1e-12, d["forgetting"] <= limit + 1e-12
            short = [f"{name} over {x['seeds']} of {n_seeds} seeds" for name, x in (("DAMA", d), ("LoRA", lo))
                     if x["seeds"] < n_seeds]
            out.append(
                head + f"**{'met' if wer_ok and fg_ok else 'not met'}**"
                + (f" (provisional: {', '.join(short)})" if short else "")
                + f" — DAMA lr {lr_label(d['lr'])} and LoRA lr {lr_label(lo['lr'])}, each chosen on validation: "
                f"test WER {d['wer']:.3f} vs {lo['wer']:.3f}, DAMA {_pts(gap)} points "
                f"({'within' if wer_ok else 'more than'} {100 * GOAL_WER_POINTS:g}); forgetting on all control "
                f"clips {_pts(d['forgetting'])} vs {_pts(lo['forgetting'])} points "
                f"({'at most' if fg_ok else 'more than'} half of LoRA's: ≤ {_pts(limit)})")
    return out


def _val_cell(c: dict, chosen: float | None) -> str:
    if c["val_wer"] is None:
        return "–"
    return f"**{c['val_wer']:.3f} ✓**" if chosen is not None and math.isclose(c["lr"], chosen) else \
        f"{c['val_wer']:.3f}"


def _point_setting(p: dict, tokens: dict) -> str:
    if p["method"] == "zero-shot":
        t = tokens.get(p["language"])
        return "reference" + (f", decoded as `<|{t['token']}|>`" if t else "")
    return {True: "chosen", False: "candidate", None: "not tuned"}[p["chosen"]]


def frontier_lines(data: dict) -> list[str]:
    """Per (language, amount): is any DAMA point on the Pareto frontier, which ones, and where the chosen
    DAMA setting lies (on it, or which points dominate it)."""
    pts = [p for p in data.get("points") or [] if p["method"] != "zero-shot"]
    out = ["| language | hours | DAMA on the frontier? | DAMA points on it | chosen DAMA setting |",
           "|---|---|---|---|---|"]
    for lang in data["languages"]:
        for hours in data["hours"]:
            block = [p for p in pts if (p["language"], p["hours"]) == (lang, hours)]
            dama = [p for p in block if p["method"] == "dama"]
            if not dama:
                out.append(f"| {lang} | {hours} | not yet run | – | – |")
                continue
            on = [p for p in dama if p["frontier"]]
            names = ", ".join(f"lr {p['lr_label']}" + (" (chosen)" if p["chosen"] else "") for p in on)
            pick = next((p for p in dama if p["chosen"] is not False), None)
            if pick is None or pick["chosen"] is None and pick["tuned"]:
                where = "not chosen yet"
            elif pick["frontier"]:
                where = f"lr {pick['lr_label']}: on it"
            elif pick["forgetting"] is None:
                where = f"lr {pick['lr_label']}: forgetting not measured"
            else:
                by = [q for q in block if q is not pick and q["forgetting"] is not None
                      and q["wer"] <= pick["wer"] and q["forgetting"] <= pick["forgetting"]]
                where = f"lr {pick['lr_label']}: dominated by " + ", ".join(
                    f"{q['method']} lr {q['lr_label']}" for q in by)
            out.append(f"| {lang} | {hours} | {'yes' if on else 'no'} | {names or '–'} | {where} |")
    return out


def tune_sections(data: dict) -> list[str]:
    """The report's part for a grid that chooses learning rates on validation: the goal per language, the
    validation WER of every rate, the chosen settings, and the accuracy–forgetting frontier."""
    tune, tokens = data["tune"], data.get("zero_shot_tokens") or {}
    rates = tune["lr"]
    own = ", ".join(f"{m} {lr_label(x)}" for m, x in tune["own_lr"].items())
    lines = ["## Goal: DAMA within 1 point of LoRA's WER, forgetting at most half as much", "",
             "Both settings chosen on validation only; test WER with seeds averaged per utterance; forgetting on "
             "all control clips (WER points against zero-shot). Within 1 point: DAMA − LoRA ≤ +1.0; at most half: "
             "DAMA's forgetting ≤ half of LoRA's (≤ 0 where LoRA forgets nothing).", "",
             *[f"- {v}" for v in goal_verdicts(data)], "",
             "## Learning rates chosen on validation", "",
             f"Each tuned method trains once per rate at seed {tune['seed']}; the rate with the lowest validation "
             "WER (✓; ties: the lower rate) runs the other seeds. The test split plays no part in the choice. "
             f"The methods' own rates (their runs without `--lr`): {own}.", "",
             "| language | hours | method | " + " | ".join(f"val WER, lr {lr_label(x)}" for x in rates)
             + " | chosen |", "|---|---|---|" + "---|" * len(rates) + "---|"]
    for t in data["tuning"]:
        by = {lr_label(c["lr"]): c for c in t["candidates"]}
        done = sum(c["val_wer"] is not None for c in t["candidates"])
        pick = lr_label(t["chosen"]) if t["chosen"] is not None else f"waiting ({done} of {len(rates)} finished)"
        lines.append(f"| {t['language']} | {t['hours']} | {t['method']} | "
                     + " | ".join(_val_cell(by[lr_label(x)], t["chosen"]) for x in rates) + f" | {pick} |")
    lines += ["", "## Chosen settings", "",
              "Each method at its rate (tuned: chosen on validation), seeds averaged per utterance.", "",
              "| language | hours | method | lr | seeds | test WER [95% CI] | forgetting all [95% CI] "
              "| forgetting en |", "|---|---|---|---|---|---|---|---|"]
    settings = [g for g in data["summary"] if g["method"] != "zero-shot"]
    if not settings:
        lines[-2:] = ["None yet: no method has finished a run at its chosen rate."]
    for g in settings:
        lines.append(
            f"| {g['language']} | {g['hours']} | {g['method']} | {lr_label(g['lr']) if g.get('lr') else '–'}"
            + ("" if g["method"] in tune["methods"] else " (not tuned)")
            + f" | {seeds_cell(g)} | {g['wer']:.3f} [{g['wer_lo']:.3f}, {g['wer_hi']:.3f}] "
            f"| {_f(g['forgetting'] and 100 * g['forgetting'], '+.1f')}"
            + (f" [{_pts(g['forgetting_lo'])}, {_pts(g['forgetting_hi'])}]" if g.get("forgetting_lo") is not None
               else "")
            + f" | {_f(g['forgetting_en'] and 100 * g['forgetting_en'], '+.1f')} |")
    lines += ["", "## Accuracy–forgetting frontier", "",
              "Every method at every rate: test WER against forgetting on all control clips. A point is on the "
              "Pareto frontier when no other point of its language and amount of data has both lower (or equal) "
              "WER and lower (or equal) forgetting; zero-shot is shown for reference, not part of it. Filled: the "
              "rate a method runs at; hollow: the other candidates (seed "
              f"{tune['seed']} only).", "", "![frontier](plots/frontier.png)", "",
              "### Is DAMA on the frontier?", "", *frontier_lines(data), "",
              "### Every grid point", "",
              "| language | hours | method | lr | setting | seeds | val WER | test WER [95% CI] | forgetting all "
              "| forgetting en | on the frontier |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in data["points"]:
        lines.append(f"| {p['language']} | {p['hours']} | {p['method']} | {p['lr_label']} "
                     f"| {_point_setting(p, tokens)} | {p['seeds']} | {_f(p['val_wer'])} "
                     f"| {p['wer']:.3f} [{p['wer_lo']:.3f}, {p['wer_hi']:.3f}] "
                     f"| {_f(p['forgetting'] and 100 * p['forgetting'], '+.1f')} "
                     f"| {_f(p['forgetting_en'] and 100 * p['forgetting_en'], '+.1f')} "
                     f"| {'yes' if p['frontier'] else ('–' if p['method'] == 'zero-shot' else 'no')} |")
    return [*lines, ""]


def write_report(cfg: BenchConfig, data: dict, command: str) -> Path:
    made = plots(data, cfg.out / "plots")
    tags = machine_tags(data)
    lines = [
        f"# Benchmark: {data['model']} adapted to {', '.join(data['languages'])}", "",
        f"Generated by `dama bench` from `results.json` ({data['runs_finished']} of {data['runs_total']} runs "
        f"finished{time_left(data)}). {_machines_line(data)}", "",
        f"Reproduce: `{command}`", "",
        "WER/CER: corpus-level on the test split, with 95% bootstrap intervals over utterances "
        f"({data['n_boot']} resamples; several seeds are averaged per utterance first). "
        "Forgetting: WER change on the control clips, English and all of them "
        f"({data['control'] or 'none'}"
        + (f", the first {data['control_per_language']} clips of each language" if data.get("control_per_language")
           else "")
        + ") with the adapter merged, against zero-shot (positive = worse). "
        "Epoch time: mean over epochs after the first (the first also builds the encoder cache).", "",
        "## Where DAMA wins and loses", "",
        *([f"- {v}" for v in verdicts(data)] or ["No DAMA result to judge yet."]), "",
        "## Targets", "", *([f"- {t}" for t in targets(data)]
                            or ["None to check: the grid has no baseline method next to DAMA."]), "",
    ]
    variant_cmp = [c for c in data["comparisons"] if c["a"] != "dama"]
    if variant_cmp:
        lines += ["## DAMA's variants against the baselines", "",
                  "Each variant minus each baseline, WER points with the paired bootstrap 95% interval and p "
                  "(negative = the variant is better).", ""]
        lines += [f"- {c['language']}, {c['hours']}: {c['a']} {c['wer_a']:.3f} vs {c['b']} {c['wer_b']:.3f}: "
                  f"{100 * c['diff']:+.1f} [{100 * c['ci'][0]:+.1f}, {100 * c['ci'][1]:+.1f}], "
                  f"p = {c['p_bootstrap']:.3f}" for c in variant_cmp]
        lines.append("")
    if data.get("tune"):
        lines += tune_sections(data)
    for lang in data["languages"]:
        token = (data.get("zero_shot_tokens") or {}).get(lang)
        mine = [x for x in data["summary"] if x["language"] == lang]
        lines += [f"## {lang}", "", *([zero_shot_note(token), ""] if token else [])]
        if not mine:
            lines += [f"No run of {lang} has finished yet.", ""]
            continue
        lines += ["| hours | method | seeds | test WER [95% CI] | CER [95% CI] | trainable | extra at inference | "
                  "s/epoch | peak MB | forgetting en | forgetting all [95% CI] | DAMA − method (p) | "
                  "DAMA − method, control clips (p) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for g in mine:
            c = comparison(data["comparisons"], lang, g["hours"], "dama", g["method"])
            lines.append(
                f"| {g['hours']} | {_setting(data, g)} | {seeds_cell(g)} "
                f"| {g['wer']:.3f} [{g['wer_lo']:.3f}, {g['wer_hi']:.3f}] "
                f"| {g['cer']:.3f} [{g['cer_lo']:.3f}, {g['cer_hi']:.3f}] | {_params(g['trainable_params'])} "
                f"| {_params(g['extra_params_merged'])} | {_tagged(g['epoch_seconds'], g.get('machines'), tags)} "
                f"| {_f(g['peak_memory_mb'], '.0f')} | {_f(g['forgetting_en'] and 100 * g['forgetting_en'], '+.1f')} "
                f"| {_f(g['forgetting'] and 100 * g['forgetting'], '+.1f')}"
                + (f" [{_pts(g['forgetting_lo'])}, {_pts(g['forgetting_hi'])}]" if g.get("forgetting_lo") is not None
                   else "")
                + f" | {_f(c and 100 * c['diff'], '+.1f')} ({_f(c and c['p_bootstrap'], '.3f')}"
                + (f"; {seed_note(c)}" if c and seed_note(c) else "") + ") "
                f"| {_f(c and c.get('forgetting') and 100 * c['forgetting']['diff'], '+.1f')} "
                f"({_f(c and c.get('forgetting') and c['forgetting']['p_bootstrap'], '.3f')}) |")
        lines.append("")
    lines += ["## Plots", "", *[f"![{p.stem}](plots/{p.name})" for p in made], "",
              "## Runs", "", "Every run, as in `results.csv`:", "",
              "| run | train h | WER | CER | trainable | s/epoch | peak MB | forgetting en | forgetting all |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in data["runs"]:
        lines.append(f"| {r['run']} | {r['train_hours']:.3f} | {r['wer']:.3f} | {r['cer']:.3f} "
                     f"| {_params(r['trainable_params'])} | {_tagged(r['epoch_seconds'], [r['machine']], tags)} "
                     f"| {_f(r['peak_memory_mb'], '.0f')} "
                     f"| {_f(r['forgetting_en'] and 100 * r['forgetting_en'], '+.1f')} "
                     f"| {_f(r['forgetting'] and 100 * r['forgetting'], '+.1f')} |")
    return atomic_write_text(cfg.out / "report.md", "\n".join(lines) + "\n")


__all__ = ["METHOD_COLOURS", "collect", "frontier_lines", "goal_verdicts", "grid_points", "hours_markers",
           "method_colours", "pareto", "plots", "read_speed", "seed_note", "seeds_cell", "targets", "tune_sections",
           "verdicts", "write_report", "write_results", "zero_shot_tokens"]
