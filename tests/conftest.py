"""Shared fixtures: tiny random Whisper models (fast) and the real whisper-base (integration)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

SHARED_DATA = Path(os.environ.get("DAMA_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
SPECIALS = [
    "<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|sw|>", "<|yo|>", "<|translate|>",
    "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>",
]


def write_tiny_tokenizer(path: Path) -> None:
    """A byte-level BPE with Whisper's special tokens (no merges): 256 + 11 tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet(), key=lambda c: ord(c)))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    tok.save(str(path))


def tiny_config(decoder_layers: int = 2, vocab_size: int = 267):
    from transformers import WhisperConfig

    return WhisperConfig(
        vocab_size=vocab_size, num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=decoder_layers,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_source_positions=1500, max_target_positions=64, decoder_start_token_id=257,
        pad_token_id=256, bos_token_id=256, eos_token_id=256, tie_word_embeddings=True,
    )


def make_tiny_ct2(d: Path, decoder_layers: int = 2, seed: int = 0) -> Path:
    """A random tiny Whisper written in CTranslate2 format, as faster-whisper ships it."""
    from tokenizers import Tokenizer
    from transformers import WhisperForConditionalGeneration

    from dama.models.ct2 import hf_to_ct2, write_ct2

    torch.manual_seed(seed)
    hf = WhisperForConditionalGeneration(tiny_config(decoder_layers)).eval()
    with torch.no_grad():  # make biases non-zero so a wrong mapping shows
        for n, p in hf.named_parameters():
            if n.endswith("bias"):
                p.normal_(0, 0.1)
    d.mkdir(parents=True)
    write_ct2(d / "model.bin", hf_to_ct2(hf.state_dict(), hf.config, dtype="float32"))
    write_tiny_tokenizer(d / "tokenizer.json")
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    (d / "vocabulary.json").write_text(json.dumps([tok.id_to_token(i) for i in range(tok.get_vocab_size())]))
    (d / "config.json").write_text(json.dumps({
        "lang_ids": [258, 259, 260], "suppress_ids": [1, 2], "suppress_ids_begin": [32, 256],
        "alignment_heads": [[1, 0]],
    }))
    torch.save(hf.state_dict(), d / "reference_state.pt")
    return d


@pytest.fixture
def tiny_ct2_dir(tmp_path) -> Path:
    return make_tiny_ct2(tmp_path / "tiny-ct2")


@pytest.fixture
def tiny6_ct2_dir(tmp_path) -> Path:
    """Six decoder layers, like whisper-base, so DAMA has early, middle and late segments."""
    return make_tiny_ct2(tmp_path / "tiny6-ct2", decoder_layers=6)


def make_corpus(root: Path, n_train: int = 8, n_val: int = 3, n_test: int = 3) -> Path:
    """A small swahili-layout corpus of synthetic tones with short transcripts."""
    d = root / "swahili" / "data"
    lines = []
    words = ["habari", "yako", "nzuri", "sana", "asante", "karibu", "ndiyo", "hapana"]
    for k, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        for i in range(n):
            uid = f"{split}{i}"  # every clip's audio differs (the encoder cache is keyed by content)
            write_wav(d / "records" / split / f"{uid}.wav", 1.0 + 0.25 * (i % 4), freq=200 + 50 * i + 3 * k)
            lines.append(f"{uid}:{words[i % 8]} {words[(i + 3) % 8]}")
    (d / "raw_text_file.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def tiny_whisper(tiny_ct2_dir):
    from dama.models.load import load_whisper

    return load_whisper(tiny_ct2_dir, device="cpu")


def write_wav(path: Path, seconds: float = 1.0, sr: int = 16000, channels: int = 1, freq: float = 440.0) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr)
    return path


def _real_model_dir() -> Path:
    from dama.models.fetch import fetch_model

    return fetch_model("whisper-base", log=lambda *a: None)


def _need_real_data() -> None:
    if SHARED_DATA.is_dir():
        return
    msg = f"real data not found at {SHARED_DATA} (set DAMA_DATA)"
    if os.environ.get("DAMA_REQUIRE_INTEGRATION"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def whisper_base():
    _need_real_data()
    from dama.models.load import load_whisper

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    return load_whisper(_real_model_dir(), device="cpu")


@pytest.fixture(scope="session")
def whisper_base_ct2_dir(tmp_path_factory) -> Path:
    """The assembled CTranslate2 whisper-base (from the cached wheels) for cross-checks."""
    from dama.models.fetch import KNOWN_MODELS, _find_wheel, assemble_ct2_dir, cache_dir

    _real_model_dir()
    for mirror in KNOWN_MODELS["whisper-base"].mirrors:
        folder = cache_dir() / "wheels" / mirror.name
        if folder.is_dir():
            wheels = [_find_wheel(folder, r) for r in mirror.wheels]
            return assemble_ct2_dir(wheels, tmp_path_factory.mktemp("wb-ct2"))
    pytest.skip("whisper-base wheels are not in the cache")


def load_benchmark(name: str):
    """A script of benchmarks/ (not a package) imported as a module, for tests of its functions."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
