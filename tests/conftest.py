"""Shared test setup: offline environment and small generated LeRobot datasets."""

from __future__ import annotations

import os

# Set before anything imports huggingface_hub / transformers / tokenizers / wandb.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from gr00t.data.demo import write_demo_dataset  # noqa: E402


@pytest.fixture(scope="session")
def demo_dataset_v3(tmp_path_factory) -> Path:
    """Demo dataset, LeRobot v3.0: 6 episodes x 60 frames, h264, all episodes in one data/video file.

    Treat it as read-only (it is shared by the whole session); copy it before modifying it.
    """
    return write_demo_dataset(tmp_path_factory.mktemp("demo_v3") / "dataset", version="v3.0")


@pytest.fixture(scope="session")
def demo_dataset_v21(tmp_path_factory) -> Path:
    """Demo dataset, LeRobot v2.1: 6 episodes x 60 frames, h264, one file per episode. Read-only."""
    return write_demo_dataset(tmp_path_factory.mktemp("demo_v21") / "dataset", version="v2.1")
