"""dama: adapt multilingual Whisper to low-resource languages with Depth-Aware Model Adaptation."""

from dama.data import Manifest, Utterance, load_audio, load_data
from dama.errors import DamaError, DataError, ModelError
from dama.evaluate import evaluate, normalize_text
from dama.models import DecodeOptions, Whisper, fetch_model, load_whisper, transcribe

__version__ = "0.1.0"

__all__ = [
    "DamaError",
    "DataError",
    "DecodeOptions",
    "Manifest",
    "ModelError",
    "Utterance",
    "Whisper",
    "evaluate",
    "fetch_model",
    "load_audio",
    "load_data",
    "load_whisper",
    "normalize_text",
    "transcribe",
]
