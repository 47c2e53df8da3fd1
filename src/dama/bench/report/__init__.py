"""Collect a grid's run folders into one results file, and write the report from it.

Every number in ``report.md`` is read from ``results.json`` (written here from the run folders), so
the report can be regenerated without re-running anything (``dama bench --report-only``). One concern
per module:

- :mod:`~dama.bench.report.results`: reading the runs and the statistics on them (intervals, paired
  tests, forgetting, the accuracy–forgetting frontier); ``results.json`` and ``results.csv``.
- :mod:`~dama.bench.report.findings`: what the results say — verdicts, the issue's targets, the goal
  of a tuned grid — with every threshold a named constant.
- :mod:`~dama.bench.report.text`: how a value, an interval or a paired difference is written; the
  README's tables (``benchmarks/summarize.py``) use the same functions.
- :mod:`~dama.bench.report.figures`: the plots, one colour per method in every one.
- :mod:`~dama.bench.report.markdown`: ``report.md``.

A grid with ``tune`` (learning rates chosen on validation) adds, per language: the validation WER of
every candidate rate with the chosen one marked; the chosen settings' test WER and forgetting; every
grid point (method x rate) in the accuracy–forgetting plane with its Pareto frontier
(``frontier.png``, :func:`pareto`); whether DAMA is on it; and the issue's goal per language
(:func:`goal_verdicts`).
"""

from __future__ import annotations

from dama.bench.report.figures import METHOD_COLOURS, hours_markers, method_colours, plots
from dama.bench.report.findings import goal_verdicts, targets, verdicts
from dama.bench.report.markdown import frontier_lines, tune_sections, write_report
from dama.bench.report.results import (
    collect,
    comparison,
    comparison_pairs,
    grid_points,
    pareto,
    read_speed,
    write_results,
    zero_shot_tokens,
)
from dama.bench.report.text import seed_note, seeds_cell, time_left

__all__ = ["METHOD_COLOURS", "collect", "comparison", "comparison_pairs", "frontier_lines", "goal_verdicts",
           "grid_points", "hours_markers", "method_colours", "pareto", "plots", "read_speed", "seed_note",
           "seeds_cell", "targets", "time_left", "tune_sections", "verdicts", "write_report", "write_results",
           "zero_shot_tokens"]
