"""Pinned outputs: loss and action chunks of the tiny models on fixed inputs, as computed by the code
before the typed batch (commit cd7d27a, `model(**dict_batch)` / `model.get_action(**dict_batch)`).

`data/n16_tiny_reference_outputs.safetensors` holds those values. On a CPU with the same SIMD
capability and torch version as the file records they must match bit for bit; elsewhere (other
kernels round differently) to float32 noise. Everything runs single-threaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from gr00t.data.collator import Gr00tCollator
from gr00t.model.gr00t_n16 import Gr00tN16Model
from tests.data.test_processor import make_processor, raw_sample

REFERENCE = Path(__file__).parent / "data" / "n16_tiny_reference_outputs.safetensors"


def load_reference(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def assert_pinned(got: torch.Tensor, want: torch.Tensor, exact: bool, name: str) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, name
    if exact:
        assert torch.equal(got, want), f"{name}: max diff {(got - want).abs().max().item():.3g}"
    else:
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def model_outputs(backbone: str) -> dict[str, torch.Tensor]:
    """What the reference file holds for one backbone, computed through the public model API."""
    proc, config = make_processor(backbone, training=False)
    samples = [
        proc(raw_sample(seed=1, language="go")),
        proc(raw_sample(seed=2, frames=2, language="pick it")),
    ]
    batch = Gr00tCollator(proc.tokenizer.pad_token_id)(samples)
    torch.manual_seed(0)
    model = Gr00tN16Model(config)
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(2, config.action_horizon, config.max_action_dim, generator=g)
    t = torch.rand(2, generator=g)
    out = {}
    model.eval()
    out["loss_fixed"] = model(batch, noise=noise, t=t).loss.detach()
    model.train()
    torch.manual_seed(123)  # flow draw, state dropout and DiT dropout from the global RNG
    out["loss_train_rng"] = model(batch).loss.detach()
    model.eval()
    out["act_noise"] = model.get_action(batch, noise=noise)
    out["act_gen"] = model.get_action(batch, generator=torch.Generator().manual_seed(9))
    torch.manual_seed(5)
    out["act_rng"] = model.get_action(batch)
    out["act_steps2"] = model.get_action(batch, noise=noise, num_steps=2)
    rtc = {"prev_actions": noise[:, :10] * 0.5, "frozen_steps": 3, "overlap_steps": 4}
    out["act_rtc"] = model.get_action(batch, noise=noise, rtc=rtc)
    return out


@pytest.mark.parametrize("backbone", ["eagle", "qwen3_vl"])
def test_loss_and_actions_equal_the_pinned_reference(backbone: str, one_thread) -> None:
    reference, meta = load_reference(REFERENCE)
    exact = (
        meta.get("cpu_capability") == torch.backends.cpu.get_cpu_capability()
        and meta.get("torch") == torch.__version__
    )
    got = model_outputs(backbone)
    for name, value in got.items():
        assert_pinned(value, reference[f"{backbone}/{name}"], exact, f"{backbone}/{name}")
    assert len(got) == sum(k.startswith(f"{backbone}/") for k in reference)
