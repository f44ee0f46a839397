"""AdamW parameter groups (no decay on biases/norms/1-D) and the warmup+cosine schedule length."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import get_cosine_schedule_with_warmup

from gr00t.model.gr00t_n16 import Gr00tN16Model
from gr00t.model.presets import load_preset
from gr00t.train.optim import OptimizerSettings, build_optimizer, build_scheduler, param_groups, warmup_steps


@pytest.fixture(scope="module")
def tiny_model() -> Gr00tN16Model:
    torch.manual_seed(0)
    return Gr00tN16Model(load_preset("n16_tiny"))


def _names_by_group(model: torch.nn.Module, groups: list[dict]) -> dict[str, set[str]]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {g["name"]: {by_id[id(p)] for p in g["params"]} for g in groups}


def test_groups_cover_every_trainable_parameter_once(tiny_model: Gr00tN16Model) -> None:
    groups = param_groups(tiny_model, OptimizerSettings())
    names = _names_by_group(tiny_model, groups)
    flat = [n for g in names.values() for n in g]
    trainable = {n for n, p in tiny_model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in tiny_model.named_parameters() if not p.requires_grad}
    assert len(flat) == len(set(flat)), "a parameter appears in two groups"
    assert set(flat) == trainable
    assert frozen, "the tiny preset freezes part of the backbone; the test needs frozen params"
    assert not set(flat) & frozen


def test_no_weight_decay_on_bias_norm_and_1d(tiny_model: Gr00tN16Model) -> None:
    settings = OptimizerSettings(weight_decay=0.123)
    groups = param_groups(tiny_model, settings)
    params = dict(tiny_model.named_parameters())
    for group in groups:
        for name in _names_by_group(tiny_model, [group])[group["name"]]:
            p = params[name]
            leaf = name.rsplit(".", 1)[-1]
            exempt = p.ndim < 2 or leaf in ("bias", "b") or "norm" in name.lower()
            if group["name"].endswith("no_decay"):
                assert group["weight_decay"] == 0.0
                assert exempt, f"{name} {tuple(p.shape)} should be decayed"
            else:
                assert group["weight_decay"] == pytest.approx(0.123)
                assert not exempt, f"{name} {tuple(p.shape)} must not be decayed"
    by_group = _names_by_group(tiny_model, groups)
    no_decay = {n for g in groups if g["weight_decay"] == 0.0 for n in by_group[g["name"]]}
    # Concrete members of each kind exist in the real model.
    csl_bias = {n for names in by_group.values() for n in names if n.endswith(".b") and params[n].ndim == 2}
    assert csl_bias, "per-embodiment biases b [E, out] are 2-D but must not be decayed"
    assert csl_bias <= no_decay
    assert any("norm" in n.lower() for n in no_decay)


def test_separate_backbone_learning_rate(tiny_model: Gr00tN16Model) -> None:
    settings = OptimizerSettings(learning_rate=1e-4, backbone_learning_rate=2e-5)
    groups = param_groups(tiny_model, settings)
    names = _names_by_group(tiny_model, groups)
    assert any(g["name"].startswith("backbone/") for g in groups), "tiny preset trains the top LLM layer"
    for g in groups:
        expected = 2e-5 if g["name"].startswith("backbone/") else 1e-4
        assert g["lr"] == pytest.approx(expected)
        assert all(n.startswith("backbone.") == g["name"].startswith("backbone/") for n in names[g["name"]])
    opt = build_optimizer(tiny_model, settings)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["betas"] == (0.9, 0.999)
    assert sorted(g["lr"] for g in opt.param_groups) == sorted(g["lr"] for g in groups)


def test_optimizer_rejects_bad_values(tiny_model: Gr00tN16Model) -> None:
    with pytest.raises(ValueError, match="learning_rate"):
        build_optimizer(tiny_model, OptimizerSettings(learning_rate=0.0))
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(frozen, OptimizerSettings())


def _lrs(max_steps: int, ratio: float, base: float = 1.0) -> list[float]:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=base)
    sched = build_scheduler(opt, max_steps, OptimizerSettings(learning_rate=base, warmup_ratio=ratio))
    out = []
    for _ in range(max_steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    out.append(opt.param_groups[0]["lr"])
    return out


@pytest.mark.parametrize("max_steps", [20, 100, 1000])
def test_schedule_length_follows_max_steps(max_steps: int) -> None:
    lrs = _lrs(max_steps, 0.05)
    warm = math.ceil(0.05 * max_steps)
    assert warmup_steps(max_steps, 0.05) == warm
    assert lrs[0] == 0.0
    assert lrs[warm] == pytest.approx(1.0)  # warmup ends exactly at ceil(ratio * max_steps)
    assert max(lrs) == pytest.approx(1.0)
    assert lrs[max_steps] == pytest.approx(0.0, abs=1e-12)  # cosine reaches 0 exactly at max_steps
    assert lrs[max_steps - 1] > 0.0
    mid = warm + (max_steps - warm) // 2
    if (max_steps - warm) % 2 == 0:
        assert lrs[mid] == pytest.approx(0.5)
    # Same numbers as transformers' independent implementation of warmup + cosine.
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    ref = get_cosine_schedule_with_warmup(opt, warm, max_steps)
    expected = []
    for _ in range(max_steps):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert lrs[:max_steps] == pytest.approx(expected, abs=1e-12)


def test_schedule_keeps_group_ratio_and_rejects_bad_settings() -> None:
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [a], "lr": 1e-4}, {"params": [b], "lr": 1e-5}])
    sched = build_scheduler(opt, 10, OptimizerSettings(warmup_ratio=0.1))
    for _ in range(4):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(10 * opt.param_groups[1]["lr"])
    with pytest.raises(ValueError, match="warmup_ratio"):
        build_scheduler(opt, 10, OptimizerSettings(warmup_ratio=1.5))
    with pytest.raises(ValueError, match="max_steps"):
        build_scheduler(opt, 0, OptimizerSettings())
    with pytest.raises(ValueError, match="lr_scheduler"):
        build_scheduler(opt, 10, OptimizerSettings(lr_scheduler="linear-ish"))
