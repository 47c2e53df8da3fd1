"""Run a benchmark grid: each cell is one `dama train` run (and one forgetting evaluation),
each in its own process so that peak memory is per run and one failure does not stop the rest.

OUT/runs/<language>-<hours>-<method>-s<seed>/   a normal `dama train` run directory
OUT/runs/<language>-<hours>-<method>-lr-3e-4-s<seed>/   a tune candidate at another rate than the method's own
OUT/runs/<language>-zero-shot/                  the untrained base (hours and seed do not apply)
OUT/runs/.encoder-cache/                        encoder outputs shared by every run on the same clips
OUT/logs/<run>.log                              the run's console output

A cell is finished when its ``results.json`` (and, with a control set, ``forgetting.json``)
exists; re-running the grid skips finished cells and resumes interrupted ones.

With ``tune`` (see :mod:`dama.bench.config`) the grid is not fixed in advance: a tuned method's later
seeds run at the rate its candidates' validation WER chooses (:func:`choose`), which is known only once
they have all finished. :func:`cells` recomputes that from the finished runs every time it is called,
so a restarted grid makes the same choice, and until then those seeds are ``pending`` cells: counted,
listed by ``--dry-run``, never run and without a folder.

The grid deletes only one thing: a cell's run folder that was started but never checkpointed, and only
after checking that it is a folder directly inside the runs folder that holds nothing but what
`dama train` and `dama eval` write (see :func:`remove_unstarted`). Names from the config are checked
(:func:`dama.bench.config.check_name`) before they become folder names.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from dama.bench.config import NAME_PATTERN, BenchConfig, LanguageSpec, lr_label, per_language
from dama.errors import DamaError
from dama.outputs import atomic_write_text
from dama.runs import RunFolder
from dama.safeio import FileError, FolderLock, FolderLockedError, read_json


class CellRun(RunFolder):
    """A grid cell's run folder: what `dama train` writes (:class:`dama.runs.RunFolder` names them) plus
    the grid's own forgetting evaluation of the control clips. A folder holding anything else is not
    (only) a run's, and the grid never deletes it."""

    FORGETTING: ClassVar[str] = "forgetting.json"
    FORGETTING_PARTIAL: ClassVar[str] = "forgetting.json.partial"  # `dama eval --json` output until complete
    FORGETTING_HYPS: ClassVar[str] = "forgetting" + RunFolder.HYPS_SUFFIX
    NAMES: ClassVar[frozenset[str]] = RunFolder.NAMES | {FORGETTING, FORGETTING_PARTIAL, FORGETTING_HYPS}

    @classmethod
    def is_own_name(cls, name: str) -> bool:
        """Also any per-utterance transcript file (``*.hyps.jsonl``)."""
        return super().is_own_name(name) or name.endswith(cls.HYPS_SUFFIX)


@dataclass(frozen=True)
class Cell:
    language: LanguageSpec
    method: str
    hours: float | None
    seed: int
    lr: float | None = None  # a tune candidate's rate when it is not the method's own (None: the method's own)
    pending: bool = False  # a tuned method's later seed before its rate is chosen: no folder, no command yet

    @property
    def hours_label(self) -> str:
        return "all" if self.hours is None else f"{self.hours:g}h"

    @property
    def setting(self) -> str:
        """The method and, at another rate than its own, the rate: the part of the name between the hours
        and the seed (``dama``, ``dama-lr-3e-4``; ``dama-lr-chosen`` while pending)."""
        if self.pending:
            return f"{self.method}-lr-chosen"
        return self.method if self.lr is None else f"{self.method}-lr-{lr_label(self.lr)}"

    @property
    def name(self) -> str:
        if self.method == "zero-shot":
            return f"{self.language.name}-zero-shot"
        return f"{self.language.name}-{self.hours_label}-{self.setting}-s{self.seed}"


def cell_rate(cfg: BenchConfig, cell: Cell) -> float | None:
    """The learning rate a cell trains at (None: zero-shot trains nothing, a pending cell has none yet)."""
    if cell.method == "zero-shot" or cell.pending:
        return None
    return cell.lr if cell.lr is not None else cfg.own_rate(cell.method)


def candidates(cfg: BenchConfig, lang: LanguageSpec, hours: float | None, method: str) -> list[Cell]:
    """A tuned method's candidate runs at one (language, hours): one per rate, at the tune seed; the one at
    the method's own rate is its plain run (so an untuned grid's finished run counts)."""
    assert cfg.tune is not None
    return [Cell(lang, method, hours, cfg.tune.seed, lr=None if cfg.is_own_rate(method, x) else float(x))
            for x in cfg.tune.lr]


@dataclass(frozen=True)
class Choice:
    """A tuned method's rate at one (language, hours): its candidates, each with its rate and validation
    WER (None: not finished yet), and the chosen rate (None until every candidate has finished)."""

    language: LanguageSpec
    hours: float | None
    method: str
    candidates: tuple[tuple[Cell, float, float | None], ...]
    rate: float | None

    @property
    def finished(self) -> int:
        return sum(v is not None for _, _, v in self.candidates)

    @property
    def chosen(self) -> Cell | None:
        """The candidate run at the chosen rate (it is the chosen setting's run at the tune seed)."""
        return next((c for c, x, _ in self.candidates if x == self.rate), None) if self.rate is not None else None


def choose(cfg: BenchConfig, lang: LanguageSpec, hours: float | None, method: str) -> Choice:
    """The rate whose candidate has the lowest validation WER (``best_val_wer`` in its results.json; the
    test split is never looked at), once all candidates have finished; ties go to the lower rate. Read
    from the run folders each time, so a restarted grid makes the same choice."""
    found = []
    for cell in candidates(cfg, lang, hours, method):
        val = None
        if is_finished(cfg, cell):
            val = _val_wer(cfg, cell)
        found.append((cell, cell_rate(cfg, cell), val))
    rate = None
    if all(v is not None for _, _, v in found):
        rate = min(found, key=lambda f: (f[2], f[1]))[1]
    return Choice(lang, hours, method, tuple(found), rate)


def _val_wer(cfg: BenchConfig, cell: Cell) -> float:
    """A finished candidate's validation WER; a run without one cannot take part in the choice."""
    path = cell_run(cfg, cell).results_path
    try:
        val = json.loads(path.read_text()).get("best_val_wer")
    except (OSError, ValueError, AttributeError):
        val = None
    if isinstance(val, bool) or not isinstance(val, int | float):
        raise DamaError(f"bench: tune: {path} has no validation WER (best_val_wer), so the learning rate of "
                        f"{cell.method} cannot be chosen on it; the run was made without validation (val: none?). "
                        f"Delete {path.parent} to redo it with the grid's settings.")
    return float(val)


def choices(cfg: BenchConfig) -> list[Choice]:
    """Every tuned (language, hours, method) of the grid with its current choice, in grid order."""
    if cfg.tune is None:
        return []
    return [choose(cfg, lang, hours, m) for hours in cfg.hours for lang in cfg.languages
            for m in cfg.methods if cfg.is_tuned(m)]


def cells(cfg: BenchConfig) -> list[Cell]:
    """The grid in run order: zero-shot per language, then by amount, seed, language, method, so a
    partly run grid already holds every method on every language at the first amount and seed.
    With ``tune``, the tune seed comes first and a tuned method stands for its candidates there (so each
    language's candidates finish in turn); at the other seeds it is the chosen rate's run, or a pending
    cell until the choice is made."""
    out = [Cell(lang, "zero-shot", None, cfg.seeds[0]) for lang in cfg.languages if "zero-shot" in cfg.methods]
    seeds = cfg.seeds if cfg.tune is None else [cfg.tune.seed, *(s for s in cfg.seeds if s != cfg.tune.seed)]
    for hours in cfg.hours:
        for seed in seeds:
            for lang in cfg.languages:
                for m in cfg.methods:
                    if m == "zero-shot":
                        continue
                    if not cfg.is_tuned(m):
                        out.append(Cell(lang, m, hours, seed))
                    elif seed == cfg.tune.seed:
                        out += candidates(cfg, lang, hours, m)
                    else:
                        chosen = choose(cfg, lang, hours, m).chosen
                        out.append(Cell(lang, m, hours, seed, lr=chosen.lr) if chosen
                                   else Cell(lang, m, hours, seed, pending=True))
    return out


def _matching(grid: list[Cell], pattern: str) -> list[Cell]:
    return [c for c in grid if fnmatch.fnmatchcase(c.name, pattern)]


def select(grid: list[Cell], only: list[str], strict: bool = True) -> list[Cell]:
    """The cells whose names match any of the glob patterns, in the order the patterns are given
    (grid order within one pattern): one grid can be split across machines, or run in another order.
    ``strict``: a pattern that matches nothing is an error (a typo), not an empty selection."""
    picked: list[Cell] = []
    for pattern in only:
        hits = [c for c in _matching(grid, pattern) if c not in picked]
        if strict and not hits and not any(fnmatch.fnmatchcase(c.name, pattern) for c in picked):
            names = ", ".join(c.name for c in grid[:4])
            raise DamaError(f"bench --only: {pattern!r} matches no run of this grid (runs are named like {names} ...; "
                            "`dama bench --config ... --dry-run` lists the ones still to do)")
        picked += hits
    return picked


def run_dir(cfg: BenchConfig, cell: Cell) -> Path:
    """The cell's run folder: always a direct child of the runs folder (the config's names are checked
    when it is loaded; a Cell built by hand with a name like "../x" is refused here). A pending cell has
    none: its name is not yet known."""
    if cell.pending:
        raise DamaError(f"bench: {cell.name} has no run folder until its learning rate is chosen")
    if not NAME_PATTERN.fullmatch(cell.name) or ".." in cell.name:
        raise DamaError(f"bench: run name {cell.name!r} is not a usable folder name (check the config's "
                        "language and method names)")
    return cfg.runs_dir / cell.name


def cell_run(cfg: BenchConfig, cell: Cell) -> CellRun:
    return CellRun(run_dir(cfg, cell))


def _is_run_content(d: Path) -> bool:
    """Whether everything in ``d`` is what a dama run writes, and its config.json (if any) is dama's."""
    run = CellRun(d)
    if not all(run.is_own_name(p.name) for p in d.iterdir()):
        return False
    if run.config_path.exists():
        try:
            return run.is_run_config(read_json(run.config_path, "run config"))
        except FileError:
            return False
    return True


def deletable_problem(cfg: BenchConfig, cell: Cell) -> str | None:
    """Why the cell's unfinished run folder may not be deleted (None: it may). Deleting is only for a
    folder that is strictly inside this grid's runs folder (after resolving links: a link out of it
    is refused) and that holds nothing but a run's own files."""
    d = run_dir(cfg, cell)
    runs = cfg.runs_dir.resolve()
    if d.is_symlink():
        return f"{d} is a symbolic link, not a run folder the grid made"
    real = d.resolve()
    if real.parent != runs or not real.is_relative_to(runs):
        return f"{d} resolves to {real}, outside the grid's runs folder {runs}"
    if not real.is_dir():
        return f"{d} is not a folder"
    if not _is_run_content(real):
        return (f"{d} holds files `dama train` does not write ({', '.join(sorted(p.name for p in real.iterdir()))}),"
                " so it is not (only) an unfinished run")
    return None


def remove_unstarted(cfg: BenchConfig, cell: Cell) -> None:
    """Delete a cell's run folder that has neither results nor a checkpoint (nothing to lose), after
    checking it is one the grid owns (see :func:`deletable_problem`); otherwise refuse."""
    run = cell_run(cfg, cell)
    d = run.path
    if not d.exists() and not d.is_symlink():
        return
    if run.is_finished() or run.has_checkpoint():
        raise DamaError(f"bench: {d} holds a finished or resumable run; not deleting it")
    problem = deletable_problem(cfg, cell)
    if problem:
        raise DamaError(f"bench: {problem}. The grid would delete and redo this unfinished run; move that "
                        "folder away (or give the config another runs/out folder) and re-run.")
    try:  # refused, not deleted, while another process (a `dama bench --only`, a `dama train`) writes it
        with FolderLock(d, hint="not deleting it; wait for that process (or stop it) and re-run"):
            shutil.rmtree(d.resolve())
    except FolderLockedError as e:
        raise DamaError(f"bench: {e}") from None


def is_finished(cfg: BenchConfig, cell: Cell) -> bool:
    if cell.pending:
        return False
    run = cell_run(cfg, cell)
    return run.is_finished() and (cfg.control is None or (run.path / run.FORGETTING).is_file())


def _flags(opts: dict) -> list[str]:
    out = []
    for k, v in opts.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            out.append(flag)
        elif v is False or v is None:
            continue
        else:
            out += [flag, ",".join(map(str, v)) if isinstance(v, list | tuple) else str(v)]
    return out


def _dama(cfg: BenchConfig) -> list[str]:
    """How to call the dama CLI: this interpreter, or the configured launcher (accelerate launch)."""
    return [*cfg.launcher, "-m", "dama"] if cfg.launcher else [sys.executable, "-m", "dama"]


def train_command(cfg: BenchConfig, cell: Cell, resume: bool = False) -> list[str]:
    """The cell's `dama train` call. A tune candidate at another rate adds ``--lr`` last (where an ``lr``
    variant has it, so the ablation grid's ``dama-lr-3e-3`` runs match). Zero-shot on a language Whisper
    lacks decodes with an existing token (:meth:`LanguageSpec.zero_shot_language`), not an untrained one."""
    lang = cell.language
    if cell.pending:
        raise DamaError(f"bench: {cell.name} has no command until its learning rate is chosen")
    language, language_name = lang.language, lang.language_name
    if cell.method == "zero-shot" and lang.new_language():
        language, language_name = lang.zero_shot_language(), None
    argv = [*_dama(cfg), "train", "--method", cfg.base_method(cell.method), "--data", lang.train,
            "--out", str(run_dir(cfg, cell)), "--model", cfg.model, "--seed", str(cell.seed),
            "--data-seed", str(cfg.data_seed)]
    if cell.hours is not None and cell.method != "zero-shot":
        argv += ["--hours", f"{cell.hours:g}"]
    for flag, value in (("--val", lang.val), ("--test", lang.test), ("--language", language),
                        ("--language-name", language_name), ("--data-root", cfg.data_root)):
        if value:
            argv += [flag, value]
    if cfg.test_limit:
        argv += ["--test-limit", str(cfg.test_limit)]
    opts = cfg.options(cell.method)
    if cell.lr is not None:
        opts = {**opts, "lr": cell.lr}
    argv += _flags({k: per_language(v, lang.name) for k, v in opts.items()})
    return argv + (["--resume"] if resume else [])


def forgetting_command(cfg: BenchConfig, cell: Cell) -> list[str]:
    d = run_dir(cfg, cell)
    argv = [*_dama(cfg), "eval", "--data", cfg.control, "--model", cfg.model,
            "--hyps", str(d / CellRun.FORGETTING_HYPS), "--json", str(d / CellRun.FORGETTING_PARTIAL),
            "--cache-dir", str(cfg.train.get("cache_dir") or d.parent / ".encoder-cache")]
    if cell.method != "zero-shot":
        argv += ["--adapter", str(d)]
    argv += _flags({k: cfg.train[k] for k in ("device", "threads") if k in cfg.train})
    if cfg.control_per_language:
        argv += ["--limit-per-language", str(cfg.control_per_language)]
    if cfg.data_root:
        argv += ["--data-root", cfg.data_root]
    return argv


def _settings_path(cfg: BenchConfig, cell: Cell) -> Path:
    return cfg.logs_dir / f"{cell.name}.settings.json"


def _settings(cfg: BenchConfig, cell: Cell) -> list[str]:
    """What makes a cell's result: its train command (the interpreter and --resume aside)."""
    return train_command(cfg, cell)[len(_dama(cfg)):]


def _comparable(argv: list[str], here: Path | None = None) -> list[str]:
    """Settings without the run's own folder, so a finished run copied into another grid still matches.
    With ``here`` (where the run folder is now), paths the config resolved inside the checkout the run was
    made in (e.g. ``--allocation /old/checkout/benchmarks/probe/x.json``) are read as the same paths in
    this one: settings files are committed with absolute paths, and a clone elsewhere must still match."""
    out = list(argv)
    if "--out" not in out:
        return out
    i = out.index("--out")
    made_in = Path(out[i + 1])
    del out[i:i + 2]
    if here is None or made_in == here:
        return out
    old_root, new_root = _relocation(made_in, here)
    return [str(new_root / Path(a).relative_to(old_root)) if a.startswith("/") and Path(a).is_relative_to(old_root)
            else a for a in out]


def _relocation(old: Path, new: Path) -> tuple[Path, Path]:
    """The two checkouts' roots: ``old`` and ``new`` with their common trailing parts (``benchmarks/
    cpu-whisper-base/runs/CELL``) taken off, e.g. (/work/main, /work/clone)."""
    a, b = old.parts, new.parts
    n = 0
    while n < min(len(a), len(b)) - 1 and a[-1 - n] == b[-1 - n]:
        n += 1
    return Path(*a[:len(a) - n]), Path(*b[:len(b) - n])


def made_elsewise(cfg: BenchConfig, cell: Cell) -> bool:
    """Whether the cell's run folder holds a run made with other settings than this grid gives."""
    if cell.pending:
        return False
    path = _settings_path(cfg, cell)
    here = run_dir(cfg, cell)
    return (here.exists() and path.is_file()
            and _comparable(json.loads(path.read_text()), here) != _comparable(_settings(cfg, cell)))


def check_settings(cfg: BenchConfig, grid: list[Cell] | None = None) -> None:
    """A run made under other settings (epochs, data, options...) must not pass for this grid's
    (``grid``: only these cells; default every cell of the grid)."""
    stale = [cell.name for cell in (cells(cfg) if grid is None else grid) if made_elsewise(cfg, cell)]
    if stale:
        raise DamaError(f"bench: {len(stale)} run(s) in {cfg.runs_dir} were made with other settings than this "
                        f"config gives ({', '.join(stale[:5])}{' ...' if len(stale) > 5 else ''}; their settings are "
                        f"in {cfg.logs_dir}/<run>.settings.json). "
                        "Delete those run folders to redo them, or give the config another out folder.")


def _run_logged(argv: list[str], log_path: Path) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("a", encoding="utf-8") as f:
        f.write(f"\n$ {' '.join(argv)}\n")
        f.flush()
        return subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, env=env).returncode


def run_cell(cfg: BenchConfig, cell: Cell, log=print) -> bool:
    """Train (or resume) one cell, then measure forgetting. Returns whether it finished."""
    run = cell_run(cfg, cell)
    d = run.path
    log_path = cfg.logs_dir / f"{cell.name}.log"
    if not run.is_finished():
        has_checkpoint = run.has_checkpoint()
        if not has_checkpoint:
            remove_unstarted(cfg, cell)  # started but never checkpointed: nothing to lose, if it is a run's
        atomic_write_text(_settings_path(cfg, cell), json.dumps(_settings(cfg, cell)))  # never half a file
        if _run_logged(train_command(cfg, cell, resume=has_checkpoint), log_path):
            log(f"  {cell.name}: training failed; see {log_path}")
            return False
    if cfg.control and not (d / run.FORGETTING).is_file():
        if _run_logged(forgetting_command(cfg, cell), log_path):
            log(f"  {cell.name}: forgetting evaluation failed; see {log_path}")
            return False
        (d / run.FORGETTING_PARTIAL).replace(d / run.FORGETTING)
    return True


def run_grid(cfg: BenchConfig, log=print, dry_run: bool = False, only: list[str] | None = None,
             executor: str = "local") -> list[Cell]:
    """Run every unfinished cell (or those named by ``only``, see :func:`select`); returns the cells that
    failed (the others are finished). Callers check first that finished runs match the config
    (``check_settings``), as `dama bench` does. With ``tune`` the grid is recomputed after each run: a
    finished candidate may decide a rate, and with it the runs of the other seeds. ``executor``: where
    cells run (:mod:`dama.bench.executors`): here one at a time, or as jobs, several at once."""
    from dama.bench.executors import make_engine

    grid = cells(cfg)
    done = {c.name for c in grid if is_finished(cfg, c)}
    todo = [c for c in (select(grid, only) if only else grid) if c.name not in done]
    log(f"bench {cfg.out}: {len(grid)} runs, {len(done)} already finished, "
        f"{len(todo)} to run{' (--only)' if only else ''}")
    if dry_run:
        for line in tune_lines(cfg):
            log(line)
        for c in todo:
            log("  " + (_pending_line(cfg, c) if c.pending else " ".join(train_command(cfg, c))))
        secs, known = estimate_seconds(cfg, todo, [c for c in grid if c.name in done])
        if todo:
            log(f"estimate: about {secs / 3600:.1f} h for {known} of {len(todo)} runs at the speed of the finished "
                "runs of the same method, this machine's where it has any: training scaled by clips and epochs, "
                "testing by test clips; forgetting not counted)"
                + (f"; {len(todo) - known} have no such finished run yet" if known < len(todo) else ""))
        return []
    engine = make_engine(executor, cfg)
    check_deletable(cfg, [c for c in todo if not c.pending])
    cfg.out.mkdir(parents=True, exist_ok=True)
    if engine is not None:
        return _run_on_engine(cfg, engine, grid, only, log)
    failed: list[Cell] = []
    tried: set[str] = set()
    known = {c.name for c in grid if not c.pending}  # concrete runs whose settings are checked
    decided = {_key(ch) for ch in choices(cfg) if ch.rate is not None}
    i = 0
    while True:
        if cfg.tune is not None and i:  # a finished candidate may have decided a rate: new runs to do
            grid = _regrid(cfg, known, decided, log)
        picked = select(grid, only, strict=False) if only else grid
        left = [c for c in picked if c.name not in tried and not is_finished(cfg, c)]  # pending ones too
        now = [c for c in left if not c.pending]
        if not now:
            break
        cell, i = now[0], i + 1
        total = i - 1 + len(left)  # a chosen rate's run that was already there (shared) drops out of the count
        tried.add(cell.name)
        t = time.perf_counter()
        log(f"[{i}/{total}] {cell.name} ...")
        if run_cell(cfg, cell, log):
            msg = f"[{i}/{total}] {cell.name} finished in {time.perf_counter() - t:.0f} s"
            rest = [c for c in picked if c.name not in tried and not is_finished(cfg, c)]
            if rest:  # the time left, per method from what has finished (as --dry-run estimates)
                left, n = estimate_seconds(cfg, rest, [c for c in grid if is_finished(cfg, c)])
                msg += f" (about {left / 60:.0f} min left" + (f"; {len(rest) - n} not estimable yet)"
                                                             if len(rest) > n else ")")
            log(msg)
        else:
            failed.append(cell)
    return failed


def _regrid(cfg: BenchConfig, known: set[str], decided: set, log) -> list[Cell]:
    """The grid again, after a finished candidate may have decided a rate: its new runs checked (a run of
    the chosen rate already there must be this grid's too) and added to ``known``; each newly decided
    rate logged once (``decided``)."""
    grid = cells(cfg)
    new = [c for c in grid if not c.pending and c.name not in known]
    check_settings(cfg, new)
    check_deletable(cfg, [c for c in new if not is_finished(cfg, c)])
    known |= {c.name for c in new}
    for ch in choices(cfg):
        if ch.rate is not None and _key(ch) not in decided:
            decided.add(_key(ch))
            log(choice_line(ch))
    return grid


def _run_on_engine(cfg: BenchConfig, engine, grid: list[Cell], only: list[str] | None, log) -> list[Cell]:
    """:func:`run_grid`'s loop with cells as jobs: up to ``engine.max_parallel`` in flight; when one ends,
    the grid is recomputed (``tune`` may have decided a rate) and what became runnable is submitted."""
    failed: list[Cell] = []
    tried: set[str] = set()
    known = {c.name for c in grid if not c.pending}
    decided = {_key(ch) for ch in choices(cfg) if ch.rate is not None}
    while True:
        if cfg.tune is not None and tried:
            grid = _regrid(cfg, known, decided, log)
        picked = select(grid, only, strict=False) if only else grid
        now = [c for c in picked if c.name not in tried and not c.pending and not is_finished(cfg, c)]
        for cell in now[: engine.free]:
            tried.add(cell.name)
            engine.submit(cfg, cell)
            log(f"{cell.name}: submitted to {engine.name} ({len(engine.running)} in flight)")
        if not engine.running:
            return failed
        cell, ok, seconds = engine.wait_one(log)
        if ok:
            log(f"{cell.name} finished in {seconds:.0f} s")
        else:
            failed.append(cell)
            log(f"  {cell.name}: failed; see {cfg.logs_dir / (cell.name + '.log')}")


def _key(ch: Choice) -> tuple:
    return ch.language.name, ch.hours, ch.method


def choice_line(ch: Choice) -> str:
    """One tuned (language, hours, method): the chosen rate and the validation WERs it was chosen on,
    or how many candidates have finished."""
    head = f"tune: {ch.language.name} {'all' if ch.hours is None else f'{ch.hours:g}h'} {ch.method}: "
    vals = ", ".join(f"{lr_label(x)} {'–' if v is None else f'{v:.3f}'}" for _, x, v in ch.candidates)
    if ch.rate is None:
        return head + f"{ch.finished} of {len(ch.candidates)} candidates finished (validation WER: {vals})"
    return head + f"lr {lr_label(ch.rate)} chosen on validation WER ({vals})"


def tune_lines(cfg: BenchConfig) -> list[str]:
    """The state of every learning-rate choice, for --dry-run."""
    return [choice_line(ch) for ch in choices(cfg)]


def _pending_line(cfg: BenchConfig, cell: Cell) -> str:
    """What --dry-run says of a later seed whose rate is not chosen yet."""
    ch = choose(cfg, cell.language, cell.hours, cell.method)
    return (f"{cell.name}: seed {cell.seed} of {cell.method} at the rate chosen on validation, once its "
            f"{len(ch.candidates)} candidates ({', '.join(c.name for c, _, _ in ch.candidates)}) have finished "
            f"({ch.finished} of {len(ch.candidates)} so far)")


def check_deletable(cfg: BenchConfig, todo: list[Cell]) -> None:
    """Before any run starts: every unfinished, never checkpointed run folder the grid will delete and
    redo must be one it may delete, so a refusal comes at once and not hours into the grid."""
    bad = []
    for cell in todo:
        run = cell_run(cfg, cell)
        if (run.path.exists() or run.path.is_symlink()) and not run.is_finished() and not run.has_checkpoint():
            problem = deletable_problem(cfg, cell)
            if problem:
                bad.append(problem)
    if bad:
        raise DamaError(f"bench: {len(bad)} unfinished run folder(s) would be deleted and redone, but are not "
                        f"recognisably the grid's own: {'; '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}. "
                        "Move them away (or give the config another runs/out folder) and re-run.")


def _epochs(cfg: BenchConfig, cell: Cell) -> int:
    from dama.train.config import TrainConfig

    return int(cfg.options(cell.method).get("epochs", TrainConfig.epochs))


def _data_sizes(cfg: BenchConfig, lang: LanguageSpec, cache: dict) -> tuple[float | None, int | None]:
    """(train clips per hour, test clips) of a language from its data, for a language none of whose runs
    has finished yet (transcripts and audio headers only); None where a split is unreadable."""
    if lang.name not in cache:
        from dama.data.recipes import RECIPES
        from dama.data.spec import load_data

        per_hour = n_test = None
        try:
            m = load_data(lang.train, cfg.data_root)
            m.fill_durations()
            per_hour = len(m) / m.hours if m.hours else None
        except DamaError:
            pass
        test = lang.test
        name = lang.train.partition(":")[0]
        if test is None and "," not in lang.train and name in RECIPES and "test" in RECIPES[name].splits:
            test = f"{name}:test"  # what `dama train` tests on by default
        if test and test != "none":
            try:
                n_test = len(load_data(test, cfg.data_root))
                n_test = min(n_test, cfg.test_limit) if cfg.test_limit else n_test
            except DamaError:
                pass
        cache[lang.name] = (per_hour, n_test)
    return cache[lang.name]


def _train_clips(cfg: BenchConfig, lang, cache: dict) -> int | None:
    """Clips in a language's whole train split (reads its transcripts, not its audio); None if unreadable."""
    if lang.name not in cache:
        try:
            from dama.data.spec import load_data

            cache[lang.name] = len(load_data(lang.train, cfg.data_root))
        except DamaError:
            cache[lang.name] = None
    return cache[lang.name]


def estimate_seconds(cfg: BenchConfig, todo: list[Cell], finished: list[Cell],
                     here: str | None = None) -> tuple[float, int]:
    """How long ``todo`` should take, from finished runs. A cell with finished peers (same language, method,
    amount and epochs) takes their median; otherwise runs of the same method elsewhere are scaled: their
    training time by training clips x epochs, their evaluation time by test clips. Full fine-tuning is
    several times an adapter's cost, so methods are never mixed. Machines differ severalfold in speed, so
    runs made on this machine (``here``, a device name; default the one this process runs on) are used
    when there are any for the cell, the others only when there are none. Returns (seconds, cells estimated)."""
    import statistics

    if here is None:  # the name runs made here record
        from dama.machine import default_device, device_name

        here = device_name(default_device())
    runs = []
    for c in finished:
        run = cell_run(cfg, c)
        res = json.loads(run.results_path.read_text())
        conf = run.config_path
        made_on = json.loads(conf.read_text()).get("device_name") if conf.is_file() else None
        if res.get("total_seconds"):
            runs.append((c, res, made_on))
    per_hour = {c.language.name: r["train_utterances"] / r["train_hours"] for c, r, _ in runs
                if r.get("train_utterances") and r.get("train_hours")}
    n_test = {c.language.name: r["n"] for c, r, _ in runs if r.get("n")}
    sizes: dict[str, tuple] = {}
    for lang in {c.language.name: c.language for c in todo}.values():  # no run of it yet: its data's sizes
        if runs and (lang.name not in per_hour or lang.name not in n_test):
            ph, nt = _data_sizes(cfg, lang, sizes)
            if ph and lang.name not in per_hour:
                per_hour[lang.name] = ph
            if nt and lang.name not in n_test:
                n_test[lang.name] = nt
    whole: dict[str, int | None] = {}

    def clips(c: Cell) -> float | None:  # training clips the cell will see
        if c.hours is None:
            return _train_clips(cfg, c.language, whole)
        return c.hours * per_hour[c.language.name] if c.language.name in per_hour else None

    def guesses(c: Cell, pool: list) -> list[float]:
        method = cfg.base_method(c.method)
        same = [r["total_seconds"] for p, r, _ in pool if p.language.name == c.language.name
                and p.method == c.method and p.hours == c.hours and _epochs(cfg, p) == _epochs(cfg, c)]
        if not same and c.language.name in n_test:
            for p, r, _ in pool:
                if cfg.base_method(p.method) != method or not r.get("n"):
                    continue
                train = r.get("train_seconds") or 0.0
                scale = 1.0
                if method != "zero-shot":
                    n = clips(c)
                    if n is None or not r.get("train_utterances"):
                        continue
                    scale = n / r["train_utterances"] * _epochs(cfg, c) / max(_epochs(cfg, p), 1)
                same.append(train * scale + (r["total_seconds"] - train) * n_test[c.language.name] / r["n"])
        return same

    local = [x for x in runs if x[2] == here]
    total, known = 0.0, 0
    for c in todo:
        same = guesses(c, local) or guesses(c, runs)
        if same:
            total += statistics.median(same)
            known += 1
    return total, known


def check_launcher(cfg: BenchConfig) -> None:
    if cfg.launcher and shutil.which(cfg.launcher[0]) is None:
        raise DamaError(f"bench: launcher {cfg.launcher[0]!r} not found on PATH")


__all__ = ["Cell", "CellRun", "Choice", "candidates", "cell_rate", "cells", "check_deletable", "check_settings",
           "choice_line", "choices", "choose", "deletable_problem", "estimate_seconds", "forgetting_command",
           "is_finished", "made_elsewise", "remove_unstarted", "run_cell", "run_dir", "run_grid", "select",
           "train_command", "tune_lines"]
