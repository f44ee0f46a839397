"""Robot configs anywhere: `embodiment=<path>`, and user config folders that add to the shipped ones."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gr00t.configs.compose import compose_recipe
from gr00t.data.embodiment import available_embodiments, load_embodiment, resolve_embodiment_path
from gr00t.data.mixture import available_mixtures, load_mixture
from gr00t.train import build


@pytest.fixture()
def clean_config_env(monkeypatch):
    monkeypatch.setenv("GR00T_CONFIG_DIR", "")  # restored after the test (config_dir= sets it)


def _robot(path: Path, tag: str = "my_arm", horizon: int = 12) -> Path:
    data = yaml.safe_load(resolve_embodiment_path("new_embodiment").read_text())
    data.update(tag=tag, projector_index=11)
    data["action"]["horizon"] = horizon
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def _user_dir(root: Path) -> Path:
    _robot(root / "embodiment" / "lab_arm.yaml", tag="lab_arm", horizon=8)
    (root / "model").mkdir()
    (root / "model" / "my_tiny.yaml").write_text(
        "defaults:\n  - n16_tiny\n  - _self_\nname: my_tiny\nhidden_size: 48\n"
    )
    (root / "recipes").mkdir()
    (root / "recipes" / "lab.yaml").write_text(
        "defaults:\n  - finetune_n16\n  - override model: my_tiny\n  - override embodiment: lab_arm\n"
        "  - override trainer: demo\n  - _self_\nrecipe: lab\nmodel:\n  state_dropout_prob: 0.5\n"
    )
    (root / "data_mixtures").mkdir()
    (root / "data_mixtures" / "lab_mix.yaml").write_text(
        yaml.safe_dump({"datasets": [{"path": "arm", "embodiment": "lab_arm"}]})
    )
    return root


def test_embodiment_path_outside_the_repo(tmp_path, clean_config_env):
    robot = _robot(tmp_path / "robots" / "my_arm.yaml")
    composed = compose_recipe(
        [f"embodiment={robot}", "data=/data/arm_v1", "embodiment.action.horizon=9"], "finetune_n16"
    )
    cfg = composed.cfg
    assert cfg.embodiment.tag == "my_arm" and cfg.embodiment.action.horizon == 9
    main = build.main_embodiment(cfg)
    assert (main.name, main.tag, main.action_horizon, main.source) == (
        "my_arm",
        "my_arm",
        9,
        str(robot.resolve()),
    )
    assert cfg.run_dir == "runs/finetune_n16/my_arm-arm_v1"


def test_robot_file_named_like_a_shipped_one_wins(tmp_path, clean_config_env):
    mine = _robot(tmp_path / "g1.yaml", tag="my_g1")
    assert compose_recipe([f"embodiment={mine}", "data=x"], "finetune_n16").cfg.embodiment.tag == "my_g1"
    assert compose_recipe(["embodiment=g1", "data=x"], "finetune_n16").cfg.embodiment.tag == "unitree_g1"
    assert (
        compose_recipe(["embodiment=unitree_g1", "data=x"], "finetune_n16").cfg.embodiment.tag == "unitree_g1"
    )


def test_config_dir_adds_to_the_shipped_configs(tmp_path, clean_config_env):
    user = _user_dir(tmp_path / "mine")
    cfg = compose_recipe([f"config_dir={user}", "recipe=lab", "data=/d/arm"], "finetune_n16").cfg
    assert os.environ["GR00T_CONFIG_DIR"] == str(user.resolve())
    assert (cfg.recipe, cfg.model.name, cfg.model.hidden_size, cfg.embodiment.tag) == (
        "lab",
        "my_tiny",
        48,
        "lab_arm",
    )
    assert (
        cfg.model.use_relative_action is True and cfg.model.state_dropout_prob == 0.5
    )  # shipped parent recipe
    assert cfg.trainer.max_steps == 300 and cfg.run_dir == "runs/lab/lab_arm-arm"
    # the shipped configs are all still there
    assert {"lab_arm", "g1", "new_embodiment"} <= set(available_embodiments())
    assert {"lab_mix", "demo", "pretrain_n16"} <= set(available_mixtures())
    assert load_embodiment("lab_arm").action_horizon == 8 and load_mixture("lab_mix").embodiments == [
        "lab_arm"
    ]
    assert compose_recipe(["model=n16", "embodiment=g1", "data=x"], "finetune_n16").cfg.model.name == "n16"
    from gr00t.model.presets import load_preset

    assert load_preset("my_tiny").hidden_size == 48 and load_preset("n16_tiny").hidden_size == 32


def test_config_dir_from_the_environment(tmp_path, monkeypatch):
    user = _user_dir(tmp_path / "mine")
    monkeypatch.setenv("GR00T_CONFIG_DIR", str(user))
    assert compose_recipe(["embodiment=lab_arm", "data=x"], "finetune_n16").cfg.embodiment.tag == "lab_arm"


def test_cli_with_user_configs(tmp_path, demo_dataset_v3):
    user = _user_dir(tmp_path / "mine")
    env = {k: v for k, v in os.environ.items() if k != "GR00T_CONFIG_DIR"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gr00t.cli.finetune",
            "--config-dir",
            str(user),
            "recipe=lab",
            "data=x",
            "--cfg",
            "job",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["embodiment"]["tag"] == "lab_arm"
    data = tmp_path / "ds"
    shutil.copytree(demo_dataset_v3, data)
    robot = _robot(tmp_path / "robots" / "arm.yaml", tag="new_embodiment")
    proc = subprocess.run(
        [sys.executable, "-m", "gr00t.cli.stats", str(data), f"embodiment={robot}", "quiet=true"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (data / "meta" / "relative_stats.json").is_file()
