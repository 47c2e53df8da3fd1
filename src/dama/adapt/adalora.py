"""AdaLoRA: ranks pruned during training by an SVD-based importance score.

The final budget defaults to DAMA's trainable-parameter count on the same model, so
the two adaptive-rank methods are compared at equal size. AdaLoRA must see its
``update_and_allocate(step)`` after every optimizer step (the harness calls ``step_hook``)
and adds an orthogonality penalty to the loss the model returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from peft import AdaLoraConfig, get_peft_model

from dama.adapt.base import ADAPTER_NAME, Adapted, MethodConfig, freeze_all
from dama.adapt.peft_compat import target_regex
from dama.errors import DamaError


@dataclass
class AdaLoraMethod(MethodConfig):
    name = "adalora"
    budget_params: int | None = None  # final trainable budget; None = DAMA's count
    init_ratio: float = 1.5  # init_r = init_ratio x target_r (PEFT's default 12/8)
    total_step: int | None = None  # set by the trainer
    tinit_frac: float = 0.1
    tfinal_frac: float = 0.2
    orth_reg_weight: float = 0.5

    def apply(self, model) -> Adapted:
        if not self.total_step:
            raise DamaError("adalora: total_step must be known before the adapter is built")
        target = target_regex(self.modules)
        shapes = [(m.in_features, m.out_features) for n, m in model.named_modules() if re.fullmatch(target, n)]
        budget = self.budget_params
        if budget is None:
            from dama.adapt.dama import DamaMethod
            from dama.adapt.ranks import depth_aware_param_count

            dm = DamaMethod(modules=self.modules)
            n_layers = model.config.decoder_layers
            budget = depth_aware_param_count(shapes[:len(shapes) // n_layers], dm.layer_ranks(n_layers),
                                             set(dm.segments(n_layers).middle))
        per_rank = sum(i + o + 1 for i, o in shapes)
        target_r = max(1, round(budget / per_rank))
        init_r = max(target_r, round(self.init_ratio * target_r))
        freeze_all(model)
        conf = AdaLoraConfig(
            init_r=init_r, target_r=target_r, lora_alpha=self.alpha_ratio * init_r, lora_dropout=self.dropout,
            target_modules=target, total_step=self.total_step, tinit=int(self.tinit_frac * self.total_step),
            tfinal=int(self.tfinal_frac * self.total_step), orth_reg_weight=self.orth_reg_weight,
            **self.token_kwargs(),
        )
        peft_model = get_peft_model(model, conf, adapter_name=ADAPTER_NAME)

        def hook(step: int) -> None:
            peft_model.base_model.update_and_allocate(step)

        return Adapted(peft_model, self.name, step_hook=hook, model_loss=True,
                       info={"target_r": target_r, "init_r": init_r, "budget_params": budget})
