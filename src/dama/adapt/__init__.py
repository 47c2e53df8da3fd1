"""Adaptation methods, one small module each, behind one registry.

  options.py     the settings users choose (ranks, alpha ratio, DAMA's ablations) and their
                 defaults, torch-free; options -> a method's config (method_config_from_options)
  base.py        MethodConfig (what every method shares) and Adapted (a model ready to train)
  registry.py    METHODS by name, make_method
  dama.py, lora.py, dora.py, lora_fa.py, adalora.py, pissa.py, full.py, zero_shot.py: one method each
  ranks.py       DAMA's depth-aware rank allocation r(l)
  allocation.py  ranks and segments from a measured per-layer profile (dama plan, --allocation)
  peft_compat.py PEFT's traps for Whisper, wrapped once

The registry and the methods (which load torch and PEFT) are imported on first use (PEP 562), so
:mod:`dama.adapt.options` serves ``dama train --help`` without them.
"""

from __future__ import annotations

import importlib

_LAZY = {"METHODS": "dama.adapt.registry", "make_method": "dama.adapt.registry",
         "Adapted": "dama.adapt.base", "MethodConfig": "dama.adapt.base"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dama.adapt' has no attribute {name!r}")


__all__ = ["METHODS", "Adapted", "MethodConfig", "make_method"]
