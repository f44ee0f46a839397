"""A model trained with `rtc_training_max_delay` on the demo data continues a frozen prefix.

The tiny model's action head is trained with training-time RTC on the demo data (the backbone's
features of every demo sample computed once: the backbone is frozen in this test, so this is the same
training as the trainer's, only faster). Then, at inference in prefix mode, the prefix is the
recorded chunk shifted by ±δ: a model that continues its prefix carries the shift into the first
free step; sampling without the prefix (same noise) does not see it.
"""

from __future__ import annotations

import pytest
import torch

from gr00t.data.dataset import Gr00tDataset
from gr00t.model.rtc import RealTimeChunking
from tests.train._pipeline import build_pipeline, prepare_demo_data

DELAY = 4  # frozen steps at inference
SHIFT = 0.5  # the prefix offset, normalised units


@pytest.fixture(scope="module")
def demo_features(demo_dataset_v3, tmp_path_factory):
    """(model, batches of (backbone output, head inputs)) for every sample of the demo data."""
    data = prepare_demo_data(demo_dataset_v3, tmp_path_factory.mktemp("rtc") / "demo")
    model, _, collator, processor, _ = build_pipeline(data, rtc_training_max_delay=6)
    processor.eval()
    dataset = Gr00tDataset(data, "new_embodiment")
    batches = []
    with torch.no_grad():
        for start in range(0, len(dataset), 32):
            batch = collator([processor(dataset[i]) for i in range(start, min(start + 32, len(dataset)))])
            batches.append((model.backbone(batch.backbone), batch.head))
    return model, batches


def train_head(head, batches, steps: int, seed: int = 0) -> None:
    torch.manual_seed(seed)
    head.train()
    params = [p for p in head.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: threads only add overhead
    try:
        _train_steps(head, batches, optimizer, steps)
    finally:
        torch.set_num_threads(threads)
    head.eval()


def _train_steps(head, batches, optimizer, steps: int) -> None:
    for step in range(steps):
        features, inputs = batches[step % len(batches)]
        out = head(
            features.backbone_features,
            features.backbone_attention_mask,
            features.image_mask,
            inputs.state,
            inputs.action,
            inputs.embodiment_id,
            inputs.action_mask,
        )
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    return float((x * mask).sum() / mask.sum())


def prefix_response(head, batches) -> tuple[float, float, float]:
    """(share of the prefix shift carried into the first free step, mean jump from the prefix's last
    step to the first free one with the prefix, and without it)."""
    response, jump_prefix, jump_free = [], [], []
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for features, inputs in batches:
            ctx = head.prepare_context(
                features.backbone_features,
                features.backbone_attention_mask,
                features.image_mask,
                inputs.state,
                inputs.embodiment_id,
            )
            mask = inputs.action_mask[:, DELAY]
            noise = torch.randn(inputs.action.shape, generator=g)
            free = head.sample(ctx, noise=noise)
            for shift in (SHIFT, -SHIFT):
                prev = inputs.action[:, :DELAY] + shift
                out = head.sample(ctx, noise=noise, rtc=RealTimeChunking(prev, DELAY, mode="prefix"))
                assert torch.equal(out[:, :DELAY], prev)
                response.append(masked_mean(out[:, DELAY] - free[:, DELAY], mask) / shift)
                jump_prefix.append(masked_mean((out[:, DELAY] - prev[:, -1]).abs(), mask))
                jump_free.append(masked_mean((free[:, DELAY] - prev[:, -1]).abs(), mask))
    avg = lambda v: sum(v) / len(v)  # noqa: E731
    return avg(response), avg(jump_prefix), avg(jump_free)


@pytest.mark.slow
def test_rtc_trained_head_continues_the_frozen_prefix(demo_features):
    model, batches = demo_features
    head = model.action_head
    untrained = prefix_response(head, batches)
    train_head(head, batches, steps=1500)
    response, jump_prefix, jump_free = prefix_response(head, batches)
    # Before training the prefix does not steer the continuation; after 1500 steps (≈ 90 s of one CPU
    # core) about a quarter of its shift is carried into the first free step (a third after 2000 steps,
    # a half after the demo recipe's finetune of 3000 steps: BENCHMARKS.md), and the continuation sits
    # closer to the prefix's last action than sampling without it.
    assert abs(untrained[0]) < 0.05, untrained
    assert response > 0.12, (response, untrained)
    assert jump_prefix < 0.92 * jump_free, (jump_prefix, jump_free)
