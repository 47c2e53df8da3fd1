"""--report-to: training logs through accelerate's trackers, read back with TensorBoard's own reader."""

from __future__ import annotations

import json

import pytest

from dama.cli.main import main
from dama.errors import DamaError
from dama.testing import make_corpus, make_tiny_ct2
from dama.train.tracking import parse_report_to


def test_tensorboard_events_hold_loss_lr_and_validation_per_epoch(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install tensorboard)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    base = make_tiny_ct2(tmp_path / "base")
    corpus = make_corpus(tmp_path / "data", n_train=4, n_val=2, n_test=1)
    run = tmp_path / "run"
    assert main(["train", "--method", "lora", "--rank", "4", "--model", str(base), "--data", "swahili:train",
                 "--data-root", str(corpus), "--out", str(run), "--epochs", "2", "--batch-size", "2",
                 "--test", "none", "--cache-dir", str(tmp_path / "cache"), "--report-to", "tensorboard"]) == 0
    logdir = run / "logs" / run.name  # accelerate's TensorBoard tracker: one run named after the folder
    assert list(logdir.glob("events.out.tfevents.*")), f"no TensorBoard event file in {logdir}"
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "val/wer", "val/cer"} <= tags
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["kind"] == "step"]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [r["step"] for r in steps]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in steps], rel=1e-5)
    assert [e.value for e in acc.Scalars("val/wer")] == pytest.approx([r["val_wer"] for r in epochs], rel=1e-5)
    assert len(acc.Scalars("val/cer")) == 2  # one per epoch


def test_report_to_errors_name_the_tracker():
    assert parse_report_to(None) == [] and parse_report_to("none") == []
    with pytest.raises(DamaError, match=r"unknown tracker\(s\) \['tensorbord'\].*tensorboard"):
        parse_report_to("tensorbord")
    from accelerate.tracking import get_available_trackers

    have = {str(t) for t in get_available_trackers()}
    absent = next((t for t in ("aim", "clearml", "dvclive", "swanlab") if t not in have), None)
    if absent:
        with pytest.raises(DamaError, match=f"{absent} not installed; pip install {absent}"):
            parse_report_to(f"tensorboard,{absent}")
