"""Many languages from one base model: adapters loaded side by side, switched per request.

Each adapter is a `dama train` run on the same base (checked by weights fingerprint). The
base model sits in memory once; PEFT holds every adapter under its own name, and a batch of
requests is served group by group, with the adapter and the language token of its run.
Audio over Whisper's 30 s window is chunked as in ``dama transcribe``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from dama.errors import DamaError, ModelError
from dama.languages import WHISPER_LANGUAGES
from dama.models.load import Whisper, load_whisper
from dama.models.transcribe import DecodeOptions, transcribe
from dama.runs import RunFolder


def _restore_shared_new_language(w: Whisper, run: RunFolder, config: dict, label: str) -> None:
    """Restore the run's new language token. Two runs that each added a different language got the same
    new id (the first free one); each adapter holds its own trained row for that id, so with the adapter
    active the id means its language: the second code is mapped to the same id (valid with its adapter only)."""
    nl = config.get("new_language")
    gc = w.generation_config
    taken = nl and nl["token_id"] in (gc.lang_to_id or {}).values()
    if taken and f"<|{nl['code']}|>" not in w.tokenizer.get_vocab() and nl["code"] not in WHISPER_LANGUAGES:
        owner = next(t for t, i in gc.lang_to_id.items() if i == nl["token_id"])
        if owner[2:-2] in WHISPER_LANGUAGES:
            raise ModelError(f"{label}: its new token <|{nl['code']}|> has id {nl['token_id']}, which is {owner} here")
        gc.lang_to_id = {**gc.lang_to_id, f"<|{nl['code']}|>": nl["token_id"]}
        return
    run.restore_new_language(w, config, label)


def trained_language(config: dict) -> str | None:
    """The one language a run was trained on: its ``language`` (or ``languages``), else, for runs that took it
    from the data (older configs say null), the language of its training data; None if several or unknown."""
    langs = config.get("languages") or ([config["language"]] if config.get("language") else [])
    spec = (config.get("data") or {}).get("train")
    if not langs and spec:
        from dama.data import load_data

        try:
            langs = sorted({u.language for u in load_data(spec) if u.language})
        except DamaError:  # the data is not here: the caller asks for --language
            langs = []
    return langs[0] if len(langs) == 1 else None


def _run_config(run: RunFolder) -> dict:
    cfg = run.read_config()
    if not run.adapter_path.is_dir():
        raise ModelError(f"{run.path}: no {run.ADAPTER}/ folder (full fine-tuning has no adapter to share a base; "
                         "export it and serve it on its own)")
    return cfg


@torch.no_grad()
def own_weights(model: torch.nn.Module) -> None:
    """Copy every weight out of the memory-mapped checkpoint into process memory (same total size).

    transformers maps the safetensors file and the weights point into it. A new language token resizes
    the embeddings into a fresh matrix, but the old matrix's file pages stay resident for as long as the
    mapping lives (the other weights keep it alive): +93 MB resident on whisper-base for one new row.
    With the weights copied first, the mapping is released and the resize frees the old matrix (+5 MB
    measured). Serving keeps the weights in process memory anyway, so page-cache pressure from other
    processes cannot evict them and stall a request while they fault back in."""
    for t in [*model.parameters(), *model.buffers()]:  # a tied weight is one Parameter: copied once
        t.data = t.data.clone()


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
        self.new_languages: dict[str, dict] = {}  # adapter key -> its run's new_language (code, name, token_id)
        from dama.models.load import model_fingerprint

        fingerprint = model_fingerprint(w.model) if any(c.get("base_fingerprint") for c in cfgs.values()) else None
        for k, c in cfgs.items():  # every base check before any new token changes the embeddings (and the hash)
            dirs[k].check_base(w, c, f"adapter {k} ({dirs[k]})", fingerprint=fingerprint)
        own_weights(w.model)  # before any new token resizes the embeddings (see own_weights)
        for k, c in cfgs.items():
            _restore_shared_new_language(w, dirs[k], c, f"adapter {k} ({dirs[k]})")
            if c.get("new_language"):
                self.new_languages[k] = c["new_language"]
            self.languages[k] = trained_language(c)
        peft_model = None
        for k, d in dirs.items():
            if peft_model is None:
                peft_model = PeftModel.from_pretrained(w.model, d.adapter_path, adapter_name=k)
            else:
                peft_model.load_adapter(d.adapter_path, adapter_name=k)
        peft_model.eval()
        self.peft = peft_model
        self.whisper = Whisper(peft_model.get_base_model(), w.tokenizer, w.feature_extractor, w.name)

    @contextlib.contextmanager
    def using(self, key: str | None) -> Iterator[None]:
        """Run the block with adapter ``key`` active, or with the bare base model (``None``: every adapter,
        new-token rows included, switched off). Not thread-safe: one caller at a time (the server's worker)."""
        if key is None:
            with self.peft.disable_adapter():
                yield
            return
        if key not in self.languages:
            raise DamaError(f"no adapter {key!r}; loaded: {', '.join(self.keys)}")
        self.peft.set_adapter(key)
        yield

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
