"""The methods by name: ``METHODS`` and ``make_method`` (imported by :mod:`dama.adapt` on first use)."""

from __future__ import annotations

from dama.adapt.adalora import AdaLoraMethod
from dama.adapt.base import MethodConfig
from dama.adapt.dama import DamaMethod
from dama.adapt.dora import DoraMethod
from dama.adapt.full import FullMethod
from dama.adapt.lora import LoraMethod
from dama.adapt.lora_fa import LoraFaMethod
from dama.adapt.pissa import PissaMethod
from dama.adapt.zero_shot import ZeroShotMethod
from dama.errors import DamaError

METHODS: dict[str, type[MethodConfig]] = {
    m.name: m
    for m in (DamaMethod, LoraMethod, DoraMethod, LoraFaMethod, AdaLoraMethod, PissaMethod, FullMethod,
              ZeroShotMethod)
}


def make_method(name: str, **options) -> MethodConfig:
    """Build a method config by name; unknown names or options are clear errors."""
    if name not in METHODS:
        raise DamaError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    cls = METHODS[name]
    fields = set(cls.__dataclass_fields__)
    bad = sorted(set(options) - fields)
    if bad:
        raise DamaError(f"method {name} has no option(s) {bad}; it takes {sorted(fields)}")
    return cls(**options)


__all__ = ["METHODS", "make_method"]
