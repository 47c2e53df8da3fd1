"""LoRA-FA: every A frozen at its random init, only B trains (half the memory of LoRA's state)."""

from __future__ import annotations

from dataclasses import dataclass

from dama.adapt.base import Adapted, MethodConfig, lora_a_names, uniform_lora
from dama.adapt.options import RankOptions
from dama.adapt.peft_compat import FrozenParams


@dataclass
class LoraFaMethod(RankOptions, MethodConfig):  # r: RankOptions
    name = "lora-fa"

    def apply(self, model) -> Adapted:
        peft_model = uniform_lora(model, self, self.r)
        frozen = FrozenParams(lora_a_names(peft_model))
        frozen.enforce(peft_model)
        return Adapted(peft_model, self.name, frozen=frozen, ranks=[self.r] * model.config.decoder_layers)
