"""The training DataLoader: sampler choice, per-worker thread settings, uint8 pixel transport."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from gr00t.data import video
from gr00t.data.dataset import Gr00tDataset, MixtureDataset
from gr00t.data.sampler import MixtureSampler
from gr00t.data.tokenizer import build_tiny_tokenizer
from gr00t.data.window_sampler import WindowSampler
from gr00t.data.window_stream import WindowStream
from gr00t.model.backbones import build_backbone, build_input_builder
from gr00t.model.batch import Gr00tBatch, HeadInputs
from gr00t.model.presets import load_preset
from gr00t.train.loader import build_train_dataloader, finish_pixel_values, make_sampler, worker_init
from gr00t.train.settings import TrainingSettings


class _Threads(IterableDataset):
    def __iter__(self):
        while True:
            yield torch.tensor([torch.get_num_threads(), video.DECODER_STATE["ffmpeg_threads"]])


@pytest.mark.parametrize("threads", [1, 2])
def test_every_worker_sets_its_threads(threads: int) -> None:
    torch_threads = torch.get_num_threads()
    loader = DataLoader(
        _Threads(),
        batch_size=None,
        num_workers=2,
        worker_init_fn=functools.partial(worker_init, threads=threads),
    )
    it = iter(loader)
    seen = {tuple(next(it).tolist()) for _ in range(4)}
    assert seen == {(threads, threads)}
    assert torch.get_num_threads() == torch_threads  # the main process is left alone


def test_make_sampler_follows_the_setting(demo_dataset_v3: Path) -> None:
    data = MixtureDataset([Gr00tDataset(demo_dataset_v3, "new_embodiment", load_video=False)])
    windows = make_sampler(data, TrainingSettings(per_device_batch_size=4), rank=1, world_size=2)
    assert isinstance(windows, WindowSampler) and (windows.rank, windows.world_size) == (1, 2)
    assert windows.lanes == 16 and windows.window == 4
    random = make_sampler(data, TrainingSettings(per_device_batch_size=4, dataloader_sampling="random"), 0, 1)
    assert isinstance(random, MixtureSampler) and random.epoch_length % 4 == 0

    class Plain(Dataset):
        def __len__(self) -> int:
            return 10

        def __getitem__(self, i: int) -> int:
            return i

    assert isinstance(make_sampler(Plain(), TrainingSettings(), 0, 1), MixtureSampler)
    with pytest.raises(ValueError, match="dataloader_sampling='shuffled'"):
        TrainingSettings(dataloader_sampling="shuffled").validate()


def test_windows_sampler_reads_through_a_window_stream(demo_dataset_v3: Path) -> None:
    data = MixtureDataset([Gr00tDataset(demo_dataset_v3, "new_embodiment", load_video=False)])
    settings = TrainingSettings(per_device_batch_size=4, dataloader_num_workers=0)
    sampler = make_sampler(data, settings, 0, 1)
    loader = build_train_dataloader(data, sampler, list, settings, 0)
    assert isinstance(loader.dataset, WindowStream) and sampler.batch_size == 4
    batch = next(iter(loader))
    expected = [data.datasets[0].locate(int(i)) for _, i in zip(range(4), sampler)]
    assert [(s["episode_index"], s["step"]) for s in batch] == expected


def _batch(backbone) -> Gr00tBatch:
    n = int(backbone.input_ids.shape[0])
    return Gr00tBatch(
        backbone, HeadInputs(state=torch.zeros(n, 1, 4), embodiment_id=torch.zeros(n, dtype=torch.long))
    )


@pytest.mark.parametrize(
    ("preset", "overrides"), [("n16_tiny", {}), ("qwen3_vl_tiny", {"min_pixels": 4 * 32 * 32})]
)
def test_uint8_transport_is_finished_bit_for_bit(preset: str, overrides: dict) -> None:
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (96, 128, 3), dtype=np.uint8),
        rng.integers(0, 256, (200, 200, 3), dtype=np.uint8),
    ]
    tokenizer, config = build_tiny_tokenizer(), load_preset(preset)
    floats = build_input_builder(config, tokenizer, **overrides)
    raw = build_input_builder(config, tokenizer, pixel_transport="uint8", **overrides)
    a = _batch(floats.collate([floats("pick", images), floats("pick", images[:1])]))
    b = _batch(raw.collate([raw("pick", images), raw("pick", images[:1])]))
    assert b.backbone.pixel_values.dtype == torch.uint8
    if preset == "n16_tiny":  # Eagle pads images to the longest patch count: padding must stay 0
        assert not bool(b.backbone.pixel_attention_mask.all())
    finished = finish_pixel_values(b)
    assert finished.backbone.pixel_values.dtype == torch.float32
    assert torch.equal(
        a.backbone.pixel_values.view(torch.int32), finished.backbone.pixel_values.view(torch.int32)
    )
    assert finished.backbone.input_ids is b.backbone.input_ids  # nothing else touched
    half = finish_pixel_values(
        b, torch.bfloat16
    ).backbone.pixel_values  # DeepSpeed's dtype, as float inputs get
    assert torch.equal(half, a.backbone.pixel_values.to(torch.bfloat16))
    assert finish_pixel_values(a) is a and finish_pixel_values([1]) == [1]
    with pytest.raises(ValueError, match="pixel_transport='int4'"):
        build_input_builder(config, tokenizer, pixel_transport="int4")
    backbone = build_backbone(config).eval()  # the backbone normalises uint8 pixels it is given the same way
    with torch.no_grad():
        want = backbone(a.backbone).backbone_features
        assert torch.equal(backbone(b.backbone).backbone_features, want)
        assert torch.equal(backbone(finished.backbone).backbone_features, want)
