"""AdaLoRA: ranks pruned during training by an SVD-based importance score.

The final budget defaults to DAMA's trainable-parameter count on the same model, so
the two adaptive-rank methods are compared at equal size: DAMA as the run sets it
(``r_high``, ``r_low``, ``ranks``, ``l_early``/``l_late``, i.e. ``--r-high``, ``--r-low``,
``--ranks``, ``--segments``), with DAMA's own defaults for what it leaves out. AdaLoRA must
see its ``update_and_allocate(step)`` after every optimizer step (the harness calls
``step_hook``), adds an orthogonality penalty to the loss the model returns, and its rank
allocator's running importance scores go into checkpoints (``extra_state``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from peft import AdaLoraConfig, get_peft_model

from dama.adapt.base import ADAPTER_NAME, Adapted, MethodConfig, freeze_all
from dama.adapt.peft_compat import target_regex
from dama.errors import DamaError


@dataclass
class AdaLoraMethod(MethodConfig):
    name = "adalora"
    budget_params: int | None = None  # final trainable budget; None = DAMA's count (see dama_budget)
    init_ratio: float = 1.5  # init_r = init_ratio x target_r (PEFT's default 12/8)
    total_step: int | None = None  # the run's optimizer steps (for_run sets it)
    tinit_frac: float = 0.1
    tfinal_frac: float = 0.2
    orth_reg_weight: float = 0.5
    # the DAMA whose trainable-parameter count is the default budget (None: DAMA's own default)
    r_high: int | None = None
    r_low: int | None = None
    ranks: tuple[int, ...] | None = None
    l_early: int | None = None
    l_late: int | None = None

    def for_run(self, total_steps: int) -> AdaLoraMethod:
        return replace(self, total_step=total_steps)

    def dama_budget(self, model) -> int:
        """Trainable parameters of DAMA on ``model`` with this run's DAMA settings."""
        from dama.adapt.dama import DamaMethod
        from dama.adapt.ranks import depth_aware_param_count

        given = {k: getattr(self, k) for k in ("r_high", "r_low", "ranks", "l_early", "l_late")}
        dm = DamaMethod(modules=self.modules, **{k: v for k, v in given.items() if v is not None})
        target = target_regex(self.modules)
        shapes = [(m.in_features, m.out_features) for n, m in model.named_modules() if re.fullmatch(target, n)]
        n_layers = model.config.decoder_layers
        return depth_aware_param_count(shapes[:len(shapes) // n_layers], dm.layer_ranks(n_layers),
                                       set(dm.segments(n_layers).middle))

    def apply(self, model) -> Adapted:
        if not self.total_step:
            raise DamaError("adalora: total_step must be known before the adapter is built")
        target = target_regex(self.modules)
        shapes = [(m.in_features, m.out_features) for n, m in model.named_modules() if re.fullmatch(target, n)]
        budget = self.budget_params if self.budget_params is not None else self.dama_budget(model)
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

        def allocator_state() -> dict:  # importance averages per adapter tensor
            alloc = peft_model.base_model.rankallocator
            return {k: getattr(alloc, k) for k in ("ipt", "exp_avg_ipt", "exp_avg_unc")}

        def load_allocator_state(state: dict, device) -> None:
            alloc = peft_model.base_model.rankallocator
            for k, v in state.items():  # loaded on the CPU: back beside the weights
                setattr(alloc, k, {n: t.to(device) for n, t in v.items()})

        return Adapted(peft_model, self.name, step_hook=hook, model_loss=True, extra_state=allocator_state,
                       load_extra_state=load_allocator_state,
                       info={"target_r": target_r, "init_r": init_r, "budget_params": budget})
