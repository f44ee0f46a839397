"""Gr00tBatch: the one batch type, and how it travels (pickling, DataLoader, devices, dtypes)."""

from __future__ import annotations

import pickle

import pytest
import torch
from accelerate.utils import send_to_device
from torch.utils.data import DataLoader
from torch.utils.data._utils.pin_memory import pin_memory

from gr00t.model.backbones.eagle_processing import EagleInputs
from gr00t.model.backbones.qwen3_vl_processing import Qwen3VLInputs
from gr00t.model.batch import Gr00tBatch, HeadInputs
from tests.model.test_gr00t_n16 import make_batch


def test_to_casts_floating_tensors_only_and_keeps_the_types():
    batch = make_batch()
    half = batch.to("cpu", dtype=torch.bfloat16)
    assert isinstance(half, Gr00tBatch) and isinstance(half.backbone, EagleInputs)
    assert half.backbone.pixel_values.dtype == torch.bfloat16 and half.head.action.dtype == torch.bfloat16
    assert half.backbone.input_ids.dtype == torch.long and half.head.embodiment_id.dtype == torch.long
    assert half.backbone.pixel_attention_mask.dtype == torch.bool
    assert batch.head.state.dtype == torch.float32  # the original is untouched
    torch.testing.assert_close(half.head.state.float(), batch.head.state, rtol=1e-2, atol=1e-2)
    moved = send_to_device(batch, torch.device("cpu"), non_blocking=True)  # accelerate's helper
    assert isinstance(moved, Gr00tBatch)
    assert sorted(moved.tensors()) == sorted(batch.tensors())
    assert all(torch.equal(moved.tensors()[k], v) for k, v in batch.tensors().items())


def test_size_fields_and_action_free_copy():
    batch = make_batch()
    assert len(batch) == batch.batch_size == 2 and batch.has_action
    assert "backbone.spatial_shapes" in batch.tensors() and "head.action_mask" in batch.tensors()
    inference = batch.without_action()
    assert not inference.has_action and inference.head.action_mask is None
    assert batch.has_action  # a copy, not an edit
    assert "head.action" not in inference.tensors()
    with pytest.raises(TypeError, match="backbone must be a BackboneInputs"):
        Gr00tBatch(backbone={"input_ids": batch.backbone.input_ids}, head=batch.head)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="head must be a HeadInputs"):
        Gr00tBatch(backbone=batch.backbone, head={"state": batch.head.state})  # type: ignore[arg-type]


def test_pin_memory_goes_through_the_batch():
    """DataLoader(pin_memory=True) calls batch.pin_memory(), which pins every tensor (needs an
    accelerator; without one torch refuses to pin, which shows the call reached the tensors)."""
    batch = make_batch()
    if torch.accelerator.is_available():
        pinned = pin_memory(batch)
        assert isinstance(pinned, Gr00tBatch)
        assert all(t.is_pinned() for t in pinned.tensors().values())
    else:
        with pytest.raises(RuntimeError, match="accelerator"):
            pin_memory(batch)


def _collate(samples: list[int]) -> Gr00tBatch:
    ids = torch.tensor([[1, 2, s] for s in samples])
    backbone = Qwen3VLInputs(input_ids=ids, attention_mask=torch.ones_like(ids))
    head = HeadInputs(state=torch.full((len(samples), 1, 4), float(samples[0])), embodiment_id=ids[:, 2])
    return Gr00tBatch(backbone, head)


def test_batches_cross_process_boundaries():
    batch = make_batch()
    clone = pickle.loads(pickle.dumps(batch))
    assert all(torch.equal(clone.tensors()[k], v) for k, v in batch.tensors().items())
    loader = DataLoader(list(range(6)), batch_size=3, num_workers=2, collate_fn=_collate)
    got = list(loader)
    assert [type(b) for b in got] == [Gr00tBatch, Gr00tBatch]
    assert [b.head.embodiment_id.tolist() for b in got] == [[0, 1, 2], [3, 4, 5]]
    assert isinstance(got[0].backbone, Qwen3VLInputs) and len(got[1]) == 3
