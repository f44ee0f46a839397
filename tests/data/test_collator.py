"""Gr00tCollator: padding and stacking into the model batch of ARCHITECTURE.md."""

from __future__ import annotations

import pytest
import torch

from gr00t.data.collator import Gr00tCollator
from gr00t.model.backbones.eagle_processing import EagleInputs
from gr00t.model.backbones.qwen3_vl_processing import Qwen3VLInputs
from gr00t.model.batch import Gr00tBatch
from tests.data.test_processor import make_processor, raw_sample


@pytest.mark.parametrize("backbone", ["eagle", "qwen3_vl"])
def test_batch_layout(backbone: str) -> None:
    proc, config = make_processor(backbone, training=False)
    short = proc(raw_sample(seed=1, language="go"))
    long = proc(raw_sample(seed=2, frames=2, language="pick up the red block and put it in the box"))
    collate = Gr00tCollator(proc.tokenizer.pad_token_id)
    batch = collate([short, long])
    assert isinstance(batch, Gr00tBatch) and len(batch) == 2
    length = max(len(short["backbone"].input_ids), len(long["backbone"].input_ids))
    assert batch.backbone.input_ids.shape == (2, length) and batch.backbone.input_ids.dtype == torch.long
    pad = length - len(short["backbone"].input_ids)
    assert pad > 0
    # left padding: pad ids and a zero mask first, then the sample unchanged
    assert torch.all(batch.backbone.input_ids[0, :pad] == proc.tokenizer.pad_token_id)
    assert torch.equal(batch.backbone.input_ids[0, pad:], short["backbone"].input_ids)
    assert batch.backbone.attention_mask[0].tolist() == [0] * pad + [1] * len(short["backbone"].input_ids)
    assert torch.equal(batch.backbone.input_ids[1], long["backbone"].input_ids)
    # images sample-major: the short sample's 2 images, then the long sample's 4 (time-major)
    if backbone == "eagle":
        pv = batch.backbone.pixel_values
        assert pv.shape[0] == 6 and pv.shape[2] == 3 * 14 * 14
        assert torch.equal(
            pv[0, : short["backbone"].pixel_values.shape[1]], short["backbone"].pixel_values[0]
        )
        assert torch.equal(pv[2:, : long["backbone"].pixel_values.shape[1]], long["backbone"].pixel_values)
        assert batch.backbone.pixel_attention_mask.shape == pv.shape[
            :2
        ] and batch.backbone.spatial_shapes.shape == (6, 2)
        assert isinstance(batch.backbone, EagleInputs) and not hasattr(batch.backbone, "image_grid_thw")
    else:
        assert torch.equal(
            batch.backbone.pixel_values,
            torch.cat([short["backbone"].pixel_values, long["backbone"].pixel_values]),
        )
        assert batch.backbone.image_grid_thw.shape == (6, 3)
        assert (
            batch.backbone.mm_token_type_ids.shape == (2, length)
            and batch.backbone.mm_token_type_ids[0, :pad].sum() == 0
        )
        assert isinstance(batch.backbone, Qwen3VLInputs) and not hasattr(batch.backbone, "spatial_shapes")
    assert batch.head.state.shape == (2, 1, config.max_state_dim) and batch.head.state.dtype == torch.float32
    assert batch.head.action.shape == (2, config.action_horizon, config.max_action_dim)
    assert torch.equal(batch.head.action_mask[1], long["action_mask"])
    assert batch.head.embodiment_id.tolist() == [10, 10] and batch.head.embodiment_id.dtype == torch.long


def test_inference_batch_and_mixed_batch_error() -> None:
    proc, _ = make_processor(training=False)
    collate = Gr00tCollator(proc.tokenizer.pad_token_id)
    inference = [proc(raw_sample(seed=i, with_action=False)) for i in range(2)]
    batch = collate(inference)
    assert batch.head.action is None and batch.head.action_mask is None and batch.head.state.shape[0] == 2
    with pytest.raises(ValueError, match=r"samples \[1\] have no 'action'"):
        collate([proc(raw_sample(seed=0)), inference[1]])


def test_shape_mismatch_and_missing_keys() -> None:
    proc, _ = make_processor(training=False)
    collate = Gr00tCollator(proc.tokenizer.pad_token_id)
    a, b = proc(raw_sample(seed=0)), proc(raw_sample(seed=1))
    b["state"] = b["state"][:, :8]
    with pytest.raises(ValueError, match="'state' shapes differ"):
        collate([a, b])
    with pytest.raises(KeyError, match="lacks 'embodiment_id'"):
        collate([{k: v for k, v in a.items() if k != "embodiment_id"}])
    with pytest.raises(ValueError, match="empty"):
        collate([])
