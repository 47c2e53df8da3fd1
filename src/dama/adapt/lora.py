"""Uniform LoRA (the paper's baseline: r = 64 on every decoder target)."""

from __future__ import annotations

from dataclasses import dataclass

from dama.adapt.base import Adapted, MethodConfig, uniform_lora


@dataclass
class LoraMethod(MethodConfig):
    name = "lora"
    r: int = 64

    def apply(self, model) -> Adapted:
        n_layers = model.config.decoder_layers
        return Adapted(uniform_lora(model, self, self.r), self.name, ranks=[self.r] * n_layers)
