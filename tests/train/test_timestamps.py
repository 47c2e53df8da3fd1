"""Timestamp-mode training examples (``timestamp_share``): labels, every method, a new language token."""

from __future__ import annotations

import json

import pytest

from dama.adapt import make_method
from dama.adapt.registry import METHODS
from dama.data import load_data
from dama.models.load import load_whisper
from dama.testing import make_corpus, make_tiny_ct2
from dama.train.batches import collate, in_timestamp_mode, make_examples, timestamp_token
from dama.train.config import TrainConfig
from dama.train.loss import IGNORE


@pytest.fixture
def ts_model(tmp_path):
    """A tiny Whisper with the 1501 timestamp tokens (ids 267..1767)."""
    return make_tiny_ct2(tmp_path / "tiny-ts", decoder_layers=6, timestamps=True)


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "data")


def test_timestamp_mode_tokens_and_labels(ts_model, corpus):
    w = load_whisper(ts_model)
    m = load_data("swahili:train", corpus)
    m.fill_durations()
    langs = ["sw"] * len(m)
    plain, _ = make_examples(w, m, langs)
    ts, _ = make_examples(w, m, langs, timestamp_share=1.0)
    assert all(e.tokens[:4] == [257, 259, 262, 266] for e in plain)  # <|notimestamps|> mode, as before
    for e, p, u in zip(ts, plain, m):
        assert e.tokens[:3] == [257, 259, 262] and e.n_prompt == 3  # no <|notimestamps|>
        assert e.tokens[3] == timestamp_token(w, 0.0) == 267  # <|0.00|>
        end = timestamp_token(w, u.duration)
        assert e.tokens[-2] == end
        assert w.tokenizer.convert_ids_to_tokens(end) == f"<|{round(u.duration / 0.02) * 0.02:.2f}|>"
        assert e.tokens[4:-2] == p.tokens[4:-1]  # the same text
    batch = collate(ts[:2], pad_id=256)
    lab = batch["labels"][0]
    assert lab[:2].tolist() == [IGNORE, IGNORE] and lab[2].item() == 267  # <|0.00|> is learned
    n = len(ts[0].tokens) - 1
    assert lab[n - 2].item() == ts[0].tokens[-2] and lab[n - 1].item() == 256  # <|end|>, then <|endoftext|>
    assert timestamp_token(w, 99.0) == 267 + 1500  # capped at <|30.00|>


def test_share_is_a_fixed_seeded_draw():
    rows = range(2000)
    half = [in_timestamp_mode(r, 0.5, seed=0) for r in rows]
    assert 0.45 < sum(half) / len(half) < 0.55
    assert half == [in_timestamp_mode(r, 0.5, seed=0) for r in rows]  # same every epoch and on resume
    assert not any(in_timestamp_mode(r, 0.0, 0) for r in rows) and all(in_timestamp_mode(r, 1.0, 0) for r in rows)
    with pytest.raises(Exception, match="timestamp_share"):
        TrainConfig(timestamp_share=1.5)


@pytest.mark.parametrize("method", sorted(set(METHODS) - {"zero-shot"}))
def test_every_method_trains_with_timestamps(method, ts_model, corpus, tmp_path):
    from dama.train.trainer import train

    w = load_whisper(ts_model)
    tr = load_data("swahili:train", corpus)
    cfg = TrainConfig(epochs=1, batch_size=4, cache_dir=str(tmp_path / "cache"), timestamp_share=0.5)
    _, state, _ = train(w, make_method(method), tr, None, tmp_path / "run", cfg, log=lambda *a: None)
    assert state.step >= 1  # a non-finite loss would have stopped training with an error


def test_new_language_token_with_timestamps(ts_model, corpus, tmp_path):
    from dama.cli.main import main
    from dama.runs import load_run

    rc = main(["train", "--method", "dama", "--model", str(ts_model), "--data", "swahili:train",
               "--data-root", str(corpus), "--language", "lg", "--language-name", "Luganda", "--epochs", "1",
               "--timestamp-share", "1", "--test", "none", "--out", str(tmp_path / "run"),
               "--cache-dir", str(tmp_path / "c")])
    assert rc == 0
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["new_language"]["token_id"] == 1768 and cfg["train"]["timestamp_share"] == 1.0  # after the timestamps
    w = load_run(tmp_path / "run")
    m = load_data("swahili:train", corpus)
    m.fill_durations()
    ex, _ = make_examples(w, m, ["lg"] * 8, timestamp_share=1.0)
    assert ex[0].tokens[:4] == [257, 1768, 262, 267]
