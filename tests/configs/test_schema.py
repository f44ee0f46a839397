"""The structured schema is the one source of types and defaults, and it agrees with the code it feeds."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from gr00t.configs.compose import compose_recipe, group_options, recipe_names
from gr00t.configs.schema import ImageConfig, ModelConfig
from gr00t.train.settings import PREEMPTION_SIGNALS, TrainerConfig, TrainingSettings


def _value(x):
    return x.value if hasattr(x, "value") else x


def test_model_schema_matches_the_model_config():
    from gr00t.model.config import Gr00tN16Config

    params = {
        n: p.default
        for n, p in inspect.signature(Gr00tN16Config.__init__).parameters.items()
        if n not in ("self", "kwargs")
    }
    schema = {f.name: _value(f.default) for f in dataclasses.fields(ModelConfig) if f.name != "name"}
    assert schema == params


def test_image_schema_matches_the_transform_config():
    from gr00t.data.image_transforms import ImageTransformConfig

    theirs = {f.name: f.default for f in dataclasses.fields(ImageTransformConfig)}
    assert {f.name: f.default for f in dataclasses.fields(ImageConfig)} == theirs


def test_trainer_defaults_have_one_source():
    # the finetune recipe's trainer node = the schema's defaults = what TrainingSettings() runs with
    cfg = compose_recipe(["data=x"], "finetune_n16").cfg
    composed = OmegaConf.to_container(cfg.trainer, enum_to_str=True)
    schema = OmegaConf.to_container(OmegaConf.structured(TrainerConfig), enum_to_str=True)
    assert composed == schema
    runtime = TrainingSettings().to_dict()
    for key, value in composed.items():
        if key != "per_device_batch_size":  # None in the config: derived from global_batch_size
            assert runtime[key] == value, key
    assert runtime["per_device_batch_size"] == composed["global_batch_size"]  # one process
    assert composed["dataloader_num_workers"] == TrainingSettings().dataloader_num_workers


def test_preemption_signals_agree_with_the_trainer():
    from gr00t.train.preemption import DEFAULT_SIGNALS

    assert PREEMPTION_SIGNALS == DEFAULT_SIGNALS
    assert compose_recipe(["data=x"], "finetune_n16").cfg.launcher.preemption_signals == list(DEFAULT_SIGNALS)


@pytest.mark.parametrize("recipe", ["finetune_n16", "pretrain_n16", "demo"])
def test_every_recipe_composes(recipe):
    cfg = compose_recipe([f"recipe={recipe}", "data=x"], recipe).cfg
    assert cfg.recipe == recipe and cfg.run_dir


def test_every_model_preset_builds_a_config():
    from gr00t.model.presets import load_preset

    for name in group_options("model"):
        config = load_preset(name)
        assert config.backbone_type in ("eagle", "qwen3_vl"), name


def test_recipes_are_discoverable():
    assert {"demo", "finetune_n16", "pretrain_n16"} <= set(recipe_names())


def test_model_preset_leaves_the_trainer_alone():
    tiny = compose_recipe(["data=x", "model=n16_tiny"], "finetune_n16").cfg
    full = compose_recipe(["data=x"], "finetune_n16").cfg
    assert tiny.trainer == full.trainer
    pretrain = compose_recipe(["model=n16_tiny"], "pretrain_n16").cfg
    assert (pretrain.trainer.max_steps, pretrain.trainer.learning_rate) == (300000, 1e-4)


def test_cfg_job_rejects_a_bad_value_in_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "gr00t.cli.finetune", "--cfg", "job", "trainer.lr_scheduler=cosin"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("gr00t-finetune: error: trainer.lr_scheduler='cosin': expected one of")
    assert "'cosine', 'constant'" in proc.stderr and "Did you mean 'cosine'?" in proc.stderr
