"""Know before you start: what a training run will need, from the model's architecture alone.

For a model (a size name such as ``large-v3``, a known name, or a model folder; nothing is loaded but
its ``config.json`` and tokenizer), a method, a batch size and a precision: trainable parameters
(exact: the method is applied to the model built on PyTorch's meta device), peak memory of a training
step on CPU and on a GPU, the encoder cache's disk use per hour of audio, the compute of a run, and
whether it fits a memory limit. Bad input fails here, before any work: a folder that is not a complete
Whisper, a tokenizer that does not match the model, a run predicted over ``--gpu-memory``.

The memory model, for the methods that leave the encoder frozen (every one but ``full``: the decoder
reads cached encoder outputs, 1500 frames per clip)::

    peak = fixed + 4 B x all parameters (float32 weights; dama trains float32 masters)
                 + 12 B x trainable parameters (gradient and AdamW's two moments)
                 + ACT x batch x layers_held x 1500 x d_model x 4 B (activations)

where ``layers_held`` is the decoder depth (1 with gradient checkpointing, which keeps one layer's
activations at a time) and the activations are per decoder layer dominated by cross-attention over
the 1500 encoder frames (its keys and values, served from the K/V cache in a float32 run, the
adapters' inputs, the attention's saved tensors). ``ACT`` and ``fixed`` (the Python
process: torch, transformers, data; CPU only) are calibrated on the peaks measured by
``benchmarks/model_sizes.py`` (random weights of each exact architecture, batch 4, 2-core CPU), where
the prediction is checked against each measurement (``tests/test_estimate.py``). On a GPU the same
model is used with float32 weights and master copies, activations scaled by ``GPU_ACT_SCALE`` under
bf16/fp16 autocast, plus the CUDA context: derived, not measured (no GPU here).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from dama.errors import DamaError, ModelError
from dama.models.sizes import SIZES, check_model_config, check_tokenizer, get_size, whisper_config

MB = 2**20
FRAMES = 1500  # encoder frames per clip (30 s): what the cache stores and cross-attention reads
# Calibration: calibrate() over every size measured in benchmarks/results/model_sizes.json
# (`python benchmarks/model_sizes.py`: batch 4, float32, K/V cache on as by default; see the module doc);
# tests/test_estimate.py checks these equal the fit and each measured peak's error (docs/large-models.md)
ACT = 4.83  # activation bytes per (clip x decoder layer x frame x d_model) in units of 4 B (float32)
CPU_FIXED_MB = 551.9  # the process without the model: Python, torch, transformers, the data
GPU_ACT_SCALE = 0.6  # bf16/fp16 autocast: linear outputs in 16 bits, softmax and norms still float32
GPU_FIXED_MB = 600.0  # CUDA context and allocator slack
CACHE_MB_PER_CLIP_PER_D = FRAMES * 2 / MB  # float16, 1500 frames
DEFAULT_CLIP_SECONDS = 15.95  # mean clip of swahili:train (0.80 h / 180 clips within 30 s)
DEFAULT_TARGET_TOKENS = 100  # prompt + transcript of a ~16 s clip (Swahili, whisper-base BPE)


def parse_memory(text: str) -> float:
    """``24GB``, ``24G``, ``24GiB``, ``80 GB``, ``16000MB`` -> MiB (GB read as GiB: what tools print)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([GgMm])(?:i?[Bb])?\s*", str(text))
    if not m:
        raise DamaError(f"--gpu-memory {text!r}: give an amount such as 24GB or 16000MB")
    x = float(m[1])
    return x * 1024 if m[2].lower() == "g" else x


class UnknownModelName(ModelError):
    """A model given by a name that is no folder here and no published size (a hub id only the loader
    resolves): its shape is unknown until it is loaded."""


@dataclass
class ModelShape:
    """What the estimate needs of a model, read without loading its weights."""

    where: str
    config: dict
    size: str | None  # the published size it is, if any
    tokens: int | None = None  # tokenizer length, when a tokenizer was found


def _hf_folder(path: Path) -> ModelShape:
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise ModelError(f"{path}: no config.json; give a transformers Whisper folder, a CTranslate2 folder or a "
                         f"size ({', '.join(SIZES)})")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{cfg_path}: not readable JSON ({e})") from None
    size = check_model_config(config, str(cfg_path))
    tokens = None
    tok_path = path / "tokenizer.json"
    if tok_path.is_file():
        tok = json.loads(tok_path.read_text(encoding="utf-8"))
        ids = set(tok.get("model", {}).get("vocab", {}).values()) | {t["id"] for t in tok.get("added_tokens", [])}
        tokens = len(ids)
        check_tokenizer(tokens, config["vocab_size"], str(tok_path))
    return ModelShape(str(path), config, size.name if size else None, tokens)


def read_model_shape(model: str) -> ModelShape:
    """A size name (``large-v3``, ``openai/whisper-large-v3``), a name dama fetches (``whisper-base``) or a
    model folder (transformers or CTranslate2) -> its shape, checked."""
    from dama.models.fetch import KNOWN_MODELS, cached_model_dir, is_cached

    path = Path(model).expanduser()
    if path.is_dir():
        from dama.models.convert import is_ct2_dir

        if is_ct2_dir(path):
            from dama.models.ct2 import read_ct2, whisper_config_from_ct2

            config = {"model_type": "whisper", **whisper_config_from_ct2(read_ct2(path / "model.bin"))}
            size = check_model_config(config, str(path / "model.bin"))
            return ModelShape(str(path), config, size.name if size else None)
        return _hf_folder(path)
    if model in KNOWN_MODELS and is_cached(model):
        return _hf_folder(cached_model_dir(model))
    try:
        s = get_size(model)
    except ModelError:
        raise UnknownModelName(f"{model!r} is neither a model folder nor a Whisper size ({', '.join(SIZES)})") from None
    return ModelShape(s.hub_id, json.loads(whisper_config(s).to_json_string()), s.name, s.vocab_size)


def _meta_model(config: dict):
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    keep = {k: v for k, v in config.items() if k not in ("architectures", "transformers_version")}
    pad = keep.get("pad_token_id", 50256)  # WhisperConfig's default; a CTranslate2 folder's config has none
    if not isinstance(pad, int) or not 0 <= pad < keep.get("vocab_size", 51865):
        keep["pad_token_id"] = None  # parameter counts do not depend on it; an id past the vocabulary would raise
    with torch.device("meta"):
        return WhisperForConditionalGeneration(WhisperConfig(**keep))


_COUNTS: dict[tuple[str, str], tuple[int, int, list[int] | None]] = {}


def trainable_params(config: dict, method) -> tuple[int, int, list[int] | None]:
    """(trainable, total, per-layer ranks) of ``method`` on the model of ``config``, counted on the meta device
    (once per process for each model shape and method)."""
    key = (json.dumps(config, sort_keys=True, default=str), repr(method))
    if key not in _COUNTS:
        _COUNTS[key] = _count(config, method)
    return _COUNTS[key]


def _count(config: dict, method) -> tuple[int, int, list[int] | None]:
    from dama.adapt.peft_compat import count_trainable

    model = _meta_model(config)
    total = sum(p.numel() for p in model.parameters())
    if not method.trains:
        return 0, total, None
    if hasattr(method, "svd_init"):
        method = replace(method, svd_init=False)  # the layout, not the values: no SVD on meta tensors
    if method.name == "pissa":  # PiSSA's SVD init cannot run on meta tensors; its parameters are LoRA's
        from dama.adapt.lora import LoraMethod

        method = LoraMethod(r=method.r, alpha_ratio=method.alpha_ratio)
    if method.name == "adalora":
        method = method.for_run(1000)
    import warnings

    with warnings.catch_warnings():  # PEFT asks transformers a deprecated question; nothing the user can act on
        warnings.simplefilter("ignore", FutureWarning)
        adapted = method.apply(model)
    return count_trainable(adapted.model, adapted.frozen), total, adapted.ranks


@dataclass
class Estimate:
    model: str
    size: str | None
    method: str
    batch_size: int
    precision: str
    gradient_checkpointing: bool
    decoder_layers: int
    d_model: int
    trainable_params: int
    total_params: int
    ranks: list[int] | None
    cpu_peak_mb: float
    gpu_peak_mb: float
    cache_mb_per_clip: float
    cache_mb_per_hour: float
    kv_cache_mb_per_hour: float  # the cross-attention K/V cache (dama.kv_cache) of a float32 run; 0 when unused
    clip_seconds: float
    encoder_frozen: bool
    notes: list[str] = field(default_factory=list)
    gpu_memory_mb: float | None = None

    @property
    def fits(self) -> bool | None:
        return None if self.gpu_memory_mb is None else self.gpu_peak_mb <= self.gpu_memory_mb

    def to_dict(self) -> dict:
        return {**asdict(self), "fits_gpu_memory": self.fits}


def peak_memory_mb(total: int, trainable: int, batch: int, layers: int, d_model: int, gpu: bool,
                   precision: str = "no", checkpointing: bool = False, encoder_layers: int = 0) -> float:
    """The memory model of the module doc, in MiB. ``encoder_layers``: layers whose activations are held
    besides the decoder's (full fine-tuning, where the encoder trains too)."""
    held = 1 if checkpointing else layers + encoder_layers
    act = ACT * batch * held * FRAMES * d_model * 4
    if gpu and precision in ("bf16", "fp16"):
        act *= GPU_ACT_SCALE
    fixed = GPU_FIXED_MB if gpu else CPU_FIXED_MB
    return fixed + (4 * total + 12 * trainable + act) / MB


def calibrate(measured: dict[str, dict]) -> tuple[float, float]:
    """``(CPU_FIXED_MB, ACT)`` fitted to measured peaks: ``measured`` maps a size to its
    ``benchmarks/model_sizes.py`` record (``layout``, ``train``: batch, trainable parameters, peak). Least
    squares on the relative error (every size counts alike, not just the largest): what the module's
    constants were set from, and what ``tests/test_estimate.py`` checks them against. A record with a
    ``superseded`` note (measured with code whose memory use has changed since) is left out."""
    rows = []
    for r in measured.values():
        if r.get("superseded"):
            continue
        lay, tr = r["layout"], r["train"]
        got = tr["peak_step_rss_mb"]
        known = (4 * lay["total_params"] + 12 * tr["trainable_params"]) / MB
        act_unit = tr["batch_size"] * lay["decoder_layers"] * FRAMES * lay["d_model"] * 4 / MB
        rows.append((1 / got, act_unit / got, (got - known) / got))  # fixed/got + ACT*unit/got = (got-known)/got
    sxx = sum(a * a for a, _, _ in rows)
    sxy = sum(a * b for a, b, _ in rows)
    syy = sum(b * b for _, b, _ in rows)
    sxz = sum(a * z for a, _, z in rows)
    syz = sum(b * z for _, b, z in rows)
    det = sxx * syy - sxy * sxy
    if not rows or abs(det) < 1e-18:
        raise DamaError("calibration needs measured peaks of at least two model shapes")
    return (sxz * syy - syz * sxy) / det, (sxx * syz - sxy * sxz) / det


def estimate(model: str, method, batch_size: int = 8, precision: str = "no", gradient_checkpointing: bool = False,
             gpu_memory: str | None = None, clip_seconds: float = DEFAULT_CLIP_SECONDS,
             kv_cache: bool = True) -> Estimate:
    """The estimate for a run of ``method`` on ``model`` (see the module doc)."""
    shape = read_model_shape(model)
    c = shape.config
    trainable, total, ranks = trainable_params(c, method)
    frozen_encoder = method.name != "full"
    L, d = c["decoder_layers"], c["d_model"]
    enc = 0 if frozen_encoder else c["encoder_layers"]
    gpu_precision = "bf16" if precision == "auto" else precision
    # dama.kv_cache: frozen cross-attention K/V per clip, float32, for vanilla-LoRA-like methods in float32 runs
    # (a CPU run, or --precision no); 12x the encoder cache on base, 128x on large (32 layers x K and V x 4 B)
    kv = kv_cache and frozen_encoder and method.name in ("dama", "lora", "lora-fa", "pissa")
    kv_per_clip = L * 2 * FRAMES * d * 4 / MB if kv else 0.0
    est = Estimate(
        model=shape.where, size=shape.size, method=method.name, batch_size=batch_size, precision=precision,
        gradient_checkpointing=gradient_checkpointing, decoder_layers=L, d_model=d, trainable_params=trainable,
        total_params=total, ranks=ranks,
        cpu_peak_mb=round(peak_memory_mb(total, trainable, batch_size, L, d, False, "no", gradient_checkpointing,
                                         enc)),
        gpu_peak_mb=round(peak_memory_mb(total, trainable, batch_size, L, d, True, gpu_precision,
                                         gradient_checkpointing, enc)),
        cache_mb_per_clip=round(CACHE_MB_PER_CLIP_PER_D * d, 3),
        cache_mb_per_hour=round(CACHE_MB_PER_CLIP_PER_D * d * 3600 / clip_seconds),
        kv_cache_mb_per_hour=round(kv_per_clip * 3600 / clip_seconds),
        clip_seconds=clip_seconds, encoder_frozen=frozen_encoder,
        gpu_memory_mb=parse_memory(gpu_memory) if gpu_memory else None,
    )
    if shape.size is None:
        est.notes.append("not one of the published sizes: the memory model is applied to its shape as it is")
    if not frozen_encoder:
        est.notes.append("full fine-tuning trains the encoder: no encoder cache, and its activations are an "
                         "extrapolation of the calibrated model (not measured)")
    if gradient_checkpointing:
        est.notes.append("gradient checkpointing: activations of one layer at a time (the model's assumption)")
    return est


def check_fits(est: Estimate) -> None:
    """A :class:`DamaError` when the predicted GPU peak is over ``--gpu-memory``, with what would fit."""
    if est.fits is not False:
        return
    hints = []
    if est.batch_size > 1:
        hints.append(f"--batch-size {max(1, est.batch_size // 2)} with --grad-accum 2")
    if not est.gradient_checkpointing:
        hints.append("--gradient-checkpointing")
    raise DamaError(f"predicted GPU peak {est.gpu_peak_mb / 1024:.1f} GB is over --gpu-memory "
                    f"{est.gpu_memory_mb / 1024:.1f} GB for {est.size or est.model} ({est.method}, batch "
                    f"{est.batch_size}); try " + " or ".join(hints) if hints else "use a larger GPU")


def ram_warning(est: Estimate, ram_mb: float | None = None) -> str | None:
    """A warning when a CPU run's predicted peak is over the machine's RAM (``ram_mb``, default: this
    machine's physical memory): the run would be killed by the kernel mid-way, after the encoding."""
    if ram_mb is None:
        import os

        ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / MB
    if est.cpu_peak_mb <= ram_mb:
        return None
    hints = [f"--batch-size {max(1, est.batch_size // 2)}"] if est.batch_size > 1 else []
    if not est.gradient_checkpointing:
        hints.append("--gradient-checkpointing")
    return (f"warning: the predicted CPU peak of a training step, {est.cpu_peak_mb / 1024:.1f} GB "
            f"({est.size or est.model}, {est.method}, batch {est.batch_size}), is over this machine's "
            f"{ram_mb / 1024:.1f} GB of RAM"
            + (f"; try {' or '.join(hints)}" if hints else ""))


def largest_batch(model: str, method, gpu_memory: str, precision: str = "bf16",
                  gradient_checkpointing: bool = False, limit: int = 64) -> int:
    """The largest power-of-two batch (up to ``limit``) whose predicted GPU peak fits ``gpu_memory`` (0: not
    even one clip)."""
    e = estimate(model, method, 1, precision, gradient_checkpointing, gpu_memory)
    enc = 0 if e.encoder_frozen else read_model_shape(model).config["encoder_layers"]
    best, b = 0, 1
    while b <= limit:
        peak = peak_memory_mb(e.total_params, e.trainable_params, b, e.decoder_layers, e.d_model, True,
                              "bf16" if precision == "auto" else precision, gradient_checkpointing, enc)
        if peak > e.gpu_memory_mb:
            break
        best, b = b, 2 * b
    return best


# The default batch of `dama train` (no --batch-size): see default_batch_size
DEFAULT_BATCH_MEMORY = "24GB"  # a common single GPU, and a modest workstation's RAM
BATCH_CAP = {"cpu": 8, "cuda": 16}
BATCH_HEADROOM = 0.8  # the predicted peak may use this share of the memory: the GPU figures are derived


def device_kind(device: str | None) -> str:
    """``cuda`` or ``cpu``: where a run with ``--device`` (``auto``: this machine's) would train."""
    if device in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if str(device).startswith("cuda") else "cpu"


def default_batch_size(model: str, method, device: str = "cpu", precision: str = "auto",
                       gpu_memory: str | None = None, gradient_checkpointing: bool = False,
                       multiple_of: int = 0) -> tuple[int, str]:
    """The batch ``dama train`` uses when ``--batch-size`` is not given, and the rule's reason in words.

    The rule: the largest of ``BATCH_CAP[device]``, half of it, ... 1 whose predicted peak (float32 on
    CPU; on a GPU, at the run's precision, ``auto`` = bf16) stays within ``BATCH_HEADROOM`` (80 %) of
    the memory (``--gpu-memory`` when given, else 24 GB) and divides ``--effective-batch`` when one is
    given. The cap is 8 on CPU (a step's time grows with the batch there; every whisper-base result was
    measured at 8) and 16 on a GPU. 1 when not even one clip is predicted to fit (the run is then refused
    by ``--gpu-memory`` or left to fail, as the user asked)."""
    kind = device_kind(device)
    gpu = kind == "cuda"
    prec = ("bf16" if gpu else "no") if precision == "auto" else precision
    budget = parse_memory(gpu_memory or DEFAULT_BATCH_MEMORY)
    shape = read_model_shape(model)
    c = shape.config
    trainable, total, _ = trainable_params(c, method)
    enc = 0 if method.name != "full" else c["encoder_layers"]
    b = BATCH_CAP[kind]
    while b > 1:
        peak = peak_memory_mb(total, trainable, b, c["decoder_layers"], c["d_model"], gpu, prec,
                              gradient_checkpointing, enc)
        if peak <= BATCH_HEADROOM * budget and (not multiple_of or multiple_of % b == 0):
            break
        b //= 2
    where = f"GPU, {prec}" if gpu else "CPU, float32"
    return b, (f"default for {shape.size or 'this model'} on {where}: the largest of "
               f"{', '.join(str(BATCH_CAP[kind] >> i) for i in range(BATCH_CAP[kind].bit_length()))} whose "
               f"predicted peak is within {BATCH_HEADROOM:.0%} of {gpu_memory or DEFAULT_BATCH_MEMORY}"
               + (f" and divides --effective-batch {multiple_of}" if multiple_of else ""))


def run_flops(model: str, hours: float = 0.5, epochs: int = 5, clip_seconds: float = DEFAULT_CLIP_SECONDS,
              target_tokens: int = DEFAULT_TARGET_TOKENS) -> dict:
    """Compute of a decoder-adapter run (encoder frozen and cached), counted from the architecture: the
    encoder once per clip (its linear layers and attention over 1500 frames), then per clip and epoch a
    decoder step: forward over ``target_tokens`` tokens of every decoder linear (backward twice that:
    gradients of inputs and adapters), cross-attention keys and values over the 1500 frames forward only
    (a cached encoder output needs no gradient), the output projection over the vocabulary."""
    c = read_model_shape(model).config
    d, T, F = c["d_model"], target_tokens, FRAMES
    clips = hours * 3600 / clip_seconds
    enc = c["encoder_layers"] * (2 * F * (4 * d * d + 2 * d * c["encoder_ffn_dim"]) + 4 * F * F * d)
    tok = 2 * T * (6 * d * d + 2 * d * c["decoder_ffn_dim"]) + 4 * T * F * d
    kv = 2 * 2 * F * d * d
    step = c["decoder_layers"] * (3 * tok + kv) + 6 * T * d * c["vocab_size"]
    return {"clips": round(clips), "encoder_tflop": clips * enc / 1e12, "train_tflop": epochs * clips * step / 1e12}


def format_estimate(e: Estimate) -> str:
    """The few lines ``dama estimate`` and ``dama train --dry-run`` print."""
    name = f"{e.size} ({e.model})" if e.size and e.size not in e.model else (e.size or e.model)
    lines = [
        f"model {name}: {e.decoder_layers} decoder layers, d_model {e.d_model}, "
        f"{e.total_params / 1e6:.1f} M parameters",
        f"method {e.method}: {e.trainable_params:,} trainable parameters"
        + (f"; ranks per decoder layer {e.ranks}" if e.ranks and len(set(e.ranks)) > 1 else ""),
        f"batch {e.batch_size}, precision {e.precision}"
        + (", gradient checkpointing" if e.gradient_checkpointing else ""),
        f"peak memory of a training step: CPU {e.cpu_peak_mb / 1024:.1f} GB (float32), "
        f"GPU {e.gpu_peak_mb / 1024:.1f} GB ({'float32' if e.precision == 'no' else 'bf16/fp16 autocast'}; derived, "
        "not measured on a GPU)",
    ]
    if e.encoder_frozen:
        lines.append(f"encoder cache: {e.cache_mb_per_clip:.2f} MB per clip, about {e.cache_mb_per_hour / 1024:.1f} GB "
                     f"per hour of audio at {e.clip_seconds:.0f} s clips")
    if e.kv_cache_mb_per_hour:
        lines.append(f"cross-attention K/V cache (float32 runs only: CPU, or --precision no): about "
                     f"{e.kv_cache_mb_per_hour / 1024:.1f} GB per hour of audio; --no-kv-cache skips it")
    if e.gpu_memory_mb is not None:
        lines.append(f"fits --gpu-memory {e.gpu_memory_mb / 1024:.0f} GB: {'yes' if e.fits else 'NO'}")
    lines += [f"note: {n}" for n in e.notes]
    return "\n".join(lines)


__all__ = ["ACT", "BATCH_CAP", "CPU_FIXED_MB", "DEFAULT_BATCH_MEMORY", "Estimate", "GPU_ACT_SCALE", "ModelShape",
           "UnknownModelName", "calibrate", "check_fits", "default_batch_size", "device_kind", "estimate",
           "format_estimate", "largest_batch", "parse_memory", "peak_memory_mb", "ram_warning", "read_model_shape",
           "run_flops", "trainable_params"]
