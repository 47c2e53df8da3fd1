"""``report.md``, rendered from the results dictionary alone (so it regenerates without re-running
anything): the verdicts and targets, DAMA's variants, the tuned grid's sections, one table per
language, the plots and every run."""

from __future__ import annotations

import math
from pathlib import Path

from dama.bench.config import BenchConfig, lr_label
from dama.bench.report.figures import plots
from dama.bench.report.findings import GOAL_WER_POINTS, goal_verdicts, targets, verdicts
from dama.bench.report.results import comparison
from dama.bench.report.text import (
    diff_ci,
    fmt,
    forgetting_ci,
    machine_tags,
    params,
    points,
    seed_note,
    seeds_cell,
    tagged,
    time_left,
    with_ci,
)
from dama.outputs import atomic_write_text

REPORT_FILE = "report.md"  # in the grid's out folder, beside results.json


def _machines_line(data: dict) -> str:
    ms, tags = data.get("machines") or [], machine_tags(data)

    def one(m: dict) -> str:
        return f"{m['label']} · {m.get('platform')} · torch {m.get('torch')}"

    if not tags:
        return f"Machine: {one(ms[0])}." if ms else "Machine: none yet."
    return ("Machines (times per epoch compare only within one; each s/epoch below carries its machine's "
            "letter): " + "; ".join(f"{tags[m['label']]} = {one(m)} ({m['runs']} run{'s' * (m['runs'] > 1)})"
                                    for m in ms) + ".")


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
    n = 100 * GOAL_WER_POINTS
    within = f"{n:g} point{'' if n == 1 else 's'}"
    lines = [f"## Goal: DAMA within {within} of LoRA's WER, forgetting at most half as much", "",
             "Both settings chosen on validation only; test WER with seeds averaged per utterance; forgetting on "
             f"all control clips (WER points against zero-shot). Within {within}: DAMA − LoRA ≤ "
             f"{points(GOAL_WER_POINTS)}; at most half: DAMA's forgetting ≤ half of LoRA's (≤ 0 where LoRA forgets "
             "nothing).", "",
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
            + f" | {seeds_cell(g)} | {with_ci(g)} | {forgetting_ci(g)} | {points(g['forgetting_en'])} |")
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
                     f"| {_point_setting(p, tokens)} | {p['seeds']} | {fmt(p['val_wer'])} "
                     f"| {with_ci(p)} "
                     f"| {points(p['forgetting'])} "
                     f"| {points(p['forgetting_en'])} "
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
                  f"{diff_ci(c)}, "
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
                f"| {with_ci(g)} | {with_ci(g, 'cer')} | {params(g['trainable_params'])} "
                f"| {params(g['extra_params_merged'])} | {tagged(g['epoch_seconds'], g.get('machines'), tags)} "
                f"| {fmt(g['peak_memory_mb'], '.0f')} | {points(g['forgetting_en'])} "
                f"| {forgetting_ci(g)}"
                + f" | {points(c and c['diff'])} ({fmt(c and c['p_bootstrap'], '.3f')}"
                + (f"; {seed_note(c)}" if c and seed_note(c) else "") + ") "
                f"| {points(c and c.get('forgetting') and c['forgetting']['diff'])} "
                f"({fmt(c and c.get('forgetting') and c['forgetting']['p_bootstrap'], '.3f')}) |")
        lines.append("")
    lines += ["## Plots", "", *[f"![{p.stem}](plots/{p.name})" for p in made], "",
              "## Runs", "", "Every run, as in `results.csv`:", "",
              "| run | train h | WER | CER | trainable | s/epoch | peak MB | forgetting en | forgetting all |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in data["runs"]:
        lines.append(f"| {r['run']} | {r['train_hours']:.3f} | {r['wer']:.3f} | {r['cer']:.3f} "
                     f"| {params(r['trainable_params'])} | {tagged(r['epoch_seconds'], [r['machine']], tags)} "
                     f"| {fmt(r['peak_memory_mb'], '.0f')} "
                     f"| {points(r['forgetting_en'])} "
                     f"| {points(r['forgetting'])} |")
    return atomic_write_text(cfg.out / REPORT_FILE, "\n".join(lines) + "\n")


__all__ = ["REPORT_FILE", "frontier_lines", "tune_sections", "write_report", "zero_shot_note"]
