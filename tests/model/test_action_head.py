"""Flow-matching action head (SPEC-N16 §1.2–1.4)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gr00t.model.action_head import FlowMatchingActionHead, RealTimeChunking
from gr00t.model.dit import CROSS_IMAGE
from gr00t.model.presets import load_preset

# Key names/shapes of the released checkpoint's action head (copy of ../shared/n16_head_keys.json).
HEAD_KEYS = Path(__file__).parent / "data" / "n16_head_keys.json"
B, S = 2, 12


def tiny_head(**overrides) -> FlowMatchingActionHead:
    torch.manual_seed(0)
    cfg = load_preset("n16_tiny", **overrides)
    return FlowMatchingActionHead(cfg)


def make_batch(
    head: FlowMatchingActionHead, seed: int = 0, b: int = B, s: int = S
) -> dict[str, torch.Tensor]:
    cfg = head.config
    g = torch.Generator().manual_seed(seed)
    image = torch.zeros(b, s, dtype=torch.bool)
    image[:, 2:7] = True
    mask = torch.ones(cfg.action_horizon, cfg.max_action_dim)
    return {
        "backbone_features": torch.randn(b, s, cfg.backbone_embedding_dim, generator=g),
        "backbone_attention_mask": torch.ones(b, s, dtype=torch.bool),
        "image_mask": image,
        "state": torch.randn(b, 1, cfg.max_state_dim, generator=g),
        "action": torch.rand(b, cfg.action_horizon, cfg.max_action_dim, generator=g) * 2 - 1,
        "action_mask": mask.expand(b, -1, -1).clone(),
        "embodiment_id": torch.tensor([10, 3, 0, 31][:b]),
    }


def context_args(batch):
    return {
        k: batch[k]
        for k in ("backbone_features", "backbone_attention_mask", "image_mask", "state", "embodiment_id")
    }


# --------------------------------------------------------------------------- release layout
def test_release_state_dict_keys_shapes_and_count():
    ref = json.loads(HEAD_KEYS.read_text())
    with torch.device("meta"):
        head = FlowMatchingActionHead(load_preset("n16_release"))
    ours = {k: list(v.shape) for k, v in head.state_dict().items()}
    theirs = {k: list(s) for k, s in ref["state_dict"]}
    assert set(ours) - set(theirs) == set(), "extra keys"
    assert set(theirs) - set(ours) == set(), "missing keys"
    assert ours == theirs
    assert sum(p.numel() for p in head.parameters()) == 1_418_624_000 == ref["total_parameters"]
    for top, count in ref["parameters_by_top_module"].items():
        assert sum(p.numel() for n, p in head.named_parameters() if n.split(".")[0] == top) == count, top
    assert len(list(head.buffers())) == 0


def test_release_param_count_from_formulas():
    """Independent count: per-embodiment MLPs, 32 DiT blocks, vlln, position table."""
    e, sd, ad, h, d, bb, ff = 32, 128, 128, 1024, 1536, 2048, 6144
    lin = lambda i, o: i * o + o  # noqa: E731
    csl = lambda i, o: e * (i * o + o)  # noqa: E731
    block_common = lin(d, 2 * d) + lin(d, d) * 2 + lin(d, ff) + lin(ff, d)  # norm1, to_q, to_out, ff
    cross = block_common + 2 * lin(bb, d)
    self_ = block_common + 2 * lin(d, d)
    dit = lin(256, d) + lin(d, d) + 16 * cross + 16 * self_ + lin(d, 2 * d) + lin(d, h)
    total = dit + csl(sd, h) + csl(h, d) + csl(ad, d) + csl(2 * d, d) + csl(d, d) + csl(h, h) + csl(h, ad)
    total += 2 * bb + 1024 * d
    with torch.device("meta"):
        head = FlowMatchingActionHead(load_preset("n16_release"))
    assert sum(p.numel() for p in head.parameters()) == total == 1_418_624_000


def test_optional_modules():
    head = tiny_head()
    assert head.mask_token is None and "mask_token" not in head.state_dict()
    head = tiny_head(state_dropout_prob=0.5)
    assert head.state_dict()["mask_token"].shape == (1, 1, 64)
    head = tiny_head(use_vlln=False, add_pos_embed=False)
    assert not any(k.startswith(("vlln", "position_embedding")) for k in head.state_dict())


# --------------------------------------------------------------------------- loss
def test_forward_shapes_and_loss_formula_with_explicit_noise_and_t():
    head = tiny_head(dit_dropout=0.0).eval()
    batch = make_batch(head)
    noise = torch.randn_like(batch["action"])
    t = torch.tensor([0.2, 0.9])
    out = head(**batch, noise=noise, t=t)
    assert out["loss"].shape == () and out["loss"].dtype == torch.float32
    assert out["pred_velocity"].shape == batch["action"].shape
    torch.testing.assert_close(out["timestep"], torch.tensor([200, 900]))
    # independent reconstruction of x_t, the target and the prediction
    ctx = head.prepare_context(**context_args(batch))
    x_t = (1 - t[:, None, None]) * noise + t[:, None, None] * batch["action"]
    pred = head.velocity(ctx, x_t, torch.tensor([200, 900]))
    torch.testing.assert_close(out["pred_velocity"], pred)
    target = batch["action"] - noise
    torch.testing.assert_close(out["target_velocity"], target)
    expected = ((pred - target) ** 2).sum() / (batch["action_mask"].sum() + 1e-6)
    torch.testing.assert_close(out["loss"], expected)
    out["loss"].backward()
    assert all(p.grad is not None for p in head.parameters())


def test_loss_counts_only_masked_in_entries():
    head = tiny_head(dit_dropout=0.0).eval()
    batch = make_batch(head)
    mask = torch.zeros_like(batch["action_mask"])
    mask[0, :10, :7] = 1  # sample 0: 10 real steps x 7 real dims
    mask[1, :16, :3] = 1
    batch["action_mask"] = mask
    noise = torch.randn_like(batch["action"])
    t = torch.tensor([0.3, 0.6])
    out = head(**batch, noise=noise, t=t)
    real = mask.bool()
    diff = (out["pred_velocity"] - out["target_velocity"])[real]
    torch.testing.assert_close(out["loss"], (diff**2).sum() / (real.sum() + 1e-6))
    # Change target velocity on padded entries while keeping x_t fixed: the loss must not move.
    delta = torch.randn_like(noise) * (~real)
    tt = t[:, None, None]
    a2 = batch["action"] + delta * (1 - tt)
    n2 = noise - delta * tt  # (1 - t)·n2 + t·a2 == x_t
    out2 = head(**{**batch, "action": a2}, noise=n2, t=t)
    assert not torch.allclose(out2["target_velocity"], out["target_velocity"])
    torch.testing.assert_close(out2["loss"], out["loss"])


def test_padded_backbone_tokens_do_not_change_loss():
    head = tiny_head(dit_dropout=0.0).eval()
    batch = make_batch(head)
    noise, t = torch.randn_like(batch["action"]), torch.tensor([0.5, 0.1])
    base = head(**batch, noise=noise, t=t)["loss"]
    pad = 5
    padded = dict(batch)
    padded["backbone_features"] = torch.cat([torch.randn(B, pad, 64) * 5, batch["backbone_features"]], 1)
    padded["backbone_attention_mask"] = torch.cat(
        [torch.zeros(B, pad, dtype=torch.bool), batch["backbone_attention_mask"]], 1
    )
    padded["image_mask"] = torch.cat([torch.ones(B, pad, dtype=torch.bool), batch["image_mask"]], 1)
    torch.testing.assert_close(head(**padded, noise=noise, t=t)["loss"], base)


def test_beta_time_sampling_statistics():
    head = tiny_head()
    torch.manual_seed(0)
    t = head.sample_time(40000, "cpu")
    assert t.dtype == torch.float32
    assert t.min() >= 0 and t.max() <= 0.999
    # s ~ Beta(1.5, 1): P(s <= x) = x^1.5, t = (1 - s)·0.999  =>  P(t <= y) = 1 - (1 - y/0.999)^1.5
    for y in (0.1, 0.3, 0.5, 0.8):
        expected = 1 - (1 - y / 0.999) ** 1.5
        assert abs((t <= y).float().mean().item() - expected) < 0.01
    assert abs(t.mean().item() - 0.4 * 0.999) < 0.005
    torch.manual_seed(1)
    out = head(**make_batch(head))
    assert 0 <= out["t"].min() and out["t"].max() <= 0.999
    torch.testing.assert_close(out["timestep"], (out["t"] * 1000).long())


def test_timestep_bucket_computed_in_float32():
    head = tiny_head()
    below = np.nextafter(np.float32(0.93), np.float32(0))
    t = torch.tensor([below, 0.93, 0.0, 0.999], dtype=torch.float32)
    assert head.timestep_buckets(t).tolist() == [929, 930, 0, 999]
    # the bucket of a float32 t does not depend on the head's compute dtype
    head = head.to(torch.bfloat16)
    assert head.timestep_buckets(t).tolist() == [929, 930, 0, 999]
    batch = make_batch(head)
    out = head(**batch, t=t[:2])
    assert out["timestep"].tolist() == [929, 930]
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])


def test_state_dropout_replaces_state_tokens_with_mask_token():
    head = tiny_head(state_dropout_prob=1.0, dit_dropout=0.0)
    batch = make_batch(head)
    head.train()
    feats = head.encode_state(batch["state"], batch["embodiment_id"], train_augment=True)
    torch.testing.assert_close(feats, head.mask_token.expand(B, 1, -1))
    noise, t = torch.randn_like(batch["action"]), torch.tensor([0.5, 0.5])
    l1 = head(**batch, noise=noise, t=t)["loss"]
    l2 = head(**{**batch, "state": batch["state"] + 1.0}, noise=noise, t=t)["loss"]
    torch.testing.assert_close(l1, l2)  # the state cannot reach the loss
    l1.backward()
    assert head.mask_token.grad is not None and head.mask_token.grad.abs().sum() > 0
    head.eval()  # no dropout outside training
    p3 = head(**batch, noise=noise, t=t)["pred_velocity"]
    p4 = head(**{**batch, "state": batch["state"] + 1.0}, noise=noise, t=t)["pred_velocity"]
    assert (p3 - p4).abs().max() > 1e-6


def test_state_dropout_is_per_sample():
    head = tiny_head(state_dropout_prob=0.5).train()
    torch.manual_seed(0)
    state = torch.randn(400, 1, 32)
    feats = head.encode_state(state, torch.zeros(400, dtype=torch.long), train_augment=True)
    dropped = (feats == head.mask_token).all(dim=-1).squeeze(1)
    assert 0.4 < dropped.float().mean().item() < 0.6


def test_additive_state_noise_only_while_training():
    head = tiny_head(state_additive_noise_scale=0.5)
    batch = make_batch(head)
    clean = head.encode_state(batch["state"], batch["embodiment_id"])
    noisy = head.encode_state(batch["state"], batch["embodiment_id"], train_augment=True)
    assert abs((noisy - clean).std().item() - 0.5) < 0.1


# --------------------------------------------------------------------------- sampling
def test_get_action_matches_manual_euler():
    head = tiny_head().eval()
    batch = make_batch(head)
    noise = torch.randn(B, 16, 32)
    out = head.get_action(**context_args(batch), noise=noise)
    assert out.shape == (B, 16, 32) and out.dtype == torch.float32
    ctx = head.prepare_context(**context_args(batch))
    x = noise.clone()
    with torch.no_grad():
        for tau in (0, 250, 500, 750):
            x = x + 0.25 * head.velocity(ctx, x, torch.full((B,), tau))
    torch.testing.assert_close(out, x)


def test_velocity_decodes_every_token_then_keeps_the_action_ones():
    head = tiny_head().eval()
    batch = make_batch(head)
    ctx = head.prepare_context(**context_args(batch))
    x = torch.randn(B, 16, 32)
    tau = torch.tensor([250, 929])
    with torch.no_grad():
        v = head.velocity(ctx, x, tau)
        feats = head.action_encoder(x, tau, ctx.embodiment_id) + head.position_embedding.weight[:16]
        trunk = head.model(torch.cat([ctx.state_features, feats], 1), tau, cross_cache=ctx.cross_cache)
        full = head.action_decoder(trunk, ctx.embodiment_id)
    assert full.shape == (B, 1 + 16, 32)
    assert torch.equal(v, full[:, -16:])


def test_get_action_with_zero_decoder_adds_bias():
    head = tiny_head().eval()
    bias = torch.randn(32, 32)
    with torch.no_grad():
        head.action_decoder.layer2.W.zero_()
        head.action_decoder.layer2.b.copy_(bias)
    batch = make_batch(head)
    noise = torch.randn(B, 16, 32)
    out = head.get_action(**context_args(batch), noise=noise)
    expected = noise + bias[batch["embodiment_id"]][:, None, :]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    out8 = head.get_action(**context_args(batch), noise=noise, num_steps=8)
    torch.testing.assert_close(out8, expected, rtol=0, atol=1e-6)


def test_get_action_generator_is_reproducible_and_noise_checked():
    head = tiny_head().eval()
    args = context_args(make_batch(head))
    a = head.get_action(**args, generator=torch.Generator().manual_seed(5))
    b = head.get_action(**args, generator=torch.Generator().manual_seed(5))
    c = head.get_action(**args, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    with pytest.raises(ValueError, match="noise"):
        head.get_action(**args, noise=torch.zeros(B, 8, 32))


def test_backbone_keys_values_and_state_computed_once_per_call():
    head = tiny_head().eval()
    calls = {"to_k": 0, "to_q": 0, "state": 0}
    for block in head.model.transformer_blocks:
        if block.kind != "self":
            block.attn1.to_k.register_forward_hook(lambda *a: calls.__setitem__("to_k", calls["to_k"] + 1))
    head.model.transformer_blocks[0].attn1.to_q.register_forward_hook(
        lambda *a: calls.__setitem__("to_q", calls["to_q"] + 1)
    )
    head.state_encoder.register_forward_hook(lambda *a: calls.__setitem__("state", calls["state"] + 1))
    head.get_action(**context_args(make_batch(head)))
    n_cross = sum(b.kind != "self" for b in head.model.transformer_blocks)
    assert calls == {"to_k": n_cross, "to_q": 4, "state": 1}


def test_padded_backbone_tokens_do_not_change_actions():
    head = tiny_head().eval()
    batch = make_batch(head)
    noise = torch.randn(B, 16, 32)
    base = head.get_action(**context_args(batch), noise=noise)
    args = context_args(batch)
    args["backbone_features"] = torch.cat([args["backbone_features"], torch.randn(B, 3, 64)], 1)
    args["backbone_attention_mask"] = torch.cat(
        [args["backbone_attention_mask"], torch.zeros(B, 3, dtype=torch.bool)], 1
    )
    args["image_mask"] = torch.cat([args["image_mask"], torch.ones(B, 3, dtype=torch.bool)], 1)
    torch.testing.assert_close(head.get_action(**args, noise=noise), base)


def test_finite_output_when_a_sample_has_no_image_tokens():
    head = tiny_head().eval()
    batch = make_batch(head)
    batch["image_mask"][1] = False
    out = head.get_action(**context_args(batch))
    assert torch.isfinite(out).all()
    seen = []
    for block in head.model.transformer_blocks:
        if block.kind == CROSS_IMAGE:
            block.attn1.register_forward_hook(lambda m, a, o: seen.append(o))
    head.train()
    loss = head(**batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)
    # no image token -> the image blocks' attention update is exactly zero for that sample
    image_blocks = [b for b in head.model.transformer_blocks if b.kind == CROSS_IMAGE]
    assert len(seen) == len(image_blocks)
    for o in seen:
        assert torch.equal(o[1], torch.zeros_like(o[1]))
        assert o[0].abs().sum() > 0


def test_input_validation_messages():
    head = tiny_head()
    batch = make_batch(head)
    with pytest.raises(ValueError, match="state"):
        head(**{**batch, "state": torch.zeros(B, 1, 7)})
    with pytest.raises(ValueError, match="action_horizon"):
        head(**{**batch, "action": torch.zeros(B, 3, 32)})
    with pytest.raises(ValueError, match="image_mask"):
        head(**{**batch, "image_mask": torch.zeros(B, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="embodiment_id"):
        head(**{**batch, "embodiment_id": torch.zeros(B)})
    with pytest.raises(ValueError, match="out of range"):
        head(**{**batch, "embodiment_id": torch.tensor([0, 32])})


# --------------------------------------------------------------------------- real-time chunking
def test_rtc_weights_formula():
    rtc = RealTimeChunking(prev_actions=torch.zeros(1, 7, 2), frozen_steps=2, overlap_steps=3)
    w = rtc.weights(9, torch.device("cpu")).tolist()
    ramp = [c * (math.exp(c) - 1) / (math.e - 1) for c in (0.75, 0.5, 0.25)]
    assert w[:2] == [1.0, 1.0]
    assert w[2:5] == pytest.approx(ramp, abs=1e-6)
    assert w[5:] == [0.0, 0.0, 0.0, 0.0]
    assert all(a > b for a, b in zip(w[1:5], w[2:6]))


def test_rtc_freezes_prefix_and_is_a_no_op_without_weights():
    head = tiny_head().eval()
    args = context_args(make_batch(head))
    noise = torch.randn(B, 16, 32)
    prev = torch.rand(B, 12, 32) * 2 - 1
    plain = head.get_action(**args, noise=noise)
    out = head.get_action(
        **args, noise=noise, rtc={"prev_actions": prev, "frozen_steps": 4, "overlap_steps": 5}
    )
    torch.testing.assert_close(out[:, :4], prev[:, :4], rtol=0, atol=1e-5)
    assert not torch.allclose(out[:, 4:9], plain[:, 4:9])
    # overlap steps move toward the previous chunk
    assert (out[:, 4:9] - prev[:, 4:9]).abs().mean() < (plain[:, 4:9] - prev[:, 4:9]).abs().mean()
    none = head.get_action(**args, noise=noise, rtc=RealTimeChunking(prev, 0, 0))
    torch.testing.assert_close(none, plain)
    with pytest.raises(ValueError, match="prev_actions"):
        head.get_action(**args, rtc=RealTimeChunking(torch.zeros(B, 20, 32), 1, 1))
    with pytest.raises(ValueError, match="missing"):
        head.get_action(**args, rtc={"prev_actions": prev})
