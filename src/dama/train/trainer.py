"""The training loop: one for every method, under identical data, budget and evaluation.

:meth:`Trainer.fit` is the whole of a run's training, in the order it happens:

    setup       refuse a finished run folder; read the checkpoint to resume from (a damaged one
                fails before any work); tokenise the data; let the method build its adapter; get
                the encoder side of every clip (cached) and the optimizer and schedule
    resume      put the checkpoint's tensors, optimizer, schedule, RNG and progress back
    one epoch   length-bucketed batches in a seeded order, one optimizer step per grad_accum
                batches, each batch's loss weighted by its share of the group's transcript tokens, so
                the step is the one a single batch of them all would take (:meth:`Trainer.train_epoch`,
                :meth:`Trainer.train_step`)
    validate    after an epoch: greedy decoding of the validation clips; the best weights are kept
    checkpoint  at every epoch end (and every ``save_every`` steps); see :mod:`dama.train.checkpoint`

What differs between methods is the method's business (:mod:`dama.adapt`): ``for_run`` (AdaLoRA
needs the run's length), ``apply``, and what that returns (:class:`dama.adapt.base.Adapted`: the
frozen tensors, whether the encoder cache applies, a per-step hook, extra checkpoint state).

Speed: with a frozen encoder (every method but ``full``) encoder outputs come from the
:mod:`dama.encoder_cache`, so a step runs only the decoder, and the loss runs in vocabulary
chunks (:mod:`dama.train.loss`). Robustness: ``resume=True`` continues an interrupted run and
ends where an uninterrupted one would; a non-finite loss stops the run, keeping the last good
checkpoint; one process at a time trains in a run folder (its lock).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dama.adapt import MethodConfig
from dama.adapt.base import Adapted
from dama.adapt.peft_compat import count_trainable, fuse_lora_forward, trainable_parameters
from dama.data.audio import CHUNK_SECONDS
from dama.data.manifest import Manifest
from dama.encoder_cache import ClipInputs, clip_keys
from dama.errors import DataError
from dama.evaluate.cached import decode_rows, decoding_view
from dama.evaluate.metrics import corpus_errors
from dama.evaluate.run import manifest_languages
from dama.memory import limit_heap_fragmentation, peak_memory_mb
from dama.models.load import Whisper
from dama.models.transcribe import DecodeOptions
from dama.runs import RunFolder
from dama.train import distributed, tracking
from dama.train.batches import Example, bucket_batches, collate, make_examples
from dama.train.checkpoint import (
    RunState,
    TrainingError,
    adapter_tensors,
    load_tensors,
    read_checkpoint,
    restore,
    save_checkpoint,
)
from dama.train.config import TrainConfig
from dama.train.loss import chunked_cross_entropy, fused_lm_head, hidden_states_as_logits, soft_cross_entropy
from dama.train.rehearsal import soft_batch, teacher_targets


def train(
    w: Whisper,
    method: MethodConfig,
    train_m: Manifest,
    val_m: Manifest | None,
    run_dir: str | Path,
    cfg: TrainConfig | None = None,
    language: str | None = None,
    resume: bool = False,
    log=print,
) -> tuple[Adapted, RunState, dict]:
    """Adapt ``w`` with ``method`` on ``train_m``; returns the adapted model loaded with the
    best-on-validation weights, the final state and a summary dict.

    ``run_dir`` is locked for the whole of training: a second process training into it fails at
    once instead of interleaving checkpoints."""
    run = RunFolder(run_dir)
    world = distributed.world(w.device.type)
    # several processes (accelerate launch): the main one holds the folder's lock for them all
    with run.lock() if world.is_main else contextlib.nullcontext():
        return Trainer(w, method, train_m, val_m, run, cfg or TrainConfig(), language, log).fit(resume)


def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _reset_accelerator_if(precision: str) -> None:
    """accelerate keeps one process-wide state and refuses a second Accelerator with another mixed
    precision; a process that trains several runs (a benchmark grid, the tests) may well change it between
    runs, so the old state is dropped first (single-process only: a distributed launch keeps its own)."""
    from accelerate.state import AcceleratorState, PartialState

    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") not in (None, precision) and PartialState().num_processes == 1:
        AcceleratorState._reset_state()


def _scheduler(opt, cfg: TrainConfig, total_steps: int):
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    warmup = int(cfg.warmup_frac * total_steps)
    make = get_linear_schedule_with_warmup if cfg.schedule == "linear" else get_cosine_schedule_with_warmup
    return make(opt, warmup, total_steps)


class Trainer:
    """One run's training. Built by :func:`train`; :meth:`fit` runs it."""

    def __init__(self, w: Whisper, method: MethodConfig, train_m: Manifest, val_m: Manifest | None, run: RunFolder,
                 cfg: TrainConfig, language: str | None, log=print):
        self.w, self.method, self.train_m, self.val_m = w, method, train_m, val_m
        self.run, self.cfg, self.language, self.log = run, cfg, language, log
        self.state = RunState()
        self.world = distributed.world(w.device.type)  # one process, or one of several (dama.train.distributed)
        self.best: dict[str, torch.Tensor] | None = None  # adapter tensors of the best validation epoch

    def fit(self, resume: bool) -> tuple[Adapted, RunState, dict]:
        self.t_start = time.perf_counter()
        if self.cfg.low_memory:
            limit_heap_fragmentation()
        ck = self._checkpoint_to_resume(resume)
        self._prepare_data()
        self._build_model()
        self._build_optimizer()
        if ck is not None:
            self.state = restore(ck, self.run.checkpoint_path, self.adapted, self.opt, self.sched, self.w.device)
            self.best = ck["best"]
            del ck
            self.log(f"resuming {self.run.path} at epoch {self.state.epoch + 1}, step {self.state.step}")
        self.earlier_seconds = self.state.elapsed_seconds  # spent by earlier processes of this run
        self._prepare_loop()
        tracking.start(self.accelerator, self.run, {"train": self.cfg.__dict__, "method": self.method.to_dict()})
        try:
            metrics = (self.run.metrics_path.open("a", encoding="utf-8") if self.world.is_main
                       else contextlib.nullcontext(None))
            with metrics as self.metrics:
                for epoch in range(self.state.epoch, self.cfg.epochs):
                    seconds = self.train_epoch(epoch)
                    if self.end_epoch(epoch, seconds):
                        break
        finally:
            if self.world.distributed:  # end_training would also end the process group run_training still uses
                for tracker in self.accelerator.trackers:
                    tracker.finish()
            else:
                self.accelerator.end_training()  # flushes and closes the --report-to trackers
        return self._finish()

    # -- setup ------------------------------------------------------------------------------------------

    def _checkpoint_to_resume(self, resume: bool) -> dict | None:
        """The checkpoint to continue from (``resume``), verified; refuses a finished run."""
        path = self.run.checkpoint_path
        if resume and not path.is_file():
            raise TrainingError(f"{path}: no checkpoint to resume from")
        if not resume and self.run.results_path.exists():
            raise TrainingError(f"{self.run.path} already holds a finished run; choose another --out or delete it")
        return read_checkpoint(path, self.log) if resume else None

    def _prepare_data(self) -> None:
        """Training examples (prompt + transcript tokens); what cannot be used is skipped with a note."""
        m = self.train_m
        m.raise_problems()
        langs = manifest_languages(m, self.language)
        m.fill_durations()
        self.n_target = len(m)
        if self.cfg.rehearsal and self.cfg.rehearsal_share > 0:  # the base model's languages, in their own tokens
            m = self.train_m = Manifest([*m, *self._rehearsal_clips()], name=m.name)
            langs += [u.language for u in m[self.n_target:]]
        self.examples, skipped = make_examples(self.w, m, langs, timestamp_share=self.cfg.timestamp_share,
                                               seed=self.cfg.seed)
        for p in skipped:
            self.log(f"note: {p}")
        if not self.examples:
            raise DataError(f"{m.name}: no usable training utterances ({len(skipped)} skipped)")
        self.n_skipped = len(skipped)
        self.soft_targets = {}
        if self.cfg.rehearsal_targets == "distribution" and len(m) > self.n_target:
            with self.world.main_first():  # the base model, before the adapter is applied
                self.soft_targets = teacher_targets(self.w, m, [e for e in self.examples if e.row >= self.n_target],
                                                    self.cfg.cache_root(self.run.path), log=self.log)

    def _rehearsal_clips(self) -> Manifest:
        """--rehearsal: clips in languages the base model knows, labelled by it (:mod:`dama.train.rehearsal`)."""
        from dama.data.spec import load_data
        from dama.train.rehearsal import rehearsal_manifest

        with self.world.main_first():  # the main process encodes them into the shared cache first
            return rehearsal_manifest(self.w, load_data(self.cfg.rehearsal), self.n_target, self.cfg.rehearsal_share,
                                      self.cfg.seed, self.cfg.cache_root(self.run.path),
                                      DecodeOptions(batch_size=self.cfg.decode_batch_size), self.log)

    def _build_model(self) -> None:
        """Accelerator and seed, then the method's adapter for this run's length, and the encoder side
        (cached outputs, or features when the encoder trains) of the training and validation clips."""
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration

        cfg, w = self.cfg, self.w
        precision = cfg.precision
        if precision == "auto":
            precision = "bf16" if w.device.type == "cuda" and torch.cuda.is_bf16_supported() else "no"
        if precision == "fp16" and w.device.type != "cuda":
            raise TrainingError("--precision fp16 needs a CUDA GPU (a float16 step on CPU is not supported); "
                                "on CPU use --precision bf16 or no")
        self.precision = precision
        # accumulation is done here (train_epoch), not by accelerate: groups stay within an epoch and each
        # batch is weighted by its tokens. split_batches: --batch-size is the global batch, shared by the
        # processes (dama.train.distributed), so the schedule steps once per optimizer step whatever their number
        _reset_accelerator_if(precision)
        self.accelerator = Accelerator(mixed_precision=precision, cpu=w.device.type == "cpu",
                                       dataloader_config=DataLoaderConfiguration(split_batches=True),
                                       **tracking.accelerator_kwargs(cfg.report_to, self.run))
        _set_seed(cfg.seed)
        n_batches = math.ceil(len(self.examples) / cfg.batch_size)
        self.total_steps = math.ceil(n_batches / cfg.accumulation) * cfg.epochs
        self.method = self.method.for_run(self.total_steps)
        self.adapted = adapted = self.method.apply(w.model)
        if adapted.is_peft:
            fuse_lora_forward(adapted.model)
        if cfg.gradient_checkpointing:
            enable_gradient_checkpointing(adapted.model)
        if adapted.is_peft and adapted.info.get("needs_weight_conversion") and self.world.is_main:
            # PiSSA's starting point, saved as plain LoRA so PEFT can convert the final adapter
            peft_config = adapted.model.peft_config["default"]
            init_flag = peft_config.init_lora_weights
            peft_config.init_lora_weights = True
            adapted.model.save_pretrained(self.run.pissa_init_path)
            peft_config.init_lora_weights = init_flag
        cache_root = cfg.cache_root(self.run.path)
        with self.world.main_first():  # the main process builds the caches, the others then read them
            self.train_inputs = ClipInputs(w, self.train_m, adapted.uses_encoder_cache, cache_root, self.log)
            self._prepare_kv_cache()
        self._prepare_validation(cache_root)

    def _prepare_kv_cache(self) -> None:
        """The frozen cross-attention keys/values of the training clips, computed once (:mod:`dama.kv_cache`),
        where the method and precision allow it."""
        from dama import kv_cache

        self.kv = None
        if not (self.cfg.kv_cache and self.adapted.uses_encoder_cache):
            return
        why = kv_cache.applies(self.adapted.model)
        if why is None and self.precision != "no":
            why = f"mixed precision ({self.precision})"
        if why is not None:
            self.log(f"note: cross-attention keys/values are computed in every step ({why})")
            return
        cache = self.train_inputs.cache
        try:
            self.kv = kv_cache.CrossKVCache.build(self.adapted.model, cache.path, clip_keys(self.train_m),
                                                  cache.get, log=self.log)
        except kv_cache.NotEnoughSpace as e:  # nothing written; the run itself needs no more room than before
            self.log(f"note: {e}; training goes on, computing them in every step")

    def _prepare_validation(self, cache_root: Path) -> None:
        """Validation clips: those within Whisper's window, at most ``val_max_utts``, and only those encoded."""
        self.val_rows: list[int] = []
        self.val_inputs: ClipInputs | None = None
        self.val_langs: list[str] = []
        val_m = self.val_m
        if val_m is None or not len(val_m):
            return
        val_m.raise_problems()
        val_m.fill_durations()
        keep = [u for u in val_m if (u.duration or 0) <= CHUNK_SECONDS]
        # encode only the clips validation decodes (with --val-max-utts 10 of 46, a quarter of the cost)
        self.val_m = val_m = Manifest(keep[: self.cfg.val_max_utts] if self.cfg.val_max_utts else keep,
                                      name=val_m.name)
        self.val_langs = manifest_languages(val_m, self.language)
        self.val_rows = list(range(len(val_m)))
        if not self.world.is_main:  # validation decodes on the main process; the others get its result
            return
        self.val_inputs = ClipInputs(self.w, val_m, self.adapted.uses_encoder_cache, cache_root, self.log)

    def _build_optimizer(self) -> None:
        model, frozen = self.adapted.model, self.adapted.frozen
        self.params = [p for _, p in trainable_parameters(model, frozen)]
        if not self.params and self.method.trains:
            raise TrainingError(f"method {self.method.name} left nothing to train")
        self.lr = self.cfg.learning_rate(self.method)
        self.opt = torch.optim.AdamW(self.params, lr=self.lr, weight_decay=self.cfg.weight_decay)
        self.sched = _scheduler(self.opt, self.cfg, self.total_steps)

    def _prepare_loop(self) -> None:
        adapted = self.adapted
        adapted.frozen.enforce(adapted.model)
        self.head = None if adapted.model_loss else fused_lm_head(adapted.model)
        self.model, self.opt, self.sched = self.accelerator.prepare(adapted.model, self.opt, self.sched)
        self.run.path.mkdir(parents=True, exist_ok=True)
        self.pad = self.w.generation_config.pad_token_id
        self.decode_w = decoding_view(self.w, self.accelerator.unwrap_model(self.model))
        self.val_opts = DecodeOptions(batch_size=self.cfg.decode_batch_size)
        if self.kv is not None:
            self.kv.attach(self.adapted.model)

    # -- the loop ---------------------------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> float:
        """The rest of epoch ``epoch`` (0-based; a resumed run starts mid-epoch); returns its seconds."""
        acc, cfg, state = self.accelerator, self.cfg, self.state
        self.model.train()
        batches = bucket_batches(self.examples, cfg.batch_size, cfg.seed, epoch)  # global batches, shared in train_step
        t0 = time.perf_counter()
        bar = tqdm(total=len(batches), initial=state.batch_in_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   unit="batch", disable=not acc.is_local_main_process)
        ga = cfg.accumulation
        for bi in range(state.batch_in_epoch, len(batches)):
            group = batches[bi - bi % ga: bi - bi % ga + ga]  # the batches of this optimizer step
            sync = bi + 1 == len(batches) or bi % ga == ga - 1
            weight = n_target_tokens(batches[bi]) / max(1, sum(n_target_tokens(b) for b in group))
            loss = self.train_step(batches[bi], epoch, weight=weight if ga > 1 else 1.0, sync=sync)
            state.batch_in_epoch = bi + 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            self.log_metric(kind="step", epoch=epoch + 1, step=state.step, loss=loss, lr=self.sched.get_last_lr()[0])
            if not sync:
                continue
            if cfg.save_every and state.step % cfg.save_every == 0:
                self.checkpoint()
            if cfg.stop_after_steps and state.step >= cfg.stop_after_steps:
                self.checkpoint()
                raise KeyboardInterrupt(f"stopped after {state.step} steps (stop_after_steps)")
        bar.close()
        seconds = time.perf_counter() - t0
        state.epoch_seconds.append(seconds)
        state.train_seconds += seconds
        state.epoch, state.batch_in_epoch = epoch + 1, 0
        return seconds

    def train_step(self, batch: list[Example], epoch: int, weight: float = 1.0, sync: bool = True) -> float:
        """Forward and backward of one batch, its gradient scaled by ``weight`` (its share of the
        accumulation group's target tokens); with ``sync`` (the group's last batch) the optimizer step.
        Returns the batch's loss."""
        acc, state, world = self.accelerator, self.state, self.world
        share_weight = 1.0
        if world.distributed:  # this process's share of the global batch (dama.train.distributed)
            mine = distributed.share(batch, world)
            share_weight = distributed.loss_weight(n_target_tokens(mine), n_target_tokens(batch), world)
            batch = mine or batch[:1]  # an empty share still joins the gradient all-reduce, with weight 0
            weight *= share_weight
        cols = collate(batch, self.pad)
        rows = cols.pop("rows").tolist()
        kw = self.train_inputs.model_kwargs(rows, acc.device, self.w.model.dtype)
        dec_ids = cols["decoder_input_ids"].to(acc.device)
        labels = cols["labels"].to(acc.device)
        served = (self.kv.serving(kw["encoder_outputs"].last_hidden_state, rows) if self.kv is not None
                  else contextlib.nullcontext())
        soft = soft_batch(batch, self.soft_targets, labels.shape[1]) if self.soft_targets else None
        with contextlib.nullcontext() if sync else acc.no_sync(self.model), served:
            if self.head is not None:  # loss in vocabulary chunks: no batch x tokens x vocab logits
                with hidden_states_as_logits(acc.unwrap_model(self.model)):
                    hidden = self.model(**kw, decoder_input_ids=dec_ids, use_cache=False).logits
                loss = chunked_cross_entropy(hidden, self.head.weight, labels, soft=soft)
            elif soft is not None:
                logits = self.model(**kw, decoder_input_ids=dec_ids, use_cache=False).logits
                loss = soft_cross_entropy(logits, labels, soft)
            else:
                loss = self.model(**kw, decoder_input_ids=dec_ids, labels=labels, use_cache=False).loss
            if not torch.isfinite(loss):
                path = self.run.checkpoint_path
                last = f"the last good checkpoint is {path}" if path.is_file() else "no checkpoint had been written yet"
                raise TrainingError(f"loss became {loss.item()} at epoch {epoch + 1}, step {state.step}; stopped. "
                                    f"{last}. Lower --lr or use --precision no, then --resume.")
            acc.backward(loss * weight if weight != 1.0 else loss)
        if sync:
            if self.cfg.max_grad_norm:
                acc.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
            self.opt.step()
            self.sched.step()
            if self.adapted.step_hook is not None:
                self.adapted.step_hook(state.step)
            state.step += 1
            self.opt.zero_grad()
        if world.distributed:  # the global batch's mean loss, as one process would log it
            return world.sum(loss.item() * share_weight) / world.size
        return loss.item()

    def end_epoch(self, epoch: int, seconds: float) -> bool:
        """Validate (when due), log the epoch, checkpoint; True to stop early."""
        cfg, state = self.cfg, self.state
        row = {"kind": "epoch", "epoch": epoch + 1, "step": state.step, "epoch_seconds": seconds}
        if self.val_rows and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
            row.update(self.validate(epoch, seconds))
        self.log_metric(**row)
        self.checkpoint()
        if cfg.patience and state.bad_epochs >= cfg.patience:
            self.log(f"early stop: no val improvement for {state.bad_epochs} epoch(s)")
            return True
        return False

    def validate(self, epoch: int, seconds: float) -> dict:
        """Validation WER/CER; a new best keeps a copy of the adapter's tensors."""
        state = self.state
        scores = None
        if self.world.is_main:  # decoded on the main process; every process takes the same decisions from it
            hyps = decode_rows(self.decode_w, self.val_inputs, self.val_m, self.val_rows, self.val_langs,
                               self.val_opts, self.cfg.decode_batch_size, desc="validate")
            e = corpus_errors([self.val_m[r].text for r in self.val_rows], hyps)
            self.log(f"epoch {epoch + 1}: val WER {e.wer:.4f} CER {e.cer:.4f} ({seconds:.1f} s)")
            scores = {"val_wer": e.wer, "val_cer": e.cer}
        scores = self.world.broadcast(scores)
        if state.best_val_wer is None or scores["val_wer"] < state.best_val_wer:
            state.best_val_wer, state.best_epoch, state.bad_epochs = scores["val_wer"], epoch + 1, 0
            self.best = adapter_tensors(self.adapted)
        else:
            state.bad_epochs += 1
        return scores

    def checkpoint(self) -> None:
        state = self.state
        state.peak_memory_mb = max(state.peak_memory_mb, peak_memory_mb(self.w.device))
        state.elapsed_seconds = self.earlier_seconds + time.perf_counter() - self.t_start
        if not self.world.is_main:  # one writer
            return
        save_checkpoint(self.run.checkpoint_path, self.adapted, self.opt, self.sched, state, self.best)

    def log_metric(self, **kv) -> None:
        if self.metrics is None:  # not the main process
            return
        self.metrics.write(json.dumps(kv) + "\n")
        self.metrics.flush()
        tracking.log(self.accelerator, kv)

    # -- the end ----------------------------------------------------------------------------------------

    def _finish(self) -> tuple[Adapted, RunState, dict]:
        """The adapted model with the best validation weights, the final state and a summary."""
        adapted, state = self.adapted, self.state
        adapted.model = self.accelerator.unwrap_model(self.model)  # (DDP's wrapper prefixes names with "module.")
        if self.best is not None:
            load_tensors(adapted.model, self.best)
        adapted.frozen.enforce(adapted.model)
        if self.kv is not None:
            self.kv.detach(adapted.model)
        summary = {
            "trainable_params": count_trainable(adapted.model, adapted.frozen),
            "total_params": sum(p.numel() for p in adapted.model.parameters()),
            "peak_memory_mb": max(state.peak_memory_mb, peak_memory_mb(self.w.device)),
            "train_seconds": state.train_seconds,
            "resumed_seconds": self.earlier_seconds,  # spent by earlier processes of this run (0 if it never stopped)
            "epoch_seconds": state.epoch_seconds,
            "steps": state.step,
            "best_epoch": state.best_epoch,
            "best_val_wer": state.best_val_wer,
            "train_utterances": sum(e.row < self.n_target for e in self.examples),
            "train_hours": sum(self.train_m[e.row].duration or 0.0 for e in self.examples
                               if e.row < self.n_target) / 3600,
            "rehearsal_utterances": sum(e.row >= self.n_target for e in self.examples),
            "skipped_utterances": self.n_skipped,
            "lr": self.lr,
            "precision": self.precision,
            "ranks": adapted.ranks,
            "method_info": adapted.info,
            "kv_cache": self.kv is not None,
        }
        return adapted, state, summary


def n_target_tokens(batch: list[Example]) -> int:
    """The tokens a batch's loss averages over (transcript and end-of-text, not the prompt)."""
    return sum(len(e.tokens) - e.n_prompt for e in batch)


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each encoder/decoder layer's activations in the backward pass instead of keeping them
    (transformers' checkpointing, non-reentrant: it needs no input that requires grad, which a frozen
    embedding under PEFT does not give). Gradients are the same; memory falls, time rises."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x's name for it
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    base.config.use_cache = False


__all__ = ["RunState", "Trainer", "train"]
