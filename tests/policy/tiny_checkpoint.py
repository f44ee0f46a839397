"""Build a small, complete policy checkpoint (model + processor) on the demo dataset for tests.

Weights are the fresh initialisation of `n16_tiny` (with relative actions on, so decoding must add
the observed state back); statistics come from the demo dataset via `gr00t.data.stats`. Training is
not needed for what these tests check (the policy against a direct model call, decoding, transport).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gr00t.data.demo import write_demo_dataset
from gr00t.data.image_transforms import ImageTransformConfig
from gr00t.data.processor import Gr00tProcessor
from gr00t.data.stats import array_stats, compute_and_write, load_stats
from gr00t.data.tokenizer import build_tiny_tokenizer
from gr00t.model.gr00t_n16 import Gr00tN16Model
from gr00t.model.presets import load_preset

EMBODIMENT = "new_embodiment"
IMAGE_SIZE = 56


def write_small_demo(root: Path, episodes: int = 2, length: int = 40) -> Path:
    """A small demo dataset (LeRobot v3.0) with its statistics files."""
    path = write_demo_dataset(root, version="v3.0", num_episodes=episodes, episode_length=length)
    compute_and_write(path, EMBODIMENT)
    return path


def synthetic_stats(horizon: int = 16, seed: int = 0) -> tuple[dict, dict]:
    """Statistics of random trajectories shaped like the demo robot's (arm 6 joints, gripper 1), with
    relative arm statistics per horizon step; independent of any dataset reader."""
    rng = np.random.default_rng(seed)
    arm = rng.uniform(-1.2, 1.2, size=(400, 6))
    grip = rng.uniform(0.0, 1.0, size=(400, 1))
    grouped = {
        "state": {"arm": array_stats(arm), "gripper": array_stats(grip)},
        "action": {"arm": array_stats(arm), "gripper": array_stats(grip)},
    }
    ramp = np.linspace(0.2, 1.0, horizon)[None, :, None]
    relative = {"arm": array_stats(rng.uniform(-0.6, 0.6, size=(300, horizon, 6)) * ramp)}
    return grouped, relative


def build_checkpoint(target: Path, dataset: Path | None = None, seed: int = 0, **config_overrides) -> Path:
    """Save `Gr00tN16Model` + `Gr00tProcessor` into `target` and return it. Statistics come from
    `dataset` (its meta/stats.json) or, without one, from `synthetic_stats`."""
    overrides = {"use_relative_action": True, "apply_sincos_state_encoding": False}
    overrides.update(config_overrides)
    config = load_preset("n16_tiny", **overrides)
    torch.manual_seed(seed)
    model = Gr00tN16Model(config).eval()
    if dataset is None:
        stats, relative = synthetic_stats(config.action_horizon)
    else:
        stats, relative = load_stats(dataset, EMBODIMENT)
    processor = Gr00tProcessor.from_config(
        config,
        [(EMBODIMENT, stats, relative)],
        build_tiny_tokenizer(),
        ImageTransformConfig(size=IMAGE_SIZE),
        training=False,
    )
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    processor.save_pretrained(target)
    return target
