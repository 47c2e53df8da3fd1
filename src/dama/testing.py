"""Tiny random Whisper models and synthetic corpora, for tests and fault-injection runs.

Shipped in the package (as transformers ships ``testing_utils``) so the test suite, the
benchmark scripts and users' own tests build the same fixtures without importing from
``tests/conftest.py``. Nothing here downloads anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from dama.data.audio import SAMPLE_RATE

SPECIALS = [
    "<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|sw|>", "<|yo|>", "<|translate|>",
    "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>",
]


TIMESTAMPS = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]  # Whisper's <|0.00|> ... <|30.00|>


def write_tiny_tokenizer(path: Path, timestamps: bool = False) -> None:
    """A byte-level BPE with Whisper's special tokens (no merges): 256 + 11 tokens (+ 1501 timestamp
    tokens with ``timestamps``, as Whisper has them right after ``<|notimestamps|>``)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet(), key=lambda c: ord(c)))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                            for s in SPECIALS + (TIMESTAMPS if timestamps else [])])
    tok.save(str(path))


def tiny_config(decoder_layers: int = 2, vocab_size: int = 267):
    from transformers import WhisperConfig

    return WhisperConfig(
        vocab_size=vocab_size, num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=decoder_layers,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_source_positions=1500, max_target_positions=64, decoder_start_token_id=257,
        pad_token_id=256, bos_token_id=256, eos_token_id=256, tie_word_embeddings=True,
    )


def make_tiny_ct2(d: Path, decoder_layers: int = 2, seed: int = 0, timestamps: bool = False) -> Path:
    """A random tiny Whisper written in CTranslate2 format, as faster-whisper ships it (``timestamps``: with
    Whisper's 1501 timestamp tokens, for timestamp-mode training and long-form decoding)."""
    from tokenizers import Tokenizer
    from transformers import WhisperForConditionalGeneration

    from dama.models.ct2 import hf_to_ct2, write_ct2

    torch.manual_seed(seed)
    hf = WhisperForConditionalGeneration(tiny_config(decoder_layers, 267 + (len(TIMESTAMPS) if timestamps else 0))
                                         ).eval()
    with torch.no_grad():  # make biases non-zero so a wrong mapping shows
        for n, p in hf.named_parameters():
            if n.endswith("bias"):
                p.normal_(0, 0.1)
    d.mkdir(parents=True)
    write_ct2(d / "model.bin", hf_to_ct2(hf.state_dict(), hf.config, dtype="float32"))
    write_tiny_tokenizer(d / "tokenizer.json", timestamps)
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    (d / "vocabulary.json").write_text(json.dumps([tok.id_to_token(i) for i in range(tok.get_vocab_size())]))
    (d / "config.json").write_text(json.dumps({
        "lang_ids": [258, 259, 260], "suppress_ids": [1, 2], "suppress_ids_begin": [32, 256],
        "alignment_heads": [[1, 0]],
    }))
    torch.save(hf.state_dict(), d / "reference_state.pt")
    return d


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


def write_wav(path: Path, seconds: float = 1.0, sr: int = SAMPLE_RATE, channels: int = 1, freq: float = 440.0) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr)
    return path
