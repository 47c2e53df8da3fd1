"""Turn a CTranslate2 / faster-whisper model directory into a Hugging Face Whisper directory.

The output is an ordinary ``save_pretrained`` directory (config, safetensors weights,
generation config with language/task tokens and suppress lists, tokenizer, feature
extractor), so everything downstream — PEFT, ``generate``, ``from_pretrained`` — treats a
converted model exactly like one from the hub.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperTokenizer,
)

from dama.errors import ModelError
from dama.models.ct2 import ct2_to_hf_state_dict, read_ct2, whisper_config_from_ct2

CT2_FILES = ("model.bin", "tokenizer.json", "config.json")


def is_ct2_dir(path: str | Path) -> bool:
    return (Path(path) / "model.bin").is_file()


def _special(tok: WhisperTokenizer, token: str) -> int | None:
    tid = tok.convert_tokens_to_ids(token)
    return None if tid is None or tid == tok.unk_token_id and token != tok.unk_token else tid


def build_generation_config(tok: WhisperTokenizer, ct2_config: dict, max_length: int) -> GenerationConfig:
    """Whisper generation settings from the tokenizer and faster-whisper's ``config.json``."""
    sot = _special(tok, "<|startoftranscript|>")
    eot = _special(tok, "<|endoftext|>")
    if sot is None or eot is None:
        raise ModelError("tokenizer.json lacks <|startoftranscript|> / <|endoftext|>: not a Whisper tokenizer")
    lang_ids = ct2_config.get("lang_ids") or []
    if isinstance(lang_ids, str):
        lang_ids = json.loads(lang_ids)
    lang_to_id = {tok.convert_ids_to_tokens(i): int(i) for i in lang_ids}

    def ids(key: str) -> list[int]:
        v = ct2_config.get(key) or []
        return [int(x) for x in (json.loads(v) if isinstance(v, str) else v)]

    task_to_id = {}
    for task in ("transcribe", "translate"):
        if (tid := _special(tok, f"<|{task}|>")) is not None:
            task_to_id[task] = tid
    gc = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=max_length,
        suppress_tokens=ids("suppress_ids"),
        begin_suppress_tokens=ids("suppress_ids_begin") or [220, eot],
        is_multilingual=bool(lang_to_id),
        lang_to_id=lang_to_id,
        task_to_id=task_to_id,
        no_timestamps_token_id=_special(tok, "<|notimestamps|>"),
        prev_sot_token_id=_special(tok, "<|startofprev|>"),
        alignment_heads=ct2_config.get("alignment_heads") or [],
        max_initial_timestamp_index=50,
        return_timestamps=False,
    )
    return gc


def convert_ct2_to_hf(ct2_dir: str | Path, out_dir: str | Path, dtype: str = "float32") -> Path:
    """Convert ``ct2_dir`` into a HF model directory at ``out_dir`` (written atomically)."""
    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    for name in CT2_FILES:
        if not (ct2_dir / name).is_file():
            raise ModelError(
                f"{ct2_dir / name}: missing. A CTranslate2 Whisper directory needs {', '.join(CT2_FILES)}."
            )
    model, tok, gen = load_ct2_dir(ct2_dir)
    fe = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        if dtype == "float16":
            model = model.half()
        model.save_pretrained(tmp)
        gen.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        fe.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def load_ct2_dir(ct2_dir: str | Path) -> tuple[WhisperForConditionalGeneration, WhisperTokenizer, GenerationConfig]:
    """Build a float32 HF Whisper, tokenizer and generation config from a CTranslate2 directory."""
    ct2_dir = Path(ct2_dir)
    ct = read_ct2(ct2_dir / "model.bin")
    arch = whisper_config_from_ct2(ct)
    tok = WhisperTokenizer(tokenizer_file=str(ct2_dir / "tokenizer.json"))
    if len(tok) != arch["vocab_size"]:
        raise ModelError(
            f"{ct2_dir / 'tokenizer.json'} has {len(tok)} tokens but model.bin's embeddings have "
            f"{arch['vocab_size']} rows: tokenizer and weights do not belong together"
        )
    ct2_config = json.loads((ct2_dir / "config.json").read_text()) if (ct2_dir / "config.json").is_file() else {}
    gen = build_generation_config(tok, ct2_config, max_length=arch["max_target_positions"])
    config = WhisperConfig(
        **arch,
        decoder_start_token_id=gen.decoder_start_token_id,
        bos_token_id=gen.bos_token_id,
        eos_token_id=gen.eos_token_id,
        pad_token_id=gen.pad_token_id,
        suppress_tokens=gen.suppress_tokens,
        begin_suppress_tokens=gen.begin_suppress_tokens,
        tie_word_embeddings=True,
    )
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    sd = ct2_to_hf_state_dict(ct)
    missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    missing = [k for k in missing if k != "proj_out.weight"]
    if missing or unexpected:
        raise ModelError(f"conversion mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    model.generation_config = gen
    model.eval()
    return model, tok, gen


def export_ct2_dir(model: WhisperForConditionalGeneration, tok: WhisperTokenizer, out_dir: str | Path,
                   dtype: str = "float16") -> Path:
    """Write a faster-whisper / CTranslate2 model directory (model.bin, vocabulary.json,
    tokenizer.json, config.json) for deployment of a (merged) model."""
    from dama.models.ct2 import hf_to_ct2, write_ct2

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_ct2(out_dir / "model.bin", hf_to_ct2(model.state_dict(), model.config, dtype=dtype))
    vocab = tok.convert_ids_to_tokens(list(range(len(tok))))
    (out_dir / "vocabulary.json").write_text(json.dumps(vocab, ensure_ascii=False))
    tok.backend_tokenizer.save(str(out_dir / "tokenizer.json"))
    gc = model.generation_config
    (out_dir / "config.json").write_text(json.dumps({
        "alignment_heads": [list(x) for x in (gc.alignment_heads or [])],
        "lang_ids": sorted((gc.lang_to_id or {}).values()),
        "suppress_ids": list(gc.suppress_tokens or []),
        "suppress_ids_begin": list(gc.begin_suppress_tokens or []),
    }, indent=2))
    return out_dir
