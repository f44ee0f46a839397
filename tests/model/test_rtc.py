"""Training-time real-time chunking (`rtc_training_max_delay`) and the matching prefix inference mode."""

from __future__ import annotations

import pytest
import torch

from gr00t.data.collator import Gr00tCollator
from gr00t.model.config import Gr00tN16Config
from gr00t.model.gr00t_n16 import Gr00tN16Model
from gr00t.model.rtc import RealTimeChunking, prefix_mask, sample_delays
from tests.data.test_processor import make_processor, raw_sample
from tests.model.test_action_head import B, context_args, make_batch, tiny_head
from tests.model.test_reference_outputs import REFERENCE, assert_pinned, load_reference

BUCKETS = 1000


def capture_action_encoder(head):
    """Record the (actions, timesteps) every action-encoder call receives."""
    calls = []
    hook = head.action_encoder.register_forward_pre_hook(
        lambda mod, args: calls.append((args[0].detach().clone(), args[1].clone()))
    )
    return calls, hook


def test_config_field_is_checked_and_saved(tmp_path):
    assert Gr00tN16Config().rtc_training_max_delay == 0
    for bad in (-1, 16, 2.5, True):
        with pytest.raises(ValueError, match="rtc_training_max_delay"):
            Gr00tN16Config(rtc_training_max_delay=bad)
    head = tiny_head(rtc_training_max_delay=5)
    head.config.save_pretrained(tmp_path)
    assert '"rtc_training_max_delay": 5' in (tmp_path / "config.json").read_text()
    assert Gr00tN16Config.from_pretrained(tmp_path).rtc_training_max_delay == 5


def test_delays_are_uniform_over_0_to_k_and_follow_the_global_rng():
    torch.manual_seed(1)
    d = sample_delays(4000, 3, torch.device("cpu"))
    counts = torch.bincount(d, minlength=4)
    assert d.dtype == torch.long and counts.numel() == 4 and counts.min() > 900
    torch.manual_seed(1)
    assert torch.equal(sample_delays(4000, 3, torch.device("cpu")), d)
    assert prefix_mask(torch.tensor([0, 2]), 4).tolist() == [[False] * 4, [True, True, False, False]]


def test_prefix_steps_get_clean_actions_at_t1_and_the_rest_the_flow_path():
    head = tiny_head(rtc_training_max_delay=6).eval()
    batch = make_batch(head)
    noise = torch.randn(B, 16, 32)
    t = torch.tensor([0.3, 0.8])
    delay = torch.tensor([4, 0])
    calls, hook = capture_action_encoder(head)
    out = head(**batch, noise=noise, t=t, rtc_delay=delay)
    hook.remove()
    ((x, tau),) = calls
    plain_x = (1 - t[:, None, None]) * noise + t[:, None, None] * batch["action"]
    assert torch.equal(x[0, :4], batch["action"][0, :4])  # executed prefix: the clean action
    assert torch.equal(x[0, 4:], plain_x[0, 4:]) and torch.equal(x[1], plain_x[1])
    assert tau.shape == (B, 16)
    assert tau[0, :4].tolist() == [BUCKETS] * 4  # ... at the t = 1 bucket
    assert tau[0, 4:].tolist() == [300] * 12 and tau[1].tolist() == [800] * 16
    assert out["rtc_delay"].tolist() == [4, 0]


def test_prefix_steps_carry_no_loss():
    head = tiny_head(rtc_training_max_delay=6).eval()
    batch = make_batch(head)
    args = dict(noise=torch.randn(B, 16, 32), t=torch.tensor([0.3, 0.8]), rtc_delay=torch.tensor([5, 2]))
    out = head(**batch, **args)
    out["pred_velocity"].retain_grad()
    out["loss"].backward()
    grad = out["pred_velocity"].grad
    assert grad[0, :5].abs().max() == 0 and grad[1, :2].abs().max() == 0
    assert grad[0, 5:].abs().min() > 0 and grad[1, 2:].abs().min() > 0

    # Changing the prefix predictions changes nothing: add garbage to the decoder's prefix outputs.
    def spoil(mod, inputs, output):
        output = output.clone()
        horizon_start = output.shape[1] - 16
        output[0, horizon_start : horizon_start + 5] += 1e3
        output[1, horizon_start : horizon_start + 2] -= 1e3
        return output

    hook = head.action_decoder.register_forward_hook(spoil)
    spoiled = head(**batch, **args)
    hook.remove()
    assert not torch.equal(spoiled["pred_velocity"], out["pred_velocity"])
    assert torch.equal(spoiled["loss"], out["loss"])
    # the loss is the masked mean over the remaining steps
    pred, target = out["pred_velocity"].detach(), out["target_velocity"]
    keep = torch.ones(B, 16, 32)
    keep[0, :5] = 0
    keep[1, :2] = 0
    want = ((pred - target) ** 2 * keep).sum() / (keep.sum() + 1e-6)
    torch.testing.assert_close(out["loss"].detach(), want, rtol=1e-6, atol=0)


def _pinned_setup():
    reference, meta = load_reference(REFERENCE)
    exact = (
        meta.get("cpu_capability") == torch.backends.cpu.get_cpu_capability()
        and meta.get("torch") == torch.__version__
    )
    proc, config = make_processor("eagle", training=False)
    samples = [
        proc(raw_sample(seed=1, language="go")),
        proc(raw_sample(seed=2, frames=2, language="pick it")),
    ]
    batch = Gr00tCollator(proc.tokenizer.pad_token_id)(samples)
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(2, config.action_horizon, config.max_action_dim, generator=g)
    t = torch.rand(2, generator=g)
    return reference, exact, config, batch, noise, t


def _seed_drawing_zero_delays(k: int) -> int:
    """A global seed whose first `randint(0, k+1, (2,))` is all zero."""
    for seed in range(1000):
        torch.manual_seed(seed)
        if not torch.randint(0, k + 1, (2,)).any():
            return seed
    raise AssertionError("no seed found")


def test_d0_loss_equals_the_pinned_loss_bit_for_bit(monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference, exact, config, batch, noise, t = _pinned_setup()
        want = reference["eagle/loss_fixed"]
        config.rtc_training_max_delay = 3  # switch on
        torch.manual_seed(0)
        model = Gr00tN16Model(config).eval()
        zeros = torch.zeros(2, dtype=torch.long)
        assert_pinned(model(batch, noise=noise, t=t, rtc_delay=zeros).loss.detach(), want, exact, "given d=0")
        # switch on, d drawn from the global RNG and all zero
        torch.manual_seed(_seed_drawing_zero_delays(3))
        assert_pinned(model(batch, noise=noise, t=t).loss.detach(), want, exact, "drawn d=0")
        # switch off: no draw at all
        config.rtc_training_max_delay = 0
        assert_pinned(model(batch, noise=noise, t=t).loss.detach(), want, exact, "switch off")
    finally:
        torch.set_num_threads(threads)


def test_drawn_d0_in_training_mode_keeps_every_other_draw():
    """The delay is drawn after the flow noise, the flow time and the state augmentation, so with
    d = 0 drawn (and no DiT dropout, whose masks come later) the training-mode loss is the plain one."""
    head_off = tiny_head(dit_dropout=0.0, state_dropout_prob=0.5, state_additive_noise_scale=0.1).train()
    head_on = tiny_head(
        dit_dropout=0.0, state_dropout_prob=0.5, state_additive_noise_scale=0.1, rtc_training_max_delay=1
    ).train()
    head_on.load_state_dict(head_off.state_dict())
    batch = make_batch(head_off)
    for seed in range(200):
        torch.manual_seed(seed)
        off = head_off(**batch)
        torch.manual_seed(seed)
        on = head_on(**batch)
        assert torch.equal(on["t"], off["t"])
        if not on["rtc_delay"].any():
            assert torch.equal(on["loss"], off["loss"])
            break
    else:
        raise AssertionError("no seed drew d = 0 for both samples")


def test_prefix_inference_freezes_the_prefix_and_conditions_like_training():
    head = tiny_head(rtc_training_max_delay=6).eval()
    batch = make_batch(head)
    args = context_args(batch)
    noise = torch.randn(B, 16, 32)
    prev = torch.rand(B, 10, 32) * 2 - 1
    calls, hook = capture_action_encoder(head)
    out = head.get_action(
        **args, noise=noise, rtc={"prev_actions": prev, "frozen_steps": 3, "overlap_steps": 0}
    )
    hook.remove()
    assert torch.equal(out[:, :3], prev[:, :3])
    assert len(calls) == head.config.num_inference_timesteps
    for k, (x, tau) in enumerate(calls):  # every Euler step sees the prefix clean, at t = 1
        assert torch.equal(x[:, :3], prev[:, :3])
        assert (tau[:, :3] == BUCKETS).all() and (tau[:, 3:] == k * BUCKETS // len(calls)).all()
    # One Euler step from t = 0 is the training forward at t = 0 with the same prefix: both agree.
    one = head.get_action(**args, noise=noise, num_steps=1, rtc=RealTimeChunking(prev, 3, mode="prefix"))
    action = torch.zeros(B, 16, 32)
    action[:, :10] = prev
    train = head(**{**batch, "action": action}, noise=noise, t=torch.zeros(B), rtc_delay=torch.tensor([3, 3]))
    torch.testing.assert_close(one[:, 3:], noise[:, 3:] + train["pred_velocity"][:, 3:], rtol=0, atol=1e-6)
    # frozen_steps = 0 is plain sampling, bit for bit
    plain = head.get_action(**args, noise=noise)
    assert torch.equal(
        head.get_action(**args, noise=noise, rtc=RealTimeChunking(prev, 0, mode="prefix")), plain
    )
    # the guidance mode is still there on request
    guided = head.get_action(**args, noise=noise, rtc=RealTimeChunking(prev, 3, 4, mode="guidance"))
    assert not torch.equal(guided, out)


def test_prefix_mode_limits_and_default_mode():
    plain_head = tiny_head().eval()
    args = context_args(make_batch(plain_head))
    prev = torch.zeros(B, 8, 32)
    noise = torch.randn(B, 16, 32)
    with pytest.raises(ValueError, match="needs a model trained with model.rtc_training_max_delay > 0"):
        plain_head.get_action(**args, rtc=RealTimeChunking(prev, 2, mode="prefix"))
    # without a mode, a plain model uses guidance (the released checkpoints' behaviour) ...
    guided = plain_head.get_action(**args, noise=noise, rtc=RealTimeChunking(prev, 2, 3))
    assert torch.equal(
        guided, plain_head.get_action(**args, noise=noise, rtc=RealTimeChunking(prev, 2, 3, "guidance"))
    )
    # ... and an RTC-trained one the prefix mode
    head = tiny_head(rtc_training_max_delay=4).eval()
    args = context_args(make_batch(head))
    auto = head.get_action(
        **args, noise=noise, rtc={"prev_actions": prev, "frozen_steps": 2, "overlap_steps": 3}
    )
    assert torch.equal(
        auto, head.get_action(**args, noise=noise, rtc=RealTimeChunking(prev, 2, mode="prefix"))
    )
    with pytest.raises(ValueError, match="frozen_steps=5: prefix mode takes 0..4"):
        head.get_action(**args, rtc=RealTimeChunking(prev, 5, mode="prefix"))
    with pytest.raises(ValueError, match="prev_actions has 1 steps"):
        head.get_action(**args, rtc=RealTimeChunking(prev[:, :1], 2, mode="prefix"))
    with pytest.raises(ValueError, match="rtc mode='blend'"):
        head.get_action(**args, rtc=RealTimeChunking(prev, 2, mode="blend"))
    with pytest.raises(ValueError, match="rtc_delay: expected values in 0..15"):
        head(**make_batch(head), rtc_delay=torch.tensor([16, 0]))
