"""Small LeRobot datasets written by gr00t's demo writer (real mp4), shared read-only by these tests.

Episode lengths are odd on purpose: in the shared v3.0 files most episodes then start between two
keyframes, which is what a stream copy must cope with. Copy a dataset before modifying it.
"""

from __future__ import annotations

import shutil

import pytest

from gr00t.data.demo import TASKS, write_demo_dataset
from tests.data.dataset_ops.checks import reorder_tasks

SMALL = {"height": 32, "width": 64}
LENGTHS_A = [17, 21, 19]
LENGTHS_B = [19, 18]
NEW_TASK = "wipe the table"


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> dict:
    """ "a3"/"a21": 3 episodes (v3.0 in one shared file / v2.1); "b3"/"b21": 2 other episodes whose task
    table is ordered differently and has a task A lacks (v3.0 one file per episode / v2.1)."""
    root = tmp_path_factory.mktemp("dataset_ops_inputs")
    out = {}
    for version, tag in (("v3.0", "3"), ("v2.1", "21")):
        out[f"a{tag}"] = write_demo_dataset(
            root / f"a{tag}", version=version, num_episodes=3, episode_length=LENGTHS_A, **SMALL
        )
        out[f"b{tag}"] = write_demo_dataset(
            root / f"b{tag}",
            version=version,
            num_episodes=2,
            episode_length=LENGTHS_B,
            seed=1,
            episodes_per_file=1,
            **SMALL,
        )
        reorder_tasks(out[f"b{tag}"], [NEW_TASK, *reversed(TASKS)])
    return out


@pytest.fixture
def copy_of(tmp_path):
    """Copy an input dataset into the test's own folder (for tests that modify it)."""

    def make(src, name=None):
        return shutil.copytree(src, tmp_path / (name or src.name))

    return make
