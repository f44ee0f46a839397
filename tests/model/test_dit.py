"""DiT / AlternateVLDiT trunk (SPEC-N16 §1.3)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gr00t.model.dit import (
    CROSS_ALL,
    CROSS_IMAGE,
    CROSS_TEXT,
    SELF,
    AdaLayerNorm,
    AlternateVLDiT,
    DiT,
    TimestepEncoder,
    build_dit,
    timestep_sinusoid,
)
from gr00t.model.presets import load_preset

DIM, HEADS, HEAD_DIM, CROSS, OUT = 32, 4, 8, 24, 16


def make_dit(cls=AlternateVLDiT, layers=8, **kw) -> DiT:
    torch.manual_seed(0)
    dit = cls(
        num_layers=layers,
        num_attention_heads=HEADS,
        attention_head_dim=HEAD_DIM,
        output_dim=OUT,
        cross_attention_dim=CROSS,
        dropout=0.2,
        **kw,
    )
    return dit.eval()


def make_inputs(b=2, t=5, s=9, n_image=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, DIM, generator=g)
    vl = torch.randn(b, s, CROSS, generator=g)
    attn = torch.ones(b, s, dtype=torch.bool)
    image = torch.zeros(b, s, dtype=torch.bool)
    image[:, 1 : 1 + n_image] = True
    tau = torch.tensor([0, 750])[:b]
    return x, vl, attn, image, tau


def test_timestep_sinusoid_cos_first_with_shift_one():
    tau = torch.tensor([3, 500])
    code = timestep_sinusoid(tau, 256)
    assert code.shape == (2, 256) and code.dtype == torch.float32
    for row, t in enumerate(tau.tolist()):
        for i in (0, 1, 64, 127):
            freq = math.exp(-math.log(10000.0) * i / (128 - 1))
            assert code[row, i].item() == pytest.approx(math.cos(t * freq), abs=1e-4)
            assert code[row, 128 + i].item() == pytest.approx(math.sin(t * freq), abs=1e-4)


def test_timestep_sinusoid_rounds_like_the_reference():
    # float32 rounding order of the reference: (-ln 10000 · i) / (half - 1), exp, τ·freq. Folding
    # the constant first moves the code by up to ~6e-5 at τ≈1000.
    tau = torch.arange(1000)
    i = torch.arange(128, dtype=torch.float32)
    freqs = torch.exp((-math.log(10000.0) * i) / 127)
    ang = tau.float()[:, None] * freqs[None, :]
    expected = torch.cat([ang.cos(), ang.sin()], dim=-1)
    assert torch.equal(timestep_sinusoid(tau, 256), expected)
    # and it is the exact formula up to float32 rounding of τ·freq
    exact = tau.double()[:, None] * torch.exp(-math.log(10000.0) * i.double() / 127)[None, :]
    torch.testing.assert_close(
        timestep_sinusoid(tau, 256).double(), torch.cat([exact.cos(), exact.sin()], -1), rtol=0, atol=2e-4
    )


def test_timestep_encoder_linear_silu_linear_in_param_dtype():
    torch.manual_seed(0)
    enc = TimestepEncoder(16, 256)
    tau = torch.tensor([10, 900])
    emb = enc(tau)
    e = enc.timestep_embedder
    expected = e.linear_2(F.silu(e.linear_1(timestep_sinusoid(tau, 256))))
    torch.testing.assert_close(emb, expected)
    assert enc.to(torch.bfloat16)(tau).dtype == torch.bfloat16


def test_ada_layer_norm_scale_comes_first():
    norm = AdaLayerNorm(4)
    scale = torch.tensor([0.5, -1.0, 2.0, 0.0])
    shift = torch.tensor([1.0, 2.0, 3.0, 4.0])
    with torch.no_grad():
        norm.linear.weight.zero_()
        norm.linear.bias.copy_(torch.cat([scale, shift]))
    x = torch.randn(2, 3, 4)
    out = norm(x, torch.randn(2, 4))
    expected = F.layer_norm(x, (4,), eps=1e-5) * (1 + scale) + shift
    torch.testing.assert_close(out, expected)


def test_output_layer_shift_first_eps_1e6():
    dit = make_dit(DiT, layers=0)
    shift = torch.linspace(-1, 1, DIM)
    scale = torch.linspace(0, 2, DIM)
    with torch.no_grad():
        dit.proj_out_1.weight.zero_()
        dit.proj_out_1.bias.copy_(torch.cat([shift, scale]))
    x, vl, attn, image, tau = make_inputs()
    out = dit(x, tau, vl, attn, image)
    expected = dit.proj_out_2(F.layer_norm(x, (DIM,), eps=1e-6) * (1 + scale) + shift)
    torch.testing.assert_close(out, expected)


def test_alternate_block_pattern_and_release_counts():
    assert make_dit(layers=8).block_kinds(8) == [
        CROSS_TEXT, SELF, CROSS_IMAGE, SELF, CROSS_TEXT, SELF, CROSS_IMAGE, SELF,
    ]  # fmt: skip
    kinds = [b.kind for b in make_dit(layers=8).transformer_blocks]
    assert kinds[0] == CROSS_TEXT and kinds[2] == CROSS_IMAGE
    with torch.device("meta"):
        dit = build_dit(load_preset("n16"))
    kinds = [b.kind for b in dit.transformer_blocks]
    assert (kinds.count(CROSS_TEXT), kinds.count(CROSS_IMAGE), kinds.count(SELF)) == (8, 8, 16)
    # every third-kind block reads keys of width 2048 (cross) or 1536 (self)
    for b in dit.transformer_blocks:
        assert b.attn1.to_k.in_features == (1536 if b.kind == SELF else 2048)
    dit3 = make_dit(layers=12, attend_text_every_n_blocks=3)
    assert [b.kind for b in dit3.transformer_blocks][::2] == [CROSS_TEXT, CROSS_IMAGE, CROSS_IMAGE] * 2


def test_plain_dit_pattern():
    assert make_dit(DiT, layers=4).block_kinds(4) == [CROSS_ALL, SELF, CROSS_ALL, SELF]
    dit = make_dit(DiT, layers=3, interleave_self_attention=False)
    assert [b.kind for b in dit.transformer_blocks] == [CROSS_ALL] * 3
    with pytest.raises(ValueError, match="interleave_self_attention"):
        make_dit(AlternateVLDiT, layers=2, interleave_self_attention=False)


def _record_attention(dit: DiT, *args):
    """Run the DiT and return (block inputs, attention outputs) per block."""
    inputs, attn_out, handles = [], [], []
    for block in dit.transformer_blocks:
        handles.append(
            block.register_forward_pre_hook(lambda m, a, kw: inputs.append(a[0].clone()), with_kwargs=True)
        )
        handles.append(block.attn1.register_forward_hook(lambda m, a, o: attn_out.append(o.clone())))
    try:
        out = dit(*args)
    finally:
        for h in handles:
            h.remove()
    return out, inputs, attn_out


def test_image_tokens_only_reach_image_blocks_and_text_only_text_blocks():
    dit = make_dit(layers=4)  # text, self, image, self
    x, vl, attn, image, tau = make_inputs()
    base, base_in, base_attn = _record_attention(dit, x, tau, vl, attn, image)

    vl_img = vl.clone()
    vl_img[image] += 3.0
    out, ins, att = _record_attention(dit, x, tau, vl_img, attn, image)
    torch.testing.assert_close(att[0], base_attn[0])  # text block blind to image tokens
    torch.testing.assert_close(att[1], base_attn[1])  # self block
    torch.testing.assert_close(ins[2], base_in[2])  # same input to the image block ...
    assert not torch.allclose(att[2], base_attn[2])  # ... but it sees the change
    assert not torch.allclose(out, base)

    vl_txt = vl.clone()
    vl_txt[~image] += 3.0
    _, ins, att = _record_attention(dit, x, tau, vl_txt, attn, image)
    assert not torch.allclose(att[0], base_attn[0])

    # Holding the query fixed, each cross block's output depends only on its own token set.
    h = torch.randn(2, 5, DIM)
    for vl_changed, changed_kind in ((vl_img, CROSS_IMAGE), (vl_txt, CROSS_TEXT)):
        c0 = dit.precompute_cross_kv(vl, attn, image)
        c1 = dit.precompute_cross_kv(vl_changed, attn, image)
        for i, block in enumerate(dit.transformer_blocks):
            if block.kind == SELF:
                continue
            a0 = block.attn1(h, kv=c0.kv[i], key_mask=c0.key_masks[i])
            a1 = block.attn1(h, kv=c1.kv[i], key_mask=c1.key_masks[i])
            assert torch.allclose(a0, a1) == (block.kind != changed_kind), (i, block.kind)


@pytest.mark.parametrize("cls", [AlternateVLDiT, DiT])
def test_padded_backbone_tokens_have_no_effect(cls):
    dit = make_dit(cls, layers=4)
    x, vl, attn, image, tau = make_inputs()
    base = dit(x, tau, vl, attn, image)
    pad = 6
    vl_p = torch.cat([torch.randn(2, pad, CROSS) * 10, vl], dim=1)  # left padding
    attn_p = torch.cat([torch.zeros(2, pad, dtype=torch.bool), attn], dim=1)
    image_p = torch.cat([torch.tensor([[True, False] * 3] * 2), image], dim=1)  # junk flags on padding
    out = dit(x, tau, vl_p, attn_p, image_p)
    torch.testing.assert_close(out, base, rtol=1e-5, atol=1e-5)


def test_sample_without_image_tokens_is_finite_and_image_blocks_add_nothing():
    dit = make_dit(layers=4)
    x, vl, attn, image, tau = make_inputs()
    image[1] = False  # sample 1 has no image tokens
    vl.requires_grad_(True)
    out, ins, att = _record_attention(dit, x, tau, vl, attn, image)
    assert torch.isfinite(out).all()
    # image block: attends to nothing -> its attention update is exactly zero
    assert torch.equal(att[2][1], torch.zeros_like(att[2][1]))
    assert att[2][0].abs().sum() > 0
    out.sum().backward()
    assert torch.isfinite(vl.grad).all()
    # a sample with no valid tokens at all
    attn[0] = False
    assert torch.isfinite(dit(x, tau, vl, attn, image)).all()


def test_precomputed_cache_matches_direct_forward():
    dit = make_dit(layers=4)
    x, vl, attn, image, tau = make_inputs()
    cache = dit.precompute_cross_kv(vl, attn, image)
    torch.testing.assert_close(dit(x, tau, cross_cache=cache), dit(x, tau, vl, attn, image))
    with pytest.raises(ValueError, match="encoder_hidden_states or cross_cache"):
        dit(x, tau)
    with pytest.raises(ValueError, match="image_mask"):
        dit.precompute_cross_kv(vl, attn, image[:, :3])


def test_dropout_only_in_training_mode():
    dit = make_dit(layers=2)
    x, vl, attn, image, tau = make_inputs()
    torch.testing.assert_close(dit(x, tau, vl, attn, image), dit(x, tau, vl, attn, image))
    dit.train()
    assert not torch.allclose(dit(x, tau, vl, attn, image), dit(x, tau, vl, attn, image))


def test_build_dit_rejects_unknown_norm():
    cfg = load_preset("n16_tiny", dit_norm_type="layer_norm")
    with pytest.raises(ValueError, match="dit_norm_type"):
        build_dit(cfg)
