"""DAMA: depth-aware ranks, SVD-tail init and a frozen basis in the middle layers.

- r(l) over decoder layers from :mod:`dama.adapt.ranks` (high at both ends, low in the
  middle), or explicit per-layer ranks.
- Middle layers: A = right singular vectors of the *smallest* singular values of the
  pretrained weight (B = 0, so the model is unchanged at step 0 and the base weight is
  never rewritten, unlike PiSSA); with Basis-Protected Projection (BPP) that A stays
  frozen for the whole run and only B trains.
- Early/late layers: ordinary LoRA init (random A, zero B).
Ablations: ``uniform`` (same budget, one rank), ``svd_init=False`` (random middle A),
``bpp=False`` (middle A trains).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft import get_peft_model

from dama.adapt.base import ADAPTER_NAME, Adapted, MethodConfig, freeze_all, lora_a_names
from dama.adapt.options import DamaOptions
from dama.adapt.peft_compat import FrozenParams, check_patterns, layer_pattern, lora_config, target_regex
from dama.adapt.ranks import Segments, default_segments, depth_aware_ranks
from dama.errors import DamaError


@dataclass
class DamaMethod(DamaOptions, MethodConfig):
    """Its settings (r_high, r_low, early_frac, late_frac, l_early, l_late, ranks, and the ablations
    uniform, svd_init, bpp), their defaults and help are :class:`dama.adapt.options.DamaOptions`."""

    name = "dama"

    def __post_init__(self):
        super().__post_init__()
        if not (1 <= self.r_low <= self.r_high):
            raise DamaError(f"dama: need 1 <= r_low <= r_high, got r_low={self.r_low}, r_high={self.r_high}")
        if (self.l_early is None) != (self.l_late is None):
            raise DamaError("dama: give both l_early and l_late, or neither")
        if self.ranks is not None:
            self.ranks = tuple(int(r) for r in self.ranks)
            if any(r < 1 for r in self.ranks):
                raise DamaError(f"dama: ranks must be >= 1, got {self.ranks}")

    def segments(self, n_layers: int) -> Segments:
        if self.l_early is not None:
            return Segments(n_layers, self.l_early, self.l_late)
        return default_segments(n_layers, self.early_frac, self.late_frac)

    def layer_ranks(self, n_layers: int) -> list[int]:
        if self.ranks is not None:
            if len(self.ranks) != n_layers:
                raise DamaError(f"dama: {len(self.ranks)} ranks given for a decoder with {n_layers} layers")
            ranks = list(self.ranks)
        else:
            ranks = depth_aware_ranks(self.segments(n_layers), self.r_high, self.r_low)
        if self.uniform:
            ranks = [max(1, round(sum(ranks) / len(ranks)))] * n_layers
        return ranks

    def apply(self, model) -> Adapted:
        n_layers = model.config.decoder_layers
        seg = self.segments(n_layers)
        ranks = self.layer_ranks(n_layers)
        middle0 = {layer - 1 for layer in seg.middle}  # 0-based
        target = target_regex(self.modules)
        rank_pattern = {layer_pattern(i, self.modules): r for i, r in enumerate(ranks)}
        alpha_pattern = {k: self.alpha_ratio * r for k, r in rank_pattern.items()}
        check_patterns(model, rank_pattern, target)
        freeze_all(model)
        conf = lora_config(r=ranks[0], lora_alpha=self.alpha_ratio * ranks[0], lora_dropout=self.dropout,
                           target_modules=target, rank_pattern=rank_pattern, alpha_pattern=alpha_pattern,
                           **self.token_kwargs())
        peft_model = get_peft_model(model, conf, adapter_name=ADAPTER_NAME)
        if self.svd_init:
            init_svd_tail(peft_model, middle0)
        frozen = FrozenParams(lora_a_names(peft_model, middle0) if self.bpp else [])
        frozen.enforce(peft_model)
        return Adapted(peft_model, self.name, frozen=frozen, ranks=ranks,
                       info={"l_early": seg.l_early, "l_late": seg.l_late, "middle_layers": sorted(seg.middle)})


@torch.no_grad()
def init_svd_tail(peft_model, layer_ids: set[int]) -> int:
    """Set lora_A of the given (0-based) decoder layers to the right singular vectors of the
    smallest singular values of each base weight; B = 0. Returns the number of modules set."""
    import re

    done = 0
    for name, module in peft_model.named_modules():
        m = re.search(r"decoder\.layers\.(\d+)\.", name)
        if not m or int(m.group(1)) not in layer_ids or not hasattr(module, "lora_A"):
            continue
        if ADAPTER_NAME not in module.lora_A:
            continue
        a = module.lora_A[ADAPTER_NAME].weight  # (r, in)
        w = module.get_base_layer().weight.float()  # (out, in)
        r = a.shape[0]
        if r > min(w.shape):
            raise DamaError(f"{name}: rank {r} exceeds the weight's rank {min(w.shape)}")
        _, _, vh = torch.linalg.svd(w, full_matrices=False)  # singular values descending
        a.copy_(vh[-r:].to(a.dtype))
        module.lora_B[ADAPTER_NAME].weight.zero_()
        done += 1
    return done
