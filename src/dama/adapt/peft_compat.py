"""PEFT's known traps for Whisper, wrapped once (docs/method-notes.md §7), each covered by a test.

1. ``rank_pattern`` keys are regexes matched as ``(.*\\.)?KEY$`` and the first match
   wins: ``layers.1.`` also matches ``layers.10`` and ``layers\\.0\\.`` matches the
   encoder, the decoder and the decoder's ``encoder_attn``. :func:`layer_pattern`
   escapes and anchors keys; :func:`check_patterns` proves each key hits only the
   modules meant and at least one.
2. Freezing ``lora_A`` by hand is undone by ``set_adapter``. :class:`FrozenParams`
   remembers what must stay frozen and re-asserts it after every adapter call; the
   optimizer never sees those tensors.
3. ``task_type="SEQ_2_SEQ_LM"`` makes PEFT pass ``input_ids`` to Whisper, whose forward
   has none: :func:`lora_config` never sets a task type.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from peft import LoraConfig

from dama.errors import DamaError

DECODER_PREFIX = "model.decoder.layers"
# Adapter targets of docs/method-notes.md §3: decoder self- and cross-attention q,k,v,out; fc1; fc2.
DECODER_MODULES = (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
    "encoder_attn.q_proj", "encoder_attn.k_proj", "encoder_attn.v_proj", "encoder_attn.out_proj",
    "fc1", "fc2",
)


def _alternatives(modules: Iterable[str]) -> str:
    return "(?:" + "|".join(re.escape(m) for m in modules) + ")"


def target_regex(modules: Iterable[str] = DECODER_MODULES, prefix: str = DECODER_PREFIX) -> str:
    """Full-match regex for PEFT's ``target_modules`` (a str is ``re.fullmatch``-ed)."""
    return rf"{re.escape(prefix)}\.\d+\.{_alternatives(modules)}"


def layer_pattern(layer: int, modules: Iterable[str] = DECODER_MODULES, prefix: str = DECODER_PREFIX) -> str:
    """A ``rank_pattern`` key that matches exactly the given modules of one (0-based) layer."""
    return rf"{re.escape(prefix)}\.{int(layer)}\.{_alternatives(modules)}"


def pattern_matches(key: str, module_name: str) -> bool:
    """How PEFT matches a ``rank_pattern`` / ``alpha_pattern`` key (peft.utils.other.get_pattern_key)."""
    return re.match(rf"(.*\.)?({key})$", module_name) is not None


def check_patterns(model: torch.nn.Module, patterns: dict[str, int], target: str) -> None:
    """Every key must match at least one targeted module, and no module may match two keys."""
    names = [n for n, _ in model.named_modules() if re.fullmatch(target, n)]
    if not names:
        raise DamaError(f"target modules {target!r} match nothing in {type(model).__name__}")
    for key in patterns:
        hits = [n for n in names if pattern_matches(key, n)]
        if not hits:
            raise DamaError(f"rank pattern {key!r} matches no adapted layer; check the layer indices")
    for n in names:
        keys = [k for k in patterns if pattern_matches(k, n)]
        if len(keys) > 1:
            raise DamaError(f"module {n} matches several rank patterns {keys}; patterns must not overlap")


def lora_config(**kwargs) -> LoraConfig:
    """A LoraConfig for Whisper: never with a ``task_type`` (trap 3)."""
    if kwargs.get("task_type"):
        raise DamaError("do not set task_type for Whisper adapters: PEFT would pass input_ids to Whisper")
    return LoraConfig(**kwargs)


class FrozenParams:
    """Parameter names that must stay frozen (e.g. DAMA's middle-layer lora_A).

    PEFT's ``set_adapter`` (also called by ``load_adapter`` and friends) sets
    ``requires_grad=True`` on all of an adapter's tensors; call :meth:`enforce` after any
    such call. The training loop builds its optimizer from :func:`trainable_parameters`,
    which excludes these names whatever their ``requires_grad`` says.
    """

    def __init__(self, names: Iterable[str] = ()):
        self.names = sorted(set(names))

    def enforce(self, model: torch.nn.Module) -> None:
        params = dict(model.named_parameters())
        missing = [n for n in self.names if n not in params]
        if missing:
            raise DamaError(f"frozen parameters not found in the model: {missing[:3]}")
        for n in self.names:
            params[n].requires_grad_(False)

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def __len__(self) -> int:
        return len(self.names)


def set_adapter(model, adapter_name: str, frozen: FrozenParams) -> None:
    """``model.set_adapter`` that keeps frozen tensors frozen (trap 2)."""
    model.set_adapter(adapter_name)
    frozen.enforce(model)


def trainable_parameters(
    model: torch.nn.Module, frozen: FrozenParams | None = None
) -> list[tuple[str, torch.nn.Parameter]]:
    frozen = frozen or FrozenParams()
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad and n not in frozen]


def count_trainable(model: torch.nn.Module, frozen: FrozenParams | None = None) -> int:
    return sum(p.numel() for _, p in trainable_parameters(model, frozen))


def _fused_lora_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """PEFT's vanilla LoRA forward for one active adapter without dropout, as
    ``base(x).addmm_(A x, Bᵀ, alpha=scaling)``: the same sum, but without the separate
    scaled and summed copies PEFT makes — for cross-attention k/v those are batch x 1500
    frames x d_model each. Anything else (also under autocast) falls back to PEFT's own forward."""
    names = self.active_adapters
    base = self.base_layer
    if (args or kwargs or self.disable_adapters or self.merged or len(names) != 1 or names[0] not in self.lora_A
            or names[0] in self.lora_variant or type(base) is not torch.nn.Linear
            or not isinstance(self.lora_dropout[names[0]], torch.nn.Identity)
            or x.dtype != self.lora_A[names[0]].weight.dtype
            or torch.is_autocast_enabled(x.device.type)):  # mixed precision: addmm_ would mix dtypes
        return type(self).forward(self, x, *args, **kwargs)
    name = names[0]
    flat = x.reshape(-1, x.shape[-1])
    out = torch.nn.functional.linear(flat, base.weight, base.bias)
    ax = torch.nn.functional.linear(flat, self.lora_A[name].weight)
    out = out.addmm_(ax, self.lora_B[name].weight.t(), alpha=self.scaling[name])
    return out.view(*x.shape[:-1], out.shape[-1])


def fuse_lora_forward(model: torch.nn.Module) -> int:
    """Route every plain PEFT LoRA Linear through :func:`_fused_lora_forward` (training speed
    and memory; saving, merging and loading are untouched). Returns how many modules."""
    from types import MethodType

    from peft.tuners.lora.layer import Linear as LoraLinear

    n = 0
    for module in model.modules():
        if type(module) is LoraLinear and not module.lora_variant:  # DoRA etc. keep PEFT's forward
            module.forward = MethodType(_fused_lora_forward, module)
            n += 1
    return n
