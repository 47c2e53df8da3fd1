"""Issue 24's careless-user cases at the entry points: each ends in one clear line and exit 2.

Each test reproduces a reported case (non-UTF-8 manifests, an unknown language inside a
manifest, empty training transcripts, ``--hours 0``, unwritable or full output locations,
many files given to ``dama transcribe``) and asserts the message names the file (and
line) and that no work was done or left half-written.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import subprocess
from pathlib import Path

import pytest

from dama.cli.main import main
from dama.testing import make_corpus, write_wav


def _manifest(tmp_path: Path, rows: list[dict], name: str = "m.jsonl") -> Path:
    for r in rows:
        if not (tmp_path / r["audio_filepath"]).exists():
            write_wav(tmp_path / r["audio_filepath"], 1.0, freq=300 + 10 * len(r["text"]))
    p = tmp_path / name
    p.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return p


def _train(model: Path, data: str, out: Path, *extra: str) -> int:
    return main(["train", "--method", "lora", "--rank", "2", "--model", str(model), "--data", data,
                 "--out", str(out), "--epochs", "1", "--val", "none", "--test", "none", *extra])


def test_non_utf8_jsonl_names_file_and_line(tiny_ct2_dir, tmp_path, capsys):
    p = _manifest(tmp_path, [{"audio_filepath": "a.wav", "text": "sawa", "language": "sw"}])
    bad = {"audio_filepath": "a.wav", "text": "caf\xe9", "language": "sw"}
    p.write_bytes(p.read_bytes() + json.dumps(bad, ensure_ascii=False).encode("latin-1"))
    assert main(["eval", "--model", str(tiny_ct2_dir), "--data", str(p)]) == 2
    err = capsys.readouterr().err
    assert f"{p}:2" in err and "not UTF-8" in err and "Traceback" not in err


def test_non_utf8_csv_and_transcript_file_name_the_line(tmp_path, capsys):
    write_wav(tmp_path / "a.wav")
    csv = tmp_path / "m.csv"
    csv.write_bytes("audio_filepath,text,language\na.wav,sawa,sw\na.wav,caf\xe9,sw\n".encode("latin-1"))
    assert main(["data", "prepare", str(csv), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"{csv}:3" in err and "UTF-8" in err and not (tmp_path / "o.jsonl").exists()

    corpus = make_corpus(tmp_path / "data", n_train=2, n_val=1, n_test=1)
    raw = corpus / "swahili" / "data" / "raw_text_file.txt"
    raw.write_bytes(raw.read_bytes() + "x:caf\xe9\n".encode("latin-1"))
    assert main(["data", "check", "swahili:train", "--data-root", str(corpus)]) == 2
    err = capsys.readouterr().err
    assert f"{raw}:5" in err and "UTF-8" in err


def test_unknown_language_inside_a_manifest_names_its_line(tiny_ct2_dir, tmp_path, capsys):
    p = _manifest(tmp_path, [{"audio_filepath": "a.wav", "text": "sawa", "language": "sw"},
                             {"audio_filepath": "b.wav", "text": "ok", "language": "xx"}])
    assert main(["eval", "--model", str(tiny_ct2_dir), "--data", str(p)]) == 2
    err = capsys.readouterr().err
    assert "'xx'" in err and f"{p}:2" in err
    assert main(["eval", "--model", str(tiny_ct2_dir), "--data", str(p), "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "'xx'" in err and f"{p}:2" in err  # the encoder-cache path names it too
    assert _train(tiny_ct2_dir, str(p), tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "'xx'" in err and f"{p}:2" in err and "--language-name" in err


def test_empty_training_transcripts_are_refused_not_trained_on(tiny_ct2_dir, tmp_path, capsys):
    p = _manifest(tmp_path, [{"audio_filepath": "a.wav", "text": "sawa", "language": "sw"},
                             {"audio_filepath": "b.wav", "text": "  ", "language": "sw"}])
    assert _train(tiny_ct2_dir, str(p), tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "empty transcript" in err and f"{p}:2" in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_hours_zero_is_an_error_not_the_whole_split(tiny_ct2_dir, tmp_path, capsys):
    p = _manifest(tmp_path, [{"audio_filepath": "a.wav", "text": "sawa", "language": "sw"}])
    assert _train(tiny_ct2_dir, str(p), tmp_path / "run", "--hours", "0") == 2
    assert "--hours must be positive" in capsys.readouterr().err
    assert main(["data", "prepare", str(p), "--hours", "0", "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "--hours must be positive" in capsys.readouterr().err


def test_unwritable_outputs_fail_before_any_decoding(tiny_ct2_dir, tmp_path, capsys, monkeypatch):
    p = _manifest(tmp_path, [{"audio_filepath": "a.wav", "text": "sawa", "language": "sw"}])
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    decoded = []
    monkeypatch.setattr("dama.evaluate.run.transcribe", lambda *a, **k: decoded.append(1) or ["x"])
    for flag in ("--json", "--hyps"):
        rc = main(["eval", "--model", str(tiny_ct2_dir), "--data", str(p), flag, str(blocker / "r.json")])
        assert rc == 2
        err = capsys.readouterr().err
        assert flag in err and str(blocker) in err and "Traceback" not in err
    assert main(["eval", "--model", str(tiny_ct2_dir), "--data", str(p), "--json", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert _train(tiny_ct2_dir, str(p), blocker / "run") == 2
    assert "--out" in capsys.readouterr().err
    assert not decoded


@contextlib.contextmanager
def _tmpfs(path: Path, size: str, *options: str):
    """A real small file system (root only): a full or read-only disk, not a simulation."""
    path.mkdir()
    opts = ",".join((f"size={size}", *options))
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_and_read_only_disks_are_named_before_work(tiny_ct2_dir, tmp_path, capsys):
    p = _manifest(tmp_path, [{"audio_filepath": "a.wav", "text": "sawa", "language": "sw"}])
    with _tmpfs(tmp_path / "full", "64k") as full:
        (full / "filler").write_bytes(b"\0" * 60_000)  # leave less than a probe's 64 KiB
        assert main(["eval", "--model", str(tiny_ct2_dir), "--data", str(p), "--json", str(full / "r.json")]) == 2
        err = capsys.readouterr().err
        assert "disk is full" in err and str(full / "r.json") in err
        assert sorted(x.name for x in full.iterdir()) == ["filler"]  # no probe or partial file left
    with _tmpfs(tmp_path / "ro", "1m", "ro") as ro:
        assert main(["eval", "--model", str(tiny_ct2_dir), "--data", str(p), "--hyps", str(ro / "h.jsonl")]) == 2
        assert "read-only" in capsys.readouterr().err


def test_os_errors_anywhere_are_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    def boom(args):
        raise PermissionError(13, "Permission denied", str(tmp_path / "secret"))

    monkeypatch.setattr("dama.cli.languages.cmd_languages", boom)  # build_parser binds the patched handler
    assert main(["languages"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "secret") in err and "permission denied" in err


def test_transcribe_streams_many_files_and_checks_them_first(tiny_ct2_dir, tmp_path, capsys, monkeypatch):
    paths = [str(write_wav(tmp_path / f"c{i}.wav", 0.5, freq=200 + 40 * i)) for i in range(5)]
    monkeypatch.setattr("dama.cli.transcribe.TRANSCRIBE_BLOCK", 2)
    loaded_at_once = []
    tr = importlib.import_module("dama.models.transcribe")  # the module, not the function dama.models exports
    real = tr.transcribe

    def spy(w, audios, *a, **k):
        loaded_at_once.append(len(audios))
        return real(w, audios, *a, **k)

    monkeypatch.setattr(tr, "transcribe", spy)
    assert main(["transcribe", *paths, "--language", "sw", "--model", str(tiny_ct2_dir),
                 "--json", str(tmp_path / "t.json")]) == 0
    assert loaded_at_once == [2, 2, 1]
    res = json.loads((tmp_path / "t.json").read_text())
    assert [r["audio"] for r in res["results"]] == paths and res["n"] == 5
    assert capsys.readouterr().out.count("\t") == 5
    # a missing file among many is named before the model loads or anything decodes
    loaded_at_once.clear()
    assert main(["transcribe", *paths, str(tmp_path / "gone.wav"), "--language", "sw",
                 "--model", str(tiny_ct2_dir)]) == 2
    assert "gone.wav: audio file not found" in capsys.readouterr().err and not loaded_at_once


def test_cache_info_names_a_corrupt_shard_and_repair_rebuilds_it(tiny_ct2_dir, tmp_path, capsys):
    p = _manifest(tmp_path, [{"audio_filepath": f"c{i}.wav", "text": "x" * (i + 1), "language": "sw"}
                             for i in range(3)])
    cache = tmp_path / "cache"
    run = ["eval", "--model", str(tiny_ct2_dir), "--data", str(p), "--cache-dir", str(cache)]
    assert main([*run, "--hyps", str(tmp_path / "h1.jsonl")]) == 0
    assert main(["cache", "info", str(cache)]) == 0 and "healthy" in capsys.readouterr().out
    shard = next(cache.rglob("*.npy"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2: len(data) // 2 + 32] = bytes(range(32))  # same size, different bytes
    shard.write_bytes(bytes(data))
    with pytest.raises(SystemExit) as e:
        main(["cache", "info", str(cache)])
    out = capsys.readouterr().out
    assert e.value.code == 1 and f"problem: {shard}" in out and "--repair" in out
    assert main(["cache", "info", str(cache), "--quick"]) == 0  # sizes and header intact: --quick can't see it
    capsys.readouterr()
    assert main(["cache", "info", str(cache), "--repair"]) == 0
    out = capsys.readouterr().out
    assert f"removed {shard}" in out and out.strip().endswith("checked)") and not shard.exists()
    assert main([*run, "--hyps", str(tmp_path / "h2.jsonl")]) == 0  # re-encoded: the same transcripts
    hyps = [[json.loads(x)["hyp"] for x in (tmp_path / f"h{k}.jsonl").read_text().splitlines()] for k in (1, 2)]
    assert hyps[0] == hyps[1]
