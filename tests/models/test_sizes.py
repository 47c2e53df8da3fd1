"""The registry of Whisper sizes: exact architectures, DAMA's layout over each depth, and the checks
that refuse a model folder dama cannot adapt or a tokenizer that does not belong to the model."""

from __future__ import annotations

import json

import pytest
import torch

from dama.adapt.dama import DamaMethod
from dama.adapt.peft_compat import count_trainable
from dama.errors import ModelError
from dama.models.sizes import (
    SIZES,
    check_model_config,
    check_tokenizer,
    derive_tokenizer_json,
    get_size,
    identify,
    meta_model,
    whisper_config,
)

# parameter counts of the published checkpoints (sum of numel over WhisperForConditionalGeneration)
PUBLISHED = {"tiny": 37_760_640, "base": 72_593_920, "small": 241_734_912, "medium": 763_857_920,
             "large-v2": 1_543_304_960, "large-v3": 1_543_490_560, "large-v3-turbo": 808_878_080}


@pytest.mark.parametrize("name", list(SIZES))
def test_each_size_has_its_published_shape_and_dama_follows_the_rule(name):
    s = SIZES[name]
    model = meta_model(name)  # no memory: shapes only
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED[name]
    assert identify(model.config) is s and identify(json.loads(model.config.to_json_string())) is s
    assert (s.num_mel_bins, s.vocab_size) == ((128, 51866) if name.startswith("large-v3") else (80, 51865))
    L = s.decoder_layers
    method = DamaMethod(svd_init=False)  # SVD needs values; the layout does not
    ranks, seg = method.layer_ranks(L), method.segments(L)
    # the rule (src/dama/adapt/ranks.py): l_early = round(0.3 L), l_late = L + 1 - l_early; r_high 32 at
    # both ends falling linearly to r_low 8 over the early segment, rising back over the late one
    e = max(1, round(0.3 * L))
    assert (seg.l_early, seg.l_late) == (e, L + 1 - e)
    expected = [round(32 - (i - 1) / (e - 1) * 24) if e > 1 else 32 for i in range(1, e + 1)]
    expected += [8] * (L - 2 * e) + expected[::-1]
    assert ranks == expected
    adapted = method.apply(model)
    middle = [i for i in range(1, L + 1) if e < i < L + 1 - e]
    assert adapted.info["middle_layers"] == middle
    assert len(adapted.frozen) == 10 * len(middle)  # lora_A of the 10 adapted modules per middle layer
    assert count_trainable(adapted.model, adapted.frozen) > 0


def test_turbo_and_large_layouts_spelled_out():
    m = DamaMethod()
    assert m.layer_ranks(4) == [32, 8, 8, 32] and m.segments(4).middle == [2, 3]
    r32 = m.layer_ranks(32)
    assert r32[:10] == [32, 29, 27, 24, 21, 19, 16, 13, 11, 8] and r32[10:22] == [8] * 12 and r32[22:] == r32[:10][::-1]
    assert m.segments(32).middle == list(range(11, 23))


def test_names_and_aliases():
    assert get_size("openai/whisper-large-v3").name == "large-v3" == get_size("whisper-large-v3").name
    assert get_size("turbo").decoder_layers == 4
    with pytest.raises(ModelError, match="unknown Whisper size 'huge'"):
        get_size("huge")


def _base_like_tokenizer() -> dict:
    """A stand-in with whisper-base's layout: 50,257 BPE tokens, then the 1,608 added ones."""
    vocab = {f"t{i}": i for i in range(50257)}
    added = ["<|endoftext|>", "<|startoftranscript|>"] + [f"<|l{i}|>" for i in range(99)] + [
        "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
    added += [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
    return {"model": {"vocab": vocab}, "added_tokens": [{"id": 50257 + i, "content": c} for i, c in enumerate(added)]}


def test_v3_tokenizer_inserts_yue_and_shifts_the_rest():
    base = _base_like_tokenizer()
    assert len(base["added_tokens"]) == 1608
    v3 = derive_tokenizer_json(base, 51866)
    ids = {t["content"]: t["id"] for t in v3["added_tokens"]}
    assert len(ids) == 1609 and ids["<|yue|>"] == 50358 and ids["<|l98|>"] == 50357
    assert ids["<|translate|>"] == 50359 and ids["<|transcribe|>"] == 50360 and ids["<|notimestamps|>"] == 50364
    assert ids["<|0.00|>"] == 50365 and ids["<|30.00|>"] == 51865
    assert derive_tokenizer_json(base, 51865) == base
    with pytest.raises(ModelError, match="cannot derive"):
        derive_tokenizer_json(base, 52000)


def test_tokenizer_model_mismatch_is_named():
    check_tokenizer(51866, 51866, "m")
    with pytest.raises(ModelError, match="51,866 is large-v3's vocabulary"):
        check_tokenizer(51865, 51866, "models/large-v3")


def test_model_config_checks():
    cfg = json.loads(whisper_config("large-v3-turbo").to_json_string())
    assert check_model_config(cfg, "x").name == "large-v3-turbo"
    assert check_model_config({**cfg, "decoder_layers": 2}, "x") is None  # a Whisper of another shape: allowed
    with pytest.raises(ModelError, match="model_type is 'wav2vec2'"):
        check_model_config({**cfg, "model_type": "wav2vec2"}, "x/config.json")
    with pytest.raises(ModelError, match="lacks or has no valid d_model"):
        check_model_config({k: v for k, v in cfg.items() if k != "d_model"}, "x/config.json")
    with pytest.raises(ModelError, match="WhisperForConditionalGeneration"):
        check_model_config({**cfg, "architectures": ["WhisperForAudioClassification"]}, "x/config.json")


def test_float16_folder_loads_as_float32_and_a_foreign_tokenizer_is_refused(tmp_path):
    """The hub's large-v3 and turbo are stored in float16; dama trains in float32."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    from dama.models.load import load_whisper
    from dama.testing import tiny_config, write_tiny_tokenizer

    d = tmp_path / "m"
    WhisperForConditionalGeneration(tiny_config()).half().save_pretrained(d)
    write_tiny_tokenizer(d / "tokenizer.json")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(d)
    assert load_whisper(d).model.dtype == torch.float32
    WhisperForConditionalGeneration(tiny_config(vocab_size=300)).save_pretrained(d)  # weights for 300 tokens
    with pytest.raises(ModelError, match="tokenizer has 267 tokens but the model's vocabulary is 300"):
        load_whisper(d)
