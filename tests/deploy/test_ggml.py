"""whisper.cpp export: the ggml file dama writes is loaded and run by the real whisper.cpp (the pywhispercpp
wheel) and transcribes real clips like CTranslate2 does with the same weights."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dama.data import load_audio, load_data
from dama.deploy import export_run, pad_to_window
from dama.errors import DamaError
from dama.models.ggml import openai_name, whispercpp_model, write_ggml
from tests.conftest import SHARED_DATA
from tests.deploy.test_language_slot import new_token_run  # noqa: F401  (fixture)
from tests.helpers import need_real_data


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


def test_a_clip_padded_to_30_s_gives_faster_whisper_the_features_of_transformers_and_whisper_cpp():
    """faster-whisper pads a short clip's log-mel with zeros; transformers (dama's training) and whisper.cpp pad
    the audio with silence. Padding the clip first (pad_to_window) gives faster-whisper the same encoder input."""
    need_real_data()
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.feature_extractor import FeatureExtractor
    from transformers import WhisperFeatureExtractor

    clip = load_data("swahili:test", SHARED_DATA)[0]
    audio = load_audio(clip.audio)
    frames = len(audio) // 160
    hf = WhisperFeatureExtractor()(audio, sampling_rate=16000, return_tensors="np").input_features[0]
    fe = FeatureExtractor()
    # the window WhisperModel.transcribe encodes: the clip's frames (the last one dropped), zero-padded to 3000
    raw, padded = (pad_or_trim(fe(a)[..., :-1]) for a in (audio, pad_to_window(audio)))
    assert hf.shape == raw.shape == padded.shape == (80, 3000)
    assert abs(hf[:, :frames] - raw[:, :frames]).max() < 1e-4  # the speech: the same
    assert (raw[:, frames + 1:] == 0).all() and np.median(hf[:, frames + 1:]) < -0.5  # the padding: not
    assert abs(hf - padded).max() < 1e-4
    long = np.zeros(31 * 16000, np.float32)
    assert len(pad_to_window(long)) == len(long)  # a longer clip is left as it is


def _text(segments) -> str:
    return " ".join(s.text.strip() for s in segments).strip()


@pytest.mark.integration
def test_whisper_cpp_runs_the_ggml_file_like_ctranslate2(whisper_base, whisper_base_ct2_dir, tmp_path):
    """The agreement benchmarks/ggml_vs_ct2.py measures, on a real clip: whisper.cpp with dama's settings
    (flash attention off) and faster-whisper given the clip padded to 30 s write the same text, and whisper.cpp
    computes the log-mel transformers computes (its text is the same when given transformers' mel instead)."""
    pytest.importorskip("pywhispercpp", reason="whisper.cpp's binding is not installed (pip install pywhispercpp)")
    import _pywhispercpp as pw
    from faster_whisper import WhisperModel

    from dama.evaluate.metrics import corpus_errors

    path = write_ggml(whisper_base, tmp_path / "ggml-model.bin")
    # 12 s of read news; zero-shot whisper-base does not loop on it (it does on the next clip, to each runtime's
    # own token limit, which differ by 4)
    audio = [load_audio(load_data("swahili:test", SHARED_DATA)[0].audio)]
    cpp = whispercpp_model(path, "sw", threads=os.cpu_count() or 1)
    theirs = [_text(cpp.transcribe(a)) for a in audio]
    mel = whisper_base.feature_extractor(audio[0], sampling_rate=16000, return_tensors="np").input_features[0]
    assert pw.whisper_set_mel(cpp._ctx, np.ascontiguousarray(mel, np.float32).ravel(), mel.shape[1], mel.shape[0]) == 0
    assert pw.whisper_full(cpp._ctx, cpp._params, np.zeros(0, np.float32), 0) == 0
    given = " ".join(pw.whisper_full_get_segment_text(cpp._ctx, i).decode().strip()
                     for i in range(pw.whisper_full_n_segments(cpp._ctx))).strip()
    assert given == theirs[0]
    del cpp
    fw = WhisperModel(str(whisper_base_ct2_dir), device="cpu", compute_type="float32")
    ours = [_text(fw.transcribe(pad_to_window(a), language="sw", beam_size=1, temperature=0.0, without_timestamps=True,
                                condition_on_previous_text=False)[0]) for a in audio]
    assert all(theirs) and theirs == ours
    # a quantized file (the blocks whisper.cpp's `quantize` tool writes) loads and transcribes alike
    pytest.importorskip("gguf", reason="ggml's quantizers are not installed (pip install gguf)")
    q5 = write_ggml(whisper_base, tmp_path / "ggml-q5_0.bin", quantization="q5_0")
    assert q5.stat().st_size < 0.45 * path.stat().st_size
    cpp = whispercpp_model(q5, "sw", threads=os.cpu_count() or 1)
    quantized = _text(cpp.transcribe(audio[0]))
    del cpp
    assert quantized and corpus_errors([theirs[0]], [quantized]).cer < 0.1, (quantized, theirs[0])
