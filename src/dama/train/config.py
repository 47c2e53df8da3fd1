"""The settings of a training run: one dataclass, one source for every default.

Each field carries its help text (``metadata["help"]``) the way PEFT's ``LoraConfig`` does,
and, where the command-line flag is not simply the field's name with dashes, the flag
(``metadata["flag"]``); ``choices``; ``cli=False`` for a setting without a flag (set from
Python). ``dama train``'s flags and ``dama bench``'s ``train:`` options are derived from these
fields (:func:`cli_fields`, :func:`train_option_names`), so a default is changed here and
nowhere else. The method's settings (ranks, DAMA's ablations) are :mod:`dama.adapt.options`.

This module imports no torch: ``dama train --help`` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from dama.adapt.options import flag_of, option_name
from dama.errors import DamaError

if TYPE_CHECKING:
    from dama.adapt.base import MethodConfig

SCHEDULES = ("linear", "cosine")
PRECISIONS = ("auto", "no", "bf16", "fp16")


def _opt(default, help: str, **meta):
    """A field with its help text (and optional ``flag``, ``choices``, ``cli=False``) as metadata."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    epochs: int = _opt(5, "passes over the training data")
    batch_size: int = _opt(8, "clips per optimizer step (before --grad-accum)")
    grad_accum: int = _opt(1, "batches accumulated into one optimizer step (each weighted by its tokens: the "
                              "step equals one batch of them all)")
    effective_batch: int = _opt(0, "clips per optimizer step, reached by accumulating --batch-size batches "
                                   "(a multiple of --batch-size; instead of --grad-accum)")
    gradient_checkpointing: bool = _opt(False, "recompute layer activations in the backward pass: same gradients, "
                                               "less memory (large models on a GPU), slower")
    lr: float | None = _opt(None, "peak learning rate (default: the method's own: 1e-3 adapters, 1e-5 full)")
    weight_decay: float = _opt(0.01, "AdamW weight decay", cli=False)
    warmup_frac: float = _opt(0.1, "warm-up fraction of all steps", flag="--warmup")
    schedule: str = _opt("linear", "after warm-up: linear decay to 0, or cosine", choices=SCHEDULES)
    max_grad_norm: float = _opt(1.0, "gradient clipping norm (0 = no clipping)", cli=False)
    seed: int = _opt(0, "seed for initialisation, batch order and (unless --data-seed) the --hours subset")
    precision: str = _opt("auto", "auto: bf16 on CUDA if supported, else fp32", choices=PRECISIONS)
    val_every: int = _opt(1, "validate every N epochs", cli=False)
    val_max_utts: int = _opt(0, "validate on at most N utterances (0 = all)")
    patience: int = _opt(0, "early-stop after N epochs without val improvement (0 = never)")
    save_every: int = _opt(0, "also checkpoint every N optimizer steps (0 = at epoch ends only)")
    decode_batch_size: int = _opt(16, "clips decoded at once for validation and test", cli=False)
    cache_dir: str | None = _opt(None, "encoder-output cache (default: .encoder-cache beside --out)")
    timestamp_share: float = _opt(0.0, "share of training clips in Whisper's timestamp mode (<|0.00|> text <|end|>, "
                                       "no <|notimestamps|>), so the adapted model keeps the timestamps long-form "
                                       "transcription needs; 0 = none (docs/longform.md)")
    rehearsal: str | None = _opt(None, "data spec of speech in languages the base model knows (e.g. `dama data "
                                       "synth` output), labelled with the base model's own transcripts and mixed "
                                       "into training so the adapter forgets less (docs/method.md#rehearsal)")
    rehearsal_share: float = _opt(0.2, "share of the training examples drawn from --rehearsal")
    rehearsal_targets: str = _opt("labels", "what a rehearsal clip teaches: labels (the base model's greedy "
                                            "transcript, cross-entropy) or distribution (the base model's whole "
                                            "next-token distribution along that transcript, top 32, soft "
                                            "cross-entropy: self-distillation with soft labels)",
                                  choices=("labels", "distribution"))
    low_memory: bool = _opt(False, "return freed activations to the OS at once: ~40%% lower peak RSS on CPU, "
                                   "~25%% slower")
    report_to: str = _opt("none", "also log loss, lr and val WER/CER to these trackers through accelerate, "
                                  "comma-separated: tensorboard, wandb, mlflow, comet_ml, aim, clearml, dvclive, "
                                  "trackio, swanlab (logs in RUN/logs)")
    kv_cache: bool = _opt(True, "do not cache the frozen cross-attention keys/values of each clip on disk (the "
                                "cache makes a whisper-base step 14-22%% faster, pays from the ~6th epoch or "
                                "across a grid's runs, and takes ~37 MB per clip: 12x the encoder cache)",
                          flag="--no-kv-cache", negate=True)
    stop_after_steps: int = _opt(0, "testing aid: stop (as if killed) after this many optimizer steps", cli=False)

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise DamaError("epochs, batch_size and grad_accum must be >= 1")
        if self.effective_batch:
            if self.grad_accum != 1:
                raise DamaError("give --effective-batch or --grad-accum, not both")
            if self.effective_batch < self.batch_size or self.effective_batch % self.batch_size:
                raise DamaError(f"--effective-batch {self.effective_batch} must be a multiple of --batch-size "
                                f"{self.batch_size} (accumulation adds whole batches)")
        if self.lr is not None and not self.lr > 0:
            raise DamaError(f"lr must be positive, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise DamaError(f"schedule must be linear or cosine, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise DamaError(f"precision must be auto, no, bf16 or fp16, got {self.precision!r}")
        if not 0 <= self.timestamp_share <= 1:
            raise DamaError(f"timestamp_share must be in [0, 1], got {self.timestamp_share}")
        if not 0 <= self.rehearsal_share < 1:
            raise DamaError(f"rehearsal_share must be in [0, 1), got {self.rehearsal_share}")
        if self.rehearsal_targets not in ("labels", "distribution"):
            raise DamaError(f"rehearsal_targets must be labels or distribution, got {self.rehearsal_targets!r}")
        if not 0 <= self.warmup_frac < 1:
            raise DamaError(f"warmup_frac must be in [0, 1), got {self.warmup_frac}")

    @classmethod
    def from_options(cls, **options) -> TrainConfig:
        """From command-line options by option name (``warmup=0.2``, as :func:`train_option_names` spells
        them); None: not given, so the field's default applies."""
        by_option = {option_name(f): f for f in cli_fields(cls)}
        unknown = sorted(set(options) - set(by_option))
        if unknown:
            raise DamaError(f"unknown training option(s) {unknown}; the options are {sorted(by_option)}")
        return cls(**{by_option[k].name: (not v if by_option[k].metadata.get("negate") else v)
                      for k, v in options.items() if v is not None})

    @property
    def accumulation(self) -> int:
        """Batches per optimizer step: ``effective_batch / batch_size`` when set, else ``grad_accum``."""
        return self.effective_batch // self.batch_size if self.effective_batch else self.grad_accum

    def cache_root(self, run_dir: Path) -> Path:
        """Where encoder outputs are cached: --cache-dir, else beside the run directory (shared by runs)."""
        return Path(self.cache_dir) if self.cache_dir else run_dir.parent / ".encoder-cache"

    def learning_rate(self, method: MethodConfig) -> float:
        return self.lr if self.lr is not None else method.default_lr


def cli_fields(cls=TrainConfig) -> list:
    """The fields of ``cls`` that are command-line options (all but those marked ``cli=False``)."""
    return [f for f in fields(cls) if f.metadata.get("cli", True)]


# `dama train` settings that are neither TrainConfig's nor the method's: where and how the run computes
RUN_OPTIONS = ("device", "threads")
# what a benchmark grid sets itself for each run (besides --method, --data, --hours and --out)
GRID_OWNED = ("seed",)


def train_option_names() -> set[str]:
    """The `dama train` options a ``dama bench`` grid may set (``train:``, ``method_args``, variants), by
    option name (``warmup``, ``no_bpp``): TrainConfig's command-line fields, the method options
    (:func:`dama.adapt.options.method_option_names`) and :data:`RUN_OPTIONS`, less :data:`GRID_OWNED`."""
    from dama.adapt.options import method_option_names

    return ({option_name(f) for f in cli_fields()} | method_option_names() | set(RUN_OPTIONS)) - set(GRID_OWNED)


__all__ = ["GRID_OWNED", "PRECISIONS", "RUN_OPTIONS", "SCHEDULES", "TrainConfig", "cli_fields", "flag_of",
           "option_name", "train_option_names"]
