"""DoRA: LoRA with a learned per-output magnitude (weight-decomposed), same shape as LoRA."""

from __future__ import annotations

from dataclasses import dataclass

from dama.adapt.base import Adapted, MethodConfig, uniform_lora


@dataclass
class DoraMethod(MethodConfig):
    name = "dora"
    r: int = 64

    def apply(self, model) -> Adapted:
        n_layers = model.config.decoder_layers
        return Adapted(uniform_lora(model, self, self.r, use_dora=True), self.name, ranks=[self.r] * n_layers)
