"""The real tiny training pipeline used by the trainer tests and their subprocess workers.

model = Gr00tN16Model(n16_tiny); the demo dataset (real parquet + mp4, helper C's generator) read
by Gr00tDataset -> MixtureDataset with Gr00tProcessor (train mode, augmentation keyed by the
sampler's draw) -> Gr00tCollator.
Kept importable without pytest so torchrun workers can use it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from gr00t.data.collator import Gr00tCollator
from gr00t.data.dataset import Gr00tDataset, MixtureDataset
from gr00t.data.image_transforms import ImageTransformConfig
from gr00t.data.processor import Gr00tProcessor
from gr00t.data.stats import compute_and_write, load_stats
from gr00t.data.tokenizer import build_tiny_tokenizer
from gr00t.model.gr00t_n16 import Gr00tN16Model
from gr00t.model.presets import load_preset

EMBODIMENT = "new_embodiment"
IMAGE_SIZE = 64


def prepare_demo_data(source: str | Path, target: str | Path) -> Path:
    """Copy a (read-only, shared) demo dataset and write its statistics into the copy."""
    target = Path(target)
    if not target.exists():
        shutil.copytree(source, target)
    compute_and_write(target, EMBODIMENT)
    return target


def build_pipeline(data_dir: str | Path, model_seed: int = 0, **model_overrides: Any):
    """(model, dataset, collator, processor, statistics) on a dataset made by `prepare_demo_data`."""
    config = load_preset("n16_tiny", **model_overrides)
    stats, rel = load_stats(data_dir, EMBODIMENT)
    processor = Gr00tProcessor.from_config(
        config,
        [(EMBODIMENT, stats, rel)],
        build_tiny_tokenizer(),
        ImageTransformConfig(size=IMAGE_SIZE),
        training=True,
        vlm_overrides={"pixel_transport": "uint8"},  # as the training recipes do
    )
    dataset = MixtureDataset([Gr00tDataset(data_dir, EMBODIMENT)], transform=processor, seed=0)
    collator = Gr00tCollator(processor.tokenizer.pad_token_id)
    torch.manual_seed(model_seed)
    model = Gr00tN16Model(config)
    return model, dataset, collator, processor, {EMBODIMENT: {"stats": stats, "relative_stats": rel}}
