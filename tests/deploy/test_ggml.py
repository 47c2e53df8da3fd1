"""whisper.cpp export: the ggml file dama writes is loaded and run by the real whisper.cpp (the pywhispercpp
wheel) and transcribes real clips like CTranslate2 does with the same weights."""

from __future__ import annotations

import os

import pytest

from dama.data import load_audio, load_data
from dama.deploy import export_run
from dama.errors import DamaError
from dama.models.ggml import openai_name, whispercpp_model, write_ggml
from tests.conftest import SHARED_DATA
from tests.deploy.test_language_slot import new_token_run  # noqa: F401  (fixture)


def test_tensor_names_are_openai_s():
    assert openai_name("model.decoder.layers.3.encoder_attn.k_proj.weight") == "decoder.blocks.3.cross_attn.key.weight"
    assert openai_name("model.encoder.layers.0.self_attn.k_proj.weight") == "encoder.blocks.0.attn.key.weight"
    assert openai_name("model.encoder.layers.5.fc2.bias") == "encoder.blocks.5.mlp.2.bias"
    assert openai_name("model.decoder.embed_tokens.weight") == "decoder.token_embedding.weight"
    assert openai_name("model.encoder.embed_positions.weight") == "encoder.positional_embedding"
    assert openai_name("model.encoder.conv1.weight") == "encoder.conv1.weight"
    assert openai_name("proj_out.weight") is None  # tied to the token embedding


def test_models_whisper_cpp_cannot_take_are_refused(new_token_run, tiny_whisper, tmp_path):  # noqa: F811
    _, _, run = new_token_run
    with pytest.raises(DamaError, match="language table is fixed; export with --language-slot"):
        export_run(run, "ggml", tmp_path / "g", log=lambda *a: None)
    for q, why in (("int8", "8-bit type is q8_0"), ("float32", "convolution aborts"), ("q3_k", "no such type")):
        msg = f"cannot write --quantization '{q}' \\(.*{why}.*\\); choose from float16, q8_0"
        with pytest.raises(DamaError, match=msg):
            export_run(run, "ggml", tmp_path / "g", quantization=q, log=lambda *a: None)
    with pytest.raises(DamaError, match="whisper.cpp cannot take this model"):
        write_ggml(tiny_whisper, tmp_path / "tiny.bin")  # a vocabulary whisper.cpp does not know
    assert not (tmp_path / "g").exists()


@pytest.mark.integration
def test_whisper_cpp_runs_the_ggml_file_like_ctranslate2(whisper_base, whisper_base_ct2_dir, tmp_path):
    pytest.importorskip("pywhispercpp", reason="whisper.cpp's binding is not installed (pip install pywhispercpp)")
    from faster_whisper import WhisperModel

    from dama.evaluate.metrics import corpus_errors

    path = write_ggml(whisper_base, tmp_path / "ggml-model.bin")
    clip = load_data("swahili:test", SHARED_DATA)[0]  # 8 s of read news; whisper-base does not loop on it
    audio = load_audio(clip.audio)
    cpp = whispercpp_model(path, "sw", threads=os.cpu_count() or 1, max_tokens=96)
    theirs = " ".join(s.text.strip() for s in cpp.transcribe(audio)).strip()
    del cpp
    fw = WhisperModel(str(whisper_base_ct2_dir), device="cpu", compute_type="float32")
    segments, _ = fw.transcribe(audio, language="sw", beam_size=1, temperature=0.0, without_timestamps=True,
                                condition_on_previous_text=False, max_new_tokens=96)
    ours = " ".join(s.text.strip() for s in segments).strip()
    # float16 weights and whisper.cpp's own mel code against CTranslate2 in float32: the same transcript
    # up to a word or two (zero-shot whisper-base on Swahili is not far from a coin flip per word)
    assert theirs and corpus_errors([ours], [theirs]).cer < 0.1, (theirs, ours)
    # a quantized file (the blocks whisper.cpp's `quantize` tool writes) loads and transcribes alike
    pytest.importorskip("gguf", reason="ggml's quantizers are not installed (pip install gguf)")
    q5 = write_ggml(whisper_base, tmp_path / "ggml-q5_0.bin", quantization="q5_0")
    assert q5.stat().st_size < 0.45 * path.stat().st_size
    cpp = whispercpp_model(q5, "sw", threads=os.cpu_count() or 1, max_tokens=96)
    quantized = " ".join(s.text.strip() for s in cpp.transcribe(audio)).strip()
    del cpp
    assert quantized and corpus_errors([theirs], [quantized]).cer < 0.1, (quantized, theirs)
