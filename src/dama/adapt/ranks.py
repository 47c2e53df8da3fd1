"""Depth-aware rank allocation r(l) over decoder layers (docs/method-notes.md §2).

Layers are numbered 1..L as in the paper. Segments: early = 1..l_early, middle =
l_early+1..l_late-1, late = l_late..L.

  early:  r(l) = r_high - (l-1)/(l_early-1) * (r_high - r_low)   (r_high at l=1, r_low at l_early)
  middle: r(l) = r_low
  late:   r(l) = r_low + (l-l_late)/(L-l_late) * (r_high - r_low) (r_low at l_late, r_high at L)

Degenerate cases: a one-layer early (or late) segment gets r_high; ranks are rounded to
the nearest integer. Default boundaries (the paper gives "0.3·L and 0.7·L" without a
rounding rule): l_early = max(1, round(0.3·L)) and, symmetrically, l_late = L + 1 -
l_early, so whisper-base (L = 6) gets early 1-2, middle 3-4, late 5-6 and Whisper
large (L = 32) early 1-10, middle 11-22, late 23-32.
"""

from __future__ import annotations

from dataclasses import dataclass

from dama.errors import DamaError


@dataclass(frozen=True)
class Segments:
    n_layers: int
    l_early: int
    l_late: int

    def __post_init__(self):
        L = self.n_layers
        if L < 1:
            raise DamaError(f"need at least one layer, got {L}")
        if not (1 <= self.l_early < self.l_late <= L + 1):
            raise DamaError(
                f"segment boundaries must satisfy 1 <= l_early < l_late <= L+1 (L={L}); "
                f"got l_early={self.l_early}, l_late={self.l_late}"
            )

    def role(self, layer: int) -> str:
        """'early', 'middle' or 'late' for a 1-based layer index."""
        if layer <= self.l_early:
            return "early"
        if layer >= self.l_late:
            return "late"
        return "middle"

    @property
    def middle(self) -> list[int]:
        return [layer for layer in range(1, self.n_layers + 1) if self.role(layer) == "middle"]


def default_segments(n_layers: int, early_frac: float = 0.3, late_frac: float = 0.7) -> Segments:
    """Boundaries at ``early_frac``·L and ``late_frac``·L, rounded as in the module doc."""
    if not (0 < early_frac < late_frac < 1):
        raise DamaError(f"need 0 < early_frac < late_frac < 1, got {early_frac}, {late_frac}")
    if n_layers < 3:
        # too shallow for three segments: everything is "early"/"late", nothing protected
        l_early = max(1, n_layers // 2) if n_layers > 1 else 1
        return Segments(n_layers, l_early, l_early + 1)
    l_early = max(1, round(early_frac * n_layers))
    l_late = n_layers + 1 - max(1, round((1 - late_frac) * n_layers))
    l_late = max(l_late, l_early + 1)
    return Segments(n_layers, l_early, l_late)


def depth_aware_ranks(seg: Segments, r_high: int = 32, r_low: int = 8) -> list[int]:
    """r(l) for l = 1..L (returned as a 0-based list)."""
    if r_low < 1 or r_high < r_low:
        raise DamaError(f"need 1 <= r_low <= r_high, got r_low={r_low}, r_high={r_high}")
    L, e, t = seg.n_layers, seg.l_early, seg.l_late
    ranks = []
    for layer in range(1, L + 1):
        role = seg.role(layer)
        if role == "early":
            r = r_high if e == 1 else r_high - (layer - 1) / (e - 1) * (r_high - r_low)
        elif role == "late":
            r = r_high if t == L else r_low + (layer - t) / (L - t) * (r_high - r_low)
        else:
            r = r_low
        ranks.append(int(round(r)))
    return ranks


def lora_param_count(shapes: list[tuple[int, int]], rank: int, train_a: bool = True) -> int:
    """Trainable parameters of rank-``rank`` LoRA on Linear layers of (in, out) ``shapes``:
    r·(in+out), or r·out when A is frozen."""
    return sum(rank * ((i if train_a else 0) + o) for i, o in shapes)


def depth_aware_param_count(layer_shapes: list[tuple[int, int]], ranks: list[int], middle: set[int]) -> int:
    """Trainable parameters of DAMA: layer ``l`` (1-based) gets rank ``ranks[l-1]`` on Linear
    layers of (in, out) ``layer_shapes``; in ``middle`` layers A is frozen (only B trains)."""
    return sum(lora_param_count(layer_shapes, r, train_a=layer not in middle) for layer, r in enumerate(ranks, 1))
