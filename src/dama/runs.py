"""A training run's folder: every name dama writes there, and how a run is read back.

RUN_DIR/
  config.json          method, training and data settings, base model, versions
  adapter/             standard PEFT adapter (loads with PeftModel.from_pretrained, no dama needed)
  model/               (full fine-tuning only) a Hugging Face model directory instead
  pissa_init/          (PiSSA only) the adapter's starting point, to save the final one as plain LoRA
  metrics.jsonl        per step: loss, lr; per epoch: time, val WER/CER
  checkpoint.pt        last checkpoint, for --resume
  test.hyps.jsonl      per-utterance test transcripts and error counts
  zero-shot.json       (--compare-zero-shot) the base model's test score, + zero-shot.hyps.jsonl
  plot.png             loss and validation WER curves
  logs/                (--report-to) the trackers' logs, e.g. TensorBoard event files
  results.json         written last: its presence marks a finished run
  .dama.lock           held (flock) by the one process writing the folder; see dama.safeio.FolderLock

:class:`RunFolder` is the one place these names are spelled. Training writes through it,
``dama eval --adapter``, export and serving read through it (:meth:`RunFolder.load`), and a
folder is only ever restarted or deleted by dama when it is recognisably a dama run: nothing in
it but the names above (and temporary files of dama's atomic writes) and a config.json that
dama wrote (:meth:`RunFolder.foreign_entries`).

Light to import (no torch until a model is loaded), so tools that only look at run folders,
such as ``dama bench``'s grid and report, can use it too.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dama.errors import ModelError
from dama.outputs import WRITE_CHECK_PREFIX, is_temp_name
from dama.safeio import LOCK_NAME, FileError, FolderLock, read_json, write_json

if TYPE_CHECKING:
    from dama.adapt.base import Adapted
    from dama.models.load import Whisper


class RunFolder:
    """The folder of one training run at ``path`` (which need not exist yet)."""

    CONFIG: ClassVar[str] = "config.json"
    RESULTS: ClassVar[str] = "results.json"
    CHECKPOINT: ClassVar[str] = "checkpoint.pt"
    ADAPTER: ClassVar[str] = "adapter"
    MODEL: ClassVar[str] = "model"
    PISSA_INIT: ClassVar[str] = "pissa_init"
    METRICS: ClassVar[str] = "metrics.jsonl"
    PLOT: ClassVar[str] = "plot.png"
    LOGS: ClassVar[str] = "logs"
    ZERO_SHOT: ClassVar[str] = "zero-shot.json"
    HYPS_SUFFIX: ClassVar[str] = ".hyps.jsonl"
    LOCK: ClassVar[str] = LOCK_NAME
    # Everything dama writes in a run folder, by name (checkpoint.pt.tmp: the temporary name of older versions).
    NAMES: ClassVar[frozenset[str]] = frozenset({
        CONFIG, RESULTS, CHECKPOINT, CHECKPOINT + ".tmp", ADAPTER, MODEL, PISSA_INIT, METRICS, PLOT, LOGS, ZERO_SHOT,
        "test" + HYPS_SUFFIX, "zero-shot" + HYPS_SUFFIX, LOCK,
    })
    # What only a run folder has (any one is enough): an export never replaces a folder holding one.
    MARKS: ClassVar[tuple[str, ...]] = (CHECKPOINT, RESULTS, ADAPTER, METRICS)

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    # -- where things are -----------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def results_path(self) -> Path:
        return self.path / self.RESULTS

    @property
    def checkpoint_path(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def adapter_path(self) -> Path:
        return self.path / self.ADAPTER

    @property
    def model_path(self) -> Path:
        return self.path / self.MODEL

    @property
    def pissa_init_path(self) -> Path:
        return self.path / self.PISSA_INIT

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def plot_path(self) -> Path:
        return self.path / self.PLOT

    @property
    def logs_path(self) -> Path:
        return self.path / self.LOGS

    @property
    def zero_shot_path(self) -> Path:
        return self.path / self.ZERO_SHOT

    def hyps_path(self, split: str) -> Path:
        """Per-utterance transcripts of ``split`` ("test", "zero-shot")."""
        return self.path / f"{split}{self.HYPS_SUFFIX}"

    # -- what state it is in ----------------------------------------------------------------------------

    def is_finished(self) -> bool:
        """``results.json`` is written last: its presence marks a finished run."""
        return self.results_path.is_file()

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file()

    def lock(self) -> FolderLock:
        """The folder's lock (one writing process at a time), for a ``with`` block."""
        return FolderLock(self.path)

    def found_marks(self) -> list[str]:
        """Which of :data:`MARKS` the folder holds: non-empty means it is (or holds) a dama run."""
        return [m for m in self.MARKS if (self.path / m).exists()] if self.path.is_dir() else []

    # -- is it dama's? ----------------------------------------------------------------------------------

    @classmethod
    def is_own_temp(cls, name: str) -> bool:
        """A temporary file dama's atomic writes (or the CLI's write check) leave when killed mid-write."""
        if name.startswith(WRITE_CHECK_PREFIX):
            return True
        return is_temp_name(name) and any(name.startswith(f".{n}.") for n in cls.NAMES)

    @classmethod
    def is_own_name(cls, name: str) -> bool:
        """Whether dama writes ``name`` into a run folder (a temporary file of its writes included)."""
        return name in cls.NAMES or cls.is_own_temp(name)

    @staticmethod
    def is_run_config(cfg: object) -> bool:
        """Whether a parsed config.json is one dama's run writes (not, say, a Hugging Face model's)."""
        return isinstance(cfg, dict) and isinstance(cfg.get("method"), dict) and isinstance(cfg.get("train"), dict)

    def foreign_entries(self) -> list[str]:
        """What in the folder dama did not write: names it never uses, or everything but the lock
        when config.json is missing or not a dama run config. Empty means the folder is dama's
        (an empty or missing folder included)."""
        if not self.path.is_dir():
            return []
        names = sorted(p.name for p in self.path.iterdir())
        odd = [n for n in names if not self.is_own_name(n)]
        if odd:
            return odd
        rest = [n for n in names if n != self.LOCK and not self.is_own_temp(n)]
        if not rest:
            return []
        try:
            ok = self.config_path.is_file() and self.is_run_config(read_json(self.config_path, "run config"))
        except FileError:
            ok = False
        return [] if ok else rest

    def remove_if_unstarted(self) -> None:
        """Delete the folder if it has neither results nor a checkpoint (nothing to lose), as a run that
        failed before its first checkpoint leaves it. Only a folder that is recognisably a dama run
        (:meth:`foreign_entries` finds nothing) goes: a folder holding anything else is left as it is."""
        if (self.path.is_dir() and not self.results_path.exists() and not self.checkpoint_path.exists()
                and not self.foreign_entries()):
            shutil.rmtree(self.path, ignore_errors=True)

    # -- reading and writing its records ------------------------------------------------------------------

    def read_config(self) -> dict:
        """The run's config.json; a folder without one is not a dama run (:class:`ModelError`)."""
        if not self.config_path.is_file():
            raise ModelError(f"{self.path}: not a dama run directory (no {self.CONFIG})")
        return read_json(self.config_path, "run config", "Train the run again, or restore its config.json.")

    def write_config(self, config: dict) -> None:
        write_json(self.config_path, config)

    def read_results(self) -> dict:
        return read_json(self.results_path, "results", f"Delete {self.path} to train the run again.")

    def write_results(self, results: dict) -> None:
        """Written last: from now on the run counts as finished."""
        write_json(self.results_path, results)

    # -- the trained model --------------------------------------------------------------------------------

    def save_adapted(self, adapted: Adapted, w: Whisper) -> Path:
        """Save what training produced: a PEFT adapter in ``adapter/`` or (full fine-tuning) a whole
        Hugging Face model in ``model/``. Returns that folder."""
        if adapted.is_peft:
            out = self.adapter_path
            if out.exists():
                shutil.rmtree(out)
            kwargs: dict[str, Any] = {}
            if adapted.info.get("needs_weight_conversion"):  # PiSSA: saved as a delta on the untouched base
                kwargs["path_initial_model_for_weight_conversion"] = str(self.pissa_init_path)
            if _trains_token_rows(adapted.model):
                # A new language token grew the vocabulary, so PEFT's default ("auto") would save the whole
                # embedding (51866 x 512 floats: 106 MB on whisper-base) beside the adapter. The trained rows
                # are saved anyway (``trainable_tokens_delta``) and every other row is the base's, which the
                # loader rebuilds (restore_new_language), so the adapter keeps only those rows (a few KB).
                # Adapters saved with the whole embedding still load: the saved rows equal the base's.
                kwargs["save_embedding_layers"] = False
            adapted.model.save_pretrained(out, **kwargs)
            return out
        out = self.model_path
        adapted.model.save_pretrained(out)
        w.tokenizer.save_pretrained(out)
        w.feature_extractor.save_pretrained(out)
        adapted.model.generation_config.save_pretrained(out)
        return out

    def check_base(self, w: Whisper, config: dict | None = None, label: str | None = None,
                   fingerprint: str | None = None) -> None:
        """The base model ``w`` must be the one the run's adapter was trained on (weights fingerprint
        in config.json). ``config``: the run's, if already read; ``label`` names the run in errors;
        ``fingerprint``: ``w``'s, if already computed (checking many runs against one base hashes it once)."""
        from dama.models.load import model_fingerprint

        config = self.read_config() if config is None else config
        want = config.get("base_fingerprint")
        if not want:
            return
        have = fingerprint or model_fingerprint(w.model)
        if have != want:
            raise ModelError(f"{label or self.path}: the base model {w.name} is not the one its adapter was trained "
                             f"on (weights fingerprint {have} != {want} in {self.CONFIG}). "
                             "Use the exact base model the run used.")

    def restore_new_language(self, w: Whisper, config: dict | None = None, label: str | None = None) -> None:
        """Give ``w``'s tokenizer the language token the run added, at the id it was trained with (idempotent)."""
        from dama.models.new_language import add_language_token

        config = self.read_config() if config is None else config
        nl = config.get("new_language")
        if not nl:
            return
        token = f"<|{nl['code']}|>"
        vocab = w.tokenizer.get_vocab()
        tid = vocab[token] if token in vocab else add_language_token(w, nl["code"], nl["name"])
        if tid != nl["token_id"]:
            raise ModelError(f"{label or self.path}: {token} gets id {tid} on this base, but was trained as "
                             f"{nl['token_id']} (adapters that add different new languages cannot share one base)")

    def load(self, device: str | None = None, merge: bool = True, base: str | Path | None = None) -> Whisper:
        """The finished run's model for transcription, evaluation or export: its base model (``base``
        overrides where to find it) with the adapter applied, merged unless ``merge=False``. The base
        must be the one the adapter was trained on (weights fingerprint in config.json)."""
        from dama.models.load import Whisper, load_whisper

        cfg = self.read_config()
        if self.model_path.is_dir():
            return load_whisper(self.model_path, device=device)
        if not self.adapter_path.is_dir():
            raise ModelError(f"{self.path}: no {self.ADAPTER}/ or {self.MODEL}/ folder; did the run finish?")
        from peft import PeftModel

        source = base or cfg["model"]
        try:
            w = load_whisper(source, device=device)
        except ModelError as e:
            raise ModelError(f"{self.path}: cannot load the base model {source} its adapter was trained on: {e}\n"
                             "Fetch it (dama model fetch NAME) or pass --model PATH to where it is.") from e
        self.check_base(w, cfg)
        self.restore_new_language(w, cfg)
        peft_model = PeftModel.from_pretrained(w.model, self.adapter_path)
        model = peft_model.merge_and_unload() if merge else peft_model.get_base_model()
        model.eval()
        return Whisper(model, w.tokenizer, w.feature_extractor, f"{w.name}+{self.path.name}")


def _trains_token_rows(model) -> bool:
    """Whether a PEFT model trains embedding rows (``trainable_token_indices``: a new language token)."""
    return any(getattr(c, "trainable_token_indices", None) for c in getattr(model, "peft_config", {}).values())


def load_run(run_dir: str | Path, device: str | None = None, merge: bool = True,
             base: str | Path | None = None) -> Whisper:
    """:meth:`RunFolder.load` of ``run_dir``: a finished run's model, adapter applied (merged unless
    ``merge=False``), on its own base or ``base``."""
    return RunFolder(run_dir).load(device=device, merge=merge, base=base)


__all__ = ["RunFolder", "load_run"]
