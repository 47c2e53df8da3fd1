"""The README's result tables are generated from the committed result files and must match them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import load_benchmark

ROOT = Path(__file__).resolve().parents[2]


def load_summarize():
    return load_benchmark("summarize")


# Reference notes quoting the paper's numbers and the model files' facts, not our measurements.
REFERENCE_NOTES = {"method-notes.md", "models.md"}


def pages() -> list[Path]:
    """The README and the docs pages: the generated tables live across them, and their prose numbers
    must come from committed result files."""
    return [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in REFERENCE_NOTES)]


def test_readme_tables_match_committed_results(capsys):
    s = load_summarize()
    names = [m["name"] for p in pages() for m in s._BLOCK.finditer(p.read_text())]
    assert sorted(names) == sorted(s.BLOCKS), "every generated table appears exactly once in README.md + docs/"
    rc = s.main(["--check", *map(str, pages())])
    assert rc == 0, capsys.readouterr().err


def test_readme_is_a_short_guide_that_links_to_existing_pages():
    import re

    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 250
    for page in pages():
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_check_catches_a_hand_edited_number(tmp_path, capsys):
    s = load_summarize()
    readme = tmp_path / "README.md"
    table = s.train_speed()
    page = "intro\n<!-- summarize.py:train-speed -->\n{}\n<!-- /summarize.py:train-speed -->\nafter\n"
    ratio = re.search(r"\d+\.\d\dx", table)[0]  # the first speed-up in the table, whatever it is now
    edited = table.replace(ratio, f"{float(ratio[:-1]) + 0.54:.2f}x", 1)
    assert edited != table
    readme.write_text(page.format(edited))
    assert s.main(["--check", str(readme)]) == 1
    assert "out of date: train-speed" in capsys.readouterr().err
    assert s.main(["--write", str(readme)]) == 0
    assert readme.read_text() == page.format(table)
    assert s.main(["--check", str(readme)]) == 0


def test_unknown_block_is_an_error(tmp_path):
    s = load_summarize()
    readme = tmp_path / "README.md"
    readme.write_text("<!-- summarize.py:nope -->\nx\n<!-- /summarize.py:nope -->\n")
    with pytest.raises(SystemExit, match="unknown generated block 'nope'"):
        s.main(["--check", str(readme)])


def test_prose_numbers_must_come_from_a_committed_file(tmp_path):
    import json

    s = load_summarize()
    root = tmp_path / "benchmarks"
    (root / "run").mkdir(parents=True)
    (root / "run" / "results.json").write_text(json.dumps(
        {"wer": 0.1234, "forgetting": -0.033, "peak_memory_mb": 2554.0, "trainable_params": 1170000,
         "step": 7.25}))  # a step count is bookkeeping, not a result
    (root / "run" / "report.md").write_text("DAMA minus LoRA +7.8 [+6.3, +9.3]\n")
    text = ("WER 0.123 (0.1234), forgetting −3.3, 2.55 GB, 1.17 M parameters, Python 3.11,\n"
            "LoRA +7.8 [+6.3, +9.3], but 0.124 and 7.25 and 98.76 are made up\n"
            "<!-- summarize.py:grid -->\n| 55.55 |\n<!-- /summarize.py:grid -->\n"
            "and 55.55 is in a generated table\n")
    assert s.untraced(text, s.filed_numbers(root)) == [(2, "0.124"), (2, "7.25"), (2, "98.76")]


def test_check_catches_a_number_typed_into_the_prose(tmp_path, capsys):
    s = load_summarize()
    readme = tmp_path / "README.md"
    readme.write_text("intro\nDAMA wins by 98.76 points\n")
    assert s.main(["--check", str(readme)]) == 1
    assert f"{readme}:2: 98.76 is in no committed result file" in capsys.readouterr().err


def test_method_speed_gives_one_table_per_machine(tmp_path, monkeypatch):
    """Times per epoch from two machines are two tables, each headed by its machine, never one column."""
    import json

    s = load_summarize()
    monkeypatch.setattr(s, "HERE", tmp_path)
    paths = []
    for cpu, secs in (("AMD EPYC", 47.9), ("Intel Xeon", 30.2)):
        run = {"trainable_params": 1_170_000, "epoch_seconds_after_first": secs, "epoch_time_vs_reference": 1.0,
               "peak_memory_mb": 2554.0}
        p = tmp_path / "results" / f"method_speed_{cpu.split()[1].lower()}.json"
        p.parent.mkdir(exist_ok=True)
        p.write_text(json.dumps({"machine": {"cpu": cpu, "cpus": 2},
                                 "setup": {"data": "swahili:train", "hours": 0.5, "epochs": 3, "batch_size": 8,
                                           "reference": "dama"},
                                 "methods": {"dama": run}}))
        paths.append(p)
    text = s.method_speeds(paths)
    cut = text.index("swahili:train", 1)  # the second table's heading
    tables = [text[:cut], text[cut:]]
    assert text.count("| method |") == 2
    assert "AMD EPYC" in tables[0] and "| DAMA | 1.17 M | 47.9 | 1.00x | 2554 |" in tables[0]
    assert "Intel Xeon" in tables[1] and "| 30.2 |" in tables[1] and "47.9" not in tables[1]


def test_longform_tables_come_from_the_results_file(tmp_path, monkeypatch, capsys):
    """benchmarks/longform.py's rows become the docs table (every row) and the README's (dama beside
    faster-whisper per model); a long-form WER typed over by hand is caught."""
    import json

    s = load_summarize()
    row = {"language": "swahili", "model": "ts-0.5", "per_clip_wer": 0.5123, "boundary_p90_ms": 900.0,
           "loops": 0, "silence_60s_words": 0, "noise_60s_words": 0, "audio_seconds": 200.0}
    rows = [{**row, "backend": "dama", "strategy": "vad", "long_wer": 0.5234, "long_minus_per_clip": 0.0111,
             "boundary_median_ms": 250.4, "rtf": 1.23},
            {**row, "backend": "dama", "strategy": "sequential", "long_wer": 0.61, "long_minus_per_clip": 0.0977,
             "boundary_median_ms": 700.0, "rtf": 2.5},
            {**row, "backend": "faster-whisper", "strategy": "vad", "long_wer": 0.5345, "long_minus_per_clip": 0.0222,
             "boundary_median_ms": 310.0, "rtf": 0.31}]
    path = tmp_path / "longform.json"
    path.write_text(json.dumps({"command": ["python benchmarks/longform.py --a", "python benchmarks/longform.py --b"],
                                "subsets": {"swahili": {"recordings": ["r0"], "recordings_in_set": 22, "clips": 11,
                                                        "audio_seconds": 200.0}},
                                "test_wer": [{"language": "swahili", "data": "swahili:test", "model": "no-ts",
                                              "timestamp_share": 0.0, "wer": 0.54, "cer": 0.14, "n": 231},
                                             {"language": "swahili", "data": "swahili:test", "model": "ts-0.5",
                                              "timestamp_share": 0.5, "wer": 0.55, "cer": 0.15, "n": 231,
                                              "minus_first": {"vs": "no-ts", "diff": 0.0123, "ci95": [-0.004, 0.03],
                                                              "p_bootstrap": 0.151}}],
                                "rows": rows}))
    full = s.longform(path)
    assert "1 of 22 recordings (11 clips, 3.3 min)" in full and "then `python benchmarks/longform.py --b`" in full
    assert ("| swahili | ts-0.5 | 3.3 min | dama, sequential, tokens | 0.512 | 0.610 | +0.098 | 700 / 900 | – | – | "
            "0 | 2.50 | 0 / 0 |") in full
    assert "| swahili:test | ts-0.5 | 0.5 | 0.550 | 0.150 | 231 | +0.012 [-0.004, +0.030] vs no-ts (p = 0.15) |" in full
    assert "| swahili:test | no-ts | 0.0 | 0.540 | 0.140 | 231 | – |" in full
    summary = s.longform_summary(path)
    assert "| swahili | ts-0.5 | 0.512 | 0.523 / 0.534 | – / – | 250 / 310 | 0 / 0 | 1.23 / 0.31 |" in summary
    monkeypatch.setitem(s.BLOCKS, "longform-summary", lambda: s.longform_summary(path))
    page = tmp_path / "README.md"
    page.write_text(f"<!-- summarize.py:longform-summary -->\n{summary.replace('0.523', '0.501')}\n"
                    "<!-- /summarize.py:longform-summary -->\n")
    assert s.main(["--check", str(page)]) == 1
    assert "out of date: longform-summary" in capsys.readouterr().err
    # rows with segment-time variants: the README shows the default (words-vad) with its speech-edge error
    timed = [{**r, "timing": t, "speech_boundary_median_ms": 71.6 + k, "speech_boundary_p90_ms": 400.0,
              "segments": 12} for k, t in enumerate(("tokens", "words-vad")) for r in rows if r["strategy"] == "vad"]
    d = json.loads(path.read_text())
    path.write_text(json.dumps({**d, "rows": timed, "subsets": {"swahili": {
        **d["subsets"]["swahili"], "silence_in_clips_s": {"lead_median": 0.36, "trail_median": 2.01}}}}))
    full = s.longform(path)
    assert "| swahili | ts-0.5 | 3.3 min | faster-whisper, vad, words-vad | 0.512 | 0.534 | +0.022 | 310 / 900 | " \
        "73 / 400 | 12 | 0 | 0.31 | 0 / 0 |" in full
    assert "speech starts 0.36 s after the clip start and ends 2.01 s before its end" in full
    summary = s.longform_summary(path)
    assert "segment times: words-vad" in summary
    assert "| swahili | ts-0.5 | 0.512 | 0.523 / 0.534 | 73 / 73 | 250 / 310 | 0 / 0 | 1.23 / 0.31 |" in summary


def test_longform_speed_table(tmp_path):
    """benchmarks/longform_speed.py's rows: before (main's code: the encoder inside each pass) and after."""
    import json

    s = load_summarize()
    base = {"model": "zero-shot", "segments": 3, "load_before": 1.04}
    rows = [{**base, "code": "main@abc", "variant": "main@abc", "rtf": 2.5, "seconds": 140.0, "long_wer": 0.84,
             "split_seconds": {"vad": 0.3, "decode@0.0": 20.0, "decode@0.2": 30.0, "decode@1.0": 40.0},
             "windows": {"decode@0.0": 3, "decode@0.2": 2, "decode@1.0": 1}},
            {**base, "code": "def", "variant": "lean", "rtf": 0.5, "seconds": 28.0, "long_wer": 0.83,
             "split_seconds": {"vad": 0.3, "encoder": 3.2, "decode@0.0": 5.0, "decode@0.2": 9.0},
             "windows": {"decode@0.0": 3, "decode@0.2": 2}, "greedy_windows_same_tokens": "1/1"}]
    path = tmp_path / "speed.json"
    path.write_text(json.dumps({"command": "python benchmarks/longform_speed.py", "machine": {"threads": 1},
                                "recording": {"id": "r0", "audio_seconds": 56.0, "clips": 3}, "rows": rows}))
    table = s.longform_speed(path)
    assert "(r0, 56 s, 3 clips; 1 thread)" in table
    assert "| zero-shot | main@abc | 2.500 | 140.0 | in the passes | 20.0 | 70.0 | 3 / 3 | 0.840 | – |" in table
    assert "| zero-shot | def, lean | 0.500 | 28.0 | 3.2 | 5.0 | 9.0 | 3 / 2 | 0.830 | 1/1 | 1.0 |" in table
