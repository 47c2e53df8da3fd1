"""dama: adapt multilingual Whisper to low-resource languages with Depth-Aware Model Adaptation."""

import importlib

from dama.errors import DamaError, DataError, ModelError

__version__ = "0.1.0"

# The rest loads on first use (PEP 562), so `dama --help` and `import dama` do not pay for torch.
_LAZY = {
    "Manifest": "dama.data", "Utterance": "dama.data", "load_audio": "dama.data", "load_data": "dama.data",
    "evaluate": "dama.evaluate", "normalize_text": "dama.evaluate",
    "DecodeOptions": "dama.models", "Whisper": "dama.models", "fetch_model": "dama.models",
    "load_whisper": "dama.models", "transcribe": "dama.models",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dama' has no attribute {name!r}")

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
