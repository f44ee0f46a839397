"""Sub-task language: several channels, the combine rule, and a mid-episode switch from the demo data
through the dataset, the processor and the policy."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from gr00t.data.dataset import Gr00tDataset, MixtureDataset
from gr00t.data.demo import SUBTASKS, TASKS, task_table, write_demo_dataset
from gr00t.data.embodiment import EmbodimentConfig, EmbodimentConfigError, load_embodiment
from gr00t.data.image_transforms import ImageTransformConfig
from gr00t.data.processor import Gr00tProcessor
from gr00t.data.sampler import sample_rng
from gr00t.data.tokenizer import build_tiny_tokenizer
from gr00t.model.presets import load_preset
from tests.data.test_processor import demo_stats

TASK = "annotation.human.task_description"
SUB = "annotation.human.subtask"
EMB = "new_embodiment_subtask"


def embodiment(combine: dict | None) -> EmbodimentConfig:
    data = load_embodiment(EMB).to_dict()
    data["language"] = {"keys": [TASK, SUB], **({"combine": combine} if combine else {})}
    return EmbodimentConfig.from_dict(data)


# ---------------------------------------------------------------------------------------- the rule
def test_template_rule_and_its_fallback():
    lang = load_embodiment(EMB).language
    assert lang.mode == "template" and lang.multi
    both = {TASK: "pick up the red block", SUB: "lift the red block"}
    assert lang.choose(both) == "pick up the red block: lift the red block"
    assert lang.choose(both, np.random.default_rng(0)) == lang.choose(both)  # no randomness
    assert lang.choose({TASK: "pick", SUB: ""}) == "pick"  # an empty field is never sent
    assert lang.choose({SUB: "lift"}) == "lift"  # the first channel that has text
    assert lang.choose("just a task") == "just a task"
    assert lang.choose({}) == ""


def test_sample_rule_draws_with_the_given_probabilities_and_is_deterministic_in_eval():
    lang = embodiment({"mode": "sample", "probabilities": {TASK: 0.3, SUB: 0.7}}).language
    both = {TASK: "task", SUB: "sub"}
    assert lang.choose(both) == "sub"  # the most probable channel
    rng = np.random.default_rng(0)
    counts = Counter(lang.choose(both, rng) for _ in range(4000))
    assert abs(counts["sub"] / 4000 - 0.7) < 0.03
    assert lang.choose({TASK: "task", SUB: ""}, rng) == "task"  # only channels with text are drawn
    even = embodiment({"mode": "sample", "probabilities": {TASK: 0.5, SUB: 0.5}}).language
    assert even.choose(both) == "task"  # a tie: the first listed
    only = embodiment({"mode": "sample", "probabilities": {SUB: 1.0}}).language
    assert only.choose({TASK: "task", SUB: ""}) == "task"  # nothing drawable: the first with text


def test_first_rule_and_round_trip():
    plain = embodiment(None)
    assert plain.language.mode == "first" and plain.language.choose({TASK: "a", SUB: "b"}) == "a"
    for combine in (None, {"mode": "sample", "probabilities": {TASK: 0.25, SUB: 0.75}}):
        cfg = embodiment(combine)
        assert EmbodimentConfig.from_dict(cfg.to_dict()) == cfg
    shipped = load_embodiment(EMB)
    assert EmbodimentConfig.from_dict(shipped.to_dict(), source=shipped.source) == shipped


@pytest.mark.parametrize(
    ("combine", "message"),
    [
        ({"mode": "mix"}, "key 'language.combine.mode': expected one of ['first', 'sample', 'template']"),
        ({"mode": "sample"}, "key 'language.combine.probabilities': expected a mapping"),
        ({"mode": "sample", "probabilities": {TASK: 0.5, SUB: 0.4}}, "must sum to 1, got 0.9"),
        ({"mode": "sample", "probabilities": {TASK: 1.5}}, "expected a probability in [0, 1]"),
        ({"mode": "sample", "probabilities": {"annotation.x": 1.0}}, "not a language key"),
        ({"mode": "template", "template": "{annotation.x}"}, "field {annotation.x} is not a language key"),
        ({"mode": "template", "template": "no fields"}, "names no language key"),
        ({"mode": "template", "template": "{" + TASK + "} }"}, "unbalanced brace"),
        ({"mode": "template", "template": "{" + TASK + "}", "probabilities": {}}, "unknown field"),
    ],
)
def test_bad_rules_name_the_key(tmp_path, combine, message):
    data = load_embodiment(EMB).to_dict()
    data["language"]["combine"] = combine
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(EmbodimentConfigError) as info:
        load_embodiment(path)
    assert str(path) in str(info.value) and message in str(info.value)


# ------------------------------------------------------------------------------------- the dataset
@pytest.fixture(scope="module", params=["v2.1", "v3.0"])
def subtask_demo(request, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp(f"subtask_{request.param}") / "dataset"
    return write_demo_dataset(root, version=request.param, num_episodes=3, episode_length=40, subtasks=True)


def switch_frame(root: Path, episode: int) -> int:
    """First frame of the second sub-task, read straight from parquet."""
    table = pq.read_table(sorted((root / "data").rglob("*.parquet"))).to_pandas()
    labels = table[table["episode_index"] == episode][SUB].to_numpy()
    changes = np.flatnonzero(np.diff(labels)) + 1
    assert len(changes) == 1, labels  # exactly one switch, in the middle
    return int(changes[0])


def test_demo_writes_a_per_frame_subtask_that_switches_mid_episode(subtask_demo):
    info = json.loads((subtask_demo / "meta" / "info.json").read_text())
    assert info["features"][SUB]["dtype"] == "int64" and info["total_tasks"] == len(task_table(True))
    modality = json.loads((subtask_demo / "meta" / "modality.json").read_text())
    assert set(modality["annotation"]) == {"human.task_description", "human.subtask"}
    for ep in range(3):
        assert 5 < switch_frame(subtask_demo, ep) < 35


def test_cli_writes_subtasks(tmp_path, capsys):
    from gr00t.cli.demo_data import main

    assert main([str(tmp_path / "d"), "version=v2.1", "episodes=1", "length=24", "subtasks=true"]) == 0
    tasks = (tmp_path / "d" / "meta" / "tasks.jsonl").read_text().splitlines()
    assert [json.loads(line)["task"] for line in tasks] == task_table(True)
    assert 0 < switch_frame(tmp_path / "d", 0) < 24


def test_the_switch_reaches_the_right_samples(subtask_demo):
    ds = Gr00tDataset(subtask_demo, EMB, load_video=False)
    for ep in range(3):
        k = switch_frame(subtask_demo, ep)
        before, at = ds.sample(ep, k - 1)["language"], ds.sample(ep, k)["language"]
        assert before == {TASK: TASKS[ep], SUB: SUBTASKS[ep][0]}
        assert at == {TASK: TASKS[ep], SUB: SUBTASKS[ep][1]}
    # the one-channel robot reads the task alone, as before
    plain = Gr00tDataset(subtask_demo, "new_embodiment", load_video=False)
    assert plain.sample(0, 0)["language"] == TASKS[0]


def make_processor(emb: EmbodimentConfig | str = EMB, training: bool = True) -> Gr00tProcessor:
    stats, rel = demo_stats()
    return Gr00tProcessor.from_config(
        load_preset("n16_tiny"),
        [(emb, stats, rel)],
        build_tiny_tokenizer(),
        ImageTransformConfig(size=64),
        training,
    )


def prompt_ids(processor: Gr00tProcessor, sample: dict, text: str) -> torch.Tensor:
    """The input ids the processor makes for `sample` with `text` as its one instruction."""
    return processor({**sample, "language": text}, rng=0)["backbone"].input_ids


def test_processor_applies_the_rule_in_training_and_eval(subtask_demo):
    ds = Gr00tDataset(subtask_demo, EMB)
    k = switch_frame(subtask_demo, 1)
    train, evaluate = make_processor(), make_processor(training=False)
    for step, phase in ((k - 1, 0), (k, 1)):
        raw = ds.sample(1, step)
        want = f"{TASKS[1]}: {SUBTASKS[1][phase]}"
        assert torch.equal(train(raw, rng=0)["backbone"].input_ids, prompt_ids(train, raw, want))
        assert torch.equal(evaluate(raw)["backbone"].input_ids, prompt_ids(evaluate, raw, want))
    # sample mode: training draws per sample from the sample's own stream (same draw → same text),
    # both channels occur; eval takes the most probable channel
    emb = embodiment({"mode": "sample", "probabilities": {TASK: 0.4, SUB: 0.6}})
    train, evaluate = make_processor(emb), make_processor(emb, training=False)
    raw = {**ds.sample(1, k), "embodiment": EMB}
    seen = set()
    for index in range(24):
        ids = train(raw, rng=sample_rng(index, 5))["backbone"].input_ids
        assert torch.equal(ids, train(raw, rng=sample_rng(index, 5))["backbone"].input_ids)
        seen.add(tuple(ids.tolist()))
    assert seen == {tuple(prompt_ids(train, raw, t).tolist()) for t in (TASKS[1], SUBTASKS[1][1])}
    assert torch.equal(evaluate(raw)["backbone"].input_ids, prompt_ids(evaluate, raw, SUBTASKS[1][1]))


def test_training_samples_carry_the_switch(subtask_demo):
    ds = Gr00tDataset(subtask_demo, EMB)
    processor = make_processor()
    mixture = MixtureDataset([ds], transform=processor, seed=0)
    k = switch_frame(subtask_demo, 2)
    for step, phase in ((k - 1, 0), (k, 1)):
        index = int(ds._starts[2]) + step - ds.first_valid_step()
        assert ds.locate(index) == (2, step)
        want = prompt_ids(processor, ds.sample(2, step), f"{TASKS[2]}: {SUBTASKS[2][phase]}")
        assert torch.equal(mixture[index]["backbone"].input_ids, want)


def test_policy_sees_the_combined_instruction(subtask_demo):
    from gr00t.eval.samples import observation_from_sample
    from gr00t.model.gr00t_n16 import Gr00tN16Model
    from gr00t.policy.observation import parse_observation
    from gr00t.policy.policy import Gr00tPolicy

    torch.manual_seed(0)
    policy = Gr00tPolicy(Gr00tN16Model(load_preset("n16_tiny")), make_processor(training=False), EMB)
    ds = Gr00tDataset(subtask_demo, EMB)
    k = switch_frame(subtask_demo, 0)
    for step, phase in ((k - 1, 0), (k, 1)):
        raw = ds.sample(0, step)
        obs = observation_from_sample(raw, TASK)
        assert set(obs["language"]) == {TASK, SUB}
        batch = policy.prepare(parse_observation(obs, policy.embodiment, policy.state_action.state_dims))
        want = prompt_ids(policy.processor, raw, f"{TASKS[0]}: {SUBTASKS[0][phase]}")
        assert torch.equal(batch.backbone.input_ids[0][-len(want) :], want)
        # a client that sends only the task gets the task alone; the first channel is required
        only = {**obs, "language": {TASK: obs["language"][TASK]}}
        assert policy.get_action(only, {"seed": 0})["arm"].shape == (1, 16, 6)
        with pytest.raises(ValueError, match="missing key"):
            policy.get_action({**obs, "language": {SUB: obs["language"][SUB]}})
