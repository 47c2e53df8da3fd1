"""The report's plots, from the results dictionary: WER against hours and against trainable
parameters, cost per epoch and memory, DAMA's ranks, and (tuned grids) the accuracy–forgetting
frontier. Every plot colours a method the same way (:func:`method_colours`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from dama.bench.report.results import timings
from dama.outputs import atomic_write_bytes

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


def _save(fig, path: Path, made: list[Path], layout: bool = True) -> None:
    import matplotlib.pyplot as plt

    if layout:
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    atomic_write_bytes(path, buf.getvalue())
    plt.close(fig)
    made.append(path)


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
        labels = list(dict.fromkeys(lab for g in cost.values() for x in g for lab in timings(x)))
        width = 0.8 / max(len(labels), 1)
        hatches = ("", "///", "...", "xxx", "\\\\", "ooo")
        for i, lab in enumerate(labels):
            ys = [np.mean([timings(x)[lab][0] for x in cost[m] if lab in timings(x)] or [0]) for m in names]
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


__all__ = ["EXTRA_COLOURS", "HOURS_MARKERS", "METHOD_COLOURS", "frontier_plot", "hours_markers", "method_colours",
           "plots"]
