"""A training run end to end: data -> train -> save -> test -> run folder.

What the folder holds, and how it is read back, is :class:`dama.runs.RunFolder`'s business. A
folder is only ever restarted or deleted by dama when it is recognisably a dama run
(:meth:`RunFolder.foreign_entries` finds nothing in it).
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from dama.adapt import MethodConfig
from dama.data.manifest import Manifest
from dama.errors import DamaError
from dama.evaluate.cached import decoding_view, evaluate_cached
from dama.machine import device_name
from dama.memory import peak_memory_mb
from dama.models.load import Whisper, load_whisper, model_fingerprint
from dama.models.new_language import add_language_token
from dama.models.transcribe import DecodeOptions
from dama.runs import RunFolder
from dama.safeio import read_json, write_json
from dama.train import distributed
from dama.train.config import TrainConfig
from dama.train.trainer import train

# What may differ between a run's config.json and the settings it is resumed with: they change
# neither what training computes nor what the run's record claims. Everything else under "train",
# and "method", "language", "data", "new_language", "base_fingerprint" and "languages", must match.
# "model" (a name or a path, which may move) is judged by "base_fingerprint", the base weights
# themselves; device, thread count, torch version and platform describe the machine, not the run.
RESUME_MAY_DIFFER = frozenset({"train.decode_batch_size", "train.cache_dir", "train.low_memory", "train.save_every",
                               "train.stop_after_steps", "train.report_to", "train.kv_cache",
                               "train.gradient_checkpointing"})
RESUME_IGNORED = frozenset({"model", "device", "device_name", "torch", "platform", "cpu_threads"})


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def resume_changes(saved: dict, now: dict) -> tuple[list[str], list[str]]:
    """Compare a run's saved config.json with the settings it is resumed with: the changes that
    forbid resuming ("train.epochs: 2 -> 3") and the allowed ones (:data:`RESUME_MAY_DIFFER`).

    Why refuse: the checkpoint's optimizer, schedule (its length is epochs x steps per epoch), RNG
    and progress belong to the original settings, so continuing under others would silently train
    a mix no setting describes, while config.json went on claiming the old ones. A field only one
    side has (a dama version that added or dropped a setting) is not compared; a change of
    method shows as ``method.method``."""
    now = json.loads(json.dumps(now, default=str))  # as config.json stores it: tuples as lists, paths as str
    blocking, allowed = [], []
    for key, old in _flatten(saved).items():
        if key.split(".")[0] in RESUME_IGNORED:
            continue
        new: object = now
        for part in key.split("."):
            if not isinstance(new, dict) or part not in new:
                break
            new = new[part]
        else:
            if old != new:
                (allowed if key in RESUME_MAY_DIFFER else blocking).append(f"{key}: {old!r} -> {new!r}")
    return blocking, allowed


def plot_metrics(run: RunFolder | str | Path) -> Path | None:
    """Loss and validation curves from the run's metrics.jsonl, as plot.png."""
    import matplotlib

    run = run if isinstance(run, RunFolder) else RunFolder(run)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(x) for x in run.metrics_path.read_text().splitlines() if x.strip()]
    steps = [r for r in rows if r["kind"] == "step"]
    epochs = [r for r in rows if r["kind"] == "epoch" and "val_wer" in r]
    if not steps:
        return None
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    ax[0].plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=1)
    ax[0].set(xlabel="optimizer step", ylabel="training loss", title="loss")
    if epochs:
        ax[1].plot([r["epoch"] for r in epochs], [r["val_wer"] for r in epochs], "o-", label="WER")
        ax[1].plot([r["epoch"] for r in epochs], [r["val_cer"] for r in epochs], "s--", label="CER")
        ax[1].legend()
    ax[1].set(xlabel="epoch", ylabel="validation error", title="validation")
    fig.suptitle(run.path.name)
    fig.tight_layout()
    out = run.plot_path
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def run_training(
    model_name: str,
    method: MethodConfig,
    train_m: Manifest,
    val_m: Manifest | None,
    test_m: Manifest | None,
    run_dir: str | Path,
    cfg: TrainConfig,
    language: str | None = None,
    resume: bool = False,
    device: str | None = None,
    data_specs: dict | None = None,
    log=print,
    language_name: str | None = None,
    zero_shot: bool = False,
    language_slot: dict | None = None,
) -> dict:
    """Train, save the adapter, evaluate on ``test_m`` and write the run directory.

    With ``zero_shot``, the untouched base model is first scored on ``test_m`` from the same
    encoder cache, so the run reports its own baseline (``results["zero_shot"]``).

    ``resume`` continues from the folder's checkpoint, with the settings in its config.json (other
    ones are refused, see :func:`resume_changes`); a finished run's results are returned as they
    are. A dama run folder with no checkpoint yet (killed early) starts again from the beginning,
    with or without ``resume``. The folder is locked for the whole run: a second process fails at
    once."""
    run = RunFolder(run_dir)
    if resume and run.is_finished():
        log(f"{run.path} is already finished; its results:")
        return run.read_results()
    world = distributed.world(device)
    if not world.is_main:  # one of several processes (accelerate launch): the main one writes the folder
        return _run_helper(world, model_name, method, train_m, val_m, run, cfg, language, resume, device,
                           language_name, language_slot)
    created = not run.path.exists()
    with run.lock():
        try:
            return _run_locked(model_name, method, train_m, val_m, test_m, run, cfg, language, resume, device,
                               data_specs, log, language_name, zero_shot, language_slot, world)
        except BaseException:
            if created:
                run.remove_if_unstarted()
            raise


def _load_base(model_name: str, method: MethodConfig, language: str | None, device: str | None,
               language_name: str | None, language_slot: dict | None, log):
    """The base model with the run's language token (a new one, or a slot), the method training it, and
    the fingerprint of the base weights as loaded (before a new token's row is added)."""
    w = load_whisper(model_name, device=device)
    base_fingerprint = model_fingerprint(w.model)
    new_language = None
    if language_name:
        if not language:
            raise DamaError("--language-name needs --language CODE for the new language")
        token_id = add_language_token(w, language, language_name)
        method = replace(method, train_token_ids=(token_id,))
        new_language = {"code": language, "name": language_name, "token_id": token_id}
        log(f"new language token <|{language}|> ({language_name}) = id {token_id}; only its row trains")
    if language_slot:  # a language on an existing token (--language-slot): that token's row trains instead
        token_id = w.language_token_id(language_slot["slot"])
        method = replace(method, train_token_ids=(token_id,))
        language_slot = {**language_slot, "token_id": token_id}
        log(f"{language_slot.get('name') or 'the language'} on <|{language_slot['slot']}|> = id {token_id}; "
            "its row trains")
    return w, method, new_language, language_slot, base_fingerprint


def _run_helper(world: distributed.World, model_name: str, method: MethodConfig, train_m: Manifest,
                val_m: Manifest | None, run: RunFolder, cfg: TrainConfig, language: str | None, resume: bool,
                device: str | None, language_name: str | None, language_slot: dict | None) -> dict:
    """A process other than the main one: it waits while the main process prepares the folder (and
    scores zero-shot), trains its share of every batch, waits while the main process saves and tests,
    and returns the results the main process wrote. It writes nothing."""
    world.barrier()  # the folder is ready (or the main process failed, and the launcher ends us)
    resume = resume and run.has_checkpoint()
    w, method, _, _, _ = _load_base(model_name, method, language, device, language_name, language_slot,
                                 log=lambda m: None)
    if method.trains:
        train(w, method, train_m, val_m, run.path, cfg, language, resume, log=lambda m: None)
    world.barrier()  # the main process has written results.json
    return run.read_results()


def _prepare_run_dir(run: RunFolder, resume: bool, log) -> bool:
    """Whether to resume from the folder's checkpoint; refuses what cannot be run into. A folder
    killed before its first checkpoint holds only what dama wrote first (config.json, metrics.jsonl,
    pissa_init/, ...): nothing to lose, so those files (and only those) go, and the run starts over."""
    if run.is_finished():  # with resume, returned earlier
        raise DamaError(f"{run.path} holds a finished run ({run.RESULTS}); use --resume to print its results, "
                        "or train into another --out")
    if run.has_checkpoint():
        if not resume:
            raise DamaError(f"{run.path} holds an interrupted run ({run.CHECKPOINT}); use --resume to continue "
                            "it, or train into another --out")
        for p in run.path.iterdir():  # half-written files of the killed process (we hold the folder's lock)
            if run.is_own_temp(p.name) and p.is_file():
                p.unlink()
        return True
    strangers = run.foreign_entries()
    if strangers:
        shown = ", ".join(strangers[:5]) + (" ..." if len(strangers) > 5 else "")
        raise DamaError(f"{run.path} is not empty and is not a dama run folder (it holds {shown}); "
                        "train into another --out, or move those files away")
    own = [p for p in run.path.iterdir() if p.name != run.LOCK]
    if resume:
        log(f"{run.path}: no checkpoint yet; starting from the beginning")
    elif [p for p in own if not run.is_own_temp(p.name)]:
        log(f"{run.path}: an earlier run stopped before its first checkpoint; starting from the beginning")
    for p in own:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    return False


def _saved_config(run: RunFolder) -> dict:
    """The config.json of the run being resumed (to compare the new settings with)."""
    if not run.config_path.is_file():
        raise DamaError(f"{run.path} has a checkpoint but no {run.CONFIG} to check the settings against; "
                        f"delete {run.checkpoint_path} to train the run from the beginning, "
                        "or train into another --out")
    saved = run.read_config()
    if not run.is_run_config(saved):
        raise DamaError(f"{run.config_path} is not a dama run config; train into another --out")
    return saved


def _run_locked(model_name: str, method: MethodConfig, train_m: Manifest, val_m: Manifest | None,
                test_m: Manifest | None, run: RunFolder, cfg: TrainConfig, language: str | None, resume: bool,
                device: str | None, data_specs: dict | None, log, language_name: str | None,
                zero_shot: bool, language_slot: dict | None = None,
                world: distributed.World | None = None) -> dict:
    """:func:`run_training` once the folder is locked (in the main process, when there are several)."""
    world = world or distributed.World()
    resume = _prepare_run_dir(run, resume, log)
    saved = _saved_config(run) if resume else None
    w, method, new_language, language_slot, base_fingerprint = _load_base(model_name, method, language, device,
                                                                          language_name, language_slot, log)
    config = {
        "model": model_name, "method": method.to_dict(),
        # the rate used, not just "default": a later change of a method's default_lr stays visible
        "train": {**cfg.__dict__, "lr": cfg.learning_rate(method) if method.trains else None},
        "language": language,
        "data": data_specs or {}, "device": str(w.device), "device_name": device_name(w.device),
        "torch": torch.__version__, "platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
        "new_language": new_language, "base_fingerprint": base_fingerprint, "language_slot": language_slot,
        "languages": sorted({language} if language else {u.language for u in train_m if u.language}),
    }
    if saved is not None:
        blocking, allowed = resume_changes(saved, config)
        if blocking:
            raise DamaError(
                f"{run.path} was trained with other settings; --resume must continue it with the same ones "
                f"({run.config_path}). Changed:\n  " + "\n  ".join(blocking) +
                "\nRerun with the original settings, or train into another --out.")
        for change in allowed:
            log(f"note: resuming with {change} (allowed; config.json keeps the original)")
    else:
        run.write_config(config)
    t0 = time.perf_counter()
    test_opts = DecodeOptions(batch_size=cfg.decode_batch_size)
    cache_root = cfg.cache_root(run.path)
    zs = None
    if zero_shot and test_m is not None and len(test_m) and method.trains:
        if new_language:
            log(f"no zero-shot baseline: Whisper has no <|{language}|> token before training")
        else:
            zs = _zero_shot(w, test_m, language, run, cache_root, test_opts, log)
    world.barrier()  # the folder is ready: the other processes start (see _run_helper)
    if method.trains:
        adapted, _, summary = train(w, method, train_m, val_m, run.path, cfg, language, resume, log)
        summary["adapter_dir"] = str(run.save_adapted(adapted, w))
        results = dict(summary)
    else:  # the base model as it is: only the test below
        adapted = method.apply(w.model)
        results = {"trainable_params": 0, "total_params": sum(p.numel() for p in w.model.parameters()),
                   "peak_memory_mb": peak_memory_mb(w.device), "train_seconds": 0.0, "epoch_seconds": []}
    if test_m is not None and len(test_m):
        results.update(evaluate_cached(decoding_view(w, adapted.model), test_m, language, run.hyps_path("test"),
                                       cache_root, opts=test_opts, use_cache=adapted.uses_encoder_cache, log=log))
        if zs is not None:
            results["zero_shot"] = zs
            results["wer_reduction_rel"] = 1 - results["wer"] / zs["wer"] if zs["wer"] else 0.0
    results["total_seconds"] = time.perf_counter() - t0 + results.get("resumed_seconds", 0.0)
    if run.metrics_path.is_file():
        plot_metrics(run)
    run.write_results(results)
    world.barrier()  # the other processes now read results.json
    return results


def _zero_shot(w: Whisper, test_m: Manifest, language: str | None, run: RunFolder, cache_root: Path,
               opts: DecodeOptions, log) -> dict:
    """The base model's score on the test split, kept in the run directory across --resume."""
    if run.zero_shot_path.is_file():
        return read_json(run.zero_shot_path, "zero-shot score", "Delete it; --resume then scores the base model again.")
    res = evaluate_cached(w, test_m, language, run.hyps_path("zero-shot"), cache_root, opts=opts, log=log)
    zs = {k: res[k] for k in ("wer", "cer", "n")}
    write_json(run.zero_shot_path, zs)
    return zs


__all__ = ["RESUME_IGNORED", "RESUME_MAY_DIFFER", "resume_changes", "run_training"]
