"""`dama model convert CT2 OUT` writes over nothing it does not own (issue 24): a non-empty OUT needs
--force, --force replaces only a Whisper model folder, and a failure leaves the old folder intact."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dama.errors import ModelError
from dama.models import convert as C
from dama.models.convert import convert_ct2_to_hf, hf_model_dir_problem, swap_in


def siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir())


@pytest.fixture
def box(tmp_path) -> Path:
    """A folder for the outputs only (tiny_ct2_dir is in tmp_path too), to see what is left beside them."""
    (tmp_path / "box").mkdir()
    return tmp_path / "box"


def test_a_non_empty_folder_is_refused_without_force_and_kept(tiny_ct2_dir, box):
    out = box / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(ModelError, match="not empty.*--force"):
        convert_ct2_to_hf(tiny_ct2_dir, out)
    assert (out / "thesis.tex").read_text() == "years of work" and siblings(out) == ["out"]


def test_cli_refuses_a_non_empty_out_without_force(tiny_ct2_dir, box, capsys):
    from dama.cli.main import main

    out = box / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["model", "convert", str(tiny_ct2_dir), str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["model", "convert", str(tiny_ct2_dir), str(out), "--force"]) == 2  # not a model folder
    assert "not a Whisper model folder" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("extra", ["notes.txt", None])
def test_force_replaces_only_a_whisper_model_folder(tiny_ct2_dir, box, extra):
    out = convert_ct2_to_hf(tiny_ct2_dir, box / "out")
    assert hf_model_dir_problem(out) is None
    if extra:  # a model folder someone also keeps other things in is not ours to delete
        (out / extra).write_text("mine")
        with pytest.raises(ModelError, match=f"does not \\({extra}\\).*even with --force"):
            convert_ct2_to_hf(tiny_ct2_dir, out, force=True)
        assert (out / extra).read_text() == "mine"
    else:
        with pytest.raises(ModelError, match="--force"):
            convert_ct2_to_hf(tiny_ct2_dir, out)
        before = (out / "config.json").stat().st_ino
        convert_ct2_to_hf(tiny_ct2_dir, out, force=True, dtype="float16")
        assert (out / "config.json").stat().st_ino != before and hf_model_dir_problem(out) is None
    assert siblings(out) == ["out"]  # no temporary or old folder left beside it


def test_force_refuses_a_folder_that_is_not_whisper(tiny_ct2_dir, box):
    out = box / "out"
    out.mkdir()
    (out / "config.json").write_text('{"model_type": "bert"}')
    (out / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ModelError, match="not a Whisper model's"):
        convert_ct2_to_hf(tiny_ct2_dir, out, force=True)
    assert (out / "model.safetensors").is_file()


def test_the_ct2_folder_itself_or_a_folder_holding_it_is_refused(tiny_ct2_dir):
    for out in (tiny_ct2_dir, tiny_ct2_dir.parent):
        with pytest.raises(ModelError, match="CTranslate2 folder"):
            convert_ct2_to_hf(tiny_ct2_dir, out, force=True)
    assert (tiny_ct2_dir / "model.bin").is_file()


def test_a_link_or_a_file_is_never_replaced(tiny_ct2_dir, box):
    real = convert_ct2_to_hf(tiny_ct2_dir, box / "real")
    link = box / "link"
    link.symlink_to(real, target_is_directory=True)
    with pytest.raises(ModelError, match="symbolic link"):
        convert_ct2_to_hf(tiny_ct2_dir, link, force=True)
    (box / "file").write_text("x")
    with pytest.raises(ModelError, match="not a folder"):
        convert_ct2_to_hf(tiny_ct2_dir, box / "file", force=True)
    assert link.is_symlink() and hf_model_dir_problem(real) is None


def test_an_empty_folder_needs_no_force(tiny_ct2_dir, box):
    (box / "out").mkdir()
    assert hf_model_dir_problem(convert_ct2_to_hf(tiny_ct2_dir, box / "out")) is None


def test_a_failed_conversion_leaves_the_old_model_as_it_was(tiny_ct2_dir, box, monkeypatch):
    out = convert_ct2_to_hf(tiny_ct2_dir, box / "out")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def fail(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(C.WhisperFeatureExtractor, "save_pretrained", fail)
    with pytest.raises(OSError):
        convert_ct2_to_hf(tiny_ct2_dir, out, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and siblings(out) == ["out"]


def test_swap_in_puts_the_old_folder_back_when_the_new_one_cannot_move_in(tmp_path, monkeypatch):
    out, new = tmp_path / "out", tmp_path / ".out.new"
    out.mkdir()
    (out / "a").write_text("old")
    new.mkdir()
    (new / "a").write_text("new")
    real_rename = os.rename

    def rename(src, dst):
        if Path(src) == new:
            raise OSError(5, "Input/output error")
        real_rename(src, dst)

    monkeypatch.setattr(C.os, "rename", rename)
    with pytest.raises(OSError):
        swap_in(new, out)
    assert (out / "a").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [".out.new", "out"]
    monkeypatch.setattr(C.os, "rename", real_rename)
    swap_in(new, out)
    assert (out / "a").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out"]
