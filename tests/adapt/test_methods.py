"""Every method on a tiny random 6-layer Whisper: one shared table, PEFT traps each tested."""

from __future__ import annotations

import re

import pytest
import torch

from dama.adapt import METHODS, make_method
from dama.adapt.peft_compat import (
    DECODER_MODULES,
    FrozenParams,
    check_patterns,
    count_trainable,
    layer_pattern,
    lora_config,
    pattern_matches,
    set_adapter,
    target_regex,
)
from dama.adapt.ranks import lora_param_count
from dama.errors import DamaError
from dama.testing import tiny_config

# (in, out) of the ten targets of one tiny decoder layer: d_model 64, ffn 128
LAYER_SHAPES = [(64, 64)] * 8 + [(64, 128), (128, 64)]


def _tiny(decoder_layers=6):
    from transformers import WhisperForConditionalGeneration

    torch.manual_seed(0)
    return WhisperForConditionalGeneration(tiny_config(decoder_layers)).eval()


def _apply(name, **kw):
    if name == "adalora":
        kw.setdefault("total_step", 10)
    return make_method(name, **kw).apply(_tiny())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_trains_only_what_it_should(name):
    a = _apply(name, **({"r": 4} if name in ("lora", "dora", "lora-fa", "pissa") else {}))
    trainable = {n for n, p in a.model.named_parameters() if p.requires_grad and n not in a.frozen}
    if name == "zero-shot":
        assert not trainable
        return
    if name == "full":
        assert any("encoder" in n for n in trainable)
        return
    assert trainable and all("decoder.layers" in n for n in trainable)
    assert not any(".encoder." in n for n in trainable)
    assert not any(n.endswith("base_layer.weight") for n in trainable)
    # the model's output is unchanged at step 0 (B = 0), except PiSSA which rewrites W
    if name in ("lora", "dora", "lora-fa", "dama", "adalora"):
        ref = _tiny()
        x = torch.randn(1, 80, 3000)
        ids = torch.tensor([[257, 259, 262, 266]])
        with torch.no_grad():
            base_logits = ref(input_features=x, decoder_input_ids=ids).logits
            ada_logits = a.model(input_features=x, decoder_input_ids=ids).logits
        assert torch.allclose(base_logits, ada_logits, atol=1e-5)


def test_dama_counts_match_formula_and_beat_lora_budget():
    a = _apply("dama")
    assert a.ranks == [32, 8, 8, 8, 8, 32] and a.info["middle_layers"] == [3, 4]
    expected = sum(lora_param_count(LAYER_SHAPES, r, train_a=(i + 1) not in (3, 4)) for i, r in enumerate(a.ranks))
    assert count_trainable(a.model, a.frozen) == expected
    lora = _apply("lora")
    assert count_trainable(lora.model) == 6 * lora_param_count(LAYER_SHAPES, 64)
    assert count_trainable(a.model, a.frozen) <= 0.30 * count_trainable(lora.model)


def test_dama_middle_A_is_the_svd_tail_and_frozen():
    a = _apply("dama")
    m = a.model
    mod = m.base_model.model.model.decoder.layers[2].fc1  # layer 3 (middle)
    w = mod.get_base_layer().weight
    _, _, vh = torch.linalg.svd(w, full_matrices=False)
    assert torch.allclose(mod.lora_A["default"].weight, vh[-8:], atol=1e-5)
    assert not mod.lora_A["default"].weight.requires_grad and mod.lora_B["default"].weight.requires_grad
    early = m.base_model.model.model.decoder.layers[0].fc1
    assert early.lora_A["default"].weight.requires_grad
    assert not torch.allclose(early.lora_A["default"].weight[:8].abs().sum(), vh[-8:].abs().sum())
    assert len(a.frozen) == 2 * len(DECODER_MODULES)


def test_dama_ablations():
    assert _apply("dama", uniform=True).ranks == [16] * 6  # mean of [32, 8, 8, 8, 8, 32]
    assert len(_apply("dama", bpp=False).frozen) == 0
    a = _apply("dama", svd_init=False)
    mod = a.model.base_model.model.model.decoder.layers[2].fc1
    _, _, vh = torch.linalg.svd(mod.get_base_layer().weight, full_matrices=False)
    assert not torch.allclose(mod.lora_A["default"].weight, vh[-8:], atol=1e-3)
    assert _apply("dama", ranks=(4, 4, 2, 2, 4, 4)).ranks == [4, 4, 2, 2, 4, 4]
    assert _apply("dama", l_early=1, l_late=6).info["middle_layers"] == [2, 3, 4, 5]


def test_bad_method_options():
    with pytest.raises(DamaError, match="unknown method"):
        make_method("qlora")
    with pytest.raises(DamaError, match="no option"):
        make_method("lora", r_high=3)
    with pytest.raises(DamaError, match="5 ranks"):
        _apply("dama", ranks=(8, 8, 8, 8, 8))
    with pytest.raises(DamaError):
        make_method("dama", r_low=0)


# --- PEFT traps (docs/method-notes.md §7) -------------------------------------------------------

def test_trap1_rank_pattern_keys_are_anchored():
    key = layer_pattern(1)
    assert pattern_matches(key, "model.decoder.layers.1.fc1")
    assert not pattern_matches(key, "model.decoder.layers.10.fc1")
    assert not pattern_matches(key, "model.encoder.layers.1.fc1")
    assert pattern_matches(layer_pattern(0), "base_model.model.model.decoder.layers.0.encoder_attn.k_proj")
    # the naive key PEFT users write matches both stacks: exactly the trap
    assert pattern_matches(r"layers\.1\.fc1", "model.encoder.layers.1.fc1")


def test_trap1_patterns_that_match_nothing_or_overlap_are_errors():
    model = _tiny()
    target = target_regex()
    with pytest.raises(DamaError, match="matches no adapted layer"):
        check_patterns(model, {layer_pattern(17): 8}, target)
    with pytest.raises(DamaError, match="several rank patterns"):
        check_patterns(model, {layer_pattern(1): 8, r"fc1": 4}, target)
    names = [n for n, _ in model.named_modules() if re.fullmatch(target, n)]
    assert len(names) == 60 and not any("encoder." in n and "encoder_attn" not in n for n in names)


def test_trap2_frozen_A_survives_set_adapter_and_save_load(tmp_path):
    from peft import PeftModel

    a = _apply("dama")
    frozen_names = list(a.frozen.names)
    a.model.set_adapter("default")  # PEFT re-enables requires_grad here ...
    assert any(dict(a.model.named_parameters())[n].requires_grad for n in frozen_names)
    set_adapter(a.model, "default", a.frozen)  # ... our wrapper does not
    assert not any(dict(a.model.named_parameters())[n].requires_grad for n in frozen_names)
    a.model.save_pretrained(tmp_path / "ad")
    loaded = PeftModel.from_pretrained(_tiny(), tmp_path / "ad", is_trainable=True)
    fz = FrozenParams(frozen_names)
    fz.enforce(loaded)
    assert not any(dict(loaded.named_parameters())[n].requires_grad for n in frozen_names)
    assert count_trainable(loaded, fz) == count_trainable(a.model, a.frozen)


def test_trap3_no_task_type():
    with pytest.raises(DamaError, match="task_type"):
        lora_config(r=4, target_modules=target_regex(), task_type="SEQ_2_SEQ_LM")
    a = _apply("dama")
    assert a.model.peft_config["default"].task_type is None


def test_saved_dama_adapter_loads_in_plain_peft(tmp_path):
    """A DAMA adapter is a standard PEFT directory: per-layer ranks come back from rank_pattern."""
    from peft import PeftModel

    a = _apply("dama")
    with torch.no_grad():
        for n, p in a.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    a.model.save_pretrained(tmp_path / "ad")
    plain = PeftModel.from_pretrained(_tiny(), tmp_path / "ad")
    for i, r in enumerate([32, 8, 8, 8, 8, 32]):
        assert plain.base_model.model.model.decoder.layers[i].fc2.lora_A["default"].weight.shape[0] == r
    x = torch.randn(1, 80, 3000)
    ids = torch.tensor([[257, 259, 262, 266]])
    with torch.no_grad():
        assert torch.allclose(a.model(input_features=x, decoder_input_ids=ids).logits,
                              plain(input_features=x, decoder_input_ids=ids).logits, atol=1e-5)


@pytest.mark.parametrize("name", ["lora", "dama", "lora-fa", "pissa", "dora"])
def test_fused_lora_forward_equals_peft(name):
    """The fused forward is an implementation detail: same outputs and gradients as PEFT's."""
    from dama.adapt.peft_compat import fuse_lora_forward

    def run(fused: bool):
        a = _apply(name, **({"r": 4} if name != "dama" else {}))
        torch.manual_seed(1)
        for n, p in a.model.named_parameters():  # non-zero B so the adapters matter
            if "lora_B" in n:
                p.data.normal_(0, 0.5)
        n_fused = fuse_lora_forward(a.model) if fused else 0
        torch.manual_seed(2)
        x, ids = torch.randn(2, 80, 3000), torch.randint(0, 200, (2, 5))
        loss = a.model(input_features=x, decoder_input_ids=ids, labels=ids).loss
        params = [p for n, p in a.model.named_parameters() if p.requires_grad]
        return loss, torch.autograd.grad(loss, params, allow_unused=True), n_fused

    ref, ref_g, _ = run(False)
    got, got_g, n = run(True)
    assert n == (0 if name == "dora" else 6 * 10)  # DoRA keeps PEFT's forward (a variant)
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    assert all((a is None and b is None) or torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(got_g, ref_g))
