"""`dama bench`: methods x languages x amounts of data x seeds, one results file and a report."""

from __future__ import annotations

from dama.bench.config import BenchConfig, LanguageSpec, load_config
from dama.bench.grid import cells, run_grid
from dama.bench.report import collect, write_report, write_results

__all__ = ["BenchConfig", "LanguageSpec", "cells", "collect", "load_config", "run_grid", "write_report",
           "write_results"]
