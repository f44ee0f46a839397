"""What a checkpoint folder serves (`gr00t.model.weights` through `Gr00tN16Model.from_pretrained`):
raw or EMA weights, LoRA adapters merged into plain weights, and a loud error for missing weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gr00t.model.gr00t_n16 import Gr00tN16Model
from gr00t.model.presets import load_preset
from gr00t.model.weights import EMA_WEIGHTS_NAME, LORA_CONFIG_NAME, MissingWeightsError, merge_lora
from tests.model.test_gr00t_n16 import make_batch


def _tiny(seed: int = 0, **overrides) -> Gr00tN16Model:
    torch.manual_seed(seed)
    return Gr00tN16Model(load_preset("n16_tiny", **overrides))


def _lora(model: Gr00tN16Model, rank: int = 4, alpha: int = 16, dit: bool = True) -> Gr00tN16Model:
    """peft adapters as training injects them, lora_B made non-zero (as after some steps)."""
    from gr00t.train.lora import apply_lora
    from gr00t.train.settings import TrainingSettings

    apply_lora(
        model, TrainingSettings(lora_rank=rank, lora_alpha=alpha, lora_dit=dit, per_device_batch_size=1)
    )
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.copy_(0.05 * torch.randn(param.shape, generator=g))
    return model


def test_lora_checkpoint_loads_merged_and_acts_like_the_adapted_model(tmp_path: Path) -> None:
    model = _lora(_tiny())
    keys = set(model.state_dict())
    assert any(
        ".action_head.model." in k or k.startswith("action_head.model.") for k in keys if ".lora_A." in k
    )
    assert any(k.startswith("backbone.") for k in keys if ".lora_A." in k)
    model.save_pretrained(tmp_path)
    (tmp_path / LORA_CONFIG_NAME).write_text(json.dumps({"r": 4, "lora_alpha": 16}))
    loaded, info = Gr00tN16Model.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not any("lora_" in k or "base_layer" in k for k in loaded.state_dict())
    assert set(loaded.state_dict()) == set(_tiny().state_dict())  # a plain model, nothing re-initialised
    batch = make_batch(with_action=False)
    noise = torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(1))
    adapted = model.eval().get_action(batch, noise=noise)
    merged = loaded.eval().get_action(batch, noise=noise)
    assert (adapted - merged).abs().max() <= 1e-5
    # the merge is W + (alpha / r) B A, checked on one layer
    raw = load_file(str(tmp_path / "model.safetensors"))
    name = "backbone.model.language_model.model.layers.1.self_attn.q_proj"
    expected = raw[f"{name}.base_layer.weight"] + 4.0 * (
        raw[f"{name}.lora_B.default.weight"] @ raw[f"{name}.lora_A.default.weight"]
    )
    torch.testing.assert_close(loaded.state_dict()[f"{name}.weight"], expected, rtol=0, atol=1e-6)


def test_lora_layout_without_config_or_with_a_broken_pair_is_refused(tmp_path: Path) -> None:
    _lora(_tiny(), dit=False).save_pretrained(tmp_path)
    with pytest.raises(MissingWeightsError, match=r"LoRA adapters but there is no lora_config\.json"):
        Gr00tN16Model.from_pretrained(tmp_path)
    state = {"a.base_layer.weight": torch.zeros(2, 2), "a.lora_A.default.weight": torch.zeros(1, 2)}
    with pytest.raises(MissingWeightsError, match="LoRA layer a: expected one lora_A/lora_B"):
        merge_lora(state, {"r": 1, "lora_alpha": 1})


def test_ema_weights_are_served_by_default_and_raw_on_request(tmp_path: Path) -> None:
    model = _tiny(state_dropout_prob=0.2, model_dtype="bfloat16").apply_precision()
    model.save_pretrained(tmp_path)
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    ema = {n: (p.detach().float() + 0.25) for n, p in trained.items()}  # float32, as training writes it
    save_file(ema, str(tmp_path / EMA_WEIGHTS_NAME))
    raw_state = model.state_dict()
    auto = Gr00tN16Model.from_pretrained(tmp_path).state_dict()
    raw = Gr00tN16Model.from_pretrained(tmp_path, weights="raw").state_dict()
    explicit = Gr00tN16Model.from_pretrained(tmp_path, weights="ema").state_dict()
    for name, value in raw_state.items():
        assert torch.equal(raw[name], value), name
        want = ema[name].to(value.dtype) if name in ema else value
        assert auto[name].dtype == value.dtype and torch.equal(auto[name], want), name
        assert torch.equal(explicit[name], want), name
    assert len(ema) < len(raw_state)  # frozen weights come from model.safetensors
    (tmp_path / EMA_WEIGHTS_NAME).unlink()
    with pytest.raises(MissingWeightsError, match=r"weights=ema: .* has no ema\.safetensors"):
        Gr00tN16Model.from_pretrained(tmp_path, weights="ema")
    with pytest.raises(ValueError, match="weights='best'"):
        Gr00tN16Model.from_pretrained(tmp_path, weights="best")


def test_missing_weights_fail_loudly_naming_keys_and_file(tmp_path: Path) -> None:
    _tiny().save_pretrained(tmp_path)
    weights = load_file(str(tmp_path / "model.safetensors"))
    dropped = sorted(k for k in weights if k.startswith("action_head.action_decoder."))
    for key in dropped:
        del weights[key]
    save_file(weights, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(MissingWeightsError) as info:
        Gr00tN16Model.from_pretrained(tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message and dropped[0] in message
    assert f"lacks {len(dropped)} weight(s)" in message
    # a caller that adds a parameter on purpose names it
    model = Gr00tN16Model.from_pretrained(tmp_path, allow_missing=dropped)
    assert set(model.state_dict()) >= set(dropped)
