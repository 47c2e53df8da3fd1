"""A transformers Whisper model written in whisper.cpp's ggml format (``ggml-model.bin``).

The layout is the one whisper.cpp's own ``models/convert-h5-to-ggml.py`` writes and ``whisper.cpp``
reads (``whisper_model_load``): the magic ``ggml``; eleven int32 hyper-parameters (vocabulary size,
audio context, width, heads and layers of encoder and decoder, text context, mel bins, and the
weights' type: 1 = float16, 0 = float32); the mel filter bank (80 x 201 float32, here from the
transformers feature extractor, which computes the same Slaney filters OpenAI ships); the ordinary
vocabulary (byte strings in id order; whisper.cpp derives the special tokens from the vocabulary
size); then each tensor under its OpenAI name (``decoder.blocks.0.cross_attn.query.weight``) with its
dimensions reversed, the convolution biases as [n, 1], and float32 for 1-D tensors, the conv biases
and the positional embeddings even in a float16 file. ``proj_out`` is tied to the token embedding
and not written.

Differences from the script: no OpenAI checkout is needed (mel filters from transformers), a float32
file is not rounded through float16 first, and the text context comes from ``max_target_positions``.
(``dama export`` does not write float32: whisper.cpp 1.8.5's CPU convolution aborts on float32 conv weights.)

Quantized files (q8_0, q5_0, q5_1, q4_0, q4_1) are what whisper.cpp's own ``quantize`` tool makes of the
float16 file (``whisper_model_quantize`` -> ``ggml_common_quantize_0``): the header's type is
``2000 + ggml_ftype`` (quantization version 2), every 2-D weight except the positional embeddings is
stored in the block type, everything else as in the float16 file. The blocks come from ggml's own
Python package (``gguf.quants``, numpy ports of ggml's reference quantizers), so dama does not carry a
second copy of the bit packing.

whisper.cpp's language table is fixed and its special-token ids follow from the vocabulary size, so
a model with an added language token (a vocabulary one larger) would be read as large-v3 with every
task token shifted: such a model must first be put on an existing token (``--language-slot``).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from dama.errors import DamaError

MAGIC = 0x67676D6C  # "ggml"
FILE_NAME = "ggml-model.bin"
WHISPER_VOCAB = (51864, 51865, 51866)  # English-only, multilingual, large-v3: what whisper.cpp knows
_BLOCK = {
    "self_attn.k_proj": "attn.key", "self_attn.q_proj": "attn.query", "self_attn.v_proj": "attn.value",
    "self_attn.out_proj": "attn.out", "self_attn_layer_norm": "attn_ln", "encoder_attn.q_proj": "cross_attn.query",
    "encoder_attn.k_proj": "cross_attn.key", "encoder_attn.v_proj": "cross_attn.value",
    "encoder_attn.out_proj": "cross_attn.out", "encoder_attn_layer_norm": "cross_attn_ln", "fc1": "mlp.0",
    "fc2": "mlp.2", "final_layer_norm": "mlp_ln",
}
_TOP = {
    "encoder.layer_norm.bias": "encoder.ln_post.bias", "encoder.layer_norm.weight": "encoder.ln_post.weight",
    "encoder.embed_positions.weight": "encoder.positional_embedding",
    "decoder.layer_norm.bias": "decoder.ln.bias", "decoder.layer_norm.weight": "decoder.ln.weight",
    "decoder.embed_positions.weight": "decoder.positional_embedding",
    "decoder.embed_tokens.weight": "decoder.token_embedding.weight",
}
# name -> (ggml_ftype written in the header, ggml_type of the quantized tensors); gguf's enum has ggml_type's ids
QUANTIZED = {"q8_0": (7, "Q8_0"), "q5_0": (8, "Q5_0"), "q5_1": (9, "Q5_1"), "q4_0": (2, "Q4_0"), "q4_1": (3, "Q4_1")}
QNT_VERSION = 2  # GGML_QNT_VERSION; the header's type is QNT_VERSION * 1000 + ftype in a quantized file
_F32 = {"encoder.conv1.bias", "encoder.conv2.bias", "encoder.positional_embedding", "decoder.positional_embedding"}


def openai_name(hf_name: str) -> str | None:
    """``model.decoder.layers.3.encoder_attn.q_proj.weight`` -> ``decoder.blocks.3.cross_attn.query.weight``;
    None for what whisper.cpp does not read (``proj_out``, tied to the token embedding)."""
    parts = hf_name.split(".")
    if parts[0] != "model":
        return None
    parts = parts[1:]
    if len(parts) > 3 and parts[1] == "layers":
        return ".".join([parts[0], "blocks", parts[2], _BLOCK[".".join(parts[3:-1])], parts[-1]])
    name = ".".join(parts)
    return _TOP.get(name, name)


def _bytes_of_token() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: the character a token string uses -> the byte it stands for."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _languages_are_whispers(gc) -> bool:
    """Whisper's own language tokens, each at the id whisper.cpp computes for it (right after <|startoftranscript|>,
    in Whisper's order), and nothing else: what whisper.cpp's fixed table can read."""
    from dama.languages import WHISPER_LANGUAGES

    langs = gc.lang_to_id or {}
    order = list(WHISPER_LANGUAGES)
    sot = int(gc.decoder_start_token_id)
    for token, tid in langs.items():
        code = token.strip("<|>")
        if code not in WHISPER_LANGUAGES or tid != sot + 1 + order.index(code):
            return False
    return True


def _quantizer(quantization: str | None):
    """(header type, ggml type id, quantize function) for a block type, through ggml's ``gguf`` package."""
    if quantization is None:
        return None
    if quantization not in QUANTIZED:
        raise DamaError(f"unknown ggml quantization {quantization!r}; choose from {', '.join(QUANTIZED)}")
    try:
        from gguf import GGMLQuantizationType
        from gguf.quants import quantize
    except ImportError:
        raise DamaError(f"--quantization {quantization} for ggml needs ggml's Python package: pip install gguf "
                        "(or 'dama[deploy]'); float16 needs nothing more") from None
    ftype, name = QUANTIZED[quantization]
    qtype = GGMLQuantizationType[name]
    return QNT_VERSION * 1000 + ftype, int(qtype), lambda a: quantize(a, qtype)


def write_ggml(w, out: str | Path, use_f16: bool = True, quantization: str | None = None) -> Path:
    """Write the Whisper ``w`` (a :class:`dama.models.load.Whisper`) as a whisper.cpp model file ``out``:
    float16 (``use_f16``), float32, or quantized to one of :data:`QUANTIZED` (``quantization``; the tensors
    it leaves alone are float16/float32 as in the float16 file)."""
    quant = _quantizer(quantization)
    use_f16 = use_f16 or quant is not None
    cfg = w.model.config
    gc = w.generation_config
    if cfg.vocab_size not in WHISPER_VOCAB or not _languages_are_whispers(gc):
        raise DamaError(
            f"whisper.cpp cannot take this model: its vocabulary has {cfg.vocab_size} tokens, and whisper.cpp "
            f"knows only Whisper's own ({', '.join(map(str, WHISPER_VOCAB))}) with Whisper's languages in Whisper's "
            "order: its language table is fixed. "
            "For a run that added a language token, export with --language-slot CODE (an existing Whisper "
            "language to serve it on)")
    out = Path(out)
    vocab = w.tokenizer.get_vocab()
    n_text = int(gc.eos_token_id)  # the ordinary tokens: everything before <|endoftext|>
    by_id = sorted((i, t) for t, i in vocab.items() if i < n_text)
    if [i for i, _ in by_id] != list(range(n_text)):
        raise DamaError(f"{w.name}: the tokenizer's ordinary tokens are not ids 0..{n_text - 1}")
    to_byte = _bytes_of_token()
    filters = np.ascontiguousarray(np.asarray(w.feature_extractor.mel_filters, dtype=np.float32).T)  # [mels, bins]
    state = w.model.state_dict()
    with out.open("wb") as f:
        f.write(struct.pack("i", MAGIC))
        for v in (cfg.vocab_size, cfg.max_source_positions, cfg.d_model, cfg.encoder_attention_heads,
                  cfg.encoder_layers, cfg.max_target_positions, cfg.d_model, cfg.decoder_attention_heads,
                  cfg.decoder_layers, cfg.num_mel_bins, quant[0] if quant else int(use_f16)):
            f.write(struct.pack("i", int(v)))
        f.write(struct.pack("ii", *filters.shape))
        f.write(filters.tobytes())
        f.write(struct.pack("i", len(by_id)))
        for _, token in by_id:
            raw = bytes(to_byte[c] for c in token)
            f.write(struct.pack("i", len(raw)))
            f.write(raw)
        for hf_name, tensor in state.items():
            name = openai_name(hf_name)
            if name is None:
                continue
            data = tensor.detach().float().cpu().numpy()
            if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
                data = data.reshape(data.shape[0], 1)
            f32 = not use_f16 or data.ndim < 2 or name in _F32
            shape = data.shape
            if quant and data.ndim == 2 and name not in _F32:  # what whisper.cpp's quantize tool quantizes
                ttype, data = quant[1], quant[2](np.ascontiguousarray(data.astype(np.float16).astype(np.float32)))
            else:
                ttype, data = (0, data.astype(np.float32)) if f32 else (1, data.astype(np.float16))
            raw_name = name.encode()
            f.write(struct.pack("iii", len(shape), len(raw_name), ttype))
            f.write(struct.pack(f"{len(shape)}i", *reversed(shape)))
            f.write(raw_name)
            f.write(np.ascontiguousarray(data).tobytes())
    return out


def whispercpp_model(path: str | Path, language: str, threads: int = 0, max_tokens: int = 0,
                     flash_attn: bool = False):
    """A whisper.cpp model (through the ``pywhispercpp`` wheel) set up to decode like dama and faster-whisper
    greedy: one segment per clip, no timestamps, no temperature fallback, no context from earlier clips,
    non-speech tokens suppressed (faster-whisper's ``suppress_tokens=[-1]``); ``max_tokens`` caps a segment
    (0: whisper.cpp's own limit, 220 tokens). ``model.transcribe(audio_16k_float32)`` then returns its segments.

    Flash attention is off by default (whisper.cpp 1.8 turns it on; ``whisper-cli -nfa`` turns it off): its
    CPU kernel keeps keys and values in float16, and on an adapted model that alone changed the text of 7 of
    20 Swahili test clips, taking whisper.cpp away from transformers and CTranslate2 (benchmarks/ggml_vs_ct2.py)."""
    import os

    try:
        from pywhispercpp.model import Model
    except ImportError:
        raise DamaError("running a ggml export needs whisper.cpp's Python binding: pip install pywhispercpp") from None
    return Model(str(path), redirect_whispercpp_logs_to=None, n_threads=threads or os.cpu_count() or 1,
                 context_params={"flash_attn": flash_attn},
                 language=language, print_progress=False, print_realtime=False, print_timestamps=False,
                 no_timestamps=True, single_segment=True, no_context=True, temperature=0.0, temperature_inc=0.0,
                 suppress_nst=True, max_tokens=max_tokens)


__all__ = ["FILE_NAME", "QUANTIZED", "openai_name", "whispercpp_model", "write_ggml"]
