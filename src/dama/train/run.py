"""A training run end to end: data -> train -> save -> test -> run directory.

RUN_DIR/
  config.json        method, training and data settings, base model, versions
  adapter/           standard PEFT adapter (loads with PeftModel.from_pretrained, no dama needed)
  model/             (full fine-tuning only) a Hugging Face model directory instead
  metrics.jsonl      per step: loss, lr; per epoch: time, val WER/CER
  checkpoint.pt      last checkpoint, for --resume
  test.hyps.jsonl    per-utterance test transcripts and error counts
  zero-shot.json     (--compare-zero-shot) the base model's test score, + zero-shot.hyps.jsonl
  plot.png           loss and validation WER curves
  results.json       written last: its presence marks a finished run
  .dama.lock         held (flock) by the one process writing the folder; see dama.safeio.FolderLock

A folder is only ever restarted or deleted by dama when it is recognisably a dama run: nothing
in it but the names above and a config.json that dama wrote (``trainer.foreign_entries``).
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from pathlib import Path

import torch

from dama.adapt import MethodConfig
from dama.adapt.base import Adapted
from dama.data.manifest import Manifest
from dama.errors import DamaError, ModelError
from dama.machine import device_name
from dama.memory import peak_memory_mb
from dama.models.load import Whisper, load_whisper, model_fingerprint
from dama.models.new_language import add_language_token
from dama.models.transcribe import DecodeOptions
from dama.safeio import LOCK_NAME, FolderLock, read_json, write_json
from dama.train.trainer import (
    CHECKPOINT,
    RESULTS,
    TrainConfig,
    _Inputs,
    decode_rows,
    decoding_view,
    foreign_entries,
    is_own_temp,
    is_run_config,
    remove_incomplete,
    train,
)

# What may differ between a run's config.json and the settings it is resumed with: they change
# neither what training computes nor what the run's record claims. Everything else under "train",
# and "method", "language", "data", "new_language", "base_fingerprint" and "languages", must match.
# "model" (a name or a path, which may move) is judged by "base_fingerprint", the base weights
# themselves; device, thread count, torch version and platform describe the machine, not the run.
RESUME_MAY_DIFFER = frozenset({"train.decode_batch_size", "train.cache_dir", "train.low_memory", "train.save_every",
                               "train.stop_after_steps"})
RESUME_IGNORED = frozenset({"model", "device", "device_name", "torch", "platform", "cpu_threads"})


def save_adapted(adapted: Adapted, w: Whisper, run_dir: Path) -> Path:
    if adapted.is_peft:
        out = run_dir / "adapter"
        if out.exists():
            shutil.rmtree(out)
        kwargs = {}
        if adapted.info.get("needs_weight_conversion"):
            kwargs["path_initial_model_for_weight_conversion"] = str(run_dir / "pissa_init")
        adapted.model.save_pretrained(out, **kwargs)
        return out
    out = run_dir / "model"
    adapted.model.save_pretrained(out)
    w.tokenizer.save_pretrained(out)
    w.feature_extractor.save_pretrained(out)
    adapted.model.generation_config.save_pretrained(out)
    return out


def read_run_config(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ModelError(f"{run_dir}: not a dama run directory (no config.json)")
    return read_json(path, "run config", "Train the run again, or restore its config.json.")


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


def check_base(w: Whisper, cfg: dict, label: str) -> None:
    """The base model must be the one the run's adapter was trained on (weights fingerprint)."""
    want = cfg.get("base_fingerprint")
    if want and model_fingerprint(w.model) != want:
        raise ModelError(f"{label}: the base model {w.name} is not the one its adapter was trained on "
                         f"(weights fingerprint {model_fingerprint(w.model)} != {want} in config.json). "
                         "Use the exact base model the run used.")


def restore_new_language(w: Whisper, cfg: dict, label: str) -> None:
    """Give the tokenizer the language token a run added, at the id it was trained with (idempotent)."""
    nl = cfg.get("new_language")
    if not nl:
        return
    token = f"<|{nl['code']}|>"
    vocab = w.tokenizer.get_vocab()
    tid = vocab[token] if token in vocab else add_language_token(w, nl["code"], nl["name"])
    if tid != nl["token_id"]:
        raise ModelError(f"{label}: {token} gets id {tid} on this base, but was trained as {nl['token_id']} "
                         "(adapters that add different new languages cannot share one base)")


def load_run(run_dir: str | Path, device: str | None = None, merge: bool = True,
             base: str | Path | None = None) -> Whisper:
    """Load a finished run for transcription, evaluation or export: its base model (``base``
    overrides where to find it) with the adapter applied, merged unless ``merge=False``.
    The base must be the one the adapter was trained on (weights fingerprint in config.json)."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    if (run_dir / "model").is_dir():
        return load_whisper(run_dir / "model", device=device)
    adapter = run_dir / "adapter"
    if not adapter.is_dir():
        raise ModelError(f"{run_dir}: no adapter/ or model/ folder; did the run finish?")
    from peft import PeftModel

    source = base or cfg["model"]
    try:
        w = load_whisper(source, device=device)
    except ModelError as e:
        raise ModelError(f"{run_dir}: cannot load the base model {source} its adapter was trained on: {e}\n"
                         "Fetch it (dama model fetch NAME) or pass --model PATH to where it is.") from e
    check_base(w, cfg, str(run_dir))
    restore_new_language(w, cfg, str(run_dir))
    peft_model = PeftModel.from_pretrained(w.model, adapter)
    model = peft_model.merge_and_unload() if merge else peft_model.get_base_model()
    model.eval()
    return Whisper(model, w.tokenizer, w.feature_extractor, f"{w.name}+{run_dir.name}")


def plot_metrics(run_dir: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
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
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    out = run_dir / "plot.png"
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
) -> dict:
    """Train, save the adapter, evaluate on ``test_m`` and write the run directory.

    With ``zero_shot``, the untouched base model is first scored on ``test_m`` from the same
    encoder cache, so the run reports its own baseline (``results["zero_shot"]``).

    ``resume`` continues from the folder's checkpoint, with the settings in its config.json (other
    ones are refused, see :func:`resume_changes`); a finished run's results are returned as they
    are. A dama run folder with no checkpoint yet (killed early) starts again from the beginning,
    with or without ``resume``. The folder is locked for the whole run: a second process fails at
    once."""
    run_dir = Path(run_dir)
    if resume and (run_dir / RESULTS).is_file():
        log(f"{run_dir} is already finished; its results:")
        return read_json(run_dir / RESULTS, "results", f"Delete {run_dir} to train the run again.")
    created = not run_dir.exists()
    with FolderLock(run_dir):
        try:
            return _run_locked(model_name, method, train_m, val_m, test_m, run_dir, cfg, language, resume, device,
                               data_specs, log, language_name, zero_shot)
        except BaseException:
            if created:
                remove_incomplete(run_dir)
            raise


def _prepare_run_dir(run_dir: Path, resume: bool, log) -> bool:
    """Whether to resume from the folder's checkpoint; refuses what cannot be run into. A folder
    killed before its first checkpoint holds only what dama wrote first (config.json, metrics.jsonl,
    pissa_init/, ...): nothing to lose, so those files (and only those) go, and the run starts over."""
    if (run_dir / RESULTS).is_file():  # with resume, returned earlier
        raise DamaError(f"{run_dir} holds a finished run ({RESULTS}); use --resume to print its results, "
                        "or train into another --out")
    if (run_dir / CHECKPOINT).is_file():
        if not resume:
            raise DamaError(f"{run_dir} holds an interrupted run ({CHECKPOINT}); use --resume to continue it, "
                            "or train into another --out")
        for p in run_dir.iterdir():  # half-written files of the killed process (we hold the folder's lock)
            if is_own_temp(p.name) and p.is_file():
                p.unlink()
        return True
    strangers = foreign_entries(run_dir)
    if strangers:
        shown = ", ".join(strangers[:5]) + (" ..." if len(strangers) > 5 else "")
        raise DamaError(f"{run_dir} is not empty and is not a dama run folder (it holds {shown}); "
                        "train into another --out, or move those files away")
    own = [p for p in run_dir.iterdir() if p.name != LOCK_NAME]
    if resume:
        log(f"{run_dir}: no checkpoint yet; starting from the beginning")
    elif [p for p in own if not is_own_temp(p.name)]:
        log(f"{run_dir}: an earlier run stopped before its first checkpoint; starting from the beginning")
    for p in own:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    return False


def _run_locked(model_name: str, method: MethodConfig, train_m: Manifest, val_m: Manifest | None,
                test_m: Manifest | None, run_dir: Path, cfg: TrainConfig, language: str | None, resume: bool,
                device: str | None, data_specs: dict | None, log, language_name: str | None,
                zero_shot: bool) -> dict:
    """:func:`run_training` once the folder is locked."""
    resume = _prepare_run_dir(run_dir, resume, log)
    if resume:
        if not (run_dir / "config.json").is_file():
            raise DamaError(f"{run_dir} has a checkpoint but no config.json to check the settings against; "
                            f"delete {run_dir / CHECKPOINT} to train the run from the beginning, "
                            "or train into another --out")
        saved = read_run_config(run_dir)
        if not is_run_config(saved):
            raise DamaError(f"{run_dir / 'config.json'} is not a dama run config; train into another --out")
    w = load_whisper(model_name, device=device)
    base_fingerprint = model_fingerprint(w.model)
    new_language = None
    if language_name:
        if not language:
            raise DamaError("--language-name needs --language CODE for the new language")
        token_id = add_language_token(w, language, language_name)
        method.train_token_ids = (token_id,)
        new_language = {"code": language, "name": language_name, "token_id": token_id}
        log(f"new language token <|{language}|> ({language_name}) = id {token_id}; only its row trains")
    config = {
        "model": model_name, "method": method.to_dict(),
        # the rate used, not just "default": a later change of a method's default_lr stays visible
        "train": {**cfg.__dict__, "lr": None if method.name == "zero-shot" else cfg.learning_rate(method)},
        "language": language,
        "data": data_specs or {}, "device": str(w.device), "device_name": device_name(w.device),
        "torch": torch.__version__, "platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
        "new_language": new_language, "base_fingerprint": base_fingerprint,
        "languages": sorted({language} if language else {u.language for u in train_m if u.language}),
    }
    if resume:
        blocking, allowed = resume_changes(saved, config)
        if blocking:
            raise DamaError(
                f"{run_dir} was trained with other settings; --resume must continue it with the same ones "
                f"({run_dir / 'config.json'}). Changed:\n  " + "\n  ".join(blocking) +
                "\nRerun with the original settings, or train into another --out.")
        for change in allowed:
            log(f"note: resuming with {change} (allowed; config.json keeps the original)")
    else:
        write_json(run_dir / "config.json", config)
    t0 = time.perf_counter()
    zs = None
    if zero_shot and test_m is not None and len(test_m) and method.name != "zero-shot":
        if new_language:
            log(f"no zero-shot baseline: Whisper has no <|{language}|> token before training")
        else:
            zs = _zero_shot(w, test_m, language, run_dir, cfg, log)
    if method.name == "zero-shot":
        adapted = method.apply(w.model)
        results = {"trainable_params": 0, "total_params": sum(p.numel() for p in w.model.parameters()),
                   "peak_memory_mb": peak_memory_mb(w.device), "train_seconds": 0.0, "epoch_seconds": []}
    else:
        adapted, _, summary = train(w, method, train_m, val_m, run_dir, cfg, language, resume, log)
        summary["adapter_dir"] = str(save_adapted(adapted, w, run_dir))
        results = dict(summary)
    if test_m is not None and len(test_m):
        view = decoding_view(w, adapted.model)
        results.update(evaluate_split(view, test_m, language, run_dir, cfg, adapted.uses_encoder_cache, log=log))
        if zs is not None:
            results["zero_shot"] = zs
            results["wer_reduction_rel"] = 1 - results["wer"] / zs["wer"] if zs["wer"] else 0.0
    results["total_seconds"] = time.perf_counter() - t0 + results.get("resumed_seconds", 0.0)
    if (run_dir / "metrics.jsonl").is_file():
        plot_metrics(run_dir)
    write_json(run_dir / RESULTS, results)
    return results


def _zero_shot(w: Whisper, test_m: Manifest, language: str | None, run_dir: Path, cfg: TrainConfig, log) -> dict:
    """The base model's score on the test split, kept in the run directory across --resume."""
    path = run_dir / "zero-shot.json"
    if path.is_file():
        return read_json(path, "zero-shot score", "Delete it; --resume then scores the base model again.")
    res = evaluate_split(w, test_m, language, run_dir, cfg, hyps_name="zero-shot.hyps.jsonl", log=log)
    zs = {k: res[k] for k in ("wer", "cer", "n")}
    write_json(path, zs)
    return zs


def evaluate_split(w: Whisper, m: Manifest, language: str | None, run_dir: Path, cfg: TrainConfig,
                   use_cache: bool = True, hyps_name: str = "test.hyps.jsonl", log=print,
                   opts: DecodeOptions | None = None) -> dict:
    """Greedy decoding of a test split — clips up to 30 s from cached encoder outputs, longer ones
    chunked from audio — scored and written per utterance to ``hyps_name``."""
    from dama.data.audio import load_audio
    from dama.evaluate.run import evaluate, manifest_languages, score_hyps
    from dama.models.transcribe import transcribe

    m.raise_problems()
    m.fill_durations()
    hyps_path = run_dir / hyps_name
    opts = opts or DecodeOptions(batch_size=cfg.decode_batch_size)
    short = [i for i, u in enumerate(m) if (u.duration or 0) <= 30.0]
    if not use_cache or not short:
        res = evaluate(w, m, language=language, opts=opts, hyps_path=hyps_path)
    else:
        langs = manifest_languages(m, language)
        short_m = Manifest([m[i] for i in short], name=m.name)
        inputs = _Inputs(w, short_m, True, cfg.cache_root(run_dir), log)
        t = time.perf_counter()
        hyps: list[str] = [""] * len(m)
        decoded = decode_rows(w, inputs, short_m, list(range(len(short))), [langs[i] for i in short], opts,
                              opts.batch_size, desc=hyps_name.split(".")[0])
        for i, h in zip(short, decoded):
            hyps[i] = h
        secs = time.perf_counter() - t
        long = sorted(set(range(len(m))) - set(short))
        if long:  # the encoder runs on each 30 s window of these
            texts = transcribe(w, [load_audio(m[i].audio, m[i].where) for i in long], [langs[i] for i in long], opts)
            for i, h in zip(long, texts):
                hyps[i] = h
        res = score_hyps(m, langs, hyps, hyps_path)
        res["rtf_cached"] = secs / short_m.seconds if short_m.seconds else 0.0
        res["long_clips_from_audio"] = len(long)
    log(f"{hyps_name.split('.')[0]} {m.name}: WER {res['wer']:.4f} CER {res['cer']:.4f} (n={res['n']})")
    return {k: res[k] for k in ("wer", "cer", "n", "word_errors", "ref_words", "char_errors", "ref_chars",
                                "by_language", "rtf", "rtf_cached", "long_clips_from_audio") if k in res}
