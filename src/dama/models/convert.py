"""Turn a CTranslate2 / faster-whisper model directory into a Hugging Face Whisper directory.

The output is an ordinary ``save_pretrained`` directory (config, safetensors weights,
generation config with language/task tokens and suppress lists, tokenizer, feature
extractor), so everything downstream — PEFT, ``generate``, ``from_pretrained`` — treats a
converted model exactly like one from the hub.

Writing over a folder is guarded (issue 24): an existing non-empty output folder is replaced only
with ``force``, and only if it is recognisably a Whisper model folder that dama or transformers
wrote; the new folder is built beside it and swapped in, so a failure leaves the old one as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
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
from dama.safeio import read_json

CT2_FILES = ("model.bin", "tokenizer.json", "config.json")
# What `save_pretrained` of a Whisper model, its tokenizer, feature extractor and generation config
# writes (transformers 4 and 5), plus the mark `dama model fetch` leaves in its cache.
HF_MODEL_FILES = frozenset({
    "config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
    "merges.txt", "normalizer.json", ".dama-complete",
})
HF_WEIGHTS = re.compile(r"(model|pytorch_model)(-\d{5}-of-\d{5})?\.(safetensors|bin)|"
                        r"(model\.safetensors|pytorch_model\.bin)\.index\.json")


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


def hf_model_dir_problem(path: Path) -> str | None:
    """Why ``path`` is not recognisably a Whisper model folder dama or transformers wrote (None: it is):
    a Whisper ``config.json``, model weights, and nothing but what ``save_pretrained`` writes."""
    names = sorted(p.name for p in path.iterdir())
    other = [n for n in names if n not in HF_MODEL_FILES and not HF_WEIGHTS.fullmatch(n)]
    if other:
        return f"it holds files a Whisper model folder does not ({', '.join(other[:5])})"
    try:
        conf = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return "it has no readable config.json"
    if not isinstance(conf, dict) or conf.get("model_type") != "whisper":
        return "its config.json is not a Whisper model's"
    if not any(HF_WEIGHTS.fullmatch(n) and not n.endswith(".json") for n in names):
        return "it has no model weights"
    return None


def check_replaceable(out: Path, force: bool, problem: Callable[[Path], str | None], what: str,
                      error: type[Exception] = ModelError, empty_needs_force: bool = False,
                      remedy: str = "choose another output folder, or move this one away yourself") -> None:
    """Refuse to write ``out`` unless it is new (or empty), or ``force`` is given and ``problem(out)``
    finds it to be a folder of the kind ``what`` that dama itself wrote (so it may replace it).
    A symbolic link or a file is never replaced: the link's target would not be ours to judge."""
    if out.is_symlink():
        raise error(f"{out} is a symbolic link; give the real folder (dama does not replace links)")
    if not out.exists():
        return
    if not out.is_dir():
        raise error(f"{out} exists and is not a folder; choose another output folder")
    empty = not any(out.iterdir())
    if empty and not empty_needs_force:
        return
    if not force:
        raise error(f"{out} already exists{'' if empty else ' and is not empty'}; choose another output "
                    f"folder, or pass --force to replace it ({what} only)")
    if not empty and (why := problem(out)):
        raise error(f"{out} is not {what}: {why}. Not replacing it, even with --force; {remedy}")


def swap_in(new: Path, out: Path) -> None:
    """Put the finished folder ``new`` (a sibling of ``out``) at ``out``. An old ``out`` is first renamed
    aside and deleted only once the new one is in place; if that fails it is renamed back, so a
    failure leaves either the old folder or the new one, never a mix or nothing."""
    if not out.exists():
        os.replace(new, out)
        return
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(out, old)
    try:
        os.rename(new, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def convert_ct2_to_hf(ct2_dir: str | Path, out_dir: str | Path, dtype: str = "float32", force: bool = False) -> Path:
    """Convert ``ct2_dir`` into a HF model directory at ``out_dir`` (written atomically).

    An existing, non-empty ``out_dir`` is replaced only with ``force``, and only if it is a Whisper model
    folder (see :func:`hf_model_dir_problem`): anything else there is someone's, not ours to delete."""
    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    for name in CT2_FILES:
        if not (ct2_dir / name).is_file():
            raise ModelError(
                f"{ct2_dir / name}: missing. A CTranslate2 Whisper directory needs {', '.join(CT2_FILES)}."
            )
    if ct2_dir.resolve().is_relative_to(out_dir.resolve()):
        raise ModelError(f"{out_dir} is (or holds) the CTranslate2 folder {ct2_dir} being converted; "
                         "choose another output folder")
    check_replaceable(out_dir, force, hf_model_dir_problem, "a Whisper model folder dama or transformers wrote")
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
        check_replaceable(out_dir, force, hf_model_dir_problem, "a Whisper model folder dama or transformers wrote")
        swap_in(tmp, out_dir)
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
    ct2_config = read_json(ct2_dir / "config.json", "CTranslate2 config") if (ct2_dir / "config.json").is_file() else {}
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
