"""Every multilingual Whisper size, by its exact architecture, and random-weight stand-ins for them.

Only whisper-base's weights can be fetched here, but the shapes of the others are public (their
``config.json`` on the Hugging Face hub) and neither memory nor correctness of adaptation depends on
the weights' values. So :data:`SIZES` records each size's architecture, :func:`whisper_config` turns
one into a ``WhisperConfig``, and :func:`write_random_model` writes a model folder (random weights of
that exact shape, a matching tokenizer, feature extractor and generation config) that ``dama train``,
PEFT, ``dama export`` and CTranslate2 take like the real thing. :func:`identify` recognises a model
folder's config as one of the sizes (fine-tuned checkpoints share their base's shape).

What differs between sizes besides width and depth:

* large-v3 and large-v3-turbo take 128 mel bins (the others 80) and have one more language,
  Cantonese ``<|yue|>`` (id 50358), so their vocabulary is 51,866 tokens and every special token
  after the languages (``<|translate|>`` ... ``<|notimestamps|>``, the timestamps) sits one id later
  than in the others' 51,865. A large-v3 model with an older tokenizer would get wrong task and
  timestamp ids; :func:`check_tokenizer` refuses that pairing.
* large-v3-turbo is large-v3's encoder with 4 decoder layers instead of 32.

The tokenizers are derived from whisper-base's (the same byte-level BPE for every multilingual size),
adding ``<|yue|>`` for the v3 vocabulary.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from dama.errors import ModelError

FIRST_LANGUAGE_ID = 50259  # <|en|>; <|endoftext|> 50257, <|startoftranscript|> 50258
V3_EXTRA_LANGUAGE = "<|yue|>"
V3_EXTRA_ID = 50358  # after the 99 languages every multilingual Whisper shares


@dataclass(frozen=True)
class WhisperSize:
    """The architecture of one published Whisper size (values of its ``config.json``)."""

    name: str
    hub_id: str
    d_model: int
    encoder_layers: int
    decoder_layers: int
    attention_heads: int
    ffn_dim: int
    num_mel_bins: int = 80
    vocab_size: int = 51865
    max_source_positions: int = 1500
    max_target_positions: int = 448
    published_params: str = ""  # as OpenAI's model card rounds it

    @property
    def v3_vocab(self) -> bool:
        return self.vocab_size == 51866

    @property
    def shape(self) -> tuple:
        return (self.d_model, self.encoder_layers, self.decoder_layers, self.attention_heads, self.ffn_dim,
                self.num_mel_bins, self.vocab_size)


SIZES: dict[str, WhisperSize] = {s.name: s for s in (
    WhisperSize("tiny", "openai/whisper-tiny", 384, 4, 4, 6, 1536, published_params="39 M"),
    WhisperSize("base", "openai/whisper-base", 512, 6, 6, 8, 2048, published_params="74 M"),
    WhisperSize("small", "openai/whisper-small", 768, 12, 12, 12, 3072, published_params="244 M"),
    WhisperSize("medium", "openai/whisper-medium", 1024, 24, 24, 16, 4096, published_params="769 M"),
    WhisperSize("large-v2", "openai/whisper-large-v2", 1280, 32, 32, 20, 5120, published_params="1550 M"),
    WhisperSize("large-v3", "openai/whisper-large-v3", 1280, 32, 32, 20, 5120, 128, 51866,
                published_params="1550 M"),
    WhisperSize("large-v3-turbo", "openai/whisper-large-v3-turbo", 1280, 32, 4, 20, 5120, 128, 51866,
                published_params="809 M"),
)}
ALIASES = {"whisper-" + k: k for k in SIZES} | {s.hub_id: s.name for s in SIZES.values()} | {"turbo": "large-v3-turbo"}


def get_size(name: str) -> WhisperSize:
    """A size by name (``large-v3``, ``whisper-large-v3`` or ``openai/whisper-large-v3``)."""
    key = ALIASES.get(name, name)
    if key not in SIZES:
        raise ModelError(f"unknown Whisper size {name!r}; known: {', '.join(SIZES)}")
    return SIZES[key]


def identify(config) -> WhisperSize | None:
    """The size whose architecture ``config`` (a WhisperConfig or its dict) has, or None."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    shape = (get("d_model"), get("encoder_layers"), get("decoder_layers"), get("encoder_attention_heads"),
             get("encoder_ffn_dim"), get("num_mel_bins"), get("vocab_size"))
    return next((s for s in SIZES.values() if s.shape == shape), None)


def whisper_config(size: WhisperSize | str):
    """The ``WhisperConfig`` of a size, with Whisper's special-token ids."""
    from transformers import WhisperConfig

    s = get_size(size) if isinstance(size, str) else size
    return WhisperConfig(
        vocab_size=s.vocab_size, num_mel_bins=s.num_mel_bins, d_model=s.d_model,
        encoder_layers=s.encoder_layers, decoder_layers=s.decoder_layers,
        encoder_attention_heads=s.attention_heads, decoder_attention_heads=s.attention_heads,
        encoder_ffn_dim=s.ffn_dim, decoder_ffn_dim=s.ffn_dim,
        max_source_positions=s.max_source_positions, max_target_positions=s.max_target_positions,
        decoder_start_token_id=50258, bos_token_id=50257, eos_token_id=50257, pad_token_id=50257,
        begin_suppress_tokens=[220, 50257], tie_word_embeddings=True,
    )


def meta_model(size: WhisperSize | str):
    """The model of a size on PyTorch's meta device: every parameter's shape, no memory (a large model's
    parameter counts and adapter layout in about a second)."""
    import torch
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        return WhisperForConditionalGeneration(whisper_config(size))


# -- tokenizer, feature extractor, generation config -----------------------------------------------------


def derive_tokenizer_json(base_tokenizer: dict, vocab_size: int) -> dict:
    """A Whisper ``tokenizer.json`` (as a dict) with ``vocab_size`` tokens from whisper-base's (51,865):
    for the v3 vocabulary, ``<|yue|>`` goes in at 50358 and every added token from there on moves up one."""
    tok = json.loads(json.dumps(base_tokenizer))
    n = len(tok["model"]["vocab"]) + len(tok["added_tokens"])
    if n == vocab_size:
        return tok
    if (n, vocab_size) != (51865, 51866):
        raise ModelError(f"cannot derive a {vocab_size}-token Whisper tokenizer from a {n}-token one")
    added = []
    for t in tok["added_tokens"]:
        if t["id"] >= V3_EXTRA_ID:
            t["id"] += 1
        added.append(t)
    added.append({"id": V3_EXTRA_ID, "content": V3_EXTRA_LANGUAGE, "single_word": False, "lstrip": False,
                  "rstrip": False, "normalized": False, "special": True})
    tok["added_tokens"] = sorted(added, key=lambda t: t["id"])
    return tok


def write_tokenizer(size: WhisperSize | str, base_dir: str | Path, out: str | Path) -> Path:
    """Write the size's tokenizer (``tokenizer.json`` + ``tokenizer_config.json``) into ``out``, derived
    from the whisper-base folder ``base_dir``."""
    s = get_size(size) if isinstance(size, str) else size
    base_dir, out = Path(base_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = json.loads((base_dir / "tokenizer.json").read_text(encoding="utf-8"))
    (out / "tokenizer.json").write_text(json.dumps(derive_tokenizer_json(base, s.vocab_size), ensure_ascii=False),
                                        encoding="utf-8")
    (out / "tokenizer_config.json").write_text((base_dir / "tokenizer_config.json").read_text())
    return out


def generation_config(tok, base_generation: dict | None = None):
    """Whisper generation settings read off ``tok`` (language, task and timestamp ids move with the
    vocabulary); whisper-base's suppress list, remapped by token, when ``base_generation`` is given."""
    from dama.models.convert import build_generation_config

    first_task = tok.convert_tokens_to_ids("<|translate|>")
    lang_ids = list(range(FIRST_LANGUAGE_ID, first_task))
    suppress: list[int] = []
    if base_generation:
        for i in base_generation.get("suppress_tokens") or []:
            suppress.append(i if i < V3_EXTRA_ID else i + first_task - V3_EXTRA_ID)
    return build_generation_config(tok, {"lang_ids": lang_ids, "suppress_ids": suppress,
                                         "suppress_ids_begin": [220, tok.convert_tokens_to_ids("<|endoftext|>")]},
                                   max_length=448)


def write_random_model(size: WhisperSize | str, out: str | Path, base_dir: str | Path, seed: int = 0,
                       dtype: str = "float32") -> Path:
    """A Hugging Face model folder of the size's exact architecture with random weights (seeded; biases
    non-zero so that an export that drops one shows), its tokenizer derived from whisper-base's folder
    ``base_dir``, its feature extractor (80 or 128 mel bins) and generation config. ``dtype``: how the
    weights are stored (the hub's large-v3 and turbo are float16; dama loads them as float32).

    Memory: the model is built directly in ``dtype`` (float16: 3.1 GB for large-v3)."""
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizer

    s = get_size(size) if isinstance(size, str) else size
    out, base_dir = Path(out), Path(base_dir)
    write_tokenizer(s, base_dir, out)
    tok = WhisperTokenizer.from_pretrained(str(out))
    check_tokenizer(len(tok), s.vocab_size, str(out))
    base_gen = json.loads((base_dir / "generation_config.json").read_text())
    gen = generation_config(tok, base_gen)
    config = whisper_config(s)
    config.suppress_tokens = gen.suppress_tokens
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration._from_config(config, dtype=getattr(torch, dtype))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.02)
    model.generation_config = gen
    model.save_pretrained(out)
    del model
    WhisperFeatureExtractor(feature_size=s.num_mel_bins).save_pretrained(out)
    (out / "dama_random_model.json").write_text(json.dumps({"size": asdict(s), "seed": seed, "dtype": dtype,
                                                            "weights": "random"}, indent=2))
    return out


# -- checks before any work ----------------------------------------------------------------------------


def check_tokenizer(n_tokens: int, vocab_size: int, where: str) -> None:
    """A Whisper tokenizer must have exactly the model's vocabulary: its special tokens and timestamps
    sit at the end, so a mismatch shifts them (large-v3 with a pre-v3 tokenizer: every task, language and
    timestamp id off by one)."""
    if n_tokens == vocab_size:
        return
    hint = ""
    if {n_tokens, vocab_size} == {51865, 51866}:
        hint = (" (51,866 is large-v3's vocabulary, with <|yue|>; 51,865 every earlier size's: use the tokenizer "
                "that came with the model)")
    raise ModelError(f"{where}: the tokenizer has {n_tokens:,} tokens but the model's vocabulary is {vocab_size:,}"
                     f"{hint}; tokenizer and model do not belong together")


REQUIRED_FIELDS = ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads",
                   "encoder_ffn_dim", "decoder_ffn_dim", "num_mel_bins", "vocab_size", "max_source_positions",
                   "max_target_positions")


def check_model_config(config: dict, where: str) -> WhisperSize | None:
    """A model folder's ``config.json`` must describe a Whisper encoder-decoder with every shape field;
    returns the size it is (None: a Whisper of another shape, e.g. distilled)."""
    if config.get("model_type") != "whisper":
        raise ModelError(f"{where}: model_type is {config.get('model_type')!r}, not 'whisper'; dama adapts "
                         f"Whisper models only (known sizes: {', '.join(SIZES)})")
    archs = config.get("architectures") or ["WhisperForConditionalGeneration"]
    if "WhisperForConditionalGeneration" not in archs:
        raise ModelError(f"{where}: architectures {archs} has no WhisperForConditionalGeneration (a speech "
                         "recogniser with its decoder); dama adapts that one")
    missing = [k for k in REQUIRED_FIELDS if not isinstance(config.get(k), int) or config.get(k) < 1]
    if missing:
        raise ModelError(f"{where}: config.json lacks or has no valid {', '.join(missing)}; not a complete "
                         "Whisper config")
    return identify(config)


__all__ = ["ALIASES", "SIZES", "WhisperSize", "check_model_config", "check_tokenizer", "derive_tokenizer_json",
           "generation_config", "get_size", "identify", "meta_model", "whisper_config", "write_random_model",
           "write_tokenizer"]
