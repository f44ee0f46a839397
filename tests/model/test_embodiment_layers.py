"""Per-embodiment layers (SPEC-N16 §1.2)."""

from __future__ import annotations

import math

import pytest
import torch

from gr00t.model.embodiment_layers import (
    CategorySpecificLinear,
    CategorySpecificMLP,
    MultiEmbodimentActionEncoder,
    action_timestep_sinusoid,
)


def test_category_linear_init_and_shapes():
    torch.manual_seed(0)
    layer = CategorySpecificLinear(8, 64, 128)
    assert layer.W.shape == (8, 64, 128)
    assert layer.b.shape == (8, 128)
    assert torch.count_nonzero(layer.b) == 0
    assert abs(layer.W.std().item() - 0.02) < 0.001
    assert abs(layer.W.mean().item()) < 0.001
    assert set(dict(layer.named_parameters())) == {"W", "b"}


def test_category_linear_selects_each_samples_weights():
    torch.manual_seed(0)
    layer = CategorySpecificLinear(4, 3, 5)
    with torch.no_grad():
        layer.b.copy_(torch.randn(4, 5))
    x = torch.randn(3, 2, 3)
    ids = torch.tensor([2, 0, 2])
    y = layer(x, ids)
    assert y.shape == (3, 2, 5)
    for i, e in enumerate(ids.tolist()):
        expected = x[i] @ layer.W[e] + layer.b[e]
        torch.testing.assert_close(y[i], expected)


def test_category_linear_rejects_bad_ids_and_shapes():
    layer = CategorySpecificLinear(4, 3, 5)
    with pytest.raises(ValueError, match=r"out of range \[0, 4\)"):
        layer(torch.randn(1, 2, 3), torch.tensor([4]))
    with pytest.raises(ValueError, match="shape"):
        layer(torch.randn(1, 2, 7), torch.tensor([0]))
    with pytest.raises(ValueError, match="category_ids"):
        layer(torch.randn(2, 2, 3), torch.tensor([0]))


def test_category_mlp_is_relu_between_layers():
    torch.manual_seed(1)
    mlp = CategorySpecificMLP(3, 4, 6, 2)
    with torch.no_grad():
        for p in mlp.parameters():
            p.normal_()
    x = torch.randn(2, 5, 4)
    ids = torch.tensor([1, 2])
    y = mlp(x, ids)
    for i, e in enumerate(ids.tolist()):
        h = torch.clamp(x[i] @ mlp.layer1.W[e] + mlp.layer1.b[e], min=0)
        torch.testing.assert_close(y[i], h @ mlp.layer2.W[e] + mlp.layer2.b[e])


def test_action_sinusoid_is_sin_then_cos_with_reference_frequencies():
    tau = torch.tensor([0, 7, 929])
    width = 8
    code = action_timestep_sinusoid(tau, width)
    assert code.shape == (3, 8) and code.dtype == torch.float32
    for row, t in enumerate(tau.tolist()):
        for i in range(width // 2):
            freq = math.exp(-math.log(10000.0) * i / (width / 2))
            assert code[row, i].item() == pytest.approx(math.sin(t * freq), abs=1e-4)
            assert code[row, width // 2 + i].item() == pytest.approx(math.cos(t * freq), abs=1e-4)


def test_action_encoder_matches_formula():
    torch.manual_seed(2)
    w = 6
    enc = MultiEmbodimentActionEncoder(action_dim=3, hidden_size=w, num_embodiments=2)
    with torch.no_grad():
        for p in enc.parameters():
            p.normal_()
    x = torch.randn(2, 4, 3)
    tau = torch.tensor([250, 999])
    ids = torch.tensor([1, 0])
    out = enc(x, tau, ids)
    assert out.shape == (2, 4, w)
    for i, e in enumerate(ids.tolist()):
        a = x[i] @ enc.W1.W[e] + enc.W1.b[e]
        freqs = torch.tensor([math.exp(-math.log(10000.0) * k / (w / 2)) for k in range(w // 2)])
        ang = tau[i].item() * freqs
        emb = torch.cat([torch.sin(ang), torch.cos(ang)]).expand(4, w)
        h = torch.cat([a, emb], dim=-1) @ enc.W2.W[e] + enc.W2.b[e]
        h = h * torch.sigmoid(h)
        torch.testing.assert_close(out[i], h @ enc.W3.W[e] + enc.W3.b[e], rtol=1e-4, atol=1e-4)
    assert set(dict(enc.named_parameters())) == {"W1.W", "W1.b", "W2.W", "W2.b", "W3.W", "W3.b"}
    assert enc.W2.W.shape == (2, 2 * w, w)


def test_action_sinusoid_and_swish_round_like_the_reference():
    # Reference float32 order: step = ln(10000 as float32) / half; freqs = exp(-i · step).
    tau = torch.arange(1000)
    for width in (8, 64, 1536):
        half = width // 2
        step = torch.log(torch.tensor(10000.0)) / half
        ang = tau.float()[:, None] * torch.exp(-torch.arange(half, dtype=torch.float32) * step)
        assert torch.equal(action_timestep_sinusoid(tau, width), torch.cat([ang.sin(), ang.cos()], -1))
    # swish is x·sigmoid(x) bit for bit (F.silu differs by ~1e-6 for large |x|)
    torch.manual_seed(0)
    enc = MultiEmbodimentActionEncoder(action_dim=3, hidden_size=8, num_embodiments=2)
    with torch.no_grad():
        enc.W2.W.mul_(300.0)  # push W2's output far into the tails
    x, t, ids = torch.randn(2, 5, 3), torch.tensor([10, 990]), torch.tensor([0, 1])
    a = enc.W1(x, ids)
    e = action_timestep_sinusoid(t[:, None].expand(2, 5), 8)
    h = enc.W2(torch.cat([a, e], -1), ids)
    assert torch.equal(enc(x, t, ids), enc.W3(h * torch.sigmoid(h), ids))
