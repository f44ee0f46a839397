"""`gr00t.train.build`: turning the resolved config into data, settings and a model."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from gr00t.configs.compose import compose_recipe
from gr00t.train import build
from gr00t.train.build import BuildError, DistInfo

ONE = DistInfo(rank=0, world_size=1, local_rank=0)


def _cfg(*overrides: str, recipe: str = "finetune_n16"):
    return compose_recipe([f"recipe={recipe}", *overrides], recipe).cfg


def test_global_batch_is_split_over_processes():
    cfg = _cfg("data=x", "trainer.global_batch_size=64")
    s = build.trainer_settings(cfg, DistInfo(rank=0, world_size=8, local_rank=0))
    assert s["per_device_batch_size"] == 8
    assert "global_batch_size" not in s
    assert s["seed"] == 42 and s["preemption_signals"] == ["SIGTERM", "SIGUSR1"]
    s2 = build.trainer_settings(
        _cfg("data=x", "trainer.global_batch_size=64", "trainer.gradient_accumulation_steps=4"),
        DistInfo(rank=0, world_size=2, local_rank=0),
    )
    assert s2["per_device_batch_size"] == 8


def test_indivisible_global_batch_is_an_error():
    cfg = _cfg("data=x", "trainer.global_batch_size=10")
    with pytest.raises(BuildError, match=r"global_batch_size=10 is not divisible by 4 processes"):
        build.trainer_settings(cfg, DistInfo(rank=0, world_size=4, local_rank=0))


def test_explicit_per_device_batch_wins():
    cfg = _cfg("data=x", "trainer.per_device_batch_size=3")
    assert (
        build.trainer_settings(cfg, DistInfo(rank=0, world_size=4, local_rank=0))["per_device_batch_size"]
        == 3
    )


@pytest.mark.slow  # imports transformers + deepspeed (~10 s)
def test_trainer_settings_are_accepted_by_the_trainer():
    from gr00t.train.trainer import TrainingSettings

    for recipe, extra in (("finetune_n16", ["data=x"]), ("pretrain_n16", []), ("demo", [])):
        settings = TrainingSettings.from_dict(build.trainer_settings(_cfg(*extra, recipe=recipe), ONE))
        assert settings.max_steps >= 1


def test_single_dataset_and_embodiment(demo_dataset_v3):
    cfg = _cfg(f"data={demo_dataset_v3}", "embodiment.action.horizon=8")
    main = build.main_embodiment(cfg)
    assert main.tag == "new_embodiment" and main.action_horizon == 8  # command-line override applied
    mixture = build.resolve_mixture(cfg, main.name, ONE)
    assert [e.path for e in mixture.entries] == [demo_dataset_v3]
    embs = build.mixture_embodiments(mixture, main)
    assert list(embs.values())[0] is main


def test_cotraining_mixes_a_named_mixture(tmp_path, demo_dataset_v3):
    root = tmp_path / "root"
    root.mkdir()
    (root / "demo").symlink_to(demo_dataset_v3)
    cfg = _cfg(f"data={demo_dataset_v3}", "cotrain.mixture=demo", "cotrain.ratio=0.25", f"data_root={root}")
    mixture = build.resolve_mixture(cfg, "new_embodiment", ONE)
    assert [round(e.weight, 6) for e in mixture.entries] == [0.75, 0.25]
    with pytest.raises(BuildError, match="cotrain.ratio=1.5"):
        build.resolve_mixture(
            _cfg(f"data={demo_dataset_v3}", "cotrain.mixture=demo", "cotrain.ratio=1.5", f"data_root={root}"),
            "new_embodiment",
            ONE,
        )
    with pytest.raises(BuildError, match="needs cotrain.mixture"):
        build.resolve_mixture(_cfg(f"data={demo_dataset_v3}", "cotrain.ratio=0.5"), "new_embodiment", ONE)


def test_missing_data_is_reported(tmp_path):
    with pytest.raises(BuildError, match="data=\\?\\?\\?"):
        build.resolve_mixture(_cfg(), "new_embodiment", ONE)
    with pytest.raises(BuildError, match="not found"):
        build.resolve_mixture(
            _cfg("data=pretrain_n16", f"data_root={tmp_path}", recipe="pretrain_n16"), None, ONE
        )


def test_data_demo_writes_the_demo_dataset_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    calls = []
    import gr00t.data.demo as demo

    real = demo.write_demo_dataset

    def counting(root, *a, **k):
        calls.append(root)
        return real(root, *a, num_episodes=2, episode_length=20, **k)

    monkeypatch.setattr(demo, "write_demo_dataset", counting)
    cfg = _cfg("data=demo", "demo_dir=my_demo")
    mixture = build.resolve_mixture(cfg, "new_embodiment", ONE)
    assert mixture.entries[0].path == (tmp_path / "my_demo").resolve()
    assert (tmp_path / "my_demo" / "meta" / "info.json").is_file()
    build.resolve_mixture(cfg, "new_embodiment", ONE)  # present: not written again
    assert len(calls) == 1


def test_demo_dir_that_holds_something_else_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo_data").mkdir()
    (tmp_path / "demo_data" / "notes.txt").write_text("mine")
    with pytest.raises(BuildError, match="holds no demo dataset"):
        build.resolve_mixture(_cfg("data=demo"), "new_embodiment", ONE)


def test_model_from_preset_applies_recipe_switches():
    model, source = build.build_model(_cfg("data=x", "model=n16_tiny", "model.state_dropout_prob=0.3"))
    assert source["preset"] == "n16_tiny"
    assert model.config.use_relative_action is True and model.config.state_dropout_prob == 0.3
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    # top tune_top_llm_layers (1 for the tiny preset, of select_layer 2) LLM layers train; the rest is frozen
    assert any(".layers.1." in n for n in trainable if "language_model" in n)
    assert not any(".layers.0." in n for n in trainable if "language_model" in n)


def test_model_from_base_checkpoint(tmp_path):
    from gr00t.model.gr00t_n16 import Gr00tN16Model
    from gr00t.model.presets import load_preset

    base = tmp_path / "run" / "checkpoint-3"
    original = Gr00tN16Model(load_preset("n16_tiny", action_horizon=8))
    original.save_pretrained(base)
    (base / "COMPLETE").write_text("{}")
    # a run directory resolves to its newest complete checkpoint
    assert build.resolve_base_checkpoint(tmp_path / "run") == base
    cfg = _cfg("data=x", "model=n16_tiny", f"base={tmp_path / 'run'}", "model.state_dropout_prob=0.7")
    model, source = build.build_model(cfg)
    assert source["base"] == str(base)
    assert model.config.action_horizon == 8  # architecture from the checkpoint, not the preset's 16
    assert model.config.state_dropout_prob == 0.7 and model.config.use_relative_action is True
    loaded = model.state_dict()
    for name, a in original.state_dict().items():  # every saved weight is loaded unchanged
        assert a.equal(loaded[name]), name
    with pytest.raises(BuildError, match="no such checkpoint"):
        build.resolve_base_checkpoint(tmp_path / "nope")
    with pytest.raises(BuildError, match="no config.json and no complete checkpoint"):
        build.resolve_base_checkpoint(tmp_path)


def test_training_dataset_keys_augmentation_by_sampler_draw(demo_dataset_v3):
    from gr00t.data.dataset import MixtureDataset
    from gr00t.data.sampler import MixtureSampler, SampleIndex, sample_rng
    from gr00t.model.presets import config_from_dict

    cfg = _cfg(f"data={demo_dataset_v3}", "model=n16_tiny", "image.size=64", "image.rotation_degrees=5")
    main = build.main_embodiment(cfg)
    mixture = build.resolve_mixture(cfg, main.name, ONE)
    embs = build.mixture_embodiments(mixture, main)
    stats = build.ensure_all_stats(mixture, embs, ONE)
    fields = OmegaConf.to_container(cfg.model, enum_to_str=True)
    processor = build.build_processor(cfg, config_from_dict(fields), embs, stats)
    ds = build.build_training_dataset(build.build_datasets(mixture, embs), processor, seed=1)
    assert isinstance(ds, MixtureDataset)  # the data library's class, not a private copy
    first = next(iter(MixtureSampler(ds.sizes, seed=1)))
    assert isinstance(first, SampleIndex)
    a, b = ds[first], ds[first]
    assert a["backbone"].pixel_values.equal(b["backbone"].pixel_values)  # same draw → same augmentation
    expected = processor(ds.raw(int(first)), rng=sample_rng(first))
    assert expected["backbone"].pixel_values.equal(a["backbone"].pixel_values)
    # The same sample drawn again in a later epoch gets a fresh augmentation.
    again = SampleIndex(int(first), seed=1, epoch=first.epoch + 1, position=first.position + 3)
    assert not ds[again]["backbone"].pixel_values.equal(a["backbone"].pixel_values)
    assert a["embodiment_id"] == 10
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_unknown_base_architecture_override_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "explicit_model_overrides", lambda: {"action_horizon"})
    from gr00t.model.gr00t_n16 import Gr00tN16Model
    from gr00t.model.presets import load_preset

    Gr00tN16Model(load_preset("n16_tiny")).save_pretrained(tmp_path / "ck")
    with pytest.raises(BuildError, match="model.action_horizon cannot change when finetuning"):
        build.build_model(
            _cfg("data=x", "model=n16_tiny", "model.action_horizon=32", f"base={tmp_path / 'ck'}")
        )
    # naming an architecture key with the checkpoint's own value (a recipe stating the released
    # shapes) is accepted
    model, _ = build.build_model(_cfg("data=x", "model=n16_tiny", f"base={tmp_path / 'ck'}"))
    assert model.config.action_horizon == 16


def test_tokenizer_auto_needs_a_tokenizer_for_full_size_models():
    from gr00t.model.presets import load_preset

    with pytest.raises(BuildError, match="pass tokenizer="):
        build.resolve_tokenizer(_cfg("data=x"), load_preset("n16"))
    tok = build.resolve_tokenizer(_cfg("data=x", "model=n16_tiny"), load_preset("n16_tiny"))
    assert tok.convert_tokens_to_ids("<IMG_CONTEXT>") == 1000
    assert isinstance(Path(".").resolve(), Path)


@pytest.mark.parametrize("recipe", ["finetune_n16", "pretrain_n16"])
def test_top_level_resume_switch_reaches_the_trainer(recipe):
    assert build.trainer_settings(_cfg("data=x", recipe=recipe), ONE)["resume"] is True
    assert build.trainer_settings(_cfg("data=x", "resume=false", recipe=recipe), ONE)["resume"] is False


def test_base_fields_change_only_where_the_recipe_or_command_line_set_them(tmp_path, caplog):
    from gr00t.model.gr00t_n16 import Gr00tN16Model
    from gr00t.model.presets import load_preset

    base = tmp_path / "ck"
    # a base trained with settings that differ from the finetune recipe's preset defaults
    Gr00tN16Model(
        load_preset("n16_tiny", state_dropout_prob=0.3, dit_dropout=0.05, tune_llm=True)
    ).save_pretrained(base)
    with caplog.at_level("INFO", logger="gr00t.train.build"):
        model, source = build.build_model(_cfg("data=x", "model=n16_tiny", f"base={base}"))
    c = model.config
    # kept from the checkpoint: the preset's (0.0, 0.2, False) do not silently replace them
    assert (c.state_dropout_prob, c.dit_dropout, c.tune_llm) == (0.3, 0.05, True)
    assert c.use_relative_action is True  # set by the finetune recipe file
    assert source["overrides"] == {"use_relative_action": {"checkpoint": False, "run": True}}
    assert "model.use_relative_action=True overrides the checkpoint's False" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="gr00t.train.build"):
        model, source = build.build_model(_cfg("data=x", f"base={base}", "model.state_dropout_prob=0.7"))
    assert model.config.state_dropout_prob == 0.7 and model.config.dit_dropout == 0.05
    assert set(source["overrides"]) == {"use_relative_action", "state_dropout_prob"}
    assert "model.state_dropout_prob=0.7 overrides the checkpoint's 0.3" in caplog.text


def test_rtc_training_delay_changes_at_finetune_time(tmp_path, caplog):
    from gr00t.model.gr00t_n16 import Gr00tN16Model
    from gr00t.model.presets import load_preset

    base = tmp_path / "ck"
    Gr00tN16Model(load_preset("n16_tiny", rtc_training_max_delay=4)).save_pretrained(base)
    model, _ = build.build_model(_cfg("data=x", "model=n16_tiny", f"base={base}"))
    assert model.config.rtc_training_max_delay == 4  # kept from the checkpoint's config.json
    with caplog.at_level("INFO", logger="gr00t.train.build"):
        model, source = build.build_model(
            _cfg("data=x", "model=n16_tiny", f"base={base}", "model.rtc_training_max_delay=2")
        )
    assert model.config.rtc_training_max_delay == 2
    assert source["overrides"]["rtc_training_max_delay"] == {"checkpoint": 4, "run": 2}
    assert "model.rtc_training_max_delay=2 overrides the checkpoint's 4" in caplog.text
    model.save_pretrained(tmp_path / "out")
    assert '"rtc_training_max_delay": 2' in (tmp_path / "out" / "config.json").read_text()


def test_full_size_model_without_base_warns_first(monkeypatch, caplog):
    assert "RANDOM weights" in build.random_weights_warning(_cfg("data=x"))
    assert "RANDOM weights" in build.random_weights_warning(_cfg("data=x", "model=n16_release"))
    assert build.random_weights_warning(_cfg("data=x", "model=n16_tiny")) is None
    assert build.random_weights_warning(_cfg("data=x", "base=/some/ckpt")) is None

    def stop(*args, **kwargs):
        raise RuntimeError("stop after the first log lines")

    monkeypatch.setattr(build, "_build_and_train", stop)
    with caplog.at_level("INFO"), pytest.raises(RuntimeError):
        build.build_and_train(_cfg("data=x", "run_dir=/nonexistent/run"))
    assert "RANDOM weights" in caplog.records[0].getMessage()  # the top of the log
