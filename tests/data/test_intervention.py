"""Intervention up-weighting: the `intervention` setting, reading the flags, the strata."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from gr00t.data.dataset import Gr00tDataset
from gr00t.data.embodiment import EmbodimentConfig, EmbodimentConfigError, load_embodiment
from gr00t.data.intervention import InterventionWeighting, episode_flags, weighted_strata
from gr00t.data.mixture import MixtureError, load_mixture, resolve_data

FLAGGED = (1, 4)


def mark_interventions(source: Path, target: Path, flagged=FLAGGED, level: str = "episode") -> Path:
    """A copy of a demo dataset whose episodes `flagged` are interventions: an `is_intervention`
    episode field (meta/episodes) or a boolean frame column true on the flagged episodes' second half."""
    shutil.copytree(source, target)
    version = json.loads((target / "meta" / "info.json").read_text())["codebase_version"]
    if level == "episode" and version == "v2.1":
        path = target / "meta" / "episodes.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for row in rows:
            row["is_intervention"] = row["episode_index"] in flagged
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif level == "episode":
        for path in (target / "meta" / "episodes").rglob("*.parquet"):
            table = pq.read_table(path)
            flags = [e in flagged for e in table.column("episode_index").to_pylist()]
            pq.write_table(table.append_column("is_intervention", pa.array(flags)), path)
    else:
        for path in (target / "data").rglob("*.parquet"):
            table = pq.read_table(path)
            ep = np.asarray(table.column("episode_index"))
            frame = np.asarray(table.column("frame_index"))
            flags = np.isin(ep, flagged) & (frame >= 30)
            pq.write_table(table.append_column("is_intervention", pa.array(flags)), path)
        info = json.loads((target / "meta" / "info.json").read_text())
        info["features"]["is_intervention"] = {"dtype": "bool", "shape": [1], "names": None}
        (target / "meta" / "info.json").write_text(json.dumps(info))
    return target


@pytest.mark.parametrize("level", ["episode", "frame"])
@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_flags_from_an_episode_field_or_a_frame_column(
    version, level, demo_dataset_v21, demo_dataset_v3, tmp_path
):
    source = demo_dataset_v21 if version == "v2.1" else demo_dataset_v3
    root = mark_interventions(source, tmp_path / "d", level=level)
    ds = Gr00tDataset(root, "new_embodiment", load_video=False)
    assert episode_flags(ds, "is_intervention").tolist() == [e in FLAGGED for e in range(6)]
    with pytest.raises(ValueError, match="'is_human' is neither an episode field"):
        episode_flags(ds, "is_human")
    with pytest.raises(ValueError, match="expected booleans"):
        episode_flags(ds, "task_index")  # a frame column, but not boolean


def test_the_setting_in_an_embodiment_and_a_mixture(tmp_path):
    data = load_embodiment("new_embodiment").to_dict()
    data["intervention"] = {"column": "is_intervention", "weight": 3}
    emb = EmbodimentConfig.from_dict(data)
    assert emb.intervention == InterventionWeighting("is_intervention", 3.0)
    assert EmbodimentConfig.from_dict(emb.to_dict()) == emb
    for bad, message in (
        ({"column": "x", "weight": 0}, "key 'intervention.weight': expected a positive factor"),
        ({"column": "", "weight": 2}, "key 'intervention.column'"),
        ({"column": "x", "weight": 2, "factor": 1}, "key 'intervention.factor': unknown field"),
        ("is_intervention", "key 'intervention': expected a mapping"),
    ):
        data["intervention"] = bad
        path = tmp_path / "robot.yaml"
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(EmbodimentConfigError, match=message):
            load_embodiment(path)
    mix = tmp_path / "m.yaml"
    entry = {
        "path": "/d",
        "embodiment": "new_embodiment",
        "intervention": {"column": "is_intervention", "weight": 4},
    }
    mix.write_text(yaml.safe_dump({"datasets": [entry]}))
    assert load_mixture(str(mix)).entries[0].intervention == InterventionWeighting("is_intervention", 4.0)
    entry["intervention"] = {"column": "is_intervention", "weight": -1}
    mix.write_text(yaml.safe_dump({"datasets": [entry]}))
    with pytest.raises(MixtureError, match=r"m.yaml: key 'datasets\[0\].intervention.weight'"):
        load_mixture(str(mix))


def test_strata_shares():
    # dataset 0: episodes 0..3 (10 samples each), episode 2 flagged x3; dataset 1 unweighted
    strata = weighted_strata(
        episodes=[np.array([0, 1, 2, 3]), np.array([0, 1])],
        samples=[np.full(4, 10), np.array([5, 5])],
        shares=[0.6, 0.4],
        factors=[{2: 3.0}, None],
    )
    assert [(s.dataset, s.rows.tolist()) for s in strata] == [(0, [0, 1, 3]), (0, [2]), (1, [0, 1])]
    # flagged: 3·10 of 3·10 + 30 → half of dataset 0's share; per sample 3x an unflagged one
    assert [round(s.share, 6) for s in strata] == [0.3, 0.3, 0.4]


def test_random_sampler_draws_flagged_episodes_more_and_resumes_exactly():
    from gr00t.data.intervention import EpisodeWeightedSampler
    from gr00t.data.sampler import SampleIndex

    # dataset 0: 4 episodes of 10 samples, episode 12 flagged x3; dataset 1: 2 episodes of 5 samples
    episodes = [np.array([10, 11, 12, 13]), np.array([0, 1])]
    starts = [np.arange(0, 50, 10), np.array([0, 5, 10])]
    sampler = EpisodeWeightedSampler(episodes, starts, [0.8, 0.2], [{12: 3.0}, None], seed=3)
    drawn = []
    for epoch in range(40):
        sampler.set_epoch(epoch)
        drawn.extend(sampler)
    assert all(isinstance(d, SampleIndex) for d in drawn[:5])
    counts = np.bincount(np.asarray(drawn, dtype=np.int64), minlength=50)
    flagged, plain, other = (
        counts[20:30].mean(),
        counts[[*range(20), *range(30, 40)]].mean(),
        counts[40:].sum(),
    )
    assert abs(flagged / plain - 3.0) < 0.05
    assert abs(other / counts.sum() - 0.2) < 0.01  # the second dataset keeps its share
    # resume: a fresh sampler loaded with the state after 37 draws continues the same sequence
    again = EpisodeWeightedSampler(episodes, starts, [0.8, 0.2], [{12: 3.0}, None], seed=3)
    again.load_state_dict(sampler.state_dict(consumed=37))
    rest = list(again)
    assert [int(d) for d in rest] == [int(d) for d in drawn[37 : 37 + len(rest)]]
    assert [(d.epoch, d.position) for d in rest[:3]] == [
        (drawn[i].epoch, drawn[i].position) for i in range(37, 40)
    ]
    other_weighting = EpisodeWeightedSampler(episodes, starts, [0.8, 0.2], [{11: 3.0, 12: 3.0}, None], seed=3)
    with pytest.raises(ValueError, match="intervention weighting changed"):
        other_weighting.load_state_dict(sampler.state_dict(consumed=37))
    other_episode = EpisodeWeightedSampler(
        episodes, starts, [0.8, 0.2], [{11: 3.0}, None], seed=3
    )  # one, as before
    with pytest.raises(ValueError, match="intervention weighting changed"):
        other_episode.load_state_dict(sampler.state_dict(consumed=37))


def _weighted_mixture(
    tmp_path: Path, root: Path, column: str = "is_intervention", weight: float = 3.0
) -> Path:
    mix = tmp_path / "weighted.yaml"
    entry = {
        "path": str(root),
        "embodiment": "new_embodiment",
        "intervention": {"column": column, "weight": weight},
    }
    mix.write_text(yaml.safe_dump({"datasets": [entry]}))
    return mix


def test_the_build_samples_flagged_episodes_more_from_a_mixture_file(demo_dataset_v3, tmp_path):
    from omegaconf import OmegaConf

    from gr00t.data.intervention import EpisodeWeightedSampler
    from gr00t.train import build
    from gr00t.train.build import BuildError

    root = mark_interventions(demo_dataset_v3, tmp_path / "d")
    mixture = load_mixture(str(_weighted_mixture(tmp_path, root)))
    embodiments = {"new_embodiment": load_embodiment("new_embodiment")}
    datasets = [Gr00tDataset(root, "new_embodiment", load_video=False)]
    settings = OmegaConf.create({"seed": 5, "per_device_batch_size": 4})
    factory, summary = build.sampler_factory(datasets, mixture, embodiments, settings)
    assert summary == [
        {"dataset": "d", "column": "is_intervention", "weight": 3.0, "flagged_episodes": 2, "episodes": 6}
    ]
    sampler = factory(1, 2)  # rank 1 of 2: epochs rounded to whole global batches (4 × 2)
    assert isinstance(sampler, EpisodeWeightedSampler) and sampler.epoch_length % 8 == 0
    drawn = []
    for epoch in range(30):
        sampler.set_epoch(epoch)
        drawn.extend(int(i) for i in sampler)
    episode = np.array([datasets[0].locate(i)[0] for i in drawn])
    valid = [datasets[0].num_valid_steps(n) for n in datasets[0].episode_lengths]
    per_sample = {e: (episode == e).sum() / valid[e] for e in range(6)}
    plain = np.mean([per_sample[e] for e in range(6) if e not in FLAGGED])
    assert all(abs(per_sample[e] / plain - 3.0) < 0.3 for e in FLAGGED)
    bad = load_mixture(str(_weighted_mixture(tmp_path, root, column="is_human")))
    with pytest.raises(BuildError, match="intervention column 'is_human' is neither"):
        build.sampler_factory(datasets, bad, embodiments, settings)
    # without a weighting: the plain sampler, nothing reported
    factory, summary = build.sampler_factory(
        datasets, resolve_data(str(root), "new_embodiment"), embodiments, settings
    )
    assert summary == [] and not isinstance(factory(0, 1), EpisodeWeightedSampler)


def test_build_sampler_is_decode_aware_with_or_without_a_weighting(demo_dataset_v3, tmp_path):
    """gr00t-finetune's sampler: the WindowSampler by default, its chunks weighted by the intervention
    factors when a weighting is in force; trainer.dataloader_sampling=random keeps the random-access
    weighted sampler."""
    import dataclasses

    from gr00t.data.dataset import MixtureDataset
    from gr00t.data.intervention import EpisodeWeightedSampler
    from gr00t.data.window_sampler import WindowSampler
    from gr00t.train import build
    from gr00t.train.settings import TrainingSettings

    root = mark_interventions(demo_dataset_v3, tmp_path / "d")
    embodiments = {"new_embodiment": load_embodiment("new_embodiment")}
    datasets = [Gr00tDataset(root, "new_embodiment", load_video=False)]
    settings = TrainingSettings(seed=5, per_device_batch_size=4)
    plain = resolve_data(str(root), "new_embodiment")
    factory, _ = build.sampler_factory(datasets, plain, embodiments, settings, MixtureDataset(datasets))
    assert isinstance(factory(0, 1), WindowSampler) and factory(0, 1).strata is None
    weighted = load_mixture(str(_weighted_mixture(tmp_path, root)))
    factory, _ = build.sampler_factory(datasets, weighted, embodiments, settings, MixtureDataset(datasets))
    sampler = factory(0, 1)
    assert isinstance(sampler, WindowSampler) and [r[:3] for r in sampler.strata] == [
        [0, 4, 1.0],
        [0, 2, 3.0],
    ]
    episode = np.array([datasets[0].locate(int(i))[0] for _, i in zip(range(6000), sampler)])
    valid = [datasets[0].num_valid_steps(n) for n in datasets[0].episode_lengths]
    per_sample = {e: (episode == e).sum() / valid[e] for e in range(6)}
    plain_rate = np.mean([per_sample[e] for e in range(6) if e not in FLAGGED])
    assert all(abs(per_sample[e] / plain_rate - 3.0) < 0.4 for e in FLAGGED), per_sample
    random = dataclasses.replace(settings, dataloader_sampling="random")
    factory, _ = build.sampler_factory(datasets, weighted, embodiments, random, MixtureDataset(datasets))
    assert isinstance(factory(0, 1), EpisodeWeightedSampler)
