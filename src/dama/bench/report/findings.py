"""What the results say, in sentences: where DAMA wins and loses (:func:`verdicts`), the issue's
targets (:func:`targets`) and, for a tuned grid, the goal per language (:func:`goal_verdicts`).

Every threshold a verdict applies is a named constant here, so a reader can see (and a change can
move) what "significant", "reached" and "met" mean in one place.
"""

from __future__ import annotations

from dama.bench.config import lr_label
from dama.bench.report.results import comparison, timing_margin, timings
from dama.bench.report.text import diff_ci, forgetting_ci, points, seed_note

SIGNIFICANCE = 0.05  # p below this (paired bootstrap) counts as a significant difference
TARGET_HOURS = 0.5  # the amount of training audio at which DAMA should have the lowest WER
PARAMS_SHARE = 0.3  # DAMA should train at most this share of LoRA r=64's parameters
GOAL_WER_POINTS = 0.01  # the issue's goal: DAMA's test WER at most 1 point above LoRA r=64's ...
GOAL_FORGETTING_SHARE = 0.5  # ... while forgetting at most half as much ("half" in the text), both chosen on validation
SLACK = 1e-12  # a goal met exactly is met, whatever the float rounding


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
            better = [m for m, c in cmp.items() if c["diff"] < 0 and c["p_bootstrap"] < SIGNIFICANCE]
            worse = [m for m, c in cmp.items() if c["diff"] > 0 and c["p_bootstrap"] < SIGNIFICANCE]
            s += (f". Significantly better than: {', '.join(better) or 'none'}; significantly worse than: "
                  f"{', '.join(worse) or 'none'} (paired bootstrap over utterances, p < {SIGNIFICANCE:g}).")
            seeded = {m: c["diff_by_seed"] for m, c in cmp.items() if len(c.get("diff_by_seed") or {}) > 1}
            if seeded:  # the bootstrap covers test utterances, not training noise: show each seed's gap
                split = [m for m, v in seeded.items() if len({x > 0 for x in v.values() if x != 0}) > 1]
                s += (" Seed by seed (DAMA minus method, WER points): "
                      + "; ".join(f"{m} " + ", ".join(f"{points(v[k])} (seed {k})" for k in sorted(v, key=int))
                                  for m, v in seeded.items())
                      + f". The seeds disagree in sign against: {', '.join(split) or 'none'}.")
            if d.get("forgetting_lo") is not None:
                fg = {m: c["forgetting"] for m, c in cmp.items() if "forgetting" in c and m != "zero-shot"}
                less = [m for m, c in fg.items() if c["diff"] < 0 and c["p_bootstrap"] < SIGNIFICANCE]
                more = [m for m, c in fg.items() if c["diff"] > 0 and c["p_bootstrap"] < SIGNIFICANCE]
                s += (f" Forgetting on the control clips: DAMA {forgetting_ci(d)} WER points against zero-shot"
                      + "".join(f"; {m} {points(g[m]['forgetting'])}" for m in fg if g[m].get("forgetting") is not None)
                      + f". DAMA forgets significantly less than: {', '.join(less) or 'none'}; significantly more "
                      f"than: {', '.join(more) or 'none'} (paired bootstrap over the control clips, "
                      f"p < {SIGNIFICANCE:g}).")
            out.append(s)
    return out


def targets(data: dict) -> list[str]:
    """The issue's targets, each checked against the results (reached or not, by how much)."""
    out = []
    variants = data.get("variants", {})
    # DAMA's own variants (ablations, other allocations) are not competitors for the targets
    groups = [x for x in data["summary"] if variants.get(x["method"]) != "dama"]
    for lang in data["languages"]:
        g, best = _block(groups, lang, f"{TARGET_HOURS:g}h")
        if "dama" in g and len([m for m in g if m != "zero-shot"]) > 1:  # something to beat
            ok = best["method"] == "dama"
            out.append(f"DAMA lowest WER at {TARGET_HOURS:g} h on {lang}: {'reached' if ok else 'not reached'} "
                       f"(DAMA {g['dama']['wer']:.3f}, best {best['method']} {best['wer']:.3f})")
    ratio = [(x["language"], x["hours"], x["trainable_params"]) for x in groups if x["method"] == "dama"]
    lora = {(x["language"], x["hours"]): x["trainable_params"] for x in groups if x["method"] == "lora"}
    for lang, hours, p in ratio[:1]:
        if (lang, hours) in lora and lora[(lang, hours)]:
            r = p / lora[(lang, hours)]
            out.append(f"DAMA ≤ {PARAMS_SHARE:.0%} of LoRA r=64's trainable parameters: "
                       f"{'reached' if r <= PARAMS_SHARE else 'not reached'} "
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
        tx = timings(x)
        on = max(tx, key=lambda m: sum(m in timings(y) for y in peers), default=None)
        elsewhere = [y for y in peers if on not in timings(y)]
        timed = [y for y in peers if on in timings(y)]
        head = f"DAMA time per epoch lowest among adapters of equal quality ({x['language']}, {x['hours']}): "
        if elsewhere and not timed:
            out.append(head + f"not comparable yet (DAMA was timed on {' and '.join(map(str, tx))}; "
                       f"{', '.join(y['method'] for y in elsewhere)} only on other machines)")
            continue
        if peers:
            fastest = min(timed, key=lambda y: timings(y)[on][0])
            (sx, lx), (sf, lf) = tx[on], timings(fastest)[on]
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
                f"DAMA − LoRA {diff_ci(c)}, p = {c['p_bootstrap']:.2f}: "
                + ("a significant difference" if c["p_bootstrap"] < SIGNIFICANCE else "not a significant difference"))
            out.append(f"DAMA English forgetting ≤ LoRA's ({x['language']}, {x['hours']}): "
                       f"{'reached' if ok else 'not reached'} (DAMA {points(x['forgetting_en'])} vs LoRA "
                       f"{points(lo['forgetting_en'])} WER points"
                       + (f"; on {words:.0f} English words one word is {100 / words:.1f} points" if words else "")
                       + paired + ")")
    return out


def _time_verdict(sx: float, lx: list[float], sf: float, lf: list[float]) -> tuple[str, str]:
    """DAMA's time per epoch (sx; later epochs lx) against the fastest peer's: the verdict and its noise."""
    margin = timing_margin(lx, lf)
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
            wer_ok, fg_ok = gap <= GOAL_WER_POINTS + SLACK, d["forgetting"] <= limit + SLACK
            short = [f"{name} over {x['seeds']} of {n_seeds} seeds" for name, x in (("DAMA", d), ("LoRA", lo))
                     if x["seeds"] < n_seeds]
            out.append(
                head + f"**{'met' if wer_ok and fg_ok else 'not met'}**"
                + (f" (provisional: {', '.join(short)})" if short else "")
                + f" — DAMA lr {lr_label(d['lr'])} and LoRA lr {lr_label(lo['lr'])}, each chosen on validation: "
                f"test WER {d['wer']:.3f} vs {lo['wer']:.3f}, DAMA {points(gap)} points "
                f"({'within' if wer_ok else 'more than'} {100 * GOAL_WER_POINTS:g}); forgetting on all control "
                f"clips {points(d['forgetting'])} vs {points(lo['forgetting'])} points "
                f"({'at most' if fg_ok else 'more than'} half of LoRA's: ≤ {points(limit)})")
    return out


__all__ = ["GOAL_FORGETTING_SHARE", "GOAL_WER_POINTS", "PARAMS_SHARE", "SIGNIFICANCE", "SLACK", "TARGET_HOURS",
           "goal_verdicts", "targets", "verdicts"]
