"""Zero-shot: the pretrained model as is (the reference every method must beat)."""

from __future__ import annotations

from dataclasses import dataclass

from dama.adapt.base import Adapted, MethodConfig, freeze_all


@dataclass
class ZeroShotMethod(MethodConfig):
    name = "zero-shot"
    trains = False

    def apply(self, model) -> Adapted:
        if self.train_token_ids:
            from dama.errors import DamaError

            raise DamaError("zero-shot trains nothing, so a new language token would stay untrained")
        freeze_all(model)
        return Adapted(model, self.name, is_peft=False)
