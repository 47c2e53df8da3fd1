"""Depth-aware rank allocation and the trainable-parameter formula."""

from __future__ import annotations

import pytest

from dama.adapt.ranks import Segments, default_segments, depth_aware_ranks, lora_param_count
from dama.errors import DamaError


def test_paper_formula_on_32_layers():
    seg = default_segments(32)
    assert (seg.l_early, seg.l_late) == (10, 23)
    r = depth_aware_ranks(seg, 32, 8)
    assert r[0] == 32 and r[9] == 8 and r[22] == 8 and r[31] == 32
    assert set(r[10:22]) == {8}
    assert r[:10] == sorted(r[:10], reverse=True) and r[22:] == sorted(r[22:])
    # early: r(l) = 32 - (l-1)/9 * 24, e.g. l = 4 -> 24
    assert r[3] == 24


def test_whisper_base_six_layers():
    seg = default_segments(6)
    assert (seg.l_early, seg.l_late, seg.middle) == (2, 5, [3, 4])
    assert depth_aware_ranks(seg, 32, 8) == [32, 8, 8, 8, 8, 32]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 12, 24])
def test_shallow_and_odd_depths_are_valid(n):
    seg = default_segments(n)
    r = depth_aware_ranks(seg)
    assert len(r) == n and all(8 <= x <= 32 for x in r)
    assert r[0] == 32 and r[-1] == 32


def test_single_layer_segments_get_r_high():
    assert depth_aware_ranks(Segments(5, 1, 5), 16, 4) == [16, 4, 4, 4, 16]


def test_bad_segments_and_ranks_raise():
    with pytest.raises(DamaError):
        Segments(6, 4, 3)
    with pytest.raises(DamaError):
        depth_aware_ranks(Segments(6, 2, 5), r_high=4, r_low=8)


def test_param_count():
    assert lora_param_count([(512, 512), (512, 2048)], 8) == 8 * (1024 + 2560)
    assert lora_param_count([(512, 512), (512, 2048)], 8, train_a=False) == 8 * (512 + 2048)
