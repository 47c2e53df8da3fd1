"""Every Whisper size end to end with random weights of its exact architecture, and what it costs.

Only whisper-base's weights exist here; correctness of adaptation and memory do not depend on the
weights' values, so for each size (``dama.models.sizes``) this writes a model folder with random
weights, a matching tokenizer (large-v3's 51,866 tokens with ``<|yue|>``) and feature extractor (80 or
128 mel bins), then, on real Swahili clips:

1. layout: decoder depth, DAMA's segments and ranks, trainable parameters of DAMA and LoRA r=64 (PEFT
   on the meta device: exact counts, no memory);
2. ``dama train`` (the library's run_training, in a process of its own so its peak is its own): a few
   steps at batch 4 on the clips with the shortest transcripts; measured: peak resident memory during
   the training steps (sampled every 5 ms from /proc; the weights' share is what it was just before the
   first step), the encoder cache's bytes per hour of audio, seconds per clip encoded and per step;
3. SVD-tail init and frozen basis: every middle layer's saved lora_A equals the right singular vectors
   of the smallest singular values of its base weight, after training;
4. the adapter loads in plain PEFT (no dama), merges (``merge_and_unload``) and gives the logits of
   dama's own merged model;
5. ``dama export --format ct2`` (float32): CTranslate2 loads it, its greedy tokens on a real clip equal
   the merged transformers model's, and faster-whisper transcribes the clip.

Writes ``benchmarks/results/model_sizes.json`` (sizes not rerun keep their earlier entry). Each size
runs in a child process; a stage that could not run is recorded with why.

    OMP_NUM_THREADS=2 python benchmarks/model_sizes.py --sizes tiny,base,small --steps 2
    OMP_NUM_THREADS=1 python benchmarks/model_sizes.py --sizes medium,large-v3,large-v2

On a CPU shared with other work use one thread: with more OpenMP threads than free cores, LAPACK's SVD
(DAMA's SVD-tail initialisation, ~140 of them for large) spins at its barriers; a 1024 x 1024 SVD took
8.5 s of CPU with 2 threads against 0.4 s with one on the loaded 2-core machine. The result records the
thread count (``threads``): the seconds depend on it, the peak memory hardly (per-thread buffers).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "model_sizes.json"
DATA = "swahili:train"


class RssSampler:
    """Peak resident set size in windows, from /proc/self/statm every ``period`` seconds."""

    def __init__(self, period: float = 0.005):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.period, self.peak, self.running = period, 0, True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.rss())
            time.sleep(self.period)

    def reset(self) -> int:
        now = self.rss()
        self.peak = now
        return now

    def stop(self) -> None:
        self.running = False


def layout(size: str) -> dict:
    """Decoder depth, DAMA's layout and trainable parameters of DAMA and LoRA r=64 (meta device)."""
    from dama.adapt.dama import DamaMethod
    from dama.adapt.lora import LoraMethod
    from dama.adapt.peft_compat import count_trainable
    from dama.models.sizes import get_size, meta_model

    s = get_size(size)
    dama = DamaMethod(svd_init=False).apply(meta_model(size))
    lora = LoraMethod(r=64).apply(meta_model(size))
    total = sum(p.numel() for p in meta_model(size).parameters())
    return {"d_model": s.d_model, "encoder_layers": s.encoder_layers, "decoder_layers": s.decoder_layers,
            "heads": s.attention_heads, "ffn_dim": s.ffn_dim, "num_mel_bins": s.num_mel_bins,
            "vocab_size": s.vocab_size, "total_params": total, "dama_ranks": dama.ranks,
            "dama_segments": {"l_early": dama.info["l_early"], "l_late": dama.info["l_late"],
                              "middle_layers": dama.info["middle_layers"]},
            "dama_trainable_params": count_trainable(dama.model, dama.frozen),
            "lora64_trainable_params": count_trainable(lora.model, lora.frozen)}


def pick_clips(n: int, data_root: str | None):
    """The ``n`` clips of swahili:train with the shortest transcripts (short labels: fast steps)."""
    from dama.data.manifest import Manifest
    from dama.data.spec import load_data

    m = load_data(DATA, data_root)
    m.fill_durations()
    keep = sorted((u for u in m if (u.duration or 0) <= 30), key=lambda u: (len(u.text), u.id))[:n]
    return Manifest(keep, name=f"{DATA} (the {n} shortest transcripts)")


def mean_clip_seconds(data_root: str | None) -> float:
    """Mean duration of the clips of swahili:train dama trains on (within 30 s)."""
    from dama.data.spec import load_data

    m = load_data(DATA, data_root)
    m.fill_durations()
    d = [u.duration for u in m if (u.duration or 0) <= 30]
    return sum(d) / len(d)


def cache_mb_per_clip(cache: Path, d_model: int) -> float | None:
    """MiB per clip in the cache folder of an encoder of width ``d_model`` (every clip is stored at 1500
    frames x d_model float16, whatever its length)."""
    from dama.encoder_cache import cache_info

    for row in cache_info(cache, verify=False):
        if row["clips"] and abs(row["bytes"] / row["clips"] / (1500 * d_model * 2) - 1) < 0.02:
            return row["bytes"] / row["clips"] / 2**20
    return None


def train_stage(model_dir: Path, work: Path, steps: int, batch: int, data_root: str | None,
                cache: Path, d_model: int) -> dict:
    """dama's run_training on ``steps * batch`` real clips, one epoch; memory sampled during the steps."""
    import dama.train.trainer as trainer_mod
    from dama.adapt.dama import DamaMethod
    from dama.train.config import TrainConfig
    from dama.train.run import run_training

    clips = pick_clips(steps * batch, data_root)
    sampler = RssSampler()
    seen: dict = {"step_seconds": []}
    original = trainer_mod.Trainer.train_step

    def timed_step(self, *a, **kw):  # measurement only: the step itself is the library's
        if "rss_before_steps" not in seen:
            seen["rss_before_steps"] = sampler.reset()
        t = time.perf_counter()
        out = original(self, *a, **kw)
        seen["step_seconds"].append(time.perf_counter() - t)
        seen["rss_steps_peak"] = sampler.peak
        return out

    trainer_mod.Trainer.train_step = timed_step
    t0 = time.perf_counter()
    try:
        res = run_training(str(model_dir), DamaMethod(), clips, None, None, work / "run",
                           TrainConfig(epochs=1, batch_size=batch, cache_dir=str(cache), precision="no"),
                           log=lambda *a: None)
    finally:
        trainer_mod.Trainer.train_step = original
        sampler.stop()
    wall = time.perf_counter() - t0
    per_clip = cache_mb_per_clip(cache, d_model)
    mean_s = mean_clip_seconds(data_root)
    mb = 2**20
    return {"clips": len(clips), "audio_seconds": round(sum(u.duration for u in clips), 2), "batch_size": batch,
            "steps": res["steps"], "loss_finite": True,
            "trainable_params": res["trainable_params"],
            "peak_step_rss_mb": round(seen["rss_steps_peak"] / mb, 1),
            "rss_before_steps_mb": round(seen["rss_before_steps"] / mb, 1),
            "step_seconds": [round(x, 2) for x in seen["step_seconds"]],
            "encoder_cache_mb_per_clip": round(per_clip, 3) if per_clip else None,
            "swahili_train_mean_clip_seconds": round(mean_s, 2),
            "encoder_cache_mb_per_hour": round(per_clip * 3600 / mean_s, 0) if per_clip else None,
            "encoder_cache_mb_per_hour_30s_clips": round(per_clip * 120, 0) if per_clip else None,
            "seconds_outside_steps": round(wall - sum(seen["step_seconds"]), 1)}


def svd_stage(model_dir: Path, run: Path) -> dict:
    """Middle-layer lora_A after training = the SVD tail of the base weight (init right, basis frozen)."""
    import torch
    from safetensors.torch import load_file
    from transformers import WhisperForConditionalGeneration

    cfg = json.loads((run / "config.json").read_text())
    results = json.loads((run / "results.json").read_text())
    middle = results["method_info"]["middle_layers"]
    sd = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    base = WhisperForConditionalGeneration.from_pretrained(str(model_dir), dtype=torch.float32)
    worst, checked = 0.0, 0
    for layer in (middle[0], middle[-1]) if middle else ():
        for mod in ("fc1", "encoder_attn.k_proj"):
            key = next(k for k in sd if f"decoder.layers.{layer - 1}.{mod}.lora_A" in k)
            a = sd[key].float()
            w = dict(base.named_parameters())[f"model.decoder.layers.{layer - 1}.{mod}.weight"].float()
            _, _, vh = torch.linalg.svd(w, full_matrices=False)
            worst = max(worst, (a - vh[-a.shape[0]:]).abs().max().item())
            checked += 1
    del base
    gc.collect()
    return {"middle_modules_checked": checked, "max_abs_diff_from_svd_tail": worst,
            "svd_tail_frozen_ok": bool(checked) and worst < 1e-4, "method": cfg["method"]["method"]}


def features_of(model_dir: Path, clip_path: str):
    from transformers import WhisperFeatureExtractor

    from dama.data.audio import load_audio

    fe = WhisperFeatureExtractor.from_pretrained(str(model_dir))
    audio = load_audio(clip_path)
    return audio, fe(audio, sampling_rate=16000, return_tensors="pt").input_features


def peft_stage(model_dir: Path, run: Path, feats, prompt: list[int], n_new: int) -> dict:
    """The adapter in plain PEFT: load, merge_and_unload; logits against dama's own merged model; the
    merged model's greedy tokens (for the CTranslate2 comparison)."""
    import torch
    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration

    from dama.runs import load_run

    base = WhisperForConditionalGeneration.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    merged = PeftModel.from_pretrained(base, str(run / "adapter")).merge_and_unload().eval()
    ids = torch.tensor([prompt])
    with torch.no_grad():
        enc = merged.model.encoder(feats).last_hidden_state
        logits_peft = merged(encoder_outputs=(enc,), decoder_input_ids=ids).logits
        toks = list(prompt)
        for _ in range(n_new):  # greedy, no suppression: what CTranslate2 is asked to do below
            nxt = merged(encoder_outputs=(enc,), decoder_input_ids=torch.tensor([toks])).logits[0, -1].argmax().item()
            toks.append(nxt)
    del merged, base
    gc.collect()
    w = load_run(run, merge=True, device="cpu")
    with torch.no_grad():  # DAMA leaves the encoder as it is: the same encoder output serves both
        logits_dama = w.model(encoder_outputs=(enc,), decoder_input_ids=ids).logits
    diff = (logits_peft - logits_dama).abs().max().item()
    del w
    gc.collect()
    return {"peft_load_merge_ok": diff < 1e-3, "max_abs_logit_diff_peft_vs_dama": diff,
            "greedy_tokens": toks[len(prompt):]}


def ct2_stage(run: Path, work: Path, feats, audio, prompt: list[int], hf_tokens: list[int]) -> dict:
    import ctranslate2
    import numpy as np

    from dama.deploy import export_run, load_faster_whisper

    t = time.perf_counter()
    out = export_run(run, "ct2", work / "ct2", quantization="float32", log=lambda *a: None)
    export_s = time.perf_counter() - t
    ct = ctranslate2.models.Whisper(str(out), device="cpu", compute_type="float32")
    res = ct.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(feats.numpy())), [prompt],
                      beam_size=1, max_length=len(prompt) + len(hf_tokens), suppress_blank=False, suppress_tokens=[],
                      return_no_speech_prob=False)
    ct_tokens = res[0].sequences_ids[0]
    n = min(len(ct_tokens), len(hf_tokens))
    del ct
    gc.collect()
    fw = load_faster_whisper(out, device="cpu", compute_type="float32")
    segments, info = fw.transcribe(audio, language="sw", beam_size=1, without_timestamps=True,
                                   condition_on_previous_text=False, max_new_tokens=8, temperature=0.0)
    text = " ".join(s.text for s in segments)
    n_mels = json.loads((out / "preprocessor_config.json").read_text())["feature_size"]
    del fw
    gc.collect()
    size_mb = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    return {"ct2_export_seconds": round(export_s, 1), "ct2_dir_mb": round(size_mb, 1),
            "ct2_tokens": ct_tokens, "ct2_matches_hf_greedy": n > 0 and ct_tokens[:n] == hf_tokens[:n],
            "ct2_tokens_compared": n, "faster_whisper_ran": True, "faster_whisper_language": info.language,
            "faster_whisper_mel_bins": n_mels, "faster_whisper_text_chars": len(text)}


def run_one(size: str, work: Path, steps: int, batch: int, data_root: str | None, cache: Path) -> dict:
    """Everything for one size (in this process); each stage's outcome, or why it did not run."""
    import torch

    from dama.models.fetch import fetch_model
    from dama.models.sizes import get_size, write_random_model

    s = get_size(size)
    rec: dict = {"size": s.name, "hub_id": s.hub_id, "published_params": s.published_params}
    t0 = time.perf_counter()
    rec["layout"] = layout(size)
    base_dir = fetch_model("whisper-base", log=lambda *a: None)
    model_dir = work / "model"
    dtype = "float16" if s.d_model >= 1024 else "float32"  # the hub stores large-v3 and turbo in float16
    t = time.perf_counter()
    write_random_model(s, model_dir, base_dir, seed=0, dtype=dtype)
    rec["model_folder"] = {"stored_dtype": dtype, "seconds": round(time.perf_counter() - t, 1),
                           "mb": round(sum(p.stat().st_size for p in model_dir.iterdir()) / 2**20, 1)}
    gc.collect()
    rec["train"] = train_stage(model_dir, work, steps, batch, data_root, cache, s.d_model)
    gc.collect()
    rec["svd_tail"] = svd_stage(model_dir, work / "run")
    clip = pick_clips(1, data_root)[0]
    audio, feats = features_of(model_dir, str(clip.audio))
    assert feats.shape[1] == s.num_mel_bins
    from transformers import WhisperTokenizer

    tok = WhisperTokenizer.from_pretrained(str(model_dir))
    prompt = [tok.convert_tokens_to_ids(x) for x in
              ("<|startoftranscript|>", "<|sw|>", "<|transcribe|>", "<|notimestamps|>")]
    rec["prompt_ids"] = prompt
    rec["peft"] = peft_stage(model_dir, work / "run", feats, prompt, n_new=6)
    try:
        rec["ct2"] = ct2_stage(work / "run", work, feats, audio, prompt, rec["peft"]["greedy_tokens"])
    except ImportError as e:
        rec["ct2"] = {"skipped": f"ctranslate2/faster-whisper not installed ({e})"}
    ct2 = rec["ct2"]
    rec["export_check_passed"] = bool(rec["svd_tail"]["svd_tail_frozen_ok"] and rec["peft"]["peft_load_merge_ok"]
                                      and ct2.get("ct2_matches_hf_greedy") and ct2.get("faster_whisper_ran"))
    rec["threads"] = torch.get_num_threads()
    rec["seconds_total"] = round(time.perf_counter() - t0, 1)
    return rec


def memory_short(size: str, batch: int) -> str | None:
    """Why ``size`` should not start now, or None: the memory it is predicted to need (the larger of the
    training step's peak and two float32 copies of the model, as the PEFT-merge and export stages hold) is
    over what the machine has free (MemAvailable). Other work on a shared machine counts: large-v3 was
    killed by the kernel's OOM killer mid-way when it did not have this check."""
    from dama.adapt import make_method
    from dama.estimate import CPU_FIXED_MB, estimate

    e = estimate(size, make_method("dama"), batch, "no")
    need = max(e.cpu_peak_mb, CPU_FIXED_MB + 8 * e.total_params / 2**20)
    try:
        free = next(int(line.split()[1]) / 1024 for line in open("/proc/meminfo") if line.startswith("MemAvailable"))
    except (OSError, StopIteration):
        return None
    if free >= 1.1 * need:
        return None
    return (f"not started: needs about {need / 1024:.1f} GB (predicted peak) and {free / 1024:.1f} GB was free "
            "(other work on the machine); rerun when it has the room")


def machine() -> dict:
    from dama.machine import cpu_name

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu_name(), "cpus": os.cpu_count(), "ram_gib": round(mem, 1), "gpu": None,
            "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="tiny,base,small,medium,large-v3-turbo,large-v3,large-v2")
    ap.add_argument("--steps", type=int, default=2, help="training steps per size (batch --batch)")
    ap.add_argument("--large-steps", type=int, default=1, help="training steps for medium and the large sizes")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="encoder cache shared by the sizes (default: in --work); random large-v3 and turbo "
                         "share their encoder (same seed, same shape), so turbo's encoding serves large-v3")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child process: one size, result to --child-json
    ap.add_argument("--child-json", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        from dama.models.sizes import get_size

        steps = args.large_steps if get_size(args.one).d_model >= 1024 else args.steps
        rec = run_one(args.one, args.work, steps, args.batch, args.data_root, args.cache)
        args.child_json.write_text(json.dumps(rec, indent=2))
        return 0
    results = json.loads(args.out.read_text()) if args.out.is_file() else {"sizes": {}}
    results["machine"] = machine()
    given = " ".join(argv if argv is not None else sys.argv[1:])
    threads = os.environ.get("OMP_NUM_THREADS", "")
    results["command"] = f"OMP_NUM_THREADS={threads} python benchmarks/model_sizes.py {given}"
    scratch = Path(tempfile.mkdtemp(prefix="model-sizes-", dir=args.work))
    cache = args.cache or scratch / "encoder-cache"
    for size in args.sizes.split(","):
        if short := memory_short(size, args.batch):  # not started (an OOM kill mid-way costs the CPU time spent)
            print(f"== {size}: {short}", flush=True)
            prev = results["sizes"].get(size)
            if not prev or "train" not in prev:
                results["sizes"][size] = {"size": size, "not_run": short}
                args.out.write_text(json.dumps(results, indent=2) + "\n")
            continue
        work = scratch / size
        child = work / "result.json"
        work.mkdir()
        cmd = [sys.executable, __file__, "--one", size, "--work", str(work), "--child-json", str(child),
               "--cache", str(cache),
               "--steps", str(args.steps), "--large-steps", str(args.large_steps), "--batch", str(args.batch)]
        if args.data_root:
            cmd += ["--data-root", args.data_root]
        print(f"== {size}", flush=True)
        t = time.perf_counter()
        p = subprocess.run(cmd)
        if p.returncode == 0:
            rec = json.loads(child.read_text())
        else:
            prev = results["sizes"].get(size)
            rec = {"size": size, "failed": f"child process exited {p.returncode} after "
                                           f"{time.perf_counter() - t:.0f} s (see its output)"}
            if prev and "failed" not in prev:
                rec = prev  # keep the earlier complete measurement
        rec["wall_seconds"] = round(time.perf_counter() - t, 1)
        results["sizes"][size] = rec
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        shutil.rmtree(work, ignore_errors=True)
        print(json.dumps({k: rec.get(k) for k in ("size", "export_check_passed", "wall_seconds")}), flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
