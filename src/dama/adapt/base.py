"""What every adaptation method shares: a validated dataclass config and an ``apply``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import torch
from peft import get_peft_model

from dama.adapt.options import CommonOptions
from dama.adapt.peft_compat import DECODER_MODULES, FrozenParams, lora_config, target_regex
from dama.errors import DamaError

ADAPTER_NAME = "default"


@dataclass
class Adapted:
    """A model ready to train, plus what the harness must know about it."""

    model: torch.nn.Module
    method: str
    frozen: FrozenParams = field(default_factory=FrozenParams)
    uses_encoder_cache: bool = True  # False when the encoder itself trains
    is_peft: bool = True
    ranks: list[int] | None = None  # per decoder layer, where meaningful
    step_hook: Callable[[int], None] | None = None  # called after each optimizer step (AdaLoRA)
    # training state beyond tensors that a checkpoint must carry (AdaLoRA's rank allocator): saved with
    # extra_state(), restored on resume with load_extra_state(state, device)
    extra_state: Callable[[], dict] | None = None
    load_extra_state: Callable[[dict, torch.device], None] | None = None
    model_loss: bool = False  # the loss must come from the model's forward (AdaLoRA adds a penalty there)
    info: dict = field(default_factory=dict)


@dataclass
class MethodConfig(CommonOptions):
    """Base config. ``alpha_ratio``: lora_alpha = alpha_ratio x rank per layer, so every
    layer and method gets the same LoRA scaling alpha/r (configurable; docs/method-notes.md §4). The settings users
    choose, with their defaults and help, are in :mod:`dama.adapt.options` (``alpha_ratio``: CommonOptions)."""

    name: ClassVar[str] = ""
    default_lr: ClassVar[float] = 1e-3  # what `dama train` uses without --lr (recorded in the run's config.json)
    trains: ClassVar[bool] = True  # False: the model is used as it is (no training, no learning rate)
    dropout: float = 0.0
    modules: tuple[str, ...] = DECODER_MODULES
    train_token_ids: tuple[int, ...] = ()  # embedding rows that train too (new language tokens)

    def __post_init__(self):
        if self.alpha_ratio <= 0:
            raise DamaError(f"{self.name}: alpha_ratio must be positive, got {self.alpha_ratio}")
        if not 0 <= self.dropout < 1:
            raise DamaError(f"{self.name}: dropout must be in [0, 1), got {self.dropout}")
        if not self.modules:
            raise DamaError(f"{self.name}: no target modules")
        self.modules = tuple(self.modules)

    def apply(self, model: torch.nn.Module) -> Adapted:
        raise NotImplementedError

    def for_run(self, total_steps: int) -> MethodConfig:
        """This method set up for a run of ``total_steps`` optimizer steps; the trainer calls it once the
        data is known, before :meth:`apply`. Most methods do not depend on it and return themselves."""
        return self

    def token_kwargs(self) -> dict:
        """PEFT options that train (and save) only the given embedding rows."""
        self.train_token_ids = tuple(int(i) for i in self.train_token_ids)
        return {"trainable_token_indices": {"embed_tokens": list(self.train_token_ids)}} if self.train_token_ids else {}

    def to_dict(self) -> dict:
        return {"method": self.name, **asdict(self)}


def freeze_all(model: torch.nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def uniform_lora(model: torch.nn.Module, cfg: MethodConfig, r: int, **extra) -> torch.nn.Module:
    """Rank-``r`` LoRA on ``cfg.modules`` of every decoder layer (the baselines' shape)."""
    if r < 1:
        raise DamaError(f"{cfg.name}: rank must be >= 1, got {r}")
    freeze_all(model)
    conf = lora_config(r=r, lora_alpha=cfg.alpha_ratio * r, lora_dropout=cfg.dropout,
                       target_modules=target_regex(cfg.modules), **cfg.token_kwargs(), **extra)
    return get_peft_model(model, conf, adapter_name=ADAPTER_NAME)


def lora_a_names(model: torch.nn.Module, layer_ids: set[int] | None = None) -> list[str]:
    """Names of ``lora_A`` weights, optionally only those of the given 0-based decoder layers."""
    import re

    out = []
    for n, _ in model.named_parameters():
        if ".lora_A." not in n:
            continue
        m = re.search(r"decoder\.layers\.(\d+)\.", n)
        if layer_ids is None or (m and int(m.group(1)) in layer_ids):
            out.append(n)
    return out
