"""The full model's parameter names match the released GR00T-N1.6-3B layout, and loading is exact.

The released checkpoint cannot be downloaded here, so the layout is checked against SPEC-N16 §1.5
(backbone prefixes and shapes) and `data/n16_head_keys.json` (a copy of the shared reference list
of action-head keys), and loading is checked with a tiny model written in the released layout,
extras included.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import Qwen3Config, Qwen3Model, Siglip2VisionConfig, Siglip2VisionModel

from gr00t.model.gr00t_n16 import Gr00tN16Model
from gr00t.model.presets import load_preset

# Copy of the project's shared reference key list (shared/n16_head_keys.json).
HEAD_KEYS = Path(__file__).resolve().parent / "data" / "n16_head_keys.json"
VISION = "backbone.model.vision_model.vision_model."
MLP1 = "backbone.model.mlp1."
LLM = "backbone.model.language_model.model."


def _head_reference() -> dict:
    if not HEAD_KEYS.is_file():
        pytest.fail(f"reference key list {HEAD_KEYS} is missing (a copy of shared/n16_head_keys.json)")
    return json.loads(HEAD_KEYS.read_text())


@pytest.fixture(scope="module")
def release_shapes() -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = Gr00tN16Model(load_preset("n16_release"))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _layer_indices(keys, prefix: str) -> set[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return {int(m.group(1)) for k in keys if (m := pattern.match(k))}


def test_release_backbone_keys(release_shapes):
    keys = [k for k in release_shapes if k.startswith("backbone.")]
    assert keys and all(k.startswith((VISION, MLP1, LLM)) for k in keys), [
        k for k in keys if not k.startswith((VISION, MLP1, LLM))
    ]
    assert _layer_indices(keys, VISION + "encoder.layers.") == set(range(27))
    assert _layer_indices(keys, LLM + "layers.") == set(range(16))
    assert {k for k in keys if k.startswith(MLP1)} == {
        f"{MLP1}{i}.{p}" for i in (0, 1, 3) for p in ("weight", "bias")
    }
    expect = {
        VISION + "embeddings.patch_embedding.weight": (1152, 14 * 14 * 3),
        VISION + "embeddings.position_embedding.weight": (256, 1152),
        VISION + "encoder.layers.0.self_attn.q_proj.bias": (1152,),
        VISION + "encoder.layers.26.mlp.fc1.weight": (4304, 1152),
        VISION + "post_layernorm.weight": (1152,),
        MLP1 + "0.weight": (4608,),
        MLP1 + "1.weight": (2048, 4608),
        MLP1 + "3.weight": (2048, 2048),
        LLM + "embed_tokens.weight": (151680, 2048),
        LLM + "layers.15.self_attn.q_proj.weight": (16 * 128, 2048),
        LLM + "layers.15.self_attn.k_proj.weight": (8 * 128, 2048),
        LLM + "layers.15.self_attn.q_norm.weight": (128,),
        LLM + "layers.15.mlp.gate_proj.weight": (6144, 2048),
        LLM + "norm.weight": (2048,),
    }
    for key, shape in expect.items():
        assert release_shapes.get(key) == shape, key
    assert not any(".head." in k or "lm_head" in k for k in keys)
    assert not any(k.endswith("_proj.bias") for k in keys if k.startswith(LLM))  # no attention bias


def test_release_action_head_keys_match_reference(release_shapes):
    ref = _head_reference()
    expected = {k: tuple(s) for k, s in ref["state_dict"]}
    ours = {k[len("action_head.") :]: s for k, s in release_shapes.items() if k.startswith("action_head.")}
    assert set(ours) == set(expected), {
        "missing": sorted(set(expected) - set(ours))[:10],
        "unexpected": sorted(set(ours) - set(expected))[:10],
    }
    wrong = {k: (ours[k], expected[k]) for k in expected if ours[k] != expected[k]}
    assert not wrong
    total = sum(int(torch.tensor(s).prod()) if s else 1 for s in ours.values())
    assert total == ref["total_parameters"] == 1_418_624_000
    assert set(release_shapes) == {k for k in release_shapes if k.startswith(("backbone.", "action_head."))}


def _released_extras(cfg) -> dict[str, torch.Tensor]:
    """Keys the released file stores but the model does not build: LM head, vision head, upper LLM layers."""
    extras: dict[str, torch.Tensor] = {}
    text = Qwen3Config(**cfg.text_config)
    full = Qwen3Model(text)
    for k, v in full.state_dict().items():
        if k.startswith("layers.") and int(k.split(".")[1]) >= cfg.select_layer:
            extras[LLM + k] = v
    extras["backbone.model.language_model.lm_head.weight"] = torch.randn(text.vocab_size, text.hidden_size)
    vision = Siglip2VisionModel(Siglip2VisionConfig(**{**cfg.vision_config, "vision_use_head": True}))
    for k, v in vision.state_dict().items():
        if k.startswith("head."):
            extras[VISION + k] = v
    assert extras and any(".head." in k for k in extras)
    return extras


def test_from_pretrained_of_released_layout_is_exact(tmp_path):
    cfg = load_preset("n16_tiny")
    torch.manual_seed(0)
    model = Gr00tN16Model(cfg)
    gen = torch.Generator().manual_seed(1)
    # Values no initialiser produces, so any silent re-initialisation after loading shows up.
    tensors = {
        k: (torch.randn(v.shape, generator=gen) * 0.37 + 0.11).to(v.dtype)
        if v.is_floating_point()
        else v.clone()
        for k, v in model.state_dict().items()
    }
    extras = _released_extras(cfg)
    tensors.update({k: torch.randn(v.shape, generator=gen) for k, v in extras.items()})
    cfg.save_pretrained(tmp_path)
    save_file(
        {k: v.contiguous() for k, v in tensors.items()},
        str(tmp_path / "model.safetensors"),
        metadata={"format": "pt"},
    )

    loaded, info = Gr00tN16Model.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"], sorted(info["missing_keys"])[:10]
    assert not info["mismatched_keys"]
    assert set(info["unexpected_keys"]) <= set(extras), sorted(set(info["unexpected_keys"]) - set(extras))
    state = loaded.state_dict()
    assert set(state) == set(tensors) - set(extras)
    differing = [k for k, v in state.items() if not torch.equal(v.cpu(), tensors[k].to(v.dtype))]
    assert not differing, differing[:10]
    # The vision tower and mlp1 are exactly the file's (the transformers 5.x re-init trap).
    assert torch.equal(loaded.backbone.model.mlp1[1].weight.detach(), tensors["backbone.model.mlp1.1.weight"])
    assert torch.equal(
        loaded.backbone.model.vision_model.vision_model.embeddings.patch_embedding.weight.detach(),
        tensors[VISION + "embeddings.patch_embedding.weight"],
    )
