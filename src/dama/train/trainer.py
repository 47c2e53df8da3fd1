"""The training harness: one loop for every method, under identical data, budget and evaluation.

Speed: with a frozen encoder (every method but ``full``) encoder outputs come from an
:class:`EncoderCache`, so a step runs only the decoder. Robustness: checkpoints at every
epoch (and every ``save_every`` steps) hold adapter, optimizer, scheduler, RNG and
progress, so ``resume=True`` continues an interrupted run and ends where an
uninterrupted one would; a non-finite loss stops the run, keeping the last good
checkpoint; ``results.json`` (the marker of a finished run) is written last.

Safety: a checkpoint holds only tensors and plain values (RNG states included, converted from
Python's and numpy's tuples), is written atomically with the sha256 of its content and is read
back with :func:`dama.safeio.load_checkpoint`, which never runs code a file may carry and turns
a truncated or corrupted file into a clear error. One process at a time trains in a run folder
(:class:`dama.safeio.FolderLock`).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers.modeling_outputs import BaseModelOutput

from dama.adapt import MethodConfig
from dama.adapt.base import Adapted
from dama.adapt.peft_compat import count_trainable, fuse_lora_forward, trainable_parameters
from dama.data.audio import SAMPLE_RATE, load_audio
from dama.data.manifest import Manifest
from dama.errors import DamaError, DataError
from dama.evaluate.metrics import corpus_errors
from dama.evaluate.run import manifest_languages
from dama.memory import limit_heap_fragmentation, peak_memory_mb
from dama.models.load import Whisper
from dama.models.transcribe import DecodeOptions, decode_features, token_budget
from dama.safeio import (
    LOCK_NAME,
    FileError,
    FolderLock,
    is_temp_name,
    load_checkpoint,
    read_json,
    save_checkpoint_file,
)
from dama.train.batches import bucket_batches, collate, make_examples
from dama.train.cache import EncoderCache
from dama.train.config import TrainConfig
from dama.train.loss import chunked_cross_entropy, fused_lm_head, hidden_states_as_logits


class TrainingError(DamaError):
    """Training stopped (e.g. a non-finite loss); the message says what survived."""


CHECKPOINT = "checkpoint.pt"
RESULTS = "results.json"
CHECKPOINT_KEYS = ("tensors", "best", "optimizer", "scheduler", "rng", "allocator", "state")
# What dama writes in a run folder, by name. A folder holding nothing else (and a config.json that
# is dama's) is recognisably a dama run: only such a folder is ever restarted or deleted by dama.
RUN_NAMES = frozenset({"config.json", "metrics.jsonl", "pissa_init", LOCK_NAME, "zero-shot.json",
                       "zero-shot.hyps.jsonl", "test.hyps.jsonl", "plot.png", "adapter", "model", CHECKPOINT,
                       RESULTS, CHECKPOINT + ".tmp"})


def is_own_temp(name: str) -> bool:
    """A temporary file dama's atomic writes (or the CLI's write check) leave when killed mid-write."""
    if name.startswith(".dama-write-check-"):
        return True
    return is_temp_name(name) and any(name.startswith(f".{n}.") for n in RUN_NAMES)


def is_run_config(cfg: object) -> bool:
    """Whether a parsed config.json is one dama's run writes (not, say, a Hugging Face model's)."""
    return isinstance(cfg, dict) and isinstance(cfg.get("method"), dict) and isinstance(cfg.get("train"), dict)


def foreign_entries(run_dir: Path) -> list[str]:
    """What in ``run_dir`` dama did not write: names it never uses, or everything but the lock
    when config.json is missing or not a dama run config. Empty means the folder is dama's
    (an empty or missing folder included)."""
    if not run_dir.is_dir():
        return []
    names = sorted(p.name for p in run_dir.iterdir())
    odd = [n for n in names if n not in RUN_NAMES and not is_own_temp(n)]
    if odd:
        return odd
    rest = [n for n in names if n != LOCK_NAME and not is_own_temp(n)]
    if not rest:
        return []
    cfg_path = run_dir / "config.json"
    try:
        ok = cfg_path.is_file() and is_run_config(read_json(cfg_path, "run config"))
    except FileError:
        ok = False
    return [] if ok else rest


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    best_val_wer: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    epoch_seconds: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    # across interruptions: the highest peak memory of any process of this run so far, and the wall
    # time earlier processes spent in training up to their last checkpoint (a resumed run's results
    # would otherwise report only its last process: after a kill during testing, no training at all)
    peak_memory_mb: float = 0.0
    elapsed_seconds: float = 0.0


class _Inputs:
    """Encoder outputs (cached) or log-Mel features (for methods that train the encoder)."""

    def __init__(self, w: Whisper, m: Manifest, use_cache: bool, cache_root: Path, log):
        self.use_cache = use_cache
        if use_cache:
            self.cache = EncoderCache.build(w, m, cache_root, log=log)
        else:
            feats = []
            for u in tqdm(m, desc="log-Mel features", unit="utt"):
                a = load_audio(u.audio, u.where)
                feats.append(w.feature_extractor(a, sampling_rate=SAMPLE_RATE, return_tensors="pt")
                             .input_features[0].to(torch.float16))
            self.features = torch.stack(feats) if feats else None

    def model_kwargs(self, rows: list[int], device, dtype) -> dict:
        if self.use_cache:
            hidden = self.cache.get(rows).to(device=device, dtype=dtype)
            return {"encoder_outputs": BaseModelOutput(last_hidden_state=hidden)}
        return {"input_features": self.features[rows].to(device=device, dtype=dtype)}


def decoding_view(w: Whisper, model: torch.nn.Module) -> Whisper:
    """A :class:`Whisper` over the (possibly PEFT-wrapped) model for generation."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return Whisper(base, w.tokenizer, w.feature_extractor, w.name)


@torch.no_grad()
def decode_rows(w: Whisper, inputs: _Inputs, m: Manifest, rows: list[int], langs: list[str],
                opts: DecodeOptions, batch_size: int, desc: str = "decode") -> list[str]:
    """Greedy-decode manifest rows from cached encoder outputs (or features)."""
    model = w.model
    was_training = model.training
    model.eval()
    order = sorted(rows, key=lambda r: -(m[r].duration or 0))
    hyps: dict[int, str] = {}
    for b in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        chunk = order[b:b + batch_size]
        kw = inputs.model_kwargs(chunk, w.device, model.dtype)
        enc = kw.get("encoder_outputs") or model.get_encoder()(kw["input_features"])
        prompts = [w.prompt_ids(langs[r]) for r in chunk]
        budgets = [token_budget(m[r].duration or 30.0, opts) for r in chunk]
        toks = decode_features(w, None, prompts, budgets, opts, encoder_outputs=enc)
        for r, t in zip(chunk, toks):
            hyps[r] = w.tokenizer.decode(t, skip_special_tokens=True).strip()
    model.train(was_training)
    return [hyps[r] for r in rows]


def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _scheduler(opt, cfg: TrainConfig, total_steps: int):
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    warmup = int(cfg.warmup_frac * total_steps)
    make = get_linear_schedule_with_warmup if cfg.schedule == "linear" else get_cosine_schedule_with_warmup
    return make(opt, warmup, total_steps)


def _checkpoint_tensors(adapted: Adapted) -> dict[str, torch.Tensor]:
    """Everything that changes or defines the adapter: trainable tensors, frozen adapter
    tensors and adapter buffers (AdaLoRA's rank masks)."""
    model = adapted.model
    out = {n: p.detach().cpu().clone() for n, p in model.named_parameters()
           if p.requires_grad or n in adapted.frozen or "lora_" in n}
    out.update({n: b.detach().cpu().clone() for n, b in model.named_buffers() if "lora_" in n or "ranknum" in n})
    return out


def _load_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    with torch.no_grad():
        for n, t in tensors.items():
            if n not in params:
                raise TrainingError(f"checkpoint tensor {n} does not exist in the model; wrong method or model?")
            params[n].copy_(t)


def _allocator_state(adapted: Adapted):
    alloc = getattr(getattr(adapted.model, "base_model", None), "rankallocator", None)
    if alloc is None:
        return None
    return {k: getattr(alloc, k) for k in ("ipt", "exp_avg_ipt", "exp_avg_unc")}


def _rng_state() -> dict:
    """Every generator's state as tensors and plain values (what a weights-only load accepts;
    Python's tuple and numpy's array state would otherwise need pickled code to rebuild)."""
    version, mt, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    st = {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    py, npy = st["python"], st["numpy"]
    if isinstance(py, dict):
        random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss_next"]))
    else:  # unversioned checkpoint: the tuple itself
        random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in py))
    if isinstance(npy, dict):
        np.random.set_state((npy["name"], np.asarray(npy["keys"].numpy(), dtype=np.uint32), npy["pos"],
                             npy["has_gauss"], npy["cached_gaussian"]))
    else:
        np.random.set_state(npy)
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(path: Path, adapted: Adapted, opt, sched, state: RunState,
                    best: dict[str, torch.Tensor] | None) -> None:
    """Write atomically: a kill mid-write leaves the previous checkpoint intact. Never
    overwrite a good checkpoint with non-finite weights."""
    tensors = _checkpoint_tensors(adapted)
    bad = [n for n, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        last = f"the last good checkpoint is {path}" if path.is_file() else "no checkpoint had been written yet"
        raise TrainingError(
            f"weights became non-finite (e.g. {bad[0]}) by step {state.step}; stopped without saving them. "
            f"{last}. Lower --lr or use --precision no, then --resume."
        )
    save_checkpoint_file(path, {
        "tensors": tensors,
        "best": best,
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": _rng_state(),
        "allocator": _allocator_state(adapted),
        "state": asdict(state),
    })


def read_checkpoint(path: Path, log: Callable[[str], None] | None = None) -> dict:
    """A run's checkpoint, verified, loaded as plain data: nothing in the file can run code.
    A damaged one is a :class:`dama.safeio.CheckpointError` that says how to start over."""
    fix = (f"Delete {path} to train this run from the beginning (with or without --resume), "
           "or train into another --out.")
    return load_checkpoint(path, fix, required=CHECKPOINT_KEYS, log=log)


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

    ``run_dir`` is locked (:class:`dama.safeio.FolderLock`) for the whole of training: a second
    process training into it fails at once instead of interleaving checkpoints."""
    run_dir = Path(run_dir)
    with FolderLock(run_dir):
        return _train(w, method, train_m, val_m, run_dir, cfg or TrainConfig(), language, resume, log)


def _train(w: Whisper, method: MethodConfig, train_m: Manifest, val_m: Manifest | None, run_dir: Path,
           cfg: TrainConfig, language: str | None, resume: bool, log) -> tuple[Adapted, RunState, dict]:
    from accelerate import Accelerator

    t_start = time.perf_counter()
    if cfg.low_memory:
        limit_heap_fragmentation()
    ckpt_path = run_dir / CHECKPOINT
    if resume and not ckpt_path.is_file():
        raise TrainingError(f"{ckpt_path}: no checkpoint to resume from")
    if not resume and (run_dir / RESULTS).exists():
        raise TrainingError(f"{run_dir} already holds a finished run; choose another --out or delete it")
    ck = read_checkpoint(ckpt_path, log) if resume else None  # a damaged one fails before any work

    train_m.raise_problems()
    langs = manifest_languages(train_m, language)
    train_m.fill_durations()
    examples, skipped = make_examples(w, train_m, langs)
    for p in skipped:
        log(f"note: {p}")
    if not examples:
        raise DataError(f"{train_m.name}: no usable training utterances ({len(skipped)} skipped)")

    device = w.device
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "no"
    accelerator = Accelerator(mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum,
                              cpu=device.type == "cpu")
    _set_seed(cfg.seed)

    n_batches = math.ceil(len(examples) / cfg.batch_size)
    n_batches_local = math.ceil(n_batches / accelerator.num_processes)
    steps_per_epoch = math.ceil(n_batches_local / cfg.grad_accum)
    total_steps = steps_per_epoch * cfg.epochs
    if hasattr(method, "total_step"):
        method.total_step = total_steps
    adapted = method.apply(w.model)
    model = adapted.model
    if adapted.is_peft:
        fuse_lora_forward(model)
    if adapted.is_peft and adapted.info.get("needs_weight_conversion"):
        # PiSSA's starting point, saved as plain LoRA so PEFT can convert the final adapter
        init_flag = model.peft_config["default"].init_lora_weights
        model.peft_config["default"].init_lora_weights = True
        model.save_pretrained(run_dir / "pissa_init")
        model.peft_config["default"].init_lora_weights = init_flag
    cache_root = cfg.cache_root(run_dir)
    train_inputs = _Inputs(w, train_m, adapted.uses_encoder_cache, cache_root, log)

    val_rows, val_inputs, val_langs = [], None, []
    if val_m is not None and len(val_m):
        val_m.raise_problems()
        val_m.fill_durations()
        keep = [u for u in val_m if (u.duration or 0) <= 30.0]
        # encode only the clips validation decodes (with --val-max-utts 10 of 46, a quarter of the cost)
        val_m = Manifest(keep[: cfg.val_max_utts] if cfg.val_max_utts else keep, name=val_m.name)
        val_langs = manifest_languages(val_m, language)
        val_rows = list(range(len(val_m)))
        val_inputs = _Inputs(w, val_m, adapted.uses_encoder_cache, cache_root, log)

    params = [p for _, p in trainable_parameters(model, adapted.frozen)]
    if not params and method.name != "zero-shot":
        raise TrainingError(f"method {method.name} left nothing to train")
    lr = cfg.learning_rate(method)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    sched = _scheduler(opt, cfg, total_steps)
    state = RunState()
    best: dict[str, torch.Tensor] | None = None
    if ck is not None:
        try:
            _load_tensors(model, ck["tensors"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            _set_rng_state(ck["rng"])
            if ck.get("allocator"):
                alloc = model.base_model.rankallocator
                for k, v in ck["allocator"].items():  # loaded on the CPU: back beside the weights
                    setattr(alloc, k, {n: t.to(device) for n, t in v.items()})
            state = RunState(**ck["state"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise TrainingError(
                f"{ckpt_path}: does not fit this run's model, optimizer or schedule ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:200] if str(e) else ''}). Resume with the run's original settings "
                f"(its config.json), or delete {ckpt_path} to train it from the beginning.") from None
        best = ck["best"]
        del ck
        log(f"resuming {run_dir} at epoch {state.epoch + 1}, step {state.step}")
    before = state.elapsed_seconds

    def checkpoint() -> None:
        state.peak_memory_mb = max(state.peak_memory_mb, peak_memory_mb(device))
        state.elapsed_seconds = before + time.perf_counter() - t_start
        save_checkpoint(ckpt_path, adapted, opt, sched, state, best)

    adapted.frozen.enforce(model)
    head = None if adapted.model_loss else fused_lm_head(model)

    model, opt, sched = accelerator.prepare(model, opt, sched)
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics_f = (run_dir / "metrics.jsonl").open("a", encoding="utf-8")
    pad = w.generation_config.pad_token_id
    decode_w = decoding_view(w, accelerator.unwrap_model(model))
    val_opts = DecodeOptions(batch_size=cfg.decode_batch_size)

    def log_metric(**kv) -> None:
        metrics_f.write(json.dumps(kv) + "\n")
        metrics_f.flush()

    try:
        for epoch in range(state.epoch, cfg.epochs):
            model.train()
            batches = bucket_batches(examples, cfg.batch_size, cfg.seed, epoch)
            batches = batches[accelerator.process_index::accelerator.num_processes]
            t0 = time.perf_counter()
            bar = tqdm(total=len(batches), initial=state.batch_in_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                       unit="batch", disable=not accelerator.is_local_main_process)
            for bi in range(state.batch_in_epoch, len(batches)):
                batch = collate(batches[bi], pad)
                rows = batch.pop("rows").tolist()
                kw = train_inputs.model_kwargs(rows, accelerator.device, w.model.dtype)
                dec_ids = batch["decoder_input_ids"].to(accelerator.device)
                labels = batch["labels"].to(accelerator.device)
                with accelerator.accumulate(model):
                    if head is not None:  # loss in vocabulary chunks: no batch x tokens x vocab logits
                        with hidden_states_as_logits(accelerator.unwrap_model(model)):
                            hidden = model(**kw, decoder_input_ids=dec_ids).logits
                        loss = chunked_cross_entropy(hidden, head.weight, labels)
                    else:
                        loss = model(**kw, decoder_input_ids=dec_ids, labels=labels).loss
                    if not torch.isfinite(loss):
                        last = f"the last good checkpoint is {ckpt_path}" if ckpt_path.is_file() else \
                            "no checkpoint had been written yet"
                        raise TrainingError(
                            f"loss became {loss.item()} at epoch {epoch + 1}, step {state.step}; stopped. "
                            f"{last}. Lower --lr or use --precision no, then --resume."
                        )
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and cfg.max_grad_norm:
                        accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                    opt.step()
                    sched.step()
                    if accelerator.sync_gradients:
                        if adapted.step_hook is not None:
                            adapted.step_hook(state.step)
                        state.step += 1
                    opt.zero_grad()
                state.batch_in_epoch = bi + 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
                log_metric(kind="step", epoch=epoch + 1, step=state.step, loss=loss.item(),
                           lr=sched.get_last_lr()[0])
                if accelerator.sync_gradients and cfg.save_every and state.step % cfg.save_every == 0:
                    checkpoint()
                if cfg.stop_after_steps and state.step >= cfg.stop_after_steps:
                    checkpoint()
                    raise KeyboardInterrupt(f"stopped after {state.step} steps (stop_after_steps)")
            bar.close()
            secs = time.perf_counter() - t0
            state.epoch_seconds.append(secs)
            state.train_seconds += secs
            state.epoch, state.batch_in_epoch = epoch + 1, 0
            row = {"kind": "epoch", "epoch": epoch + 1, "step": state.step, "epoch_seconds": secs}
            if val_rows and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                hyps = decode_rows(decode_w, val_inputs, val_m, val_rows, val_langs, val_opts,
                                   cfg.decode_batch_size, desc="validate")
                e = corpus_errors([val_m[r].text for r in val_rows], hyps)
                row.update(val_wer=e.wer, val_cer=e.cer)
                log(f"epoch {epoch + 1}: val WER {e.wer:.4f} CER {e.cer:.4f} ({secs:.1f} s)")
                if state.best_val_wer is None or e.wer < state.best_val_wer:
                    state.best_val_wer, state.best_epoch, state.bad_epochs = e.wer, epoch + 1, 0
                    best = _checkpoint_tensors(adapted)
                else:
                    state.bad_epochs += 1
            log_metric(**row)
            checkpoint()
            if cfg.patience and state.bad_epochs >= cfg.patience:
                log(f"early stop: no val improvement for {state.bad_epochs} epoch(s)")
                break
    finally:
        metrics_f.close()

    if best is not None:
        _load_tensors(model, best)
    adapted.model = accelerator.unwrap_model(model)
    adapted.frozen.enforce(adapted.model)
    summary = {
        "trainable_params": count_trainable(adapted.model, adapted.frozen),
        "total_params": sum(p.numel() for p in adapted.model.parameters()),
        "peak_memory_mb": max(state.peak_memory_mb, peak_memory_mb(device)),
        "train_seconds": state.train_seconds,
        "resumed_seconds": before,  # spent by earlier processes of this run (0 if it never stopped)
        "epoch_seconds": state.epoch_seconds,
        "steps": state.step,
        "best_epoch": state.best_epoch,
        "best_val_wer": state.best_val_wer,
        "train_utterances": len(examples),
        "train_hours": sum(train_m[e.row].duration or 0.0 for e in examples) / 3600,
        "skipped_utterances": len(skipped),
        "lr": lr,
        "precision": precision,
        "ranks": adapted.ranks,
        "method_info": adapted.info,
    }
    return adapted, state, summary


def remove_incomplete(run_dir: Path) -> None:
    """Delete a run directory that has neither results nor a checkpoint (nothing to lose), made by
    a run that failed before its first checkpoint. Only a folder that is recognisably a dama run
    (:func:`foreign_entries` finds nothing) goes: a folder holding anything else is left as it is."""
    if (run_dir.is_dir() and not (run_dir / RESULTS).exists() and not (run_dir / CHECKPOINT).exists()
            and not foreign_entries(run_dir)):
        shutil.rmtree(run_dir, ignore_errors=True)


__all__ = ["RunState", "TrainConfig", "TrainingError", "read_checkpoint", "remove_incomplete", "train"]
