"""A finetune on the sub-task demo data (`gr00t-demo-data subtasks=true`, embodiment
new_embodiment_subtask) keeps the language rule in its checkpoint, and the served policy combines
the channels a client sends as training did."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gr00t.data.dataset import Gr00tDataset
from gr00t.data.demo import SUBTASKS, TASKS, write_demo_dataset
from tests.data.test_language import EMB, TASK, prompt_ids, switch_frame

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_finetune_and_serve_with_subtasks(tmp_path):
    from gr00t.eval.samples import observation_from_sample
    from gr00t.policy.observation import parse_observation
    from gr00t.policy.policy import Gr00tPolicy

    data = write_demo_dataset(
        tmp_path / "data", version="v2.1", num_episodes=2, episode_length=40, subtasks=True
    )
    run = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gr00t.cli.finetune",
            "recipe=demo",
            f"data={data}",
            f"embodiment={EMB}",
            f"run_dir={run}",
            "trainer.max_steps=2",
            "trainer.save_steps=2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    policy = Gr00tPolicy.from_checkpoint(run / "checkpoint-2", EMB)
    assert policy.embodiment.language.mode == "template"  # the rule travelled with the checkpoint
    ds = Gr00tDataset(data, EMB)
    k = switch_frame(data, 1)
    for step, phase in ((k - 1, 0), (k, 1)):
        raw = ds.sample(1, step)
        obs = observation_from_sample(raw, TASK)
        batch = policy.prepare(parse_observation(obs, policy.embodiment, policy.state_action.state_dims))
        want = prompt_ids(policy.processor, raw, f"{TASKS[1]}: {SUBTASKS[1][phase]}")
        assert torch.equal(batch.backbone.input_ids[0], want)
        assert policy.get_action(obs, {"seed": 0})["arm"].shape == (1, 16, 6)
