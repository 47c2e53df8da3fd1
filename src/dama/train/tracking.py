"""Training logs in the tools people already watch (``--report-to tensorboard``, wandb, mlflow, ...),
through accelerate's tracking API: the trainer's Accelerator gets ``log_with`` and a logging folder
(``RUN/logs``), and every row of metrics.jsonl is also sent to the trackers (``train/loss``,
``train/lr`` per optimizer step; ``val/wer``, ``val/cer``, ``epoch_seconds`` per epoch).

The pitfall wrapped here: accelerate silently drops a tracker whose package is not installed
(a debug log line), so ``--report-to wandb`` without wandb would train for hours and log nothing.
dama checks first and says which package to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dama.errors import DamaError

if TYPE_CHECKING:
    from dama.runs import RunFolder

NONE = "none"
KEYS = {"loss": "train/loss", "lr": "train/lr", "val_wer": "val/wer", "val_cer": "val/cer",
        "epoch_seconds": "train/epoch_seconds", "epoch": "train/epoch"}
PACKAGES = {"comet_ml": "comet-ml"}


def parse_report_to(value: str | None) -> list[str]:
    """``"tensorboard,wandb"`` -> the trackers, checked against what accelerate supports and what is installed."""
    names = [v.strip().lower() for v in (value or NONE).split(",") if v.strip()]
    if names in ([], [NONE]):
        return []
    from accelerate.tracking import get_available_trackers
    from accelerate.utils import LoggerType

    supported = [t.value for t in LoggerType if t.value != "all"]
    unknown = [n for n in names if n not in supported]
    if unknown:
        raise DamaError(f"--report-to {value}: unknown tracker(s) {unknown}; accelerate supports "
                        f"{', '.join(supported)} (comma-separated), or none")
    available = {str(t) for t in get_available_trackers()}
    missing = [n for n in names if n not in available]
    if missing:
        pkgs = " ".join(PACKAGES.get(n, n) for n in missing)
        raise DamaError(f"--report-to {value}: {', '.join(missing)} not installed; pip install {pkgs} "
                        "(accelerate would otherwise drop it silently and log nothing)")
    return names


def accelerator_kwargs(report_to: str | None, run: RunFolder) -> dict:
    """What ``Accelerator(...)`` needs to log to ``report_to``: nothing when it is none."""
    names = parse_report_to(report_to)
    return {"log_with": names, "project_dir": str(run.logs_path)} if names else {}


def start(accelerator, run: RunFolder, settings: dict) -> None:
    """Open the trackers (one run named after the folder) with the run's scalar settings as hyper-parameters."""
    if not accelerator.log_with:
        return
    hparams = {k: v for k, v in _flatten(settings).items() if isinstance(v, bool | int | float | str)}
    accelerator.init_trackers(run.path.name, config=hparams)


def log(accelerator, row: dict) -> None:
    """One metrics.jsonl row to the trackers, at its optimizer step."""
    if not accelerator.log_with:
        return
    values = {KEYS[k]: v for k, v in row.items() if k in KEYS and isinstance(v, int | float)}
    if values:
        accelerator.log(values, step=int(row.get("step", 0)))


def _flatten(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


__all__ = ["accelerator_kwargs", "log", "parse_report_to", "start"]
