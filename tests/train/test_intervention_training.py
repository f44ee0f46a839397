"""A finetune on a mixture file whose dataset up-weights its intervention episodes: the weighting is
reported, the weighted sampler's position goes into the checkpoint (the default decode-aware order,
its chunk tickets weighted), and a resume under a changed
weighting is refused with one line instead of silently drawing another order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gr00t.data.demo import write_demo_dataset
from tests.data.test_intervention import mark_interventions

REPO = Path(__file__).resolve().parents[2]


def _finetune(mixture: Path, run: Path, steps: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gr00t.cli.finetune",
            "recipe=demo",
            f"data={mixture}",
            "embodiment=new_embodiment",
            f"run_dir={run}",
            f"trainer.max_steps={steps}",
            f"trainer.save_steps={steps}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_weighted_finetune_records_the_weighting_and_refuses_a_changed_one(tmp_path):
    source = write_demo_dataset(tmp_path / "src", version="v3.0", num_episodes=6, episode_length=40)
    root = mark_interventions(source, tmp_path / "marked")
    mixture = tmp_path / "mix.yaml"
    entry = {"path": str(root), "embodiment": "new_embodiment"}
    entry["intervention"] = {"column": "is_intervention", "weight": 3.0}
    mixture.write_text(yaml.safe_dump({"datasets": [entry]}))
    run = tmp_path / "run"
    done = _finetune(mixture, run, 2)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    effective = json.loads((run / "effective_settings.json").read_text())
    assert effective["intervention_weighting"] == [
        {
            "dataset": "marked",
            "column": "is_intervention",
            "weight": 3.0,
            "flagged_episodes": 2,
            "episodes": 6,
        }
    ]
    state = json.loads((run / "checkpoint-2" / "data_state.json").read_text())
    assert state["sampling"] == "windows"  # the default order, weighted
    assert [row[:3] for row in state["strata"]] == [[0, 4, 1.0], [0, 2, 3.0]]  # (dataset, episodes, factor)
    entry["intervention"] = {"column": "is_intervention", "weight": 5.0}
    mixture.write_text(yaml.safe_dump({"datasets": [entry]}))
    again = _finetune(mixture, run, 4)
    assert again.returncode != 0
    assert "the intervention weighting changed" in again.stderr, again.stderr[-2000:]
    assert "or start over with resume=false" in again.stderr  # the way out, in the same line
    assert "Traceback" not in again.stderr
