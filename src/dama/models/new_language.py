"""Languages Whisper has no token for: add ``<|code|>`` and let only its embedding row train.

The new row starts at the mean of the existing language-token embeddings (a "some
language" token), the output projection stays tied to it, and PEFT's
``trainable_token_indices`` trains and saves just that row with the adapter.
"""

from __future__ import annotations

import torch
from tokenizers import AddedToken

from dama.errors import DamaError
from dama.languages import WHISPER_LANGUAGES
from dama.models.load import Whisper


def add_language_token(w: Whisper, code: str, name: str) -> int:
    """Add ``<|code|>`` to tokenizer, embeddings and ``lang_to_id``; returns its id."""
    code = code.strip().lower()
    token = f"<|{code}|>"
    gc = w.generation_config
    if code in WHISPER_LANGUAGES or (gc.lang_to_id and token in gc.lang_to_id):
        raise DamaError(f"{code!r} already has a Whisper token; drop --language-name")
    if not code.isascii() or not code.replace("-", "").isalnum():
        raise DamaError(f"language code {code!r} must be letters/digits (e.g. lg)")
    if not gc.lang_to_id:
        raise DamaError(f"{w.name} is not multilingual: it has no language tokens to extend")
    w.tokenizer.add_tokens([AddedToken(token, special=True, normalized=False)], special_tokens=True)
    new_id = w.tokenizer.convert_tokens_to_ids(token)
    model = w.model
    old_ids = sorted(gc.lang_to_id.values())
    emb = model.get_input_embeddings()
    if new_id >= emb.weight.shape[0]:
        model.resize_token_embeddings(len(w.tokenizer), mean_resizing=False)
        emb = model.get_input_embeddings()
    with torch.no_grad():
        emb.weight[new_id] = emb.weight[old_ids].mean(dim=0)
    gc.lang_to_id = {**gc.lang_to_id, token: new_id}
    model.config.vocab_size = emb.weight.shape[0]
    return new_id
