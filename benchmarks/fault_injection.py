"""Fault injection: kill training at random moments, corrupt the encoder cache and the
checkpoint, plant a code-running checkpoint, and fill the disk; count what dama detects,
what recovers, and whether the recovered result is identical to an uninterrupted run.

Every case runs the real ``dama`` command in a subprocess on a tiny random 6-layer
Whisper and a synthetic corpus (``dama.testing``), so it takes seconds, runs in CI
(``tests/cli/test_fault_injection.py`` runs a few cases), and the committed report comes
from a longer run of the same script::

    python benchmarks/fault_injection.py --cases 40 --seed 0 --out benchmarks/results/fault_injection.json

Case kinds (chosen round-robin, every random choice drawn from ``--seed``):

- ``kill``: SIGKILL at a random moment of a run (while encoding, training or saving),
  then the same command with ``--resume`` until it finishes. Recovered = it finishes;
  identical = adapter tensors equal the reference run's, bit for bit.
- ``cache-bytes`` / ``cache-truncate`` / ``cache-index``: random bytes of a finished
  cache overwritten at the same size, a shard truncated, or the index damaged; then a
  new run on that cache. Detected = dama names the damaged file; recovered = the run
  finishes (the bad part rebuilt); identical = same adapter as the reference.
- ``checkpoint-bytes`` / ``checkpoint-truncate``: an interrupted run's checkpoint damaged,
  then ``--resume``. Detected = exit 2 naming the checkpoint (never a traceback, never
  training on garbage); recovered = following the message (remove the checkpoint, rerun)
  finishes; identical as above.
- ``checkpoint-pickle``: the checkpoint replaced by a pickle whose ``__reduce__`` would
  create a marker file. Detected = exit 2 and the marker does not exist.
- ``disk-full``: the cache on a small tmpfs (root only; skipped and reported otherwise).
  Detected = exit 2 naming the space problem, no partial shard left; recovered = rerun
  with room finishes, identical.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dama.runs import RunFolder

KINDS = ("kill", "cache-bytes", "checkpoint-bytes", "cache-truncate", "checkpoint-pickle", "cache-index",
         "checkpoint-truncate", "disk-full")
DAMA = [sys.executable, "-m", "dama"]


class _Plant:
    """Unpickling this calls ``open(MARKER, 'w')``: proof that code would run."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _train_cmd(ws: Path, out: Path, cache: Path, resume: bool = False) -> list[str]:
    return [*DAMA, "train", "--method", "lora", "--rank", "4", "--model", str(ws / "model"), "--data", "swahili:train",
            "--data-root", str(ws / "data"), "--out", str(out), "--cache-dir", str(cache), "--epochs", "2",
            "--save-every", "1", "--val", "none", "--test", "none", "--threads", "1"] + (["--resume"] if resume else [])


def _run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _adapter(run: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted(RunFolder(run).adapter_path.glob("*.safetensors"))
    return load_file(str(files[0])) if files else {}


def _identical(run: Path, ref: dict) -> bool:
    import torch

    got = _adapter(run)
    return bool(got) and got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)


def _finish(ws: Path, out: Path, cache: Path, tries: int = 4) -> subprocess.CompletedProcess:
    """What a user does after any failure: rerun the same command with --resume."""
    r = None
    for _ in range(tries):
        r = _run(_train_cmd(ws, out, cache, resume=True))
        if r.returncode == 0:
            break
    return r


def _last_line(r: subprocess.CompletedProcess) -> str:
    lines = [x for x in (r.stderr or "").strip().splitlines() if x.strip()]
    return lines[-1] if lines else ""


def _clean_error(r: subprocess.CompletedProcess) -> bool:
    return r.returncode == 2 and "Traceback" not in r.stderr and _last_line(r).startswith("dama: error:")


def _cache_files(cache: Path, kind: str) -> list[Path]:
    files = [p for p in cache.rglob("*") if p.is_file() and not p.name.startswith(".") and "lock" not in p.name]
    index = [p for p in files if p.suffix == ".json"]
    shards = [p for p in files if p.suffix != ".json"]
    return index if kind == "cache-index" else shards


def _corrupt_bytes(path: Path, rng: random.Random, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    start = rng.randrange(0, max(1, len(data) - n))
    for i in range(start, min(len(data), start + n)):
        data[i] = rng.randrange(256)
    path.write_bytes(bytes(data))


def _interrupted_run(ws: Path, out: Path, cache: Path, rng: random.Random, tries: int = 3) -> bool:
    """A run killed soon after its first checkpoint (some steps done, not finished)."""
    for _ in range(tries):
        if out.exists():
            shutil.rmtree(out)
        p = subprocess.Popen(_train_cmd(ws, out, cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "TQDM_DISABLE": "1"})
        deadline = time.time() + 300
        while time.time() < deadline and p.poll() is None:
            if RunFolder(out).has_checkpoint():
                time.sleep(rng.uniform(0.0, 0.3))
                break
            time.sleep(0.02)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait()
        if RunFolder(out).has_checkpoint() and not RunFolder(out).is_finished():
            return True
    return False


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def run_case(kind: str, i: int, ws: Path, ref: dict, ref_cache: Path, ref_seconds: float,
             rng: random.Random) -> dict:
    case = {"case": i, "kind": kind}
    out, cache = ws / f"case{i}" / "run", ws / f"case{i}" / "cache"
    out.parent.mkdir(parents=True)
    if kind == "kill":
        at = rng.uniform(0.5, ref_seconds)
        p = subprocess.Popen(_train_cmd(ws, out, cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "TQDM_DISABLE": "1"})
        time.sleep(at)
        killed = p.poll() is None
        if killed:
            p.send_signal(signal.SIGKILL)
        p.wait()
        case.update(kill_at_s=round(at, 2), killed=killed, checkpoint_left=RunFolder(out).has_checkpoint())
        r = _finish(ws, out, cache)
        case.update(detected=None, recovered=r.returncode == 0, identical=_identical(out, ref),
                    message=_last_line(r) if r.returncode else "")
    elif kind.startswith("cache"):
        shutil.copytree(ref_cache, cache)
        victims = _cache_files(cache, kind)
        victim = rng.choice(victims)
        if kind == "cache-truncate":
            size = victim.stat().st_size
            with victim.open("r+b") as f:
                f.truncate(rng.randrange(0, max(1, size)))
        else:
            _corrupt_bytes(victim, rng, n=16 if kind == "cache-index" else 64)
        r = _run(_train_cmd(ws, out, cache))
        named = victim.name in r.stderr or str(victim.parent.name) in r.stderr
        case.update(victim=str(victim.relative_to(cache)), detected=named or _clean_error(r),
                    message=next((x for x in r.stderr.splitlines() if victim.name in x), _last_line(r)))
        if r.returncode != 0:
            r = _finish(ws, out, cache)
        case.update(recovered=r.returncode == 0, identical=_identical(out, ref))
    elif kind.startswith("checkpoint"):
        if not _interrupted_run(ws, out, cache, rng):
            case.update(skipped="the run finished before it could be interrupted")
            return case
        ckpt = RunFolder(out).checkpoint_path
        marker = ws / f"case{i}" / "PWNED"
        if kind == "checkpoint-bytes":
            _corrupt_bytes(ckpt, rng)
        elif kind == "checkpoint-truncate":
            with ckpt.open("r+b") as f:
                f.truncate(rng.randrange(0, ckpt.stat().st_size))
        else:
            ckpt.write_bytes(pickle.dumps({"tensors": _Plant(str(marker))}))
        r = _run(_train_cmd(ws, out, cache, resume=True))
        detected = _clean_error(r) and "checkpoint" in r.stderr and not marker.exists()
        case.update(detected=detected, code_ran=marker.exists(), message=_last_line(r))
        if r.returncode != 0:  # what the message tells the user to do: drop the checkpoint and start again
            for f in out.glob(RunFolder.CHECKPOINT + "*"):
                f.unlink()
            r = _finish(ws, out, cache)
        case.update(recovered=r.returncode == 0, identical=_identical(out, ref))
    elif kind == "disk-full":
        small = ws / f"case{i}" / "small"
        if not _tmpfs(small, "96k"):
            case.update(skipped="cannot mount a tmpfs here (needs root)")
            return case
        try:
            r = _run(_train_cmd(ws, out, small / "cache"))
            left = sorted(str(p.relative_to(small)) for p in small.rglob("*") if p.is_file())
            partial = [x for x in left if x.endswith((".tmp", ".partial")) or ".tmp" in x]
            case.update(detected=_clean_error(r) and ("space" in r.stderr or "full" in r.stderr) and not partial,
                        message=_last_line(r), files_left=left)
        finally:
            subprocess.run(["umount", "-l", str(small)], check=False)
        r = _run(_train_cmd(ws, out, cache, resume=True))
        case.update(recovered=r.returncode == 0, identical=_identical(out, ref))
    return case


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=len(KINDS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated case kinds to draw from")
    ap.add_argument("--out", default="benchmarks/results/fault_injection.json")
    ap.add_argument("--workdir", help="keep the runs here (default: a temporary folder, removed)")
    args = ap.parse_args(argv)
    from dama.testing import make_corpus, make_tiny_ct2

    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        ap.error(f"unknown kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    rng = random.Random(args.seed)
    tmp = None if args.workdir else tempfile.mkdtemp(prefix="dama-faults-")
    ws = Path(args.workdir or tmp)
    try:
        ws.mkdir(parents=True, exist_ok=True)
        make_tiny_ct2(ws / "model", decoder_layers=6)
        make_corpus(ws / "data", n_train=24)
        t = time.perf_counter()
        r = _run(_train_cmd(ws, ws / "ref" / "run", ws / "ref" / "cache"))
        ref_seconds = time.perf_counter() - t
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            raise SystemExit("the uninterrupted reference run failed")
        ref = _adapter(ws / "ref" / "run")
        cases = []
        for i in range(args.cases):
            kind = kinds[i % len(kinds)]
            c = run_case(kind, i, ws, ref, ws / "ref" / "cache", ref_seconds, rng)
            cases.append(c)
            print(json.dumps(c), flush=True)
        done = [c for c in cases if "skipped" not in c]
        faults = [c for c in done if c.get("detected") is not None]
        report = {
            "command": "python benchmarks/fault_injection.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "reference_run_seconds": round(ref_seconds, 1),
            "tried": len(cases),
            "skipped": len(cases) - len(done),
            "faults_to_detect": len(faults),
            "detected": sum(bool(c["detected"]) for c in faults),
            "recovered": sum(bool(c.get("recovered")) for c in done),
            "identical": sum(bool(c.get("identical")) for c in done),
            "code_ran": sum(bool(c.get("code_ran")) for c in done),
            "by_kind": {k: {"tried": sum(c["kind"] == k for c in cases),
                            "detected": sum(bool(c.get("detected")) for c in cases if c["kind"] == k),
                            "recovered": sum(bool(c.get("recovered")) for c in cases if c["kind"] == k),
                            "identical": sum(bool(c.get("identical")) for c in cases if c["kind"] == k)}
                        for k in kinds},
            "cases": cases,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"tried {report['tried']} (skipped {report['skipped']}): detected {report['detected']} of "
              f"{report['faults_to_detect']} faults, recovered {report['recovered']}, identical to the "
              f"uninterrupted run {report['identical']}, code ran {report['code_ran']} -> {args.out}")
        return 0
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
