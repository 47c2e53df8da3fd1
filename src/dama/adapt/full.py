"""Full fine-tuning: every weight trains, encoder included (so no encoder-output cache)."""

from __future__ import annotations

from dataclasses import dataclass

from dama.adapt.base import Adapted, MethodConfig


@dataclass
class FullMethod(MethodConfig):
    name = "full"
    default_lr = 1e-5  # every weight moves: adapter learning rates would wreck the pretrained model
    train_encoder: bool = True

    def apply(self, model) -> Adapted:
        for n, p in model.named_parameters():
            p.requires_grad_(self.train_encoder or not n.startswith("model.encoder."))
        return Adapted(model, self.name, uses_encoder_cache=not self.train_encoder, is_peft=False)
