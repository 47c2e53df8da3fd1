"""`dama export` never replaces a run or anything that is not an earlier export (issue 24): --out may not
be the run, lie in it, hold it or be any run; --force replaces only a folder with dama_export.json and
an export's files; the new export is swapped in, so a failure leaves the earlier one intact."""

from __future__ import annotations

import json

import pytest

from dama.deploy import export as E
from dama.deploy import export_run
from dama.errors import DamaError
from tests.deploy.test_export import _train

QUIET = {"log": lambda *a: None}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("tiny"))


def snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_exporting_onto_the_run_itself_is_refused_even_with_force(tiny_run, capsys):
    """The reported case: `dama export --adapter R --out R --force` replaced the run."""
    from dama.cli.main import main

    _, _, run = tiny_run
    before = snapshot(run)
    for out in (run, run / "adapter", run / "new-sub", run.parent):
        with pytest.raises(DamaError, match="run folder"):
            export_run(run, "hf", out, force=True, **QUIET)
    assert main(["export", "--adapter", str(run), "--out", str(run), "--force"]) == 2
    assert "the run folder" in capsys.readouterr().err
    assert snapshot(run) == before and not (run / "new-sub").exists()


def test_another_run_is_never_an_export_target(tiny_run, tmp_path):
    _, _, run = tiny_run
    other = tmp_path / "other-run"
    (other / "adapter").mkdir(parents=True)
    (other / "results.json").write_text("{}")
    (other / "checkpoint.pt").write_bytes(b"x")
    with pytest.raises(DamaError, match="is a dama run folder"):
        export_run(run, "hf", other, force=True, **QUIET)
    assert {p.name for p in other.iterdir()} == {"adapter", "results.json", "checkpoint.pt"}


def test_force_refuses_a_folder_that_is_not_an_export(tiny_run, tmp_path):
    _, _, run = tiny_run
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DamaError, match="--force"):
        export_run(run, "hf", out, **QUIET)
    with pytest.raises(DamaError, match="no readable dama_export.json.*even with --force"):
        export_run(run, "hf", out, force=True, **QUIET)
    (out / "dama_export.json").write_text(json.dumps({"format": "hf"}))  # an export, with a file of the user's
    with pytest.raises(DamaError, match=r"notes\.txt"):
        export_run(run, "hf", out, force=True, **QUIET)
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("fmt", ["hf", "ct2"])
def test_force_replaces_an_earlier_export_and_leaves_nothing_beside_it(tiny_run, tmp_path, fmt):
    if fmt == "ct2":
        pytest.importorskip("ctranslate2")
    _, _, run = tiny_run
    out = export_run(run, fmt, tmp_path / "exp", **QUIET)
    assert E.export_problem(out) is None
    with pytest.raises(DamaError, match="--force"):
        export_run(run, "hf", out, **QUIET)
    ino = (out / "dama_export.json").stat().st_ino
    export_run(run, fmt, out, force=True, **QUIET)
    assert (out / "dama_export.json").stat().st_ino != ino
    assert [p.name for p in tmp_path.iterdir()] == ["exp"]


def test_a_failed_export_leaves_the_earlier_one_as_it_was(tiny_run, tmp_path, monkeypatch):
    _, _, run = tiny_run
    out = export_run(run, "hf", tmp_path / "exp", **QUIET)
    before = snapshot(out)

    def fail(w, path):
        (path / "partial").parent.mkdir(parents=True, exist_ok=True)
        (path / "partial").write_text("half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(E, "_save_hf", fail)
    with pytest.raises(OSError):
        export_run(run, "hf", out, force=True, **QUIET)
    assert snapshot(out) == before and [p.name for p in tmp_path.iterdir()] == ["exp"]


def test_a_link_is_not_replaced(tiny_run, tmp_path):
    _, _, run = tiny_run
    real = export_run(run, "hf", tmp_path / "exp", **QUIET)
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    with pytest.raises(DamaError, match="symbolic link"):
        export_run(run, "hf", tmp_path / "link", force=True, **QUIET)
    assert (tmp_path / "link").is_symlink() and E.export_problem(real) is None
