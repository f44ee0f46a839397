"""Open-loop evaluation: metrics against independently read ground truth, plots, local and served policy."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gr00t.data.dataset import Gr00tDataset
from gr00t.eval.open_loop import error_metrics, evaluate_episode, run_open_loop
from gr00t.policy.base import Policy
from gr00t.policy.client import PolicyClient
from gr00t.policy.policy import Gr00tPolicy
from gr00t.policy.server import PolicyServer
from tests.policy.tiny_checkpoint import build_checkpoint, write_small_demo

H = 16
LENGTH = 40  # own demo: queries at 0 and 16 → 32 evaluated steps per episode


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return write_small_demo(tmp_path_factory.mktemp("eval_demo") / "dataset", episodes=2, length=LENGTH)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, demo) -> Path:
    """n16_tiny weights + the demo dataset's own statistics."""
    return build_checkpoint(tmp_path_factory.mktemp("eval_ckpt") / "checkpoint-0", demo)


@pytest.fixture(scope="module")
def dataset(demo) -> Gr00tDataset:
    return Gr00tDataset(demo, "new_embodiment")


@pytest.fixture(scope="module")
def shared_dataset(demo_dataset_v3) -> Gr00tDataset:
    """The session's shared demo (6 episodes x 60 frames; no statistics needed to replay it)."""
    return Gr00tDataset(demo_dataset_v3, "new_embodiment")


def recorded_actions(root: Path, episode: int) -> dict[str, np.ndarray]:
    """The episode's action column straight from parquet, split as meta/modality.json says."""
    modality = json.loads((root / "meta" / "modality.json").read_text())["action"]
    table = pq.read_table(
        sorted((root / "data").rglob("*.parquet")), columns=["episode_index", "action"]
    ).to_pandas()
    rows = np.stack(table[table["episode_index"] == episode]["action"].to_numpy()).astype(np.float32)
    return {k: rows[:, v["start"] : v["end"]] for k, v in modality.items()}


class FnPolicy(Policy):
    """A `Policy` answering with ``fn(observation, options)`` (stands in for the model in tests whose
    subject is the evaluation)."""

    def __init__(self, fn=None) -> None:
        self.fn = fn

    def get_action(self, observation, options=None):
        return self.fn(observation, options)

    def reset(self, options=None):
        return {}

    def get_modality_config(self):
        return {}


class Replay(FnPolicy):
    """Answers every query with the recorded actions (+ a constant offset): known errors."""

    def __init__(self, root: Path, offset: float) -> None:
        self.root, self.offset, self.calls = root, offset, []

    def get_action(self, obs, options=None):
        step = len(self.calls) * H
        self.calls.append((obs, options))
        rec = recorded_actions(self.root, self.episode)
        return {k: (v[step : step + H] + self.offset)[None] for k, v in rec.items()}


def test_metrics_with_known_errors(demo_dataset_v3, shared_dataset):
    demo, dataset = demo_dataset_v3, shared_dataset
    replay = Replay(demo, offset=0.5)
    replay.episode = 1
    result = evaluate_episode(replay, dataset, 1, seed=3)
    assert result.query_steps == [0, 16, 32]
    assert [o["seed"] for _, o in replay.calls] == [3, 4, 5]
    obs = replay.calls[0][0]
    assert obs["video"]["front"].shape == (1, 1, 96, 128, 3) and obs["video"]["front"].dtype == np.uint8
    assert obs["state"]["arm"].shape == (1, 1, 6)
    rec = recorded_actions(demo, 1)
    for key in ("arm", "gripper"):
        np.testing.assert_allclose(result.ground_truth[key], rec[key][:48], atol=1e-6)
    m = error_metrics(result.predicted, result.ground_truth)
    assert m["mse"] == pytest.approx(0.25, abs=1e-6) and m["mae"] == pytest.approx(0.5, abs=1e-6)
    assert m["per_key"]["arm"]["mse_per_dim"] == pytest.approx([0.25] * 6, abs=1e-6)


def test_action_horizon_and_max_steps(demo_dataset_v3, shared_dataset):
    demo, dataset = demo_dataset_v3, shared_dataset
    calls = []

    def act(obs, options=None):
        calls.append(options["seed"])
        return {k: v[None, :H] for k, v in recorded_actions(demo, 0).items()}

    res = evaluate_episode(FnPolicy(act), dataset, 0, action_horizon=4, max_steps=12)
    assert res.query_steps == [0, 4, 8]
    assert res.ground_truth["arm"].shape == (12, 6)
    with pytest.raises(ValueError, match="action_horizon=17: expected 1..16"):
        evaluate_episode(FnPolicy(act), dataset, 0, action_horizon=17)
    with pytest.raises(KeyError, match="lacks action key 'gripper'"):
        evaluate_episode(FnPolicy(lambda o, p=None: {"arm": np.zeros((1, H, 6), np.float32)}), dataset, 0)


@pytest.mark.slow
def test_local_policy_metrics_and_plots(checkpoint, dataset, tmp_path):
    policy = Gr00tPolicy.from_checkpoint(checkpoint, "new_embodiment")
    report = run_open_loop(policy, dataset, plot_dir=tmp_path / "plots", seed=0)
    assert [e.episode_index for e in report.episodes] == [0, 1]
    pred = {k: np.concatenate([e.predicted[k] for e in report.episodes]) for k in ("arm", "gripper")}
    gt = {
        k: np.concatenate([recorded_actions(dataset.root, e)[k][:32] for e in (0, 1)])
        for k in ("arm", "gripper")
    }
    err_arm = (pred["arm"].astype(np.float64) - gt["arm"]) ** 2
    assert report.metrics["per_key"]["arm"]["mse"] == pytest.approx(err_arm.mean(), rel=1e-6)
    all_sq = np.concatenate([err_arm.ravel(), ((pred["gripper"] - gt["gripper"]) ** 2).ravel()])
    assert report.metrics["mse"] == pytest.approx(all_sq.mean(), rel=1e-6)
    assert report.metrics["mse"] > 0
    # the first query's chunk is exactly the policy's answer for that observation
    first = policy.get_action(
        {
            "video": {k: v[None] for k, v in dataset.sample(0, 0)["video"].items()},
            "state": {k: v[None] for k, v in dataset.sample(0, 0)["state"].items()},
            "language": {"annotation.human.task_description": [[dataset.sample(0, 0)["language"]]]},
        },
        {"seed": 0},
    )
    np.testing.assert_allclose(report.episodes[0].predicted["arm"][:H], first["arm"][0], atol=1e-6)
    for e in report.episodes:
        assert e.plot is not None and e.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "episode_000000.png",
        "episode_000001.png",
    ]


@pytest.mark.slow
def test_cli_local_and_server_agree(checkpoint, demo, tmp_path, capsys):
    from gr00t.cli.eval import main

    assert (
        main(
            [
                f"checkpoint={checkpoint}",
                f"data={demo}",
                "embodiment=new_embodiment",
                "episodes=[1]",
                f"output_dir={tmp_path / 'local'}",
                "device=cpu",
            ]
        )
        == 0
    )
    local = json.loads((tmp_path / "local" / "metrics.json").read_text())
    assert "arm" in capsys.readouterr().out
    assert (tmp_path / "local" / "episode_000001.png").is_file()

    server = PolicyServer(Gr00tPolicy.from_checkpoint(checkpoint, "new_embodiment"), port=0, api_token="t")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert (
            main(
                [
                    f"server=127.0.0.1:{server.port}",
                    "api_token=t",
                    f"data={demo}",
                    "embodiment=new_embodiment",
                    "episodes=1",
                    f"output_dir={tmp_path / 'remote'}",
                    "plots=false",
                ]
            )
            == 0
        )
    finally:
        with PolicyClient(port=server.port, api_token="t", timeout_ms=5000) as c:
            c.kill_server()
        thread.join(timeout=10)
    remote = json.loads((tmp_path / "remote" / "metrics.json").read_text())
    assert remote["metrics"]["mse"] == pytest.approx(local["metrics"]["mse"], rel=1e-5)
    assert remote["episodes"][0]["query_steps"] == [0, 16]
    assert not list((tmp_path / "remote").glob("*.png"))


def test_cli_errors(demo_dataset_v3, capsys):
    from gr00t.cli.eval import main

    demo = demo_dataset_v3
    # user mistakes: exit code 2 and one `gr00t-eval: error: ...` line
    assert main([f"data={demo}", "embodiment=new_embodiment"]) == 2
    assert "give checkpoint=<dir>" in capsys.readouterr().err
    assert main([f"data={demo}", "embodiment=new_embodiment", "episode=1"]) == 2
    assert "unknown key 'episode'" in capsys.readouterr().err
    assert main(["embodiment=new_embodiment"]) == 2
    assert "missing required key" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "server" in capsys.readouterr().out


@pytest.mark.slow
def test_eval_on_demo_finetuned_checkpoint(demo, tmp_path):
    """gr00t-finetune (the demo recipe, 2 steps) writes checkpoint-2; gr00t-eval replays the demo through it."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    run = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gr00t.cli.finetune",
            "recipe=demo",
            f"data={demo}",
            f"run_dir={run}",
            "trainer.max_steps=2",
            "trainer.save_steps=2",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ckpt = run / "checkpoint-2"
    assert (ckpt / "processor_config.json").is_file()

    from gr00t.cli.eval import main

    out = tmp_path / "eval"
    assert (
        main(
            [
                f"checkpoint={ckpt}",
                f"data={demo}",
                "embodiment=new_embodiment",
                f"output_dir={out}",
                "device=cpu",
            ]
        )
        == 0
    )
    report = json.loads((out / "metrics.json").read_text())
    assert [e["episode_index"] for e in report["episodes"]] == [0, 1]
    assert all(np.isfinite(report["metrics"][k]) and report["metrics"][k] > 0 for k in ("mse", "mae"))
    assert sorted(p.name for p in out.glob("*.png")) == ["episode_000000.png", "episode_000001.png"]
    # decoded absolute gripper actions stay inside the dataset's gripper range (decode clips, then un-normalises)
    stats = json.loads((demo / "meta" / "stats.json").read_text())["action"]
    lo, hi = stats["min"][6], stats["max"][6]
    policy = Gr00tPolicy.from_checkpoint(ckpt, "new_embodiment")
    res = evaluate_episode(policy, Gr00tDataset(demo, "new_embodiment"), 0)
    assert res.predicted["gripper"].min() >= lo - 1e-5 and res.predicted["gripper"].max() <= hi + 1e-5


def test_report_names_dimensions_and_plot_header(demo_dataset_v3, shared_dataset, tmp_path):
    from gr00t.eval.open_loop import episode_header, format_report, write_report

    replay = Replay(demo_dataset_v3, offset=0.5)
    replay.episode = 1
    report = run_open_loop(
        replay, shared_dataset, episodes=[1], plot_dir=tmp_path, source="runs/demo/checkpoint-2"
    )
    data = json.loads(write_report(report, tmp_path / "metrics.json").read_text())
    assert data["source"] == "runs/demo/checkpoint-2" and data["embodiment"] == "new_embodiment"
    arm = data["metrics"]["per_key"]["arm"]
    assert arm["names"] == [f"arm_joint_{i}" for i in range(6)]
    assert arm["mse_per_dim"] == pytest.approx([0.25] * 6) and arm["mae_per_dim"] == pytest.approx([0.5] * 6)
    (episode,) = data["episodes"]
    assert episode["task"] == shared_dataset.sample(1, 0)["language"]
    assert episode["metrics"]["per_key"]["gripper"]["names"] == ["gripper"]
    text = format_report(report)
    assert "runs/demo/checkpoint-2" in text
    assert any(line.split()[:3] == ["arm_joint_5", "MSE", "0.25"] for line in text.splitlines())
    assert episode["plot"] == str(tmp_path / "episode_000001.png")
    assert Path(episode["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = episode_header("runs/demo/checkpoint-2", shared_dataset, report.episodes[0], 16, report.metrics)
    assert header[0].startswith("runs/demo/checkpoint-2  |  ") and header[0].endswith(" episode 1")
    assert header[1] == f"task: {episode['task']!r}"
    assert "policy queried every 16 steps" in header[2] and "MSE 0.25" in header[2]
