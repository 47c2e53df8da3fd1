"""The encoder-output cache under damage, full disks, concurrent writers and bad audio paths (issue 24).

Every test here fails on the cache before checksums, reserved atomic writes and path checks: damaged
shards were served silently (WER 1.0, exit 0) or crashed with a traceback, a full disk was a SIGBUS, and
a manifest entry naming /dev/zero or a FIFO hung the key hashing forever.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dama import encoder_cache as C
from dama.data import load_data
from dama.data.manifest import Manifest, Utterance
from dama.encoder_cache import EncoderCache, cache_info, check_cache, clip_key, repair_cache
from dama.errors import DamaError, DataError
from dama.models.load import load_whisper
from dama.testing import make_corpus, write_wav

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "data")


@pytest.fixture
def w(tiny_ct2_dir):
    return load_whisper(tiny_ct2_dir, device="cpu")


def _build(w, m, root: Path) -> tuple[EncoderCache, list[str]]:
    msgs: list[str] = []
    return EncoderCache.build(w, m, root, log=msgs.append, show_progress=False), msgs


def _shard(root: Path) -> tuple[Path, Path]:
    (npy,) = root.glob("enc-*/shard-*.npy")
    return npy, npy.with_name(npy.name[:-4] + ".keys.json")


def _new_process() -> None:
    """What a fresh process knows: nothing checksummed yet."""
    C._VERIFIED.clear()


def _assert_rebuilt(w, m, root: Path, ref: torch.Tensor, bad: Path) -> list[str]:
    _new_process()
    c, msgs = _build(w, m, root)
    warnings = [x for x in msgs if x.startswith("warning:")]
    assert len(warnings) == 1 and str(bad) in warnings[0] and "discarded" in warnings[0], msgs
    assert "\n" not in warnings[0]
    assert any(f"caching encoder outputs of {len(m)} clips" in x for x in msgs), msgs
    assert torch.equal(c.get(list(range(len(m)))), ref)  # the right outputs, not the damaged ones
    assert check_cache(root) == [] and not bad.exists()
    return msgs


# ---- damage: detected, reported in one line naming the file, discarded and rebuilt --------------------

def test_same_size_corruption_of_a_shard_is_caught_and_rebuilt(w, corpus, tmp_path):
    m = load_data("swahili:val", corpus)
    c, _ = _build(w, m, tmp_path / "c")
    ref = c.get(list(range(len(m))))
    npy, _ = _shard(tmp_path / "c")
    size = npy.stat().st_size
    offset = np.load(npy, mmap_mode="r").offset
    row_bytes = ref[0].numel() * 2
    del c
    with open(npy, "r+b") as f:  # random bytes over part of row 1: same size, valid header
        f.seek(offset + row_bytes + 1000)
        f.write(np.random.default_rng(0).bytes(4096))
    assert npy.stat().st_size == size
    _new_process()
    (problem,) = check_cache(tmp_path / "c")
    assert problem.startswith(str(npy)) and "row 1" in problem and "checksum" in problem
    (info,) = cache_info(tmp_path / "c")
    assert info["problems"] == [problem] and info["shards"] == 0
    _assert_rebuilt(w, m, tmp_path / "c", ref, npy)


@pytest.mark.parametrize("damage", ["truncate", "truncate-header", "header", "header-padding", "trailer", "append",
                                    "empty"])
def test_damaged_shard_array_is_caught_and_rebuilt(w, corpus, tmp_path, damage):
    m = load_data("swahili:val", corpus)
    c, _ = _build(w, m, tmp_path / "c")
    ref = c.get(list(range(len(m))))
    del c
    npy, _ = _shard(tmp_path / "c")
    data = bytearray(npy.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "truncate-header":
        data = data[:60]
    elif damage == "header":  # the shape's first digit: a (n+k)-row array with the same file size
        i = data.index(b"'shape': (") + len(b"'shape': (")
        data[i] = ord("7")
    elif damage == "header-padding":  # still a valid header: harmless, but no byte goes unchecked
        data[data.index(b"}") + 1] = ord("\t")
    elif damage == "trailer":  # one checksum digit changed
        i = data.rindex(b'"row_crc32":[') + len(b'"row_crc32":[')
        data[i] = ord("1") if data[i] != ord("1") else ord("2")
    elif damage == "append":
        data += b"\0" * 4096
    else:
        data = bytearray()
    npy.write_bytes(bytes(data))
    _new_process()
    assert [p.split(": ")[0] for p in check_cache(tmp_path / "c", verify=False)] == [str(npy)]
    _assert_rebuilt(w, m, tmp_path / "c", ref, npy)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not-a-list", "swapped", "empty", "no-array"])
def test_damaged_key_list_is_caught_and_rebuilt(w, corpus, tmp_path, damage):
    m = load_data("swahili:val", corpus)
    c, _ = _build(w, m, tmp_path / "c")
    ref = c.get(list(range(len(m))))
    del c
    npy, keys_file = _shard(tmp_path / "c")
    raw = keys_file.read_bytes()
    if damage == "truncate":
        keys_file.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":  # same size
        keys_file.write_bytes(np.random.default_rng(1).bytes(len(raw)))
    elif damage == "not-a-list":
        keys_file.write_text(json.dumps({"keys": json.loads(raw)}))
    elif damage == "swapped":  # still valid JSON of the same size, but row i would serve clip j
        keys = json.loads(raw)
        keys_file.write_text(json.dumps([keys[1], keys[0], *keys[2:]]))
        assert len(keys_file.read_bytes()) == len(raw)
    elif damage == "empty":
        keys_file.write_bytes(b"")
    else:
        npy.unlink()
    _new_process()
    assert len(check_cache(tmp_path / "c", verify=False)) == 1
    bad = npy if damage == "swapped" else keys_file  # a swapped list fails the array's checksum of it
    _assert_rebuilt(w, m, tmp_path / "c", ref, bad)
    assert not keys_file.exists() and not npy.exists()  # an array without a usable key list goes too


def test_any_damage_anywhere_is_caught_and_never_served(tmp_path):
    """Random bytes at random places of a shard or its key list (as benchmarks/fault_injection.py does):
    every byte is under a checksum, so each case is reported and nothing damaged is served."""
    import random
    import shutil

    rng = random.Random(0)
    pristine = tmp_path / "pristine" / "enc-0"
    pristine.mkdir(parents=True)
    keys = [f"k{i}" for i in range(5)]
    rows = np.stack([np.full((16, 8), i + 1, np.float16) for i in range(5)])
    C._write_shard(pristine, keys, rows.shape, [rows], log=lambda *a: None)
    for trial in range(120):
        folder = tmp_path / f"t{trial}" / "enc-0"
        shutil.copytree(pristine, folder)
        npy, keys_file = _shard(folder.parent)
        victim = rng.choice([npy, keys_file])
        data = bytearray(victim.read_bytes())
        n = rng.choice([1, 16, 64])
        start = rng.randrange(0, max(1, len(data) - n))
        for i in range(start, min(len(data), start + n)):
            data[i] = rng.randrange(256)
        if data == victim.read_bytes():
            continue
        victim.write_bytes(bytes(data))
        _new_process()
        msgs: list[str] = []
        found = C._usable(folder, keys, msgs.append)
        assert found == {} and len(msgs) == 1 and "discarded" in msgs[0], (trial, victim.name, start, n, msgs)
        shutil.rmtree(folder.parent)


def test_repair_drops_bad_shards_and_keeps_sound_ones(w, corpus, tmp_path):
    val, test = load_data("swahili:val", corpus), load_data("swahili:test", corpus)
    _build(w, val, tmp_path / "c")
    first = {p.name for p in (tmp_path / "c").glob("enc-*/shard-*")}
    _build(w, test, tmp_path / "c")
    (bad_keys,) = [p for p in (tmp_path / "c").glob("enc-*/shard-*.keys.json") if p.name not in first]
    bad_keys.write_text(bad_keys.read_text()[:-5])
    _new_process()
    (info,) = cache_info(tmp_path / "c")
    assert info["shards"] == 1 and info["clips"] == len(val) and len(info["problems"]) == 1
    assert info["problems"][0].startswith(str(bad_keys)) and "truncated or corrupt" in info["problems"][0]
    bad_npy = C._npy_of(bad_keys)
    dry = repair_cache(tmp_path / "c", dry_run=True)
    assert dry["removed"] == [str(bad_keys), str(bad_npy)] and bad_keys.exists() and bad_npy.exists()
    assert dry["problems"] == info["problems"]
    out = repair_cache(tmp_path / "c")
    assert out["removed"] == dry["removed"] and out["freed_bytes"] > 0 and check_cache(tmp_path / "c") == []
    assert not bad_keys.exists() and not bad_npy.exists()
    (info,) = cache_info(tmp_path / "c")
    assert info["problems"] == [] and info["partial"] == 0 and info["shards"] == 1
    _, msgs = _build(w, test, tmp_path / "c")
    assert any(f"of {len(test)} clips (0 already cached)" in x for x in msgs)


def test_shards_written_before_checksums_are_still_read(w, corpus, tmp_path):
    """A cache from an older dama (bare .npy + key list) stays useful; only its sizes can be checked."""
    m = load_data("swahili:val", corpus)
    ref_cache, _ = _build(w, m, tmp_path / "ref")
    ref = ref_cache.get(list(range(len(m))))
    folder = tmp_path / "c" / ref_cache.path.name
    folder.mkdir(parents=True)
    np.save(folder / "shard-0123456789abcdef.npy", ref.numpy())
    (folder / "shard-0123456789abcdef.keys.json").write_text(json.dumps([clip_key(u) for u in m]))
    c, msgs = _build(w, m, tmp_path / "c")
    assert "hit" in msgs[-1] and torch.equal(c.get([2, 0]), ref[[2, 0]])
    (info,) = cache_info(tmp_path / "c")
    assert info["legacy_shards"] == 1 and info["problems"] == [] and info["clips"] == len(m)
    with open(folder / "shard-0123456789abcdef.npy", "r+b") as f:  # a truncated legacy shard is caught
        f.truncate(f.seek(0, 2) - 10)
    assert len(check_cache(tmp_path / "c")) == 1
    _assert_rebuilt(w, m, tmp_path / "c", ref, folder / "shard-0123456789abcdef.npy")


def test_shards_of_another_format_are_left_alone(w, corpus, tmp_path, monkeypatch):
    """A newer dama sharing the cache writes shards this one cannot read: skip them, never delete them."""
    m = load_data("swahili:val", corpus)
    monkeypatch.setattr(C, "FORMAT", "dama-encoder-cache/99")
    _build(w, m, tmp_path / "c")
    monkeypatch.undo()
    npy, keys_file = _shard(tmp_path / "c")
    _new_process()
    c, msgs = _build(w, m, tmp_path / "c")
    assert any(x.startswith("note:") and str(npy) in x and "another dama version" in x for x in msgs)
    assert not any(x.startswith("warning:") for x in msgs) and len(c) == len(m)
    (problem,) = check_cache(tmp_path / "c")
    assert "another dama version" in problem
    assert repair_cache(tmp_path / "c")["removed"] == [] and npy.exists() and keys_file.exists()


def test_rows_are_checksummed_once_per_process(w, corpus, tmp_path, monkeypatch):
    m = load_data("swahili:val", corpus)
    c, _ = _build(w, m, tmp_path / "c")
    row_bytes = c.get([0])[0].numel() * 2
    calls = []
    real = C.zlib.crc32

    class Z:
        @staticmethod
        def crc32(data, *a):
            calls.append(memoryview(data).nbytes)
            return real(data, *a)

    monkeypatch.setattr(C, "zlib", Z)
    _build(w, m, tmp_path / "c")
    assert calls.count(row_bytes) == 0  # written by this process: checksummed as it was written
    _new_process()
    _build(w, m[:2], tmp_path / "c")
    assert calls.count(row_bytes) == 2  # only the rows served
    _build(w, m, tmp_path / "c")
    assert calls.count(row_bytes) == 3


# ---- full disks: a clear error up front, nothing half-written ------------------------------------------

def _no_files_but_folder(root: Path) -> None:
    folders = list(root.glob("enc-*"))
    assert all(not any(f.iterdir()) for f in folders), [list(f.iterdir()) for f in folders]


def test_no_space_when_reserving_is_a_clear_error_and_leaves_nothing(w, corpus, tmp_path, monkeypatch):
    m = load_data("swahili:val", corpus)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(C.os, "posix_fallocate", full, raising=False)
    with pytest.raises(DamaError, match="not enough disk space") as e:
        _build(w, m, tmp_path / "c")
    msg = str(e.value)
    need = EncoderCache.size_bytes(len(m), 1500, 64)
    assert str(tmp_path / "c") in msg and "--cache-dir" in msg and f"{len(m)} clips need" in msg
    assert int(msg.split(" clips need ")[1].split(" ")[0]) >= need
    _no_files_but_folder(tmp_path / "c")


def test_no_space_while_writing_is_a_clear_error_and_leaves_nothing(w, corpus, tmp_path, monkeypatch):
    """Where fallocate is unsupported, the ordinary writes report the full disk (no memory map: no SIGBUS)."""
    m = load_data("swahili:val", corpus)
    monkeypatch.setattr(C.os, "posix_fallocate",
                        lambda *a: (_ for _ in ()).throw(OSError(errno.EOPNOTSUPP, "not supported")), raising=False)
    real, written = C._write_all, []

    def write_all(fd, data):
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(real(fd, data))

    monkeypatch.setattr(C, "_write_all", write_all)
    with pytest.raises(DamaError, match="not enough disk space"):
        _build(w, m, tmp_path / "c")
    _no_files_but_folder(tmp_path / "c")
    monkeypatch.undo()
    c, msgs = _build(w, m, tmp_path / "c")  # space again: builds normally
    assert check_cache(tmp_path / "c") == [] and len(c) == len(m)


_TMPFS_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from dama.data import load_data
    from dama.errors import DamaError
    from dama.models.load import load_whisper
    from dama.encoder_cache import EncoderCache
    model, corpus, root = sys.argv[1:4]
    try:
        EncoderCache.build(load_whisper(model), load_data("swahili:train", corpus), root, log=print,
                           show_progress=False)
        print("BUILT")
    except DamaError as e:
        print("DAMAERROR", e)
    print("FILES", json.dumps(sorted(p.name for p in Path(root).rglob("*"))))
""")


def _tmpfs_wrappers() -> list[list[str]]:
    """Ways to mount a private tmpfs: root in a new mount namespace, else a user namespace."""
    if sys.platform != "linux" or not Path("/usr/bin/unshare").exists():
        return []
    return [["unshare", "-m"], ["unshare", "-rm"]] if os.geteuid() == 0 else [["unshare", "-rm"]]


def test_a_real_full_disk_is_a_clear_error_not_a_bus_error(tiny_ct2_dir, corpus, tmp_path):
    """8 clips need 1.5 MiB; the cache sits on a 1 MiB tmpfs (mounted in a private namespace)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = tmp_path / "fill.py"
    script.write_text(_TMPFS_SCRIPT)
    reasons = []
    for wrap in _tmpfs_wrappers():
        probe = subprocess.run([*wrap, "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {mnt}"],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            reasons.append(f"{' '.join(wrap)}: {probe.stderr.strip()}")
            continue
        cmd = f"mount -t tmpfs -o size=1m tmpfs {mnt} && exec {sys.executable} {script} {tiny_ct2_dir} {corpus} {mnt}/c"
        r = subprocess.run([*wrap, "sh", "-c", cmd], capture_output=True, text=True, timeout=300, cwd=REPO)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)  # 135 was the SIGBUS
        assert "DAMAERROR" in r.stdout and "not enough disk space" in r.stdout and "--cache-dir" in r.stdout
        files = json.loads(r.stdout.split("FILES ", 1)[1])
        assert not [f for f in files if f.startswith(("shard-", ".shard-"))], files
        return
    pytest.skip("cannot mount a tmpfs here: " + ("; ".join(reasons) or "no unshare(1)"))


# ---- concurrent writers --------------------------------------------------------------------------------

_WRITER = textwrap.dedent("""
    import sys, time, random
    from pathlib import Path
    import numpy as np
    from dama.encoder_cache import _write_shard
    folder, seed, go = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    while not go.exists():
        time.sleep(0.005)
    rng = random.Random(seed)
    for _ in range(25):
        keys = rng.sample([f"k{i:02d}" for i in range(30)], 4)
        rows = np.stack([np.full((8, 4), int(k[1:]), np.float16) for k in keys])
        _write_shard(folder, keys, rows.shape, [rows[:2], rows[2:]], log=lambda *a: None)
    print("OK")
""")


def test_two_processes_writing_one_cache_lose_nothing_and_corrupt_nothing(tmp_path):
    folder = tmp_path / "c" / "enc-0000"
    folder.mkdir(parents=True)
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(script), str(folder), str(seed), str(go)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    time.sleep(0.5)
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    written = set()
    import random

    for seed in (1, 2):
        rng = random.Random(seed)
        for _ in range(25):
            written.update(rng.sample([f"k{i:02d}" for i in range(30)], 4))
    C._VERIFIED.clear()
    assert check_cache(tmp_path / "c") == []
    index = C._read_index(folder)
    assert set(index) == written  # every clip either writer cached is served
    for k, (npy, row) in index.items():
        assert (np.load(npy, mmap_mode="r")[row] == int(k[1:])).all()
    assert not list(folder.glob(".*"))  # no temp files left behind


_BUILDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from dama.data import load_data
    from dama.models.load import load_whisper
    from dama.encoder_cache import EncoderCache
    model, corpus, root, go = sys.argv[1:5]
    w, m = load_whisper(model), load_data("swahili:train+val", corpus)
    while not Path(go).exists():
        time.sleep(0.005)
    c = EncoderCache.build(w, m, root, log=print, show_progress=False)
    print("ROWS", len(c), float(c.get(list(range(len(c)))).float().abs().sum()))
""")


def test_two_trainings_building_the_same_cache_at_once(tiny_ct2_dir, corpus, tmp_path):
    script = tmp_path / "build.py"
    script.write_text(_BUILDER)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(script), str(tiny_ct2_dir), str(corpus), str(tmp_path / "c"),
                               str(go)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    time.sleep(1.0)
    go.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    sums = [o.split("ROWS ")[1].split() for o, _ in outs]
    assert sums[0][0] == sums[1][0] and float(sums[0][1]) == pytest.approx(float(sums[1][1]), rel=1e-3), outs
    assert check_cache(tmp_path / "c") == []
    w = load_whisper(tiny_ct2_dir)
    _, msgs = _build(w, load_data("swahili:train+val", corpus), tmp_path / "c")
    assert "hit" in msgs[-1]


def test_leftovers_of_killed_builds_are_removed_but_not_files_being_written(w, corpus, tmp_path):
    import fcntl

    m = load_data("swahili:val", corpus)
    folder = tmp_path / "c" / f"enc-{C.encoder_fingerprint(w.model)}"
    folder.mkdir(parents=True)
    dead = folder / ".shard-abc.x1.tmp"
    live = folder / ".shard-def.x2.tmp"
    young = folder / ".shard-ghi.x3.tmp"
    for f in (dead, live, young):
        f.write_bytes(b"\0" * 1000)
    for f in (dead, live):
        os.utime(f, (time.time() - 3600,) * 2)
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process still writing it
    try:
        _, msgs = _build(w, m, tmp_path / "c")
    finally:
        os.close(fd)
    assert not dead.exists() and live.exists() and young.exists()
    assert any("removed 1 leftover file(s)" in x for x in msgs)


# ---- audio paths that are not regular files ------------------------------------------------------------

@pytest.fixture
def within_5s():
    def boom(*_):
        raise TimeoutError("hung")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "folder"])
def test_audio_that_is_not_a_regular_file_is_refused_not_hung(w, tmp_path, kind, within_5s):
    if kind == "dev-zero":
        path = Path("/dev/zero")
    elif kind == "fifo":
        path = tmp_path / "clip.wav"
        os.mkfifo(path)
    else:
        path = tmp_path / "clip.wav"
        path.mkdir()
    good = Utterance("a", write_wav(tmp_path / "a.wav", 0.5), "x", where="m.jsonl:1")
    m = Manifest([good, Utterance("b", path, "y", where="m.jsonl:2")], name="m")
    with pytest.raises(DataError) as e:
        _build(w, m, tmp_path / "c")
    msg = str(e.value)
    assert str(path) in msg and "m.jsonl:2" in msg and "not an audio file" in msg and "dama data check" in msg
    assert not list((tmp_path / "c").rglob("shard-*"))  # refused before anything was encoded


def test_missing_audio_is_a_data_error_naming_the_file_and_line(w, tmp_path):
    m = Manifest([Utterance("a", tmp_path / "gone.wav", "x", where="m.jsonl:7")], name="m")
    with pytest.raises(DataError, match=r"gone\.wav: audio file not found \(listed at m\.jsonl:7\).*dama data check"):
        _build(w, m, tmp_path / "c")
    with pytest.raises(DataError, match="gone.wav"):
        clip_key(m[0])


def test_every_unreadable_clip_is_named_at_once(w, tmp_path):
    m = Manifest([Utterance(f"u{i}", tmp_path / f"gone{i}.wav", "x", where=f"m.jsonl:{i + 1}") for i in range(7)]
                 + [Utterance("z", Path("/dev/null"), "x", where="m.jsonl:8")], name="m")
    with pytest.raises(DataError) as e:
        _build(w, m, tmp_path / "c")
    msg = str(e.value)
    assert msg.startswith("8 audio files cannot be read") and "gone0.wav" in msg and "... and 3 more" in msg
    assert msg.count("dama data check") == 1
