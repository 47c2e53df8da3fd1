"""Many languages from one base model: adapters loaded side by side, switched per request.

Each adapter is a `dama train` run on the same base (checked by weights fingerprint). The
base model sits in memory once; PEFT holds every adapter under its own name, and a batch of
requests is served group by group, with the adapter and the language token of its run.
Audio over Whisper's 30 s window is chunked as in ``dama transcribe``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dama.errors import DamaError, ModelError
from dama.models.load import Whisper, load_whisper
from dama.models.transcribe import DecodeOptions, transcribe
from dama.runs import RunFolder


def _run_config(run: RunFolder) -> dict:
    cfg = run.read_config()
    if not run.adapter_path.is_dir():
        raise ModelError(f"{run.path}: no {run.ADAPTER}/ folder (full fine-tuning has no adapter to share a base; "
                         "export it and serve it on its own)")
    return cfg


class MultiAdapterWhisper:
    """``runs`` maps a key (e.g. a language code) to a run directory."""

    def __init__(self, runs: dict[str, str | Path], base: str | Path | None = None, device: str | None = None):
        if not runs:
            raise DamaError("no adapters given")
        from peft import PeftModel

        dirs = {k: RunFolder(v) for k, v in runs.items()}
        cfgs = {k: _run_config(d) for k, d in dirs.items()}
        models = {c["model"] for c in cfgs.values()}
        if base is None and len(models) > 1:
            raise ModelError(f"the adapters were trained on different base models {sorted(models)}; "
                             "one base model can only serve adapters trained on it")
        w = load_whisper(base or models.pop(), device=device)
        self.languages: dict[str, str | None] = {}
        for k, c in cfgs.items():
            dirs[k].check_base(w, c, f"adapter {k} ({dirs[k]})")
            dirs[k].restore_new_language(w, c, f"adapter {k} ({dirs[k]})")
            langs = c.get("languages") or ([c["language"]] if c.get("language") else [])
            self.languages[k] = langs[0] if len(langs) == 1 else None
        peft_model = None
        for k, d in dirs.items():
            if peft_model is None:
                peft_model = PeftModel.from_pretrained(w.model, d.adapter_path, adapter_name=k)
            else:
                peft_model.load_adapter(d.adapter_path, adapter_name=k)
        peft_model.eval()
        self.peft = peft_model
        self.whisper = Whisper(peft_model.get_base_model(), w.tokenizer, w.feature_extractor, w.name)

    @property
    def keys(self) -> list[str]:
        return list(self.languages)

    def language_of(self, key: str) -> str:
        lang = self.languages.get(key)
        if key not in self.languages:
            raise DamaError(f"no adapter {key!r}; loaded: {', '.join(self.keys)}")
        if not lang:
            raise DamaError(f"adapter {key!r} was trained on several or unknown languages; give --language")
        return lang

    def transcribe(self, audios: list[np.ndarray], keys: list[str], languages: list[str | None] | None = None,
                   opts: DecodeOptions | None = None) -> list[str]:
        """Transcribe each clip with the adapter ``keys[i]`` and language ``languages[i]``
        (default: the language that adapter was trained on)."""
        if len(keys) != len(audios):
            raise ValueError(f"{len(keys)} adapter keys for {len(audios)} clips")
        languages = languages or [None] * len(audios)
        out: list[str | None] = [None] * len(audios)
        for key in dict.fromkeys(keys):
            rows = [i for i, k in enumerate(keys) if k == key]
            langs = [languages[i] or self.language_of(key) for i in rows]
            self.peft.set_adapter(key)
            for i, text in zip(rows, transcribe(self.whisper, [audios[i] for i in rows], langs, opts)):
                out[i] = text
        return out
