"""From a measured per-layer profile to DAMA's allocation (`dama plan`, `dama train --allocation`).

Beside the ranks it sets (:mod:`dama.adapt.ranks`); :mod:`dama.probe` measures the profiles.

The rule, for a decoder of L layers and a profile p(l) (higher = more language-specific or
more in need of adapting):

1. normalise: s(l) = (p(l) - min p) / (max p - min p)   (a flat profile gives s = 1 everywhere);
2. segments: early = the leading run of layers with s >= 0.5, late = the trailing run with
   s >= 0.5, middle = the rest (SVD-tail init and the frozen basis apply there); when every
   layer is high there is no middle, and at least one layer is early;
3. ranks: r(l) ∝ r_low + s(l)·(r_high - r_low), scaled so that Σ r(l) equals the rank sum of
   the paper's fixed 0.3/0.7 allocation with the same r_high / r_low (every decoder layer has
   the same module shapes, so the parameter budget matches up to the frozen middle A's),
   rounded by largest remainder, at least 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dama.adapt.options import ALLOCATION_MEASURES
from dama.adapt.ranks import Segments, default_segments, depth_aware_param_count, depth_aware_ranks
from dama.errors import DamaError

MEASURES = ALLOCATION_MEASURES


@dataclass
class Allocation:
    profile: list[float]
    scores: list[float]
    ranks: list[int]
    l_early: int
    l_late: int
    measure: str
    budget: int

    def trainable_params(self, d_model: int, ffn_dim: int) -> int:
        """DAMA's trainable adapter parameters under this allocation, on the default targets
        (self- and cross-attention q/k/v/out, fc1, fc2); middle layers train B only."""
        shapes = [(d_model, d_model)] * 8 + [(d_model, ffn_dim), (ffn_dim, d_model)]
        return depth_aware_param_count(shapes, self.ranks, set(self.segments().middle))

    def segments(self) -> Segments:
        return Segments(len(self.ranks), self.l_early, self.l_late)

    def train_flags(self) -> str:
        return f"--ranks {','.join(map(str, self.ranks))} --segments {self.l_early},{self.l_late}"

    def to_dict(self) -> dict:
        return {**self.__dict__, "train_flags": self.train_flags()}


def _round_to_sum(x: np.ndarray, total: int) -> list[int]:
    base = np.maximum(np.floor(x).astype(int), 1)
    rest = total - int(base.sum())
    order = np.argsort(-(x - np.floor(x)))
    i = 0
    while rest > 0:
        base[order[i % len(x)]] += 1
        rest -= 1
        i += 1
    while rest < 0:  # only when the floor of 1 pushed the sum over: take from the largest
        j = int(np.argmax(base))
        base[j] -= 1
        rest += 1
    return base.tolist()


def allocate(profile: list[float], r_high: int = 32, r_low: int = 8, measure: str = "lid") -> Allocation:
    p = np.asarray(profile, dtype=float)
    n = len(p)
    if n < 1 or not np.all(np.isfinite(p)):
        raise DamaError(f"a profile needs one finite value per decoder layer, got {profile}")
    if not 1 <= r_low <= r_high:
        raise DamaError(f"need 1 <= r_low <= r_high, got {r_low}, {r_high}")
    span = p.max() - p.min()
    s = (p - p.min()) / span if span > 1e-12 else np.ones(n)
    high = s >= 0.5 - 1e-9  # (float rounding at exactly half)
    l_early = 1
    while l_early < n and high[l_early]:  # leading run of high layers (layer 1 always early)
        l_early += 1
    l_late = n + 1
    while l_late - 1 > l_early and high[l_late - 2]:
        l_late -= 1
    budget = sum(depth_aware_ranks(default_segments(n), r_high, r_low))
    raw = r_low + s * (r_high - r_low)
    ranks = _round_to_sum(raw * budget / raw.sum(), budget)
    return Allocation(p.tolist(), s.tolist(), ranks, l_early, max(l_late, l_early + 1), measure, budget)


def allocation_fixed(n_layers: int, r_high: int = 32, r_low: int = 8) -> Allocation:
    """The paper's fixed 0.3/0.7 allocation, as an :class:`Allocation` (for comparison)."""
    seg = default_segments(n_layers)
    ranks = depth_aware_ranks(seg, r_high, r_low)
    return Allocation([], [], ranks, seg.l_early, seg.l_late, "fixed", sum(ranks))


def profile_from_probe(probe: dict, measure: str = "lid") -> list[float]:
    """The decoder profile of a `dama probe` JSON (its ``decoder`` stack, layers 1..L)."""
    if measure not in MEASURES:
        raise DamaError(f"unknown measure {measure!r}; use one of {', '.join(MEASURES)}")
    try:
        layers = probe["stacks"]["decoder"]["layers"][1:]  # entry 0 is the embeddings
        if measure == "lid":
            return [x["lid"]["mean"] for x in layers]
        if measure == "variance":
            return [x["language_variance"] for x in layers]
        if "fisher" not in layers[0]:
            raise DamaError("this probe has no gradient importance (run dama probe with --target)")
        return [x["fisher"] for x in layers]
    except (KeyError, TypeError, IndexError) as e:
        raise DamaError(f"not a dama probe result (missing {e})") from None


def read_probe(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DamaError(f"{path}: probe result not found (write one with dama probe --out)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DamaError(f"{path}: not JSON ({e.msg})") from None


def allocation_from_file(path: str | Path, measure: str = "lid", r_high: int = 32, r_low: int = 8) -> Allocation:
    return allocate(profile_from_probe(read_probe(path), measure), r_high, r_low, measure)


__all__ = ["Allocation", "MEASURES", "allocate", "allocation_fixed", "allocation_from_file", "profile_from_probe",
           "read_probe"]
