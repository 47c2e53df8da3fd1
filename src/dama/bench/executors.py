"""Where a benchmark grid's cells run: here, one after another (``local``, the default), or as jobs of
an existing job engine, several at once: Slurm through submitit (``submitit-slurm``) or submitit's
local executor (``submitit-local``: the same job path, as processes on this machine).

Why submitit: the grids that outgrow one machine run on university and lab clusters, which are
Slurm; submitit is a small pure-Python package (no server, no cluster of its own to set up) whose
local executor runs the very same pickled job locally, so the Slurm path is tested here. A cell is
already a self-contained unit (:func:`dama.bench.grid.run_cell`: one ``dama train`` process, then the
forgetting evaluation, each with its own log), and everything it coordinates through lives in its run
folder on the shared filesystem: the folder's lock (a second writer fails at once), the checkpoint it
resumes from, ``results.json`` that marks it finished. So a job engine changes only where
``run_cell`` runs; resume, locking and the report are the grid's as before.

Resources come from the bench YAML's ``executor:`` mapping, passed to submitit's ``AutoExecutor``
(``timeout_min``, ``cpus_per_task``, ``gpus_per_node``, ``mem_gb``, ``slurm_partition``,
``slurm_account``, any ``slurm_*``), plus ``max_parallel``, the number of cells in flight at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from dama.errors import DamaError

EXECUTORS = ("local", "submitit-local", "submitit-slurm")


def run_cell_job(cfg, cell) -> bool:
    """The job: one cell, run where the engine put it (imported by reference, so the job's Python
    must import this dama: same environment or install)."""
    from dama.bench.grid import run_cell

    return run_cell(cfg, cell, log=print)


@dataclass
class Engine:
    """A submitit executor and the cells it is running."""

    name: str
    executor: object
    max_parallel: int
    poll_seconds: float
    running: dict = field(default_factory=dict)  # cell name -> (cell, job, start time)

    @property
    def free(self) -> int:
        return self.max_parallel - len(self.running)

    def submit(self, cfg, cell) -> None:
        job = self.executor.submit(run_cell_job, cfg, cell)
        self.running[cell.name] = (cell, job, time.perf_counter())

    def wait_one(self, log=print):
        """Block until a running cell's job ends; returns (cell, finished?, seconds)."""
        while True:
            for name, (cell, job, t) in list(self.running.items()):
                if job.done():
                    del self.running[name]
                    try:
                        ok = bool(job.result())
                    except Exception as e:  # the job itself failed (killed, timed out, could not start)
                        log(f"  {cell.name}: job {job.job_id} failed: {str(e).strip().splitlines()[-1][:300]} "
                            f"(job logs: {job.paths.stderr})")
                        ok = False
                    return cell, ok, time.perf_counter() - t
            time.sleep(self.poll_seconds)


def make_engine(name: str, cfg) -> Engine | None:
    """``None`` for ``local``; else the submitit executor with the YAML's ``executor:`` resources."""
    if name not in EXECUTORS:
        raise DamaError(f"bench --executor: {name!r}; choose from {', '.join(EXECUTORS)}")
    if name == "local":
        return None
    try:
        import submitit
    except ImportError as e:
        raise DamaError(f"bench --executor {name} needs submitit: pip install 'dama[cluster]' ({e})") from None
    opts = dict(cfg.executor)
    max_parallel = opts.pop("max_parallel", 2 if name == "submitit-local" else 16)
    if not isinstance(max_parallel, int) or max_parallel < 1:
        raise DamaError(f"bench: executor.max_parallel must be a whole number >= 1, got {max_parallel!r}")
    cluster = "local" if name == "submitit-local" else "slurm"
    if cluster == "slurm" and submitit.AutoExecutor.which() != "slurm":
        raise DamaError("bench --executor submitit-slurm: no Slurm here (sbatch not found); run it on the cluster's "
                        "login node, or use --executor submitit-local to try the same jobs on this machine")
    ex = submitit.AutoExecutor(folder=cfg.logs_dir / "submitit" / "%j", cluster=cluster)
    opts.setdefault("timeout_min", 24 * 60)
    opts.setdefault("name", "dama-bench")
    try:
        ex.update_parameters(**opts)
    except (TypeError, ValueError, NameError) as e:
        raise DamaError(f"bench: executor: {e}") from None
    return Engine(name, ex, max_parallel, poll_seconds=1.0 if cluster == "local" else 15.0)


__all__ = ["EXECUTORS", "Engine", "make_engine", "run_cell_job"]
