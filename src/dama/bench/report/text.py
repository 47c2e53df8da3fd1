"""How the report's numbers read, in one place: the Markdown report and the README's tables
(``benchmarks/summarize.py``) format every value, interval and paired difference with these, so the
two never write the same number two ways. ``minus``: the README prints a real minus sign (U+2212),
the report an ASCII one."""

from __future__ import annotations

MINUS = "\u2212"  # the README's minus sign
NONE = "–"  # a value not measured (yet)


def fmt(x, spec=".3f", none=NONE) -> str:
    return none if x is None else format(x, spec)


def points(x: float | None, minus: str = "-") -> str:
    """A WER difference (or forgetting) in points, signed: 0.012 -> "+1.2"."""
    return NONE if x is None else f"{100 * x:+.1f}".replace("-", minus)


def params(x) -> str:
    """A parameter count: millions from 100,000 up, else the count itself."""
    if x is None:
        return NONE
    return f"{x / 1e6:.2f} M" if abs(x) >= 1e5 else f"{x:,.0f}"


def with_ci(row: dict, key: str = "wer", bold: bool = False) -> str:
    """A rate with its 95 % interval, e.g. "0.469 [0.449, 0.487]" (``key``: wer or cer; ``bold``: the best)."""
    value = f"{row[key]:.3f}"
    return f"{f'**{value}**' if bold else value} [{row[key + '_lo']:.3f}, {row[key + '_hi']:.3f}]"


def forgetting_ci(row: dict, minus: str = "-") -> str:
    """Forgetting on all control clips in points, with its paired interval against zero-shot where the
    results have one."""
    out = points(row["forgetting"], minus)
    if row.get("forgetting_lo") is None:
        return out
    return f"{out} [{points(row['forgetting_lo'], minus)}, {points(row['forgetting_hi'], minus)}]"


def diff_ci(c: dict, minus: str = "-") -> str:
    """A paired difference (``diff`` and ``ci`` of :meth:`PairedComparison.to_dict`) in points with its
    interval, e.g. "+1.6 [+0.3, +2.9]"."""
    return f"{points(c['diff'], minus)} [{points(c['ci'][0], minus)}, {points(c['ci'][1], minus)}]"


def seeds_cell(g: dict) -> str:
    """How many seeds a row averages and, with several, each seed's own test WER."""
    w = g.get("wer_by_seed") or {}
    if len(w) < 2:
        return str(g["seeds"])
    return f"{g['seeds']} ({', '.join(format(w[k], '.3f') for k in sorted(w, key=int))})"


def seed_note(c: dict) -> str:
    """The seeds a comparison was made over, e.g. "seed 0" ("" when it used every seed of both)."""
    if c.get("all_seeds", True) or not c.get("seeds"):
        return ""
    return f"seed{'s' * (len(c['seeds']) > 1)} {', '.join(c['seeds'])}"


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


def tagged(x: float | None, machines: list[str] | None, tags: dict[str, str]) -> str:
    """A time per epoch, with its machine's letter when the grid spans several."""
    t = "+".join(tags[m] for m in machines or [] if m in tags)
    return fmt(x, ".1f") + (f" ({t})" if x is not None and t else "")


__all__ = ["MINUS", "NONE", "diff_ci", "fmt", "forgetting_ci", "machine_tags", "params", "points", "seed_note",
           "seeds_cell", "tagged", "time_left", "with_ci"]
