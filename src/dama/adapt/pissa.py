"""PiSSA: LoRA initialised from the *top* singular vectors, the base weight replaced by the residual.

Saving converts the adapter back to a plain LoRA delta on the original weights
(PEFT's ``path_initial_model_for_weight_conversion``), so it loads on the untouched model.
"""

from __future__ import annotations

from dataclasses import dataclass

from dama.adapt.base import Adapted, MethodConfig, uniform_lora
from dama.adapt.options import RankOptions


@dataclass
class PissaMethod(RankOptions, MethodConfig):  # r: RankOptions
    name = "pissa"

    def apply(self, model) -> Adapted:
        peft_model = uniform_lora(model, self, self.r, init_lora_weights="pissa")
        return Adapted(peft_model, self.name, ranks=[self.r] * model.config.decoder_layers,
                       info={"needs_weight_conversion": True})
