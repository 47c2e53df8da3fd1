"""Tuned grids made of hand-written run folders, shared by test_tune.py and test_frontier.py: every file
`dama train` and the grid's forgetting evaluation leave, with chosen validation/test/control numbers."""

from __future__ import annotations

import json
from pathlib import Path

from dama.bench.config import BenchConfig, load_config
from dama.bench.grid import run_dir

TUNED = """out: g
methods: [zero-shot, dama, lora]
languages: {sw: {train: "swahili:train", language: sw}}
hours: [0.5]
seeds: [0, 1]
control: fleurs-control
n_boot: 100
tune: {lr: [3.0e-4, 1.0e-3, 3e-3], methods: [dama, lora], seed: 0}
"""


def write_config(folder: Path, text: str = TUNED) -> BenchConfig:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.yaml").write_text(text)
    return load_config(folder / "bench.yaml")


def cell_named(cfg: BenchConfig, name: str):
    from dama.bench.grid import cells

    found = [c for c in cells(cfg) if c.name == name]
    assert found, f"{name} is not a run of the grid: {[c.name for c in cells(cfg)]}"
    return found[0]


def write_run(d: Path, *, val: float | None, test: float, control: float | None = 0.2, en: float | None = None,
              lr: float | None = 1e-3, n: int = 20, forgetting: bool = True) -> None:
    """A finished run folder: test WER ``test`` over ``n`` clips of 10 words, validation WER ``val``,
    control WER ``control`` over 10 clips (5 English, WER ``en``; default the same)."""
    d.mkdir(parents=True, exist_ok=True)
    errors = round(test * 10)
    rows = [{"id": f"u{i}", "word_errors": errors, "ref_words": 10, "char_errors": errors, "ref_chars": 50}
            for i in range(n)]
    (d / "test.hyps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = {"wer": errors / 10, "cer": errors / 50, "trainable_params": 100 if lr else 0, "peak_memory_mb": 1.0,
           "train_seconds": 3.0, "epoch_seconds": [1.0, 1.0, 1.0], "train_hours": 0.5, "train_utterances": 10,
           "n": n, "total_seconds": 60.0, "best_val_wer": val, "lr": lr}
    (d / "results.json").write_text(json.dumps(res))
    if forgetting and control is not None:
        en = control if en is None else en
        ce, ee = round(control * 10), round(en * 10)
        crow = [{"id": f"c{i}", "language": "en" if i < 5 else "de", "word_errors": ee if i < 5 else ce,
                 "ref_words": 10, "char_errors": 0, "ref_chars": 50} for i in range(10)]
        (d / "forgetting.hyps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in crow))
        wer = (5 * ee + 5 * ce) / 100
        (d / "forgetting.json").write_text(json.dumps({"wer": wer, "params": 1000,
                                                       "by_language": {"en": {"wer": ee / 10, "ref_words": 50}}}))


def finish(cfg: BenchConfig, name: str, **numbers) -> None:
    write_run(run_dir(cfg, cell_named(cfg, name)), **numbers)
