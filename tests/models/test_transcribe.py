"""Decoding: loop guard, long-audio splitting, prompts, batching — on a tiny random Whisper."""

from __future__ import annotations

import numpy as np
import pytest

from dama.data.audio import SAMPLE_RATE
from dama.errors import ModelError
from dama.models.transcribe import DecodeOptions, decode_features, find_tail_loop, split_long, transcribe


@pytest.mark.parametrize("tokens,expected", [
    ([1, 2, 3, 9, 9, 9, 9, 9, 9, 9, 9], 4),            # unigram loop: keep one 9
    ([5, 6, 7, 8, 7, 8, 7, 8, 7, 8], 4),               # bigram loop after a prefix
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], None),           # no loop
    ([4, 4, 4], None),                                 # too short to call a loop
])
def test_find_tail_loop(tokens, expected):
    assert find_tail_loop(tokens, repeats=4, max_ngram=8) == expected


def test_split_long_cuts_at_silence_and_keeps_every_sample():
    sr = SAMPLE_RATE
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.1, size=70 * sr).astype(np.float32)
    audio[27 * sr: 27 * sr + sr // 5] = 0.0  # a pause 27 s in
    pieces = split_long(audio)
    assert sum(len(p) for p in pieces) == len(audio)
    assert all(len(p) <= 30 * sr for p in pieces) and len(pieces) == 3
    assert abs(len(pieces[0]) - 27.1 * sr) < 0.1 * sr
    assert split_long(audio[: 10 * sr])[0] is not None and len(split_long(audio[: 10 * sr])) == 1


def test_transcribe_tiny_model_respects_budget_and_order(tiny_whisper):
    sr = SAMPLE_RATE
    rng = np.random.default_rng(1)
    audios = [rng.normal(0, 0.1, size=int(s * sr)).astype(np.float32) for s in (1.0, 3.0, 35.0)]
    opts = DecodeOptions(batch_size=2, tokens_per_second=4, min_tokens=2, loop_repeats=1000)
    done = []
    texts = transcribe(tiny_whisper, audios, "sw", opts, progress=done.append)
    assert len(texts) == 3 and sum(done) == 3
    # every row stops at its own budget
    feats = tiny_whisper.feature_extractor([a[:sr] for a in audios], sampling_rate=sr, return_tensors="pt")
    prompts = [tiny_whisper.prompt_ids("sw")] * 3
    rows = decode_features(tiny_whisper, feats.input_features, prompts, [3, 7, 11], opts)
    assert all(len(r) <= b for r, b in zip(rows, [3, 7, 11]))
    # batching does not change results
    single = transcribe(tiny_whisper, audios[:2], ["sw", "sw"], DecodeOptions(batch_size=1, tokens_per_second=4,
                                                                              min_tokens=2, loop_repeats=1000))
    assert single == texts[:2]


def test_prompt_requires_known_language(tiny_whisper):
    assert tiny_whisper.prompt_ids("yo") == [257, 260, 262, 266]
    with pytest.raises(ModelError, match="no language token <\\|fr\\|>"):
        tiny_whisper.prompt_ids("fr")
    with pytest.raises(ModelError, match="give a language"):
        tiny_whisper.prompt_ids(None)


def test_suppression_is_applied_once_and_only_when_asked(tiny_whisper):
    import torch

    torch.manual_seed(3)
    feats = torch.randn(2, 80, 3000)
    prompts = [tiny_whisper.prompt_ids("sw")] * 2
    free = decode_features(tiny_whisper, feats, prompts, [12, 12], DecodeOptions(suppress=False, loop_repeats=1000))
    gc = tiny_whisper.generation_config
    gc.suppress_tokens = [free[0][0]]
    gc.begin_suppress_tokens = [free[1][0]]
    unsup = decode_features(tiny_whisper, feats, prompts, [12, 12], DecodeOptions(suppress=False, loop_repeats=1000))
    assert unsup == free  # the model's lists are not applied behind our back
    sup = decode_features(tiny_whisper, feats, prompts, [12, 12], DecodeOptions(suppress=True, loop_repeats=1000))
    assert free[0][0] not in sup[0] + sup[1]
    assert sup[1][0] != free[1][0]


def test_beam_search_runs_and_respects_budgets(tiny_whisper):
    import torch

    torch.manual_seed(4)
    feats = torch.randn(2, 80, 3000)
    prompts = [tiny_whisper.prompt_ids("sw")] * 2
    rows = decode_features(tiny_whisper, feats, prompts, [5, 9], DecodeOptions(num_beams=3, loop_repeats=1000))
    assert len(rows) == 2 and len(rows[0]) <= 5 and len(rows[1]) <= 9
