"""Command-line validation of the Hydra training commands: typos fail with choices and a did-you-mean.

Hydra checks every setting against the structured schema while composing (`gr00t.configs.compose`);
the messages come from the schema node that rejected it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gr00t.configs.compose import compose_recipe
from gr00t.configs.errors import ConfigError


def validate_overrides(recipe: str, overrides: list[str]):
    return compose_recipe([f"recipe={recipe}", *overrides], recipe).cfg


def test_misspelled_trainer_key_suggests_the_right_one():
    with pytest.raises(ConfigError) as err:
        validate_overrides("finetune_n16", ["data=x", "trainer.max_stpes=5"])
    msg = str(err.value)
    assert "trainer.max_stpes" in msg and "Did you mean 'trainer.max_steps'?" in msg
    assert "learning_rate" in msg  # the valid keys of `trainer` are listed


def test_key_at_the_wrong_level_points_to_its_home():
    with pytest.raises(ConfigError, match=r"Did you mean 'trainer.max_steps'\?"):
        validate_overrides("finetune_n16", ["max_steps=5"])


def test_nested_embodiment_key_typo():
    with pytest.raises(ConfigError, match=r"Did you mean 'embodiment.action.horizon'\?"):
        validate_overrides("finetune_n16", ["embodiment.action.horizn=8"])


def test_misspelled_model_field():
    with pytest.raises(ConfigError, match=r"Did you mean 'model.use_relative_action'\?"):
        validate_overrides("finetune_n16", ["model.use_relative_actions=false"])


@pytest.mark.parametrize(
    ("override", "choices"),
    [
        ("model=n16_tny", ["n16", "n16_release", "n16_tiny"]),
        ("embodiment=new_embodimnt", ["libero_panda", "new_embodiment"]),
        ("trainer=finetun", ["demo", "finetune", "pretrain"]),
        ("launcher=slrum", ["local", "slurm", "torchrun"]),
    ],
)
def test_unknown_group_option_lists_choices(override, choices):
    with pytest.raises(ConfigError) as err:
        validate_overrides("finetune_n16", [override])
    msg = str(err.value)
    assert "Did you mean" in msg
    for choice in choices:
        assert repr(choice) in msg


def test_wrong_value_type_is_rejected():
    with pytest.raises(ConfigError, match=r"trainer.max_steps='ten': expected an integer"):
        validate_overrides("finetune_n16", ["trainer.max_steps=ten"])
    with pytest.raises(ConfigError, match=r"expected true or false"):
        validate_overrides("finetune_n16", ["model.tune_llm=maybe"])
    with pytest.raises(ConfigError, match=r"expected a number"):
        validate_overrides("finetune_n16", ["trainer.learning_rate=fast"])


def test_valid_overrides_compose():
    cfg = validate_overrides(
        "finetune_n16",
        [
            "embodiment=libero_panda",
            "model=n16_tiny",
            "data=/x",
            "trainer.max_steps=7",
            "model.state_dropout_prob=0.8",
            "+extra.note=hello",
        ],
    )
    assert cfg.trainer.max_steps == 7
    assert cfg.model.name == "n16_tiny" and cfg.model.state_dropout_prob == 0.8
    assert cfg.model.use_relative_action is True  # the finetune recipe turns relative actions on
    assert cfg.embodiment.tag == "libero_panda"
    assert cfg.extra.note == "hello"  # '+' adds a key on purpose


def test_unknown_recipe_lists_recipes():
    with pytest.raises(ConfigError) as err:
        compose_recipe(["recipe=pretrain"], "finetune_n16")
    assert "Did you mean 'pretrain_n16'?" in str(err.value)
    assert "'demo'" in str(err.value) and "'finetune_n16'" in str(err.value)


def test_split_flags_keeps_settings_and_flag_values():
    from gr00t.cli.training import _split_flags

    help_, show, settings = _split_flags(["--cfg", "job", "a=1", "--config-dir", "/c", "b=2", "--help"])
    assert help_ and show
    assert settings == ["a=1", "config_dir=/c", "b=2"]


def test_cli_exit_code_and_message_for_typo():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gr00t.cli.finetune",
            "embodiment=new_embodiment",
            "data=demo",
            "trainer.max_stpes=5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "gr00t-finetune: error:" in proc.stderr
    assert "Did you mean 'trainer.max_steps'?" in proc.stderr


def test_several_processes_need_no_explicit_run_dir():
    # The default run_dir is deterministic (runs/<recipe>/<embodiment>-<dataset>), so every process of a
    # torchrun launch resolves the same folder without run_dir=... (it used to be timestamped).
    import os

    env = {**os.environ, "WORLD_SIZE": "2"}
    runs = []
    for rank in ("0", "1"):
        proc = subprocess.run(
            [sys.executable, "-m", "gr00t.cli.finetune", "data=/data/my_robot", "--cfg", "job"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, "RANK": rank},
        )
        assert proc.returncode == 0, proc.stderr
        runs.append([line for line in proc.stdout.splitlines() if line.startswith("run_dir:")])
    assert runs[0] == runs[1] == ["run_dir: runs/finetune_n16/new_embodiment-my_robot"]
