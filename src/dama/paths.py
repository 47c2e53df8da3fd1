"""Where dama keeps what it builds once and reuses: ``$DAMA_CACHE``, else ``~/.cache/dama`` (models,
the content-addressed audio store, long-form recordings). A base module, so that data and models
can both find it without one importing the other."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "DAMA_CACHE"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "dama").expanduser()


__all__ = ["CACHE_ENV", "cache_dir"]
