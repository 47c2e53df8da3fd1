"""The `dama` command: sub-commands, --json output, exit codes and error messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dama.cli.main import build_parser, main
from dama.testing import write_wav


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for cmd in ("model", "transcribe", "eval", "data", "languages"):
        assert cmd in out


def test_eval_on_tiny_model_writes_json_and_hyps(tiny_ct2_dir, tmp_path, capsys):
    for i in range(3):
        write_wav(tmp_path / f"c{i}.wav", 1.0 + i)
    (tmp_path / "m.jsonl").write_text("\n".join(
        json.dumps({"audio_filepath": f"c{i}.wav", "text": f"neno {i}", "language": "sw"}) for i in range(3)))
    rc = main(["eval", "--model", str(tiny_ct2_dir), "--data", str(tmp_path / "m.jsonl"),
               "--json", str(tmp_path / "r.json"), "--hyps", str(tmp_path / "h.jsonl")])
    assert rc == 0
    res = json.loads((tmp_path / "r.json").read_text())
    for key in ("wer", "cer", "n", "rtf"):
        assert isinstance(res[key], (int, float))
    assert res["n"] == 3 and res["ref_words"] == 6 and res["rtf"] > 0
    rows = [json.loads(x) for x in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert [r["ref"] for r in rows] == ["neno 0", "neno 1", "neno 2"] and rows[2]["duration"] == 3.0
    assert "WER=" in capsys.readouterr().out

    # from an encoder-output cache: the same transcripts, and a second run reuses the cache
    cache = tmp_path / "cache"
    for _ in range(2):
        assert main(["eval", "--model", str(tiny_ct2_dir), "--data", str(tmp_path / "m.jsonl"), "--cache-dir",
                     str(cache), "--json", str(tmp_path / "c.json"), "--hyps", str(tmp_path / "hc.jsonl")]) == 0
        cached = [json.loads(x) for x in (tmp_path / "hc.jsonl").read_text().splitlines()]
        assert [r["hyp"] for r in cached] == [r["hyp"] for r in rows]
    assert json.loads((tmp_path / "c.json").read_text())["params"] == res["params"] > 0
    assert len(list(cache.rglob("*.npy"))) == 1  # one shard: the second run encoded nothing


def test_eval_unknown_language_is_a_clean_error(tiny_ct2_dir, tmp_path, capsys):
    write_wav(tmp_path / "c.wav")
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio_filepath": "c.wav", "text": "x"}))
    rc = main(["eval", "--model", str(tiny_ct2_dir), "--data", str(tmp_path / "m.jsonl")])
    assert rc == 2 and "--language" in capsys.readouterr().err
    rc = main(["eval", "--model", str(tiny_ct2_dir), "--data", str(tmp_path / "m.jsonl"), "--language", "fr",
               "--hyps", str(tmp_path / "h.jsonl")])
    assert rc == 2 and "<|fr|>" in capsys.readouterr().err


def test_wrong_paths_give_clean_errors(tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path / "nomodel"), "--data", str(tmp_path / "none.jsonl")]) == 2
    assert "neither a file" in capsys.readouterr().err
    (tmp_path / "m.jsonl").write_text("")
    assert main(["eval", "--model", str(tmp_path / "nomodel"), "--data", str(tmp_path / "m.jsonl")]) == 2
    assert "cannot load Whisper model" in capsys.readouterr().err


def test_data_check_lists_all_problems_and_fails(tmp_path, capsys):
    write_wav(tmp_path / "ok.wav")
    (tmp_path / "m.jsonl").write_text("\n".join([
        json.dumps({"audio_filepath": "ok.wav", "text": "sawa", "language": "sw"}),
        json.dumps({"audio_filepath": "gone.wav", "text": "x", "language": "sw"}),
        json.dumps({"audio_filepath": "ok.wav", "text": "", "language": "sw"}),
        "oops",
    ]))
    with pytest.raises(SystemExit) as e:
        main(["data", "check", str(tmp_path / "m.jsonl"), "--json", str(tmp_path / "c.json")])
    assert e.value.code == 1
    out = capsys.readouterr().out
    assert out.count("ERROR") == 3 and "m.jsonl:2" in out and "m.jsonl:3" in out and "m.jsonl:4" in out
    assert json.loads((tmp_path / "c.json").read_text())["errors"] == 3


def test_data_prepare_subset_roundtrip(tmp_path, capsys):
    for i in range(20):
        write_wav(tmp_path / f"c{i}.wav", 1.0)
    (tmp_path / "m.jsonl").write_text("\n".join(
        json.dumps({"audio_filepath": f"c{i}.wav", "text": "x", "language": "yo"}) for i in range(20)))
    rc = main(["data", "prepare", str(tmp_path / "m.jsonl"), "--hours", str(5 / 3600), "--seed", "1",
               "--out", str(tmp_path / "sub.jsonl")])
    assert rc == 0
    from dama.data import read_jsonl

    sub = read_jsonl(tmp_path / "sub.jsonl")
    assert len(sub) == 5 and all(u.duration == 1.0 for u in sub) and not sub.problems


def test_model_fetch_prints_folder_last(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("dama.models.fetch.fetch_model", lambda *a, **k: tmp_path / "m")
    assert main(["model", "fetch", "whisper-base", "--json", str(tmp_path / "f.json")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path / "m")
    assert json.loads((tmp_path / "f.json").read_text())["path"] == str(tmp_path / "m")


def test_help_and_import_do_not_load_torch_but_the_api_resolves():
    """`dama --help` answers at once: torch and transformers load only when a command needs them."""
    code = ("import sys\n"
            "from dama.cli.main import main\n"
            "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'dama --help imported torch'\n"
            "import dama\n"
            "assert 'torch' not in sys.modules\n"
            "assert all(getattr(dama, n) is not None for n in dama.__all__)\n"
            "assert 'torch' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import dama

        dama.nope  # noqa: B018
