"""Top-level GR00T N1.6 model: routing, unfreezing, dtype policy, save/load (SPEC-N16 §1, §1.5)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from gr00t.model.backbones.eagle_processing import EagleInputs
from gr00t.model.batch import Gr00tBatch, HeadInputs
from gr00t.model.gr00t_n16 import Gr00tN16Model
from gr00t.model.presets import load_preset

IMG, IMG_START, IMG_END = 1000, 1001, 1002


def tiny_model(**overrides) -> Gr00tN16Model:
    torch.manual_seed(0)
    return Gr00tN16Model(load_preset("n16_tiny", **overrides))


def make_batch(seed: int = 0, with_action: bool = True) -> Gr00tBatch:
    """Two samples: one 4x4-patch image (4 tokens) and one 4x6-patch image (6 tokens), left padded."""
    g = torch.Generator().manual_seed(seed)
    s0 = [5, 6, 7, IMG_START] + [IMG] * 4 + [IMG_END, 8]
    s1 = [9, IMG_START] + [IMG] * 6 + [IMG_END, 11, 12, 13]
    length = max(len(s0), len(s1))
    ids = torch.tensor([[0] * (length - len(s)) + s for s in (s0, s1)])
    attn = torch.tensor([[0] * (length - len(s)) + [1] * len(s) for s in (s0, s1)])
    pixel_values = torch.rand(2, 24, 3 * 14 * 14, generator=g) * 2 - 1
    pixel_mask = torch.zeros(2, 24, dtype=torch.bool)
    pixel_mask[0, :16] = True
    pixel_mask[1, :24] = True
    backbone = EagleInputs(
        input_ids=ids,
        attention_mask=attn,
        pixel_values=pixel_values,
        pixel_attention_mask=pixel_mask,
        spatial_shapes=torch.tensor([[4, 4], [4, 6]]),
    )
    head = HeadInputs(state=torch.randn(2, 1, 32, generator=g), embodiment_id=torch.tensor([10, 2]))
    if with_action:
        head.action = torch.rand(2, 16, 32, generator=g) * 2 - 1
        mask = torch.zeros(2, 16, 32)
        mask[:, :, :7] = 1
        head.action_mask = mask
    return Gr00tBatch(backbone, head)


def head_inputs(model: Gr00tN16Model, batch: Gr00tBatch) -> dict:
    out = model.backbone(batch.backbone)
    return {
        "backbone_features": out["backbone_features"],
        "backbone_attention_mask": out["backbone_attention_mask"],
        "image_mask": out["image_mask"],
        "state": batch.head.state,
        "embodiment_id": batch.head.embodiment_id,
    }


# --------------------------------------------------------------------------- forward / routing
def test_forward_routes_backbone_and_head_inputs():
    model = tiny_model(dit_dropout=0.0).eval()
    batch = make_batch()
    noise = torch.randn(2, 16, 32)
    t = torch.tensor([0.25, 0.7])
    out = model(batch, noise=noise, t=t)
    assert out.loss.shape == () and torch.isfinite(out.loss)
    torch.testing.assert_close(out.action_loss, out.loss.detach())
    expected = model.action_head(
        **head_inputs(model, batch),
        action=batch.head.action,
        action_mask=batch.head.action_mask,
        noise=noise,
        t=t,
    )["loss"]
    torch.testing.assert_close(out.loss, expected, rtol=0, atol=0)


def test_wrong_and_incomplete_batches_raise_clearly():
    model = tiny_model()
    batch = make_batch()
    with pytest.raises(TypeError, match="'actions'"):
        HeadInputs(state=batch.head.state, embodiment_id=batch.head.embodiment_id, actions=batch.head.action)
    with pytest.raises(TypeError, match="takes a Gr00tBatch .* got dict"):
        model({"state": batch.head.state})
    no_action = make_batch(with_action=False)
    with pytest.raises(ValueError, match="needs 'action'"):
        model(no_action)
    with pytest.raises(TypeError, match="'embodiment_id'"):
        HeadInputs(state=no_action.head.state)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="eagle backbone: expected EagleInputs"):
        model.backbone(no_action.head)


def test_get_action_matches_head_and_ignores_action_keys():
    model = tiny_model().eval()
    batch = make_batch()
    noise = torch.randn(2, 16, 32)
    out = model.get_action(batch, noise=noise)
    assert out.shape == (2, 16, 32) and out.dtype == torch.float32
    with torch.no_grad():
        expected = model.action_head.get_action(**head_inputs(model, batch), noise=noise)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    no_action = make_batch(with_action=False)
    torch.testing.assert_close(model.get_action(no_action, noise=noise), out, rtol=0, atol=0)
    torch.testing.assert_close(model.get_action(batch.without_action(), noise=noise), out, rtol=0, atol=0)
    g = torch.Generator().manual_seed(1)
    a = model.get_action(no_action, generator=g)
    b = model.get_action(no_action, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)


def test_inference_stages_encode_once_then_denoise():
    """encode + denoise == get_action; the encoded context serves several step counts and noises."""
    model = tiny_model().eval()
    batch = make_batch(with_action=False)
    noise = torch.randn(2, 16, 32)
    context = model.encode(batch)
    for steps in (1, 4, 7):
        staged = model.denoise(context, num_steps=steps, noise=noise)
        torch.testing.assert_close(
            staged, model.get_action(batch, num_steps=steps, noise=noise), rtol=0, atol=0
        )
        with torch.no_grad():
            head = model.action_head.get_action(**head_inputs(model, batch), noise=noise, num_steps=steps)
        torch.testing.assert_close(staged, head, rtol=0, atol=0)
    assert not torch.equal(
        model.denoise(context, num_steps=1, noise=noise), model.denoise(context, noise=noise)
    )
    with pytest.raises(ValueError, match="num_steps=0"):
        model.get_action(batch, num_steps=0)


def test_backward_reaches_only_trainable_parameters():
    model = tiny_model().train()
    model(make_batch()).loss.backward()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, name
    top = model.backbone.llm_layers()[-1]  # n16_tiny trains the top LLM layer
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in top.parameters())
    assert model.action_head.state_encoder.layer1.W.grad is not None


# --------------------------------------------------------------------------- unfreezing
def test_unfreezing_flags_and_eval_mode_of_frozen_modules():
    model = tiny_model(tune_projector=False, tune_diffusion_model=False, tune_vlln=False)
    head, bb = model.action_head, model.backbone
    assert not any(p.requires_grad for p in head.parameters())
    # tune_projector is a head switch: the backbone's mlp1 follows tune_visual (reference behaviour)
    assert not any(p.requires_grad for p in bb.model.mlp1.parameters())
    model.set_trainable(tune_visual=True)
    assert all(p.requires_grad for p in bb.model.mlp1.parameters())
    assert all(p.requires_grad for p in bb.model.vision_model.parameters())
    assert not any(p.requires_grad for p in head.parameters())
    model.set_trainable(tune_projector=True, tune_diffusion_model=True, tune_vlln=True, tune_visual=False)
    assert all(p.requires_grad for p in head.parameters())

    model = tiny_model(tune_diffusion_model=False, state_dropout_prob=0.5)
    model.train()
    assert model.training and model.action_head.training
    assert not model.action_head.model.training  # frozen DiT: no dropout
    assert model.action_head.state_encoder.training and model.action_head.vlln.training
    assert not model.backbone.model.language_model.training
    assert not model.backbone.model.vision_model.training and not model.backbone.model.mlp1.training
    model.set_trainable(tune_projector=False)
    assert not model.action_head.mask_token.requires_grad
    model.train()
    assert not model.action_head.action_encoder.training and not model.action_head.position_embedding.training
    model.eval()
    assert not any(m.training for m in model.modules())


def _n16_counts() -> dict[str, int]:
    """Parameter counts of the n16 parts from the architecture formulas (SPEC §1.1–1.5)."""
    lin = lambda i, o, bias=True: i * o + (o if bias else 0)  # noqa: E731
    # Qwen3-1.7B decoder layer: q 2048->2048, k/v 2048->1024, o, q/k RMSNorm(128), MLP 2048->6144 x3, 2 RMSNorms
    llm_layer = (
        lin(2048, 2048, False) * 2
        + lin(2048, 1024, False) * 2
        + 128 * 2
        + lin(2048, 6144, False) * 3
        + 2048 * 2
    )
    llm = 151680 * 2048 + 16 * llm_layer + 2048
    vit_layer = 2 * 2 * 1152 + 4 * lin(1152, 1152) + lin(1152, 4304) + lin(4304, 1152)
    vision = lin(588, 1152) + 256 * 1152 + 27 * vit_layer + 2 * 1152
    mlp1 = 2 * 4608 + lin(4608, 2048) + lin(2048, 2048)
    e, d, h, bb = 32, 1536, 1024, 2048
    csl = lambda i, o: e * (i * o + o)  # noqa: E731
    common = lin(d, 2 * d) + 2 * lin(d, d) + lin(d, 4 * d) + lin(4 * d, d)
    dit = lin(256, d) + lin(d, d) + 16 * (common + 2 * lin(bb, d)) + 16 * (common + 2 * lin(d, d))
    dit += lin(d, 2 * d) + lin(d, h)
    projectors = (
        csl(29, h) + csl(h, d) + csl(29, d) + csl(2 * d, d) + csl(d, d) + csl(h, h) + csl(h, 29) + 1024 * d
    )
    return {"llm_layer": llm_layer, "llm": llm, "vision": vision, "mlp1": mlp1, "dit": dit,
            "projectors": projectors, "vlln": 2 * bb}  # fmt: skip


@pytest.mark.parametrize(
    "flags, parts",
    [
        ({}, ["top4", "dit", "projectors", "vlln"]),
        ({"tune_visual": True}, ["top4", "vision", "mlp1", "dit", "projectors", "vlln"]),
        ({"tune_llm": True}, ["llm", "dit", "projectors", "vlln"]),
        ({"tune_diffusion_model": False}, ["top4", "projectors", "vlln"]),
        ({"tune_projector": False, "tune_vlln": False, "tune_top_llm_layers": 0}, ["dit"]),
        ({"tune_top_llm_layers": 1, "tune_diffusion_model": False, "tune_projector": False, "tune_vlln": False},
         ["top1"]),
        ({"tune_top_llm_layers": 0, "tune_diffusion_model": False, "tune_projector": False, "tune_vlln": False}, []),
    ],
)  # fmt: skip
def test_n16_trainable_parameter_counts(flags, parts):
    c = _n16_counts()
    c["top4"], c["top1"] = 4 * c["llm_layer"], c["llm_layer"]
    with torch.device("meta"):
        model = Gr00tN16Model(load_preset("n16", **flags))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == sum(c[p] for p in parts)
    total = sum(p.numel() for p in model.parameters())
    assert total == c["llm"] + c["vision"] + c["mlp1"] + c["dit"] + c["projectors"] + c["vlln"]
    assert model.num_parameters_by_part()["dit"] == c["dit"]


# --------------------------------------------------------------------------- dtype / save / load
def _dtypes_by_role(model: Gr00tN16Model) -> dict[str, set[torch.dtype]]:
    roles: dict[str, set[torch.dtype]] = {}
    for name, p in model.named_parameters():
        part = "backbone" if name.startswith("backbone.") else "head"
        roles.setdefault(f"{part}/{'trainable' if p.requires_grad else 'frozen'}", set()).add(p.dtype)
    return roles


def test_precision_policy_when_building_from_a_preset():
    """SPEC §1.1: frozen weights (mlp1 and the vision tower included) in model_dtype, trainable ones
    float32 master weights; the loss runs under the model's own bf16 autocast."""
    model = tiny_model(model_dtype="bfloat16")
    assert _dtypes_by_role(model) == {
        "backbone/frozen": {torch.bfloat16},
        "backbone/trainable": {torch.float32},
        "head/trainable": {torch.float32},
    }
    for name, p in model.named_parameters():
        if ".mlp1." in name or ".vision_model." in name:
            assert p.dtype == torch.bfloat16 and not p.requires_grad, name
    loss = model.train()(make_batch()).loss
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    assert model.eval().get_action(make_batch(with_action=False)).dtype == torch.float32
    # switching the vision tower on makes it (and mlp1) float32 master weights; off again, bf16
    model.set_trainable(tune_visual=True)
    assert {p.dtype for n, p in model.named_parameters() if ".mlp1." in n or ".vision_model." in n} == {
        torch.float32
    }
    model.set_trainable(tune_visual=False)
    assert {p.dtype for n, p in model.named_parameters() if ".mlp1." in n} == {torch.bfloat16}


def test_precision_policy_without_fp32_backbone_params_and_in_fp32():
    model = tiny_model(model_dtype="bfloat16", backbone_trainable_params_fp32=False)
    assert _dtypes_by_role(model) == {
        "backbone/frozen": {torch.bfloat16},
        "backbone/trainable": {torch.bfloat16},
        "head/trainable": {torch.float32},
    }
    frozen_head = tiny_model(model_dtype="bfloat16", tune_diffusion_model=False)
    assert {p.dtype for p in frozen_head.action_head.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in tiny_model().parameters()} == {torch.float32}  # n16_tiny: model_dtype float32


def test_loading_restores_the_policy_of_an_older_checkpoint(tmp_path):
    """A checkpoint whose trainable LLM layer was stored in bf16 loads it as float32 master weights."""
    model = tiny_model(model_dtype="bfloat16")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and n.startswith("backbone.")}
    for p in model.parameters():
        p.data = p.data.to(torch.bfloat16)  # everything bf16, as an all-bf16 save would store it
    model.save_pretrained(tmp_path)
    loaded = Gr00tN16Model.from_pretrained(tmp_path)
    for name, p in loaded.named_parameters():
        assert p.dtype == (
            torch.float32 if name in trainable or name.startswith("action_head.") else torch.bfloat16
        )
    assert trainable


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_save_load_round_trip_is_bit_exact(tmp_path, dtype):
    model = tiny_model(state_dropout_prob=0.2, model_dtype=dtype)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded, info = Gr00tN16Model.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    strip = lambda cfg: {k: v for k, v in cfg.to_dict().items() if k != "_name_or_path"}  # noqa: E731
    assert strip(loaded.config) == strip(model.config)
    assert [n for n, p in loaded.named_parameters() if p.requires_grad] == [
        n for n, p in model.named_parameters() if p.requires_grad
    ]
    if dtype == "float32":  # non-persistent buffers (rotary tables) rebuilt: identical actions
        noise = torch.randn(2, 16, 32)
        batch = make_batch(with_action=False)
        torch.testing.assert_close(
            loaded.eval().get_action(batch, noise=noise),
            model.eval().get_action(batch, noise=noise),
            rtol=0,
            atol=0,
        )


def test_release_layout_extra_keys_are_accepted_and_dropped(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights["backbone.model.language_model.lm_head.weight"] = torch.randn(1024, 64)
    weights["backbone.model.vision_model.vision_model.head.probe"] = torch.randn(1, 1, 32)
    weights["backbone.model.vision_model.vision_model.head.mlp.fc1.weight"] = torch.randn(64, 32)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    loaded, info = Gr00tN16Model.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # a genuinely unknown key is still reported
    weights["action_head.not_a_module.weight"] = torch.zeros(2)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    _, info = Gr00tN16Model.from_pretrained(tmp_path, output_loading_info=True)
    assert info["unexpected_keys"] == {"action_head.not_a_module.weight"}
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "gr00t_n1_6"
