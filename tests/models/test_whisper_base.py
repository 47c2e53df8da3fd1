"""Integration: the real whisper-base, converted by us, against the CTranslate2 runtime on real clips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dama.data import SAMPLE_RATE, load_audio, load_data
from tests.helpers import SHARED_DATA

pytestmark = pytest.mark.integration


def _clips():
    root = SHARED_DATA
    picks = load_data("swahili:test", root)[:2] + load_data("yoruba:test", root)[:1] + load_data(
        "fleurs-control:en", root)[:1]
    return picks


def test_conversion_matches_ctranslate2_on_real_clips(whisper_base, whisper_base_ct2_dir):
    """Same model.bin, same log-Mel features, same prompt, no suppression: identical greedy
    tokens and first-step logits within float32 noise."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    from dama.models.transcribe import DecodeOptions, decode_features

    w = whisper_base
    ct = ctranslate2.models.Whisper(str(whisper_base_ct2_dir), device="cpu", compute_type="float32")
    clips = _clips()
    feats = w.feature_extractor([load_audio(u.audio) for u in clips], sampling_rate=SAMPLE_RATE,
                                return_tensors="np").input_features
    prompts = [w.prompt_ids(u.language) for u in clips]
    res = ct.generate(ctranslate2.StorageView.from_array(feats), prompts, beam_size=1, suppress_blank=False,
                      suppress_tokens=[], max_length=100, return_logits_vocab=True)
    ours = decode_features(w, torch.from_numpy(feats), prompts, [120] * len(clips),
                           DecodeOptions(suppress=False, loop_repeats=10_000))
    with torch.no_grad():
        first = w.model(input_features=torch.from_numpy(feats), decoder_input_ids=torch.tensor(prompts)).logits[:, -1]
    for i, r in enumerate(res):
        theirs = [t for t in r.sequences_ids[0] if t < 50257]
        assert len(theirs) >= 5
        assert ours[i][: len(theirs)] == theirs, clips[i].id
        ct_first = np.asarray(r.logits[0][0])
        np.testing.assert_allclose(first[i].numpy(), ct_first, atol=2e-3, rtol=0)


def test_eval_cli_on_real_clips(whisper_base, tmp_path):
    """`dama eval` end to end: English is near-perfect zero-shot, Swahili is not."""
    from dama.cli.main import main

    model_dir = str(whisper_base.model.name_or_path)
    for spec, max_wer in (("fleurs-control:en", 0.25), ("swahili:test", 1.5)):
        out = tmp_path / f"{spec.replace(':', '_')}.json"
        rc = main(["eval", "--model", model_dir, "--data", spec, "--data-root", str(SHARED_DATA), "--limit", "3",
                   "--json", str(out), "--hyps", str(tmp_path / "h.jsonl")])
        assert rc == 0
        r = json.loads(out.read_text())
        assert r["n"] == 3 and 0 <= r["wer"] <= max_wer and r["rtf"] > 0, r
