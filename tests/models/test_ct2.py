"""CTranslate2 reading/writing and conversion, on a tiny random Whisper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dama.errors import ModelError
from dama.models.convert import convert_ct2_to_hf, load_ct2_dir
from dama.models.ct2 import CT2Model, read_ct2, whisper_config_from_ct2, write_ct2


def test_write_read_roundtrip_keeps_every_variable(tmp_path):
    m = CT2Model("WhisperSpec", 3, {
        "a/weight": np.arange(6, dtype=np.float16).reshape(2, 3),
        "a/num_heads": np.array(8, dtype=np.int16),
        "flag": np.array(1, dtype=np.int8),
        "f32": np.ones((2, 2, 2), dtype=np.float32),
    }, {"b/weight": "a/weight"})
    write_ct2(tmp_path / "model.bin", m)
    back = read_ct2(tmp_path / "model.bin")
    assert back.spec == "WhisperSpec" and back.revision == 3
    assert set(back.variables) == set(m.variables)
    for k, v in m.variables.items():
        assert back.variables[k].dtype == v.dtype and back.variables[k].shape == v.shape
        np.testing.assert_array_equal(back.variables[k], v)
    np.testing.assert_array_equal(back.get("b/weight"), m.variables["a/weight"])
    assert back.scalar("a/num_heads") == 8 and back.scalar("missing", 5) == 5


def test_truncated_file_is_a_clear_error(tmp_path):
    m = CT2Model("WhisperSpec", 3, {"w": np.ones((64, 64), dtype=np.float16)}, {})
    write_ct2(tmp_path / "model.bin", m)
    data = (tmp_path / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated"):
        read_ct2(tmp_path / "model.bin")


def test_wrong_spec_is_rejected(tmp_path):
    write_ct2(tmp_path / "model.bin", CT2Model("TransformerSpec", 1, {"w": np.ones(2, np.float32)}, {}))
    with pytest.raises(ModelError, match="not a WhisperSpec"):
        whisper_config_from_ct2(read_ct2(tmp_path / "model.bin"))


def test_conversion_restores_the_exact_weights(tiny_ct2_dir):
    model, tok, gen = load_ct2_dir(tiny_ct2_dir)
    ref = torch.load(tiny_ct2_dir / "reference_state.pt")
    got = model.state_dict()
    for k, v in ref.items():
        assert torch.equal(got[k], v), k
    assert model.config.decoder_layers == 2 and model.config.decoder_attention_heads == 4
    assert gen.lang_to_id == {"<|en|>": 258, "<|sw|>": 259, "<|yo|>": 260}
    assert gen.task_to_id == {"translate": 261, "transcribe": 262}
    assert gen.no_timestamps_token_id == 266 and gen.suppress_tokens == [1, 2]
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()


def test_converted_dir_loads_with_plain_transformers(tiny_ct2_dir, tmp_path):
    from transformers import WhisperForConditionalGeneration, WhisperTokenizer

    out = convert_ct2_to_hf(tiny_ct2_dir, tmp_path / "hf")
    hf = WhisperForConditionalGeneration.from_pretrained(out).eval()
    ref = torch.load(tiny_ct2_dir / "reference_state.pt")
    name = "model.decoder.layers.1.encoder_attn.v_proj.bias"
    assert torch.equal(hf.model.decoder.layers[1].encoder_attn.v_proj.bias, ref[name])
    tok = WhisperTokenizer.from_pretrained(out)
    assert tok.convert_tokens_to_ids("<|sw|>") == 259
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp dir left behind


def test_missing_tokenizer_is_a_clear_error(tiny_ct2_dir, tmp_path):
    (tiny_ct2_dir / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match="tokenizer.json: missing"):
        convert_ct2_to_hf(tiny_ct2_dir, tmp_path / "hf")


def test_ctranslate2_runtime_agrees_with_converted_model(tiny_ct2_dir):
    """Our writer produces files the real CTranslate2 runtime runs, with the same greedy output."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    from dama.models.load import load_whisper
    from dama.models.transcribe import DecodeOptions, decode_features

    w = load_whisper(tiny_ct2_dir, device="cpu")
    torch.manual_seed(1)
    feats = torch.randn(2, 80, 3000)
    prompt = w.prompt_ids("sw")
    ct = ctranslate2.models.Whisper(str(tiny_ct2_dir), device="cpu", compute_type="float32")
    res = ct.generate(ctranslate2.StorageView.from_array(feats.numpy()), [prompt, prompt], beam_size=1,
                      suppress_blank=False, suppress_tokens=[], max_length=40)
    opts = DecodeOptions(suppress=False, loop_repeats=1000)
    ours = decode_features(w, feats, [prompt, prompt], [40 - len(prompt)] * 2, opts)
    for r, o in zip(res, ours):
        theirs = [t for t in r.sequences_ids[0] if t < 256]
        assert o[: len(theirs)] == theirs and len(theirs) > 0


def test_export_then_reload_roundtrip(tiny_whisper, tmp_path):
    from dama.models.convert import export_ct2_dir

    out = export_ct2_dir(tiny_whisper.model, tiny_whisper.tokenizer, tmp_path / "export", dtype="float32")
    model, tok, gen = load_ct2_dir(out)
    for k, v in tiny_whisper.model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert gen.lang_to_id == tiny_whisper.generation_config.lang_to_id
    assert gen.suppress_tokens == tiny_whisper.generation_config.suppress_tokens
