"""Peak GPU memory and seconds per training step on whisper-large-v2's architecture, at the paper's
setting, for DAMA, LoRA r=64, DoRA r=64 and full fine-tuning; the paper's numbers and ratios beside ours.

Awaits a GPU: this project's machine has none, so the script has only been smoke-tested
(``--device cpu --tiny``, tests/test_gpu_large_script.py). On a CUDA machine:

    python benchmarks/gpu_large.py --out benchmarks/results/gpu_large_v2.json

Why random weights: memory and time per step depend on the architecture, batch, lengths and
precision, not on the weights' values, and the real large-v2 weights cannot be brought onto the
machines this runs on. The architecture comes from :mod:`dama.models.sizes` (exact
``config.json`` values of openai/whisper-large-v2).

The setting (each a flag): bf16 mixed precision (fp32 master weights and AdamW state, as
``dama train --precision bf16`` via accelerate), 30 s inputs (3000 log-Mel frames, 1500 encoder
frames), batch 16, 128 target tokens per clip, adapters on the decoder only (the methods'
defaults; full fine-tuning trains everything). A step is what ``dama train`` runs when the encoder
is not cached: encoder forward (frozen for the adapters, so no activations kept), decoder forward,
the chunked cross-entropy (:mod:`dama.train.loss`), backward, AdamW. ``--warmup`` steps are not
timed; then ``--steps`` steps, each synchronised, the median reported. Peak memory is
``torch.cuda.max_memory_allocated`` over the method's model build and its steps (reset between
methods; each method builds its own fresh model).

The paper (docs/method-notes.md §6) reports, for Whisper large-v2: peak GPU memory 21.63 GB (DAMA)
vs 28.32 GB (full fine-tuning), and 242 s (DAMA) vs 378 s (DoRA) per epoch of 1 h. Its batch,
lengths and GPU are not all stated, so absolute numbers are not comparable; the ratios
(DAMA / full memory, DAMA / DoRA time) are, and both are written side by side.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time
from pathlib import Path

import torch

# the paper's figures, filed once (docs quote them from there)
PAPER = json.loads((Path(__file__).parent / "results" / "paper_reference.json").read_text())
METHODS = {"dama": {}, "lora": {"r": 64}, "dora": {"r": 64}, "full": {}}


def build(size: str, tiny: bool, device: torch.device):
    """A random-weight model of ``size``'s architecture (or the tests' tiny one) on ``device``, fp32."""
    from transformers import WhisperForConditionalGeneration

    if tiny:
        from dama.testing import tiny_config

        config = tiny_config(decoder_layers=6)
    else:
        from dama.models.sizes import whisper_config

        config = whisper_config(size)
    torch.manual_seed(0)
    with device:  # initialise on the device: no 6 GB round trip through host memory
        return WhisperForConditionalGeneration(config).float()


def measure(method: str, args, device: torch.device) -> dict:
    """One method: build, adapt, ``warmup`` + ``steps`` training steps; seconds per step and peak memory."""
    from dama.adapt import make_method
    from dama.adapt.peft_compat import count_trainable, fuse_lora_forward, trainable_parameters
    from dama.train.loss import chunked_cross_entropy, fused_lm_head, hidden_states_as_logits

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model = build(args.size, args.tiny, device)
    adapted = make_method(method, **METHODS[method]).apply(model)
    if adapted.is_peft:
        fuse_lora_forward(adapted.model)
    model = adapted.model.to(device)
    adapted.frozen.enforce(model)
    model.train()
    params = [p for _, p in trainable_parameters(model, adapted.frozen)]
    opt = torch.optim.AdamW(params, lr=1e-5)
    head = fused_lm_head(model)
    cfg = model.config if not hasattr(model, "get_base_model") else model.get_base_model().config
    tokens = min(args.tokens, cfg.max_target_positions)
    frames = 2 * cfg.max_source_positions  # 30 s of log-Mel frames
    g = torch.Generator(device="cpu").manual_seed(0)
    feats = torch.randn(args.batch, cfg.num_mel_bins, frames, generator=g).to(device)
    ids = torch.randint(0, cfg.vocab_size, (args.batch, tokens + 1), generator=g).to(device)
    dec_ids, labels = ids[:, :-1], ids[:, 1:]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "no": None}[args.precision]

    def step() -> float:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            with hidden_states_as_logits(model):
                hidden = model(input_features=feats, decoder_input_ids=dec_ids, use_cache=False).logits
            loss = chunked_cross_entropy(hidden, head.weight, labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()  # synchronises

    seconds = []
    for i in range(args.warmup + args.steps):
        if cuda:
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize(device)
        if i >= args.warmup:
            seconds.append(time.perf_counter() - t)
    out = {"trainable_params": count_trainable(model, adapted.frozen), "seconds_per_step": statistics.median(seconds),
           "step_seconds": seconds}
    if cuda:
        out["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    return out  # the model, its optimizer state and activations go with this frame (main collects them)


def device_name(device: torch.device) -> str:
    from dama.machine import device_name as name

    return name(device)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="large-v2", help="a Whisper size of dama.models.sizes")
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="smoke test: the tests' tiny random Whisper instead")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--tokens", type=int, default=128, help="target tokens per clip (decoder length)")
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "no"])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--epoch-clips", type=int, default=120,
                   help="clips per epoch for the seconds-per-epoch column (120 = 1 h of 30 s inputs)")
    p.add_argument("--out", default="benchmarks/results/gpu_large_v2.json")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_large.py: no CUDA GPU here; run it on a GPU machine, "
                         "or --device cpu --tiny to smoke-test")
    res: dict = {"gpu": device_name(device), "device": str(device), "torch": torch.__version__,
                 "platform": platform.platform(), "size": "tiny (smoke test)" if args.tiny else args.size,
                 "setting": {"precision": args.precision, "batch": args.batch, "tokens": args.tokens,
                             "input_seconds": 30, "adapters": "decoder only (full: everything trains)",
                             "warmup": args.warmup, "steps": args.steps, "epoch_clips": args.epoch_clips},
                 "methods": {}, "paper": PAPER}
    for m in [x.strip() for x in args.methods.split(",") if x.strip()]:
        if m not in METHODS:
            raise SystemExit(f"gpu_large.py: unknown method {m!r}; choose from {', '.join(METHODS)}")
        try:
            r = measure(m, args, device)
            r["epoch_seconds"] = r["seconds_per_step"] * -(-args.epoch_clips // args.batch)
        except torch.OutOfMemoryError as e:  # recorded, not fatal: the others still run
            r = {"status": f"out of memory: {str(e).splitlines()[0]}"}
            torch.cuda.empty_cache()
        res["methods"][m] = r
        gc.collect()  # the method's model and optimizer, before the next one's peak is measured
        print(f"{m:>5}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in r.items() if k != "step_seconds"), flush=True)
    ms = res["methods"]

    def ratio(a: str, b: str, key: str) -> float | None:
        return ms[a][key] / ms[b][key] if key in ms.get(a, {}) and key in ms.get(b, {}) else None

    res["ratios"] = {
        "memory_dama_over_full": {"ours": ratio("dama", "full", "peak_memory_gb"),
                                  "paper": PAPER["peak_memory_gb"]["dama"] / PAPER["peak_memory_gb"]["full"]},
        "time_dama_over_dora": {"ours": ratio("dama", "dora", "seconds_per_step"),
                                "paper": PAPER["epoch_seconds"]["dama"] / PAPER["epoch_seconds"]["dora"]},
        "memory_dama_over_lora": {"ours": ratio("dama", "lora", "peak_memory_gb")},
        "time_dama_over_lora": {"ours": ratio("dama", "lora", "seconds_per_step")},
    }
    for k, v in res["ratios"].items():
        print(f"{k}: ours {v['ours']}" + (f", paper {v['paper']:.3f}" if "paper" in v else ""))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
