"""Uniform LoRA (the paper's baseline: r = 64 on every decoder target)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dama.adapt.base import Adapted, MethodConfig, uniform_lora


@dataclass
class LoraMethod(MethodConfig):
    name = "lora"
    peft_options: ClassVar[dict] = {}  # what a LoRA variant changes in PEFT's LoraConfig
    r: int = 64

    def apply(self, model) -> Adapted:
        n_layers = model.config.decoder_layers
        return Adapted(uniform_lora(model, self, self.r, **self.peft_options), self.name, ranks=[self.r] * n_layers)
