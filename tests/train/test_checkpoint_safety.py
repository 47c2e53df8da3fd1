"""Checkpoints and run folders that cannot be trusted: crafted, truncated or corrupted
checkpoints, resuming with other settings, two processes on one folder, and folders left by a
run killed before its first checkpoint (issue 24)."""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dama.adapt import make_method
from dama.data import load_data
from dama.errors import DamaError
from dama.outputs import atomic_write
from dama.runs import RunFolder
from dama.safeio import (
    LOCK_NAME,
    CheckpointError,
    FileError,
    FolderLock,
    FolderLockedError,
    load_checkpoint,
    read_json,
    save_checkpoint_file,
)
from dama.testing import make_corpus, make_tiny_ct2
from dama.train.checkpoint import read_checkpoint, rng_state, set_rng_state
from dama.train.config import TrainConfig
from dama.train.run import resume_changes, run_training


def _cfg(root: Path, **kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 3, "save_every": 1, "cache_dir": str(root / "cache"), **kw})


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """One tiny LoRA run stopped after 4 of its 6 steps (checkpoint.pt, no results), and the same
    run finished without interruption; tests work on copies."""
    root = tmp_path_factory.mktemp("ckpt")
    model = make_tiny_ct2(root / "tiny6", decoder_layers=6)
    corpus = make_corpus(root / "data")
    b = SimpleNamespace(root=root, model=str(model), corpus=corpus)
    with pytest.raises(KeyboardInterrupt):
        _run(b, root / "interrupted", _cfg(root, stop_after_steps=4))
    b.interrupted = root / "interrupted"
    b.full = _run(b, root / "full", _cfg(root))
    return b


def _run(b, out: Path, cfg: TrainConfig, method: str = "lora", resume: bool = False, log=None, **kw) -> dict:
    tr, va = load_data("swahili:train", b.corpus), load_data("swahili:val", b.corpus)
    return run_training(b.model, make_method(method, **({"r": 4} if method == "lora" else {})), tr, va, None, out,
                        cfg, resume=resume, log=log or (lambda *a: None), **kw)


def _copy(b, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(b.interrupted, run)
    return run


# -- 1. a crafted checkpoint runs nothing --------------------------------------------------------


class _Payload:
    """Unpickling this calls exec(): it creates ``marker`` (what an attacker's os.system would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


class _System:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("payload", [_Payload, _System])
@pytest.mark.parametrize("container", ["torch", "pickle"])
def test_crafted_checkpoint_is_refused_and_runs_nothing(base, tmp_path, payload, container):
    run = _copy(base, tmp_path)
    marker = tmp_path / "PWNED"
    evil = {"tensors": {}, "state": payload(marker)}
    ckpt = run / "checkpoint.pt"
    if container == "torch":
        torch.save(evil, ckpt)
    else:
        ckpt.write_bytes(pickle.dumps(evil))
    # the payload is live: the loader dama used before (weights_only=False) would have run it
    if container == "torch":
        torch.load(ckpt, weights_only=False)
    else:
        pickle.loads(ckpt.read_bytes())
    assert marker.exists()
    marker.unlink()

    with pytest.raises(CheckpointError) as e:
        _run(base, run, _cfg(base.root), resume=True)
    assert not marker.exists()
    msg = str(e.value)
    assert str(ckpt) in msg and "Nothing in it was run" in msg and "Delete" in msg
    if container == "torch":  # (a newer pickle protocol is refused at its first unknown opcode instead)
        assert "system" in msg or "exec" in msg  # names what it asked to call
    assert (run / "config.json").is_file()  # the folder is left for the user to look at


def test_cli_reports_a_bad_checkpoint_in_one_line(base, tmp_path, capsys):
    """Through `dama train --resume`: exit status 2 and a message, not a traceback."""
    from dama.cli.main import main

    out = tmp_path / "cli"
    args = ["train", "--method", "lora", "--rank", "4", "--model", base.model, "--data", "swahili:train",
            "--data-root", str(base.corpus), "--epochs", "1", "--val", "none", "--test", "none", "--out", str(out),
            "--cache-dir", str(base.root / "cache")]
    assert main(args) == 0
    (out / "results.json").unlink()  # as if killed while testing: checkpoint.pt, no results
    marker = tmp_path / "PWNED"
    torch.save({"x": _Payload(marker)}, out / "checkpoint.pt")
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(out / "checkpoint.pt") in err and not marker.exists()


# -- 2. checksums; truncation and corruption; atomic writes --------------------------------------


def test_new_checkpoints_are_plain_data_with_a_checksum(base):
    ck = torch.load(base.interrupted / "checkpoint.pt", weights_only=True)  # no allow-list needed
    assert ck["format"] == "dama-checkpoint/2" and len(ck["sha256"]) == 64
    payload = read_checkpoint(base.interrupted / "checkpoint.pt")
    assert payload["state"]["step"] == 4 and set(payload["rng"]) >= {"python", "numpy", "torch"}


@pytest.mark.parametrize("damage", ["truncate", "empty", "flip", "edit"])
def test_damaged_checkpoint_is_a_clear_error(base, tmp_path, damage):
    run = _copy(base, tmp_path)
    ckpt = run / "checkpoint.pt"
    data = ckpt.read_bytes()
    if damage == "truncate":
        ckpt.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        ckpt.write_bytes(b"")
    elif damage == "flip":  # inside the largest tensor's bytes: the zip still opens, the content is wrong
        raw = torch.load(ckpt, weights_only=True)
        name, t = max(raw["payload"]["tensors"].items(), key=lambda kv: kv[1].numel())
        needle = t.numpy().tobytes()[:64]
        at = data.index(needle) + 10
        ckpt.write_bytes(data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1:])
    else:  # a well-formed file whose content no longer matches its checksum
        raw = torch.load(ckpt, weights_only=True)
        raw["payload"]["state"]["step"] = 0
        torch.save(raw, ckpt)
    with pytest.raises(CheckpointError) as e:
        _run(base, run, _cfg(base.root), resume=True)
    msg = str(e.value)
    assert msg.startswith(str(ckpt)) and f"Delete {ckpt}" in msg
    assert ("truncated or corrupted" in msg) or ("corrupted: its content's sha256" in msg)
    if damage in ("flip", "edit"):
        assert "sha256" in msg or "corrupted" in msg


def test_unversioned_checkpoint_of_older_dama_still_resumes(base, tmp_path):
    """Before checksums: the payload itself, with Python's and numpy's RNG state as pickled tuples."""
    run = _copy(base, tmp_path)
    ck = read_checkpoint(run / "checkpoint.pt")
    py, npy = ck["rng"]["python"], ck["rng"]["numpy"]
    ck["rng"]["python"] = (py["version"], tuple(py["state"].tolist()), py["gauss_next"])
    ck["rng"]["numpy"] = (npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                          npy["cached_gaussian"])
    torch.save(ck, run / "checkpoint.pt")
    said: list[str] = []
    res = _run(base, run, _cfg(base.root), resume=True, log=said.append)
    assert res["steps"] == 6 and any("no checksum" in str(m) for m in said)
    from safetensors.torch import load_file

    a = load_file(base.root / "full" / "adapter" / "adapter_model.safetensors")
    b = load_file(run / "adapter" / "adapter_model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # numpy caches a Gaussian: part of the state too
    save_checkpoint_file(tmp_path / "c.pt", {"rng": rng_state()})
    want = (random.random(), random.gauss(0, 1), np.random.normal(), np.random.rand(), torch.rand(3))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(load_checkpoint(tmp_path / "c.pt", "fix")["rng"])
    got = (random.random(), random.gauss(0, 1), np.random.normal(), np.random.rand(), torch.rand(3))
    assert got[:4] == want[:4] and torch.equal(got[4], want[4])


def test_atomic_write_keeps_the_old_file_and_never_shares_a_temporary_name(tmp_path):
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"old")

    def killed(f):
        f.write(b"half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, killed)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]

    # two writers of one file at once (as two processes would be) each get their own temporary file
    seen: list[list[str]] = []

    def outer(f):
        f.write(b"outer")
        atomic_write(target, inner)

    def inner(f):
        seen.append(sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")))
        f.write(b"inner")

    atomic_write(target, outer)
    assert len(seen[0]) == 2 and target.read_bytes() == b"outer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    mask = os.umask(0o022)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # as open() would make it, not mkstemp's 0600


def test_read_json_names_the_file_and_the_fix(tmp_path):
    p = tmp_path / "config.json"
    for content, expect in ((b"", "is empty"), (b'{"a": 1', r"not valid JSON \(line 1"), (b"\xff\xfe{}", "not UTF-8")):
        p.write_bytes(content)
        with pytest.raises(FileError, match=expect) as e:
            read_json(p, "run config", "Do X.")
        assert str(e.value).startswith(str(p)) and str(e.value).endswith("Do X.")
    with pytest.raises(FileError, match="not found"):
        read_json(tmp_path / "missing.json")


# -- 3. resuming with other settings -------------------------------------------------------------


def test_resume_with_other_settings_is_refused_listing_each_change(base, tmp_path):
    run = _copy(base, tmp_path)
    before = (run / "config.json").read_text()
    with pytest.raises(DamaError) as e:
        _run(base, run, _cfg(base.root, epochs=3, lr=2e-3, seed=1), resume=True)
    msg = str(e.value)
    for change in ("train.epochs: 2 -> 3", "train.lr: 0.001 -> 0.002", "train.seed: 0 -> 1"):
        assert change in msg, msg
    assert "original settings" in msg and "another --out" in msg and str(run) in msg
    with pytest.raises(DamaError, match=r"method\.method: 'lora' -> 'dama'"):
        _run(base, run, _cfg(base.root), method="dama", resume=True)
    tr, va = load_data("swahili:train", base.corpus), load_data("swahili:val", base.corpus)
    with pytest.raises(DamaError, match=r"method\.r: 4 -> 8"):
        run_training(base.model, make_method("lora", r=8), tr, va, None, run, _cfg(base.root), resume=True,
                     log=lambda *a: None)
    assert (run / "config.json").read_text() == before and not (run / "results.json").exists()

    # what changes neither training nor the record may differ; the run then ends as it would have
    said: list[str] = []
    (run / ".checkpoint.pt.x8f2.tmp").write_bytes(b"half")  # left by the killed process's last write
    res = _run(base, run, _cfg(base.root, decode_batch_size=2, save_every=0, cache_dir=str(tmp_path / "c2")),
               resume=True, log=said.append)
    assert res["steps"] == 6 and any("train.decode_batch_size: 16 -> 2" in str(m) for m in said)
    assert not (run / ".checkpoint.pt.x8f2.tmp").exists()
    assert json.loads((run / "config.json").read_text())["train"]["decode_batch_size"] == 16


def test_resume_changes_compares_what_both_sides_record():
    saved = {"model": "/old/path", "device": "cuda", "method": {"method": "lora", "r": 4}, "data": {"train": "a"},
             "train": {"epochs": 2, "lr": 0.001, "cache_dir": None, "gone": 1}}
    now = {"model": "/new/path", "device": "cpu", "method": {"method": "lora", "r": 4}, "data": {"train": "b"},
           "train": {"epochs": 2, "lr": 0.001, "cache_dir": "/c", "new_setting": 5}}
    blocking, allowed = resume_changes(saved, now)
    assert blocking == ["data.train: 'a' -> 'b'"] and allowed == ["train.cache_dir: None -> '/c'"]


# -- 4. one writer per folder --------------------------------------------------------------------

_HOLDER = """
import sys, time
from dama.safeio import FolderLock
with FolderLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_second_process_on_a_run_folder_fails_at_once(base, tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t = time.perf_counter()
        with pytest.raises(FolderLockedError) as e:
            _run(base, run, _cfg(base.root))
        assert time.perf_counter() - t < 5
        assert str(e.value) == (f"{run} is being written by another dama process (pid {holder.pid}); "
                                "wait for it to finish, or use another --out.")
        with pytest.raises(FolderLockedError):
            _run(base, run, _cfg(base.root), resume=True)
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing of ours was touched or removed
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # a killed holder leaves its lock file, but not its lock
    assert (run / LOCK_NAME).is_file()
    res = _run(base, run, _cfg(base.root, epochs=1))
    assert res["steps"] == 3 and not (run / LOCK_NAME).exists()


def test_cli_train_into_a_locked_folder_exits_2(base, tmp_path):
    """A real `dama train` process against a folder this process is writing."""
    run = tmp_path / "run"
    with FolderLock(run):
        p = subprocess.run([sys.executable, "-m", "dama", "train", "--method", "lora", "--model", base.model,
                            "--data", "swahili:train", "--data-root", str(base.corpus), "--out", str(run),
                            "--resume"], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert p.returncode == 2, p.stderr
        assert f"being written by another dama process (pid {os.getpid()})" in p.stderr
        assert "Traceback" not in p.stderr


def test_lock_is_reentrant_in_one_process_and_exclusive_across(tmp_path):
    with FolderLock(tmp_path / "r"):
        with FolderLock(tmp_path / "r"):  # run_training locks, then train() locks again
            pass
        assert (tmp_path / "r" / LOCK_NAME).read_text().strip() == str(os.getpid())  # still held
        probe = subprocess.run([sys.executable, "-c", "import sys; from dama.safeio import FolderLock\n"
                                "with FolderLock(sys.argv[1]): pass", str(tmp_path / "r")],
                               capture_output=True, text=True)
        assert probe.returncode == 1 and "FolderLockedError" in probe.stderr
    assert not (tmp_path / "r" / LOCK_NAME).exists()


# -- 5. a run killed before its first checkpoint ---------------------------------------------------


def _stuck(base, tmp_path: Path) -> Path:
    """What `kill -9` before the first checkpoint leaves: config.json, metrics.jsonl, a partial
    zero-shot transcript, a temporary file and the (unheld) lock file; no checkpoint."""
    run = _copy(base, tmp_path)
    (run / "checkpoint.pt").unlink()
    (run / "zero-shot.hyps.jsonl").write_text('{"id": "x"}\n')
    (run / ".checkpoint.pt.k2j3h4.tmp").write_bytes(b"partial")
    (run / ".dama-write-check-1x2y").write_bytes(b"\0")
    (run / LOCK_NAME).write_text("12345\n")
    return run


@pytest.mark.parametrize("resume", [False, True])
def test_folder_killed_before_its_first_checkpoint_starts_over(base, tmp_path, resume):
    run = _stuck(base, tmp_path)
    said: list[str] = []
    res = _run(base, run, _cfg(base.root), resume=resume, log=said.append)
    expect = "no checkpoint yet; starting from the beginning" if resume else "stopped before its first checkpoint"
    assert any(expect in str(m) for m in said), said
    assert res["steps"] == 6
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "step" for r in rows) == 6  # the dead run's rows went
    names = {p.name for p in run.iterdir()}
    assert "zero-shot.hyps.jsonl" not in names and not any(n.startswith(".") for n in names)
    from safetensors.torch import load_file

    a = load_file(base.root / "full" / "adapter" / "adapter_model.safetensors")
    b = load_file(run / "adapter" / "adapter_model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.parametrize("resume", [False, True])
def test_folder_with_files_dama_did_not_write_is_refused(base, tmp_path, resume):
    run = _stuck(base, tmp_path)
    (run / "notes.txt").write_text("mine")
    with pytest.raises(DamaError, match=r"is not empty and is not a dama run folder \(it holds notes.txt\)"):
        _run(base, run, _cfg(base.root), resume=resume)
    assert (run / "notes.txt").read_text() == "mine" and (run / "metrics.jsonl").is_file()
    # a config.json that is not a dama run's (a Hugging Face model folder, say) protects the folder too
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "whisper"}')
    with pytest.raises(DamaError, match=r"not a dama run folder \(it holds config.json\)"):
        _run(base, hf, _cfg(base.root), resume=resume)
    assert (hf / "config.json").read_text() == '{"model_type": "whisper"}'


def test_existing_runs_are_not_overwritten_without_resume(base, tmp_path):
    run = _copy(base, tmp_path)
    with pytest.raises(DamaError, match=r"holds an interrupted run \(checkpoint.pt\); use --resume"):
        _run(base, run, _cfg(base.root))
    shutil.copy(base.root / "full" / "results.json", run / "results.json")
    with pytest.raises(DamaError, match=r"holds a finished run \(results.json\)"):
        _run(base, run, _cfg(base.root))


def test_remove_if_unstarted_deletes_only_recognisable_dama_runs(base, tmp_path):
    stuck = _stuck(base, tmp_path)
    RunFolder(stuck).remove_if_unstarted()
    assert not stuck.exists()
    for name, content in (("notes.txt", "mine"), ("config.json", '{"model_type": "whisper"}'), (".mine.tmp", "x")):
        d = tmp_path / name.strip(".").split(".")[0]
        d.mkdir()
        (d / name).write_text(content)
        RunFolder(d).remove_if_unstarted()
        assert (d / name).read_text() == content
    d = tmp_path / "broken"
    d.mkdir()
    (d / "config.json").write_text('{"method": ')  # unreadable: not recognisably dama's
    RunFolder(d).remove_if_unstarted()
    assert d.is_dir()


def test_adalora_allocator_state_survives_a_weights_only_resume(base, tmp_path):
    """AdaLoRA's rank allocator (importance averages per adapter tensor) goes through the
    checkpoint too: an interrupted run resumed ends exactly where an uninterrupted one does."""
    from safetensors.torch import load_file

    tr, va = load_data("swahili:train", base.corpus), load_data("swahili:val", base.corpus)

    full = run_training(base.model, make_method("adalora"), tr, va, None, tmp_path / "a", _cfg(base.root),
                        log=lambda *a: None)
    with pytest.raises(KeyboardInterrupt):
        run_training(base.model, make_method("adalora"), tr, va, None, tmp_path / "b",
                     _cfg(base.root, stop_after_steps=4), log=lambda *a: None)
    alloc = read_checkpoint(tmp_path / "b" / "checkpoint.pt")["allocator"]
    assert alloc and all(isinstance(t, torch.Tensor) for v in alloc.values() for t in v.values())
    resumed = run_training(base.model, make_method("adalora"), tr, va, None, tmp_path / "b", _cfg(base.root),
                           resume=True, log=lambda *a: None)
    assert resumed["steps"] == full["steps"] == 6
    a = load_file(tmp_path / "a" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
