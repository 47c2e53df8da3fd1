"""DoRA: LoRA with a learned per-output magnitude (weight-decomposed), same shape as LoRA."""

from __future__ import annotations

from dataclasses import dataclass

from dama.adapt.lora import LoraMethod


@dataclass
class DoraMethod(LoraMethod):
    name = "dora"
    peft_options = {"use_dora": True}
