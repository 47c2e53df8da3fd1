"""The README's result tables are generated from the committed result files and must match them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[2]


def load_summarize():
    return load_benchmark("summarize")


def test_readme_tables_match_committed_results(capsys):
    s = load_summarize()
    text = (ROOT / "README.md").read_text()
    names = [m["name"] for m in s._BLOCK.finditer(text)]
    assert sorted(names) == sorted(s.BLOCKS), "every generated table appears in the README exactly once"
    rc = s.main(["--check", str(ROOT / "README.md")])
    assert rc == 0, capsys.readouterr().err


def test_check_catches_a_hand_edited_number(tmp_path, capsys):
    s = load_summarize()
    readme = tmp_path / "README.md"
    table = s.train_speed()
    page = "intro\n<!-- summarize.py:train-speed -->\n{}\n<!-- /summarize.py:train-speed -->\nafter\n"
    readme.write_text(page.format(table.replace("2.17x", "2.71x")))
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
