"""Uniform LoRA (the paper's baseline: r = 64 on every decoder target)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dama.adapt.base import Adapted, MethodConfig, uniform_lora
from dama.adapt.options import RankOptions


@dataclass
class LoraMethod(RankOptions, MethodConfig):  # r: RankOptions
    name = "lora"
    peft_options: ClassVar[dict] = {}  # what a LoRA variant changes in PEFT's LoraConfig

    def apply(self, model) -> Adapted:
        n_layers = model.config.decoder_layers
        return Adapted(uniform_lora(model, self, self.r, **self.peft_options), self.name, ranks=[self.r] * n_layers)
