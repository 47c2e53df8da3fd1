"""Models: CTranslate2 conversion, offline fetching, loading and transcription."""

from dama.models.convert import convert_ct2_to_hf, load_ct2_dir
from dama.models.ct2 import CT2Model, hf_to_ct2, read_ct2, write_ct2
from dama.models.fetch import KNOWN_MODELS, cache_dir, fetch_model
from dama.models.load import Whisper, load_whisper
from dama.models.transcribe import DecodeOptions, transcribe

__all__ = [
    "CT2Model",
    "DecodeOptions",
    "KNOWN_MODELS",
    "Whisper",
    "cache_dir",
    "convert_ct2_to_hf",
    "fetch_model",
    "hf_to_ct2",
    "load_ct2_dir",
    "load_whisper",
    "read_ct2",
    "transcribe",
    "write_ct2",
]
