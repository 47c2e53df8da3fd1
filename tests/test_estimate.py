"""`dama estimate` / `dama train --dry-run`: parameters, memory and cache disk before any work, and the
errors that stop a run before it starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dama.adapt import make_method
from dama.errors import DamaError, ModelError
from dama.estimate import check_fits, estimate, parse_memory, peak_memory_mb

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "model_sizes.json"


def test_parse_memory():
    assert parse_memory("24GB") == parse_memory("24 GiB") == parse_memory("24g") == 24 * 1024
    assert parse_memory("16000MB") == 16000
    with pytest.raises(DamaError, match="--gpu-memory 'lots'"):
        parse_memory("lots")


def test_sizes_by_name_with_exact_trainable_counts():
    e = estimate("large-v3", make_method("dama"), batch_size=4, gpu_memory="24GB")
    assert e.size == "large-v3" and e.decoder_layers == 32 and e.total_params == 1_543_490_560
    assert e.ranks[:2] == [32, 29] and e.ranks[15] == 8 and len(e.ranks) == 32
    lora = estimate("large-v3", make_method("lora"), batch_size=4)
    # LoRA r=64 on every decoder layer's 10 modules: 64 x (in + out), fc1/fc2 5120 wide
    per_layer = 64 * (8 * (1280 + 1280) + 2 * (1280 + 5120))
    assert lora.trainable_params == 32 * per_layer
    assert e.trainable_params < lora.trainable_params
    t = estimate("turbo", make_method("dama"), batch_size=4)
    assert t.ranks == [32, 8, 8, 32] and t.cache_mb_per_clip == e.cache_mb_per_clip == pytest.approx(3.662, abs=1e-3)
    assert t.cpu_peak_mb < e.cpu_peak_mb


def test_memory_grows_with_batch_and_shrinks_with_checkpointing_and_bf16():
    args = dict(total=1_543_490_560, trainable=14_909_440, layers=32, d_model=1280)
    assert peak_memory_mb(batch=8, gpu=False, **args) > peak_memory_mb(batch=4, gpu=False, **args)
    assert peak_memory_mb(batch=8, gpu=True, checkpointing=True, **args) < peak_memory_mb(batch=8, gpu=True, **args)
    assert peak_memory_mb(batch=8, gpu=True, precision="bf16", **args) < peak_memory_mb(batch=8, gpu=True, **args)


def test_over_gpu_memory_is_an_error_naming_what_would_fit():
    e = estimate("large-v2", make_method("dama"), batch_size=64, gpu_memory="24GB")
    assert e.fits is False
    with pytest.raises(DamaError, match="over --gpu-memory 24.0 GB.*--batch-size 32 with --grad-accum 2"):
        check_fits(e)
    check_fits(estimate("large-v2", make_method("dama"), batch_size=1, gpu_memory="24GB"))


def _folder(tmp_path, **changes) -> Path:
    from dama.models.sizes import whisper_config
    from dama.testing import write_tiny_tokenizer

    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    cfg = json.loads(whisper_config("tiny").to_json_string())
    (d / "config.json").write_text(json.dumps({**cfg, **changes}))
    write_tiny_tokenizer(d / "tokenizer.json")  # 267 tokens
    return d


def test_bad_model_folders_fail_before_any_work(tmp_path):
    d = _folder(tmp_path, model_type="wav2vec2")
    with pytest.raises(ModelError, match="model_type is 'wav2vec2'"):
        estimate(str(d), make_method("dama"))
    d = _folder(tmp_path)  # a tiny config with the 267-token test tokenizer: they do not belong together
    with pytest.raises(ModelError, match="the tokenizer has 267 tokens but the model's vocabulary is 51,865"):
        estimate(str(d), make_method("dama"))
    from dama.testing import tiny_config

    d = _folder(tmp_path, **json.loads(tiny_config(decoder_layers=3).to_json_string()))
    e = estimate(str(d), make_method("dama"))
    assert e.size is None and any("not one of the published sizes" in n for n in e.notes)
    with pytest.raises(ModelError, match="neither a model folder nor a Whisper size"):
        estimate(str(tmp_path / "nothing-here"), make_method("dama"))


def test_cli_estimate_and_train_dry_run(tmp_path, capsys):
    from dama.cli.main import main

    assert main(["estimate", "--model", "large-v3-turbo", "--batch-size", "4", "--gpu-memory", "24GB",
                 "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "4 decoder layers" in out and "fits --gpu-memory 24 GB: yes" in out
    assert json.loads((tmp_path / "e.json").read_text())["fits_gpu_memory"] is True
    # --gpu-memory refuses the run before the data is even read (this data spec does not exist)
    assert main(["train", "--model", "large-v3", "--data", "nowhere:train", "--out", str(tmp_path / "run"),
                 "--batch-size", "64", "--gpu-memory", "24GB"]) == 2
    assert "over --gpu-memory" in capsys.readouterr().err and not (tmp_path / "run").exists()
    assert main(["train", "--model", "large-v3", "--data", "nowhere:train", "--out", str(tmp_path / "run"),
                 "--dry-run", "--effective-batch", "16", "--batch-size", "4"]) == 0
    assert "32 decoder layers" in capsys.readouterr().out and not (tmp_path / "run").exists()


MAX_PEAK_ERROR = 0.05  # the CPU peak predicted for every measured size, relative to the measurement


@pytest.mark.skipif(not RESULTS.is_file(), reason="benchmarks/results/model_sizes.json not committed")
def test_memory_model_is_fitted_to_and_predicts_every_measured_size():
    """The constants are the least-squares fit to every peak benchmarks/model_sizes.py measured (random weights,
    batch 4; a new measurement without a refit fails here), and each measured peak is predicted within 5 %
    (the docs table's "estimate's error" column states each size's error)."""
    from dama import estimate as est_mod

    sizes = json.loads(RESULTS.read_text())["sizes"]
    measured = {k: v for k, v in sizes.items() if "train" in v}
    assert len([k for k, v in measured.items() if not v.get("superseded")]) >= 4
    fixed, act = est_mod.calibrate(measured)
    assert est_mod.CPU_FIXED_MB == pytest.approx(fixed, abs=1) and est_mod.ACT == pytest.approx(act, abs=0.01)
    errors = {}
    for name, rec in measured.items():
        if rec.get("superseded"):  # shown in the docs table with why, not part of the fit
            continue
        e = estimate(name, make_method("dama"), batch_size=rec["train"]["batch_size"], precision="no")
        assert e.trainable_params == rec["train"]["trainable_params"] == rec["layout"]["dama_trainable_params"]
        got = rec["train"]["peak_step_rss_mb"]
        errors[name] = (e.cpu_peak_mb - got) / got
        assert abs(e.cache_mb_per_clip - rec["train"]["encoder_cache_mb_per_clip"]) < 0.01
    assert all(abs(x) < MAX_PEAK_ERROR for x in errors.values()), errors


def test_default_batch_per_size_follows_the_documented_rule():
    """No --batch-size: the largest of 8 (16 on a GPU), 4, 2, 1 predicted within 80 % of the memory (24 GB, or
    --gpu-memory), dividing --effective-batch; whisper-base keeps the 8 every result was measured at."""
    from dama.estimate import BATCH_HEADROOM, default_batch_size, estimate

    dama = make_method("dama")
    assert default_batch_size("base", dama, "cpu")[0] == 8
    assert default_batch_size("base", dama, "cuda")[0] == 16
    for size in ("tiny", "small", "medium", "large-v2", "large-v3", "large-v3-turbo"):
        for device, memory in (("cpu", None), ("cuda", None), ("cuda", "12GB"), ("cuda", "80GB")):
            b, why = default_batch_size(size, dama, device, gpu_memory=memory)
            budget = parse_memory(memory or "24GB") * BATCH_HEADROOM
            e = estimate(size, dama, b, "no" if device == "cpu" else "bf16")
            peak = e.cpu_peak_mb if device == "cpu" else e.gpu_peak_mb
            assert b == 1 or peak <= budget, (size, device, memory, b)
            cap = 8 if device == "cpu" else 16
            if b < cap:  # twice the batch would not have fitted
                e2 = estimate(size, dama, 2 * b, "no" if device == "cpu" else "bf16")
                assert (e2.cpu_peak_mb if device == "cpu" else e2.gpu_peak_mb) > budget, (size, device, memory, b)
            assert size in why and f"{BATCH_HEADROOM:.0%}" in why
    # large-v3 on a 12 GB GPU gets a smaller batch than on 24 GB; an effective batch of 12 takes a divisor
    assert default_batch_size("large-v3", dama, "cuda", gpu_memory="12GB")[0] < default_batch_size("large-v3", dama,
                                                                                                     "cuda")[0]
    assert default_batch_size("tiny", dama, "cpu", multiple_of=12)[0] == 4
    assert default_batch_size("tiny", dama, "cuda", precision="no")[1].endswith("within 80% of 24GB")


def test_train_without_batch_size_uses_and_shows_the_size_default(tmp_path, capsys):
    from dama.cli.main import main
    from dama.estimate import default_batch_size

    want = default_batch_size("large-v3", make_method("dama"), "cpu")[0]
    assert main(["train", "--model", "large-v3", "--data", "nowhere:train", "--out", str(tmp_path / "run"),
                 "--dry-run", "--device", "cpu", "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr()
    assert f"--batch-size {want} (default for large-v3 on CPU, float32" in out.out + out.err
    assert json.loads((tmp_path / "e.json").read_text())["batch_size"] == want
    assert main(["train", "--model", "large-v3", "--data", "nowhere:train", "--out", str(tmp_path / "run"),
                 "--dry-run", "--device", "cuda", "--gpu-memory", "80GB", "--json", str(tmp_path / "g.json")]) == 0
    assert json.loads((tmp_path / "g.json").read_text())["batch_size"] == 16
    out = capsys.readouterr()
    assert "--batch-size 16 (default for large-v3 on GPU, bf16" in out.out + out.err
    assert main(["train", "--model", "large-v3", "--data", "nowhere:train", "--out", str(tmp_path / "run"),
                 "--dry-run", "--batch-size", "2", "--json", str(tmp_path / "b.json")]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["batch_size"] == 2
    out = capsys.readouterr()
    assert "default for" not in out.out + out.err
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_bad_model_folder_before_reading_any_data(tmp_path, capsys):
    """dama train (no --dry-run) reads the model's config.json and tokenizer first: an unknown architecture
    or a tokenizer of another vocabulary is one line, exit 2, before the (here nonexistent) data is read."""
    from dama.cli.main import main

    for changes, message in (({"model_type": "wav2vec2"}, "model_type is 'wav2vec2', not 'whisper'"),
                             ({"architectures": ["WhisperForAudioClassification"]},
                              "has no WhisperForConditionalGeneration"),
                             ({}, "the tokenizer has 267 tokens but the model's vocabulary is 51,865")):
        d = _folder(tmp_path, **changes)
        assert main(["train", "--model", str(d), "--data", "nowhere:train", "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert message in err and "nowhere" not in err, err
        assert not (tmp_path / "run").exists()


def test_a_cpu_run_predicted_over_the_ram_is_warned_before_any_work(tmp_path, capsys):
    from dama.cli.main import main
    from dama.estimate import ram_warning

    e = estimate("large-v2", make_method("dama"), batch_size=64, precision="no")
    assert "over this machine's 24.0 GB of RAM; try --batch-size 32 or --gradient-checkpointing" in ram_warning(
        e, ram_mb=24 * 1024)
    assert ram_warning(estimate("base", make_method("dama"), batch_size=8, precision="no"), ram_mb=24 * 1024) is None
    # the real command: warned first, then the (nonexistent) data fails; nothing was written
    assert main(["train", "--model", "large-v2", "--batch-size", "64", "--device", "cpu", "--data", "nowhere:train",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.index("warning: the predicted CPU peak") < err.index("nowhere") and not (tmp_path / "run").exists()
