"""AdaLoRA's default budget is DAMA's trainable-parameter count with the run's DAMA settings
(issue 25: it used to ignore --r-high/--r-low/--ranks), and the run's length reaches it through
``for_run`` instead of an attribute set from outside."""

from __future__ import annotations

import pytest
import torch

from dama.adapt import METHODS, make_method
from dama.adapt.adalora import AdaLoraMethod
from dama.adapt.dama import DamaMethod
from dama.adapt.peft_compat import count_trainable
from dama.errors import DamaError
from dama.testing import tiny_config


def _tiny():
    from transformers import WhisperForConditionalGeneration

    torch.manual_seed(0)
    return WhisperForConditionalGeneration(tiny_config(6)).eval()


def _dama_count(**dama) -> int:
    a = DamaMethod(**dama).apply(_tiny())
    return count_trainable(a.model, a.frozen)


@pytest.mark.parametrize("dama", [{}, {"r_high": 16}, {"r_high": 16, "r_low": 4}, {"ranks": (4, 2, 2, 2, 2, 4)},
                                  {"l_early": 1, "l_late": 6},
                                  {"ranks": (8, 4, 2, 2, 4, 8), "l_early": 2, "l_late": 5}])
def test_default_budget_is_the_count_of_dama_with_the_runs_settings(dama):
    assert AdaLoraMethod(**dama).dama_budget(_tiny()) == _dama_count(**dama)


def test_budget_follows_the_runs_ranks_into_the_adapter():
    default = make_method("adalora", total_step=10).apply(_tiny())
    small = make_method("adalora", total_step=10, r_high=8, r_low=2).apply(_tiny())
    assert default.info["budget_params"] == _dama_count()
    assert small.info["budget_params"] == _dama_count(r_high=8, r_low=2) < default.info["budget_params"]
    assert small.info["target_r"] < default.info["target_r"]
    # an explicit budget still wins
    fixed = make_method("adalora", total_step=10, r_high=8, budget_params=default.info["budget_params"])
    assert fixed.apply(_tiny()).info["target_r"] == default.info["target_r"]


def test_bad_dama_settings_are_clear_errors():
    with pytest.raises(DamaError, match="5 ranks"):
        AdaLoraMethod(ranks=(8,) * 5).dama_budget(_tiny())
    with pytest.raises(DamaError, match="r_low <= r_high"):
        AdaLoraMethod(r_high=4, r_low=8).dama_budget(_tiny())


def test_for_run_gives_adalora_the_runs_length_without_touching_the_callers_config():
    mine = make_method("adalora")
    with pytest.raises(DamaError, match="total_step"):
        mine.apply(_tiny())
    run = mine.for_run(40)
    assert run.total_step == 40 and mine.total_step is None
    assert run.apply(_tiny()).info["target_r"] >= 1
    for name in set(METHODS) - {"adalora"}:
        m = make_method(name)
        assert m.for_run(40) is m


def test_only_zero_shot_trains_nothing():
    assert [n for n, cls in METHODS.items() if not cls.trains] == ["zero-shot"]
    assert "trains" not in make_method("zero-shot").to_dict()  # a class property, not a setting


def test_dama_train_flags_reach_adalora():
    """`dama train --method adalora --r-high/--r-low/--ranks/--segments` (and bench grids' options)
    build the config through method_config_from_options: the budget follows them."""
    from dama.adapt.options import method_config_from_options

    m = method_config_from_options("adalora", r_high=16, r_low=4, segments="2,5")
    assert (m.r_high, m.r_low, m.l_early, m.l_late) == (16, 4, 2, 5)
    assert m.dama_budget(_tiny()) == _dama_count(r_high=16, r_low=4, l_early=2, l_late=5)
    with pytest.raises(DamaError, match="apply to --method dama only"):  # DAMA's ablations stay DAMA's
        method_config_from_options("adalora", no_bpp=True)
