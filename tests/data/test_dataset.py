"""Gr00tDataset windows against direct parquet reads; window reads; DataLoader → model end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from gr00t.data.collator import Gr00tCollator
from gr00t.data.dataset import Gr00tDataset, MixtureDataset
from gr00t.data.demo import TASKS, read_frame_code
from gr00t.data.embodiment import load_embodiment
from gr00t.data.sampler import MixtureSampler
from tests.data.test_processor import flatten_sample

HORIZON = 16
EPISODES, LENGTH = 6, 60


def parquet_frames(root: Path) -> pd.DataFrame:
    """Every frame of the dataset, read straight from its parquet files."""
    files = sorted((root / "data").rglob("*.parquet"))
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return df.sort_values(["episode_index", "frame_index"]).reset_index(drop=True)


def embodiment_with(**changes):
    data = load_embodiment("new_embodiment").to_dict()
    for key, value in changes.items():
        data[key] = {**data[key], **value}
    return data


@pytest.mark.parametrize("fixture", ["demo_dataset_v3", "demo_dataset_v21"])
def test_windows_match_parquet(fixture: str, request: pytest.FixtureRequest) -> None:
    root = request.getfixturevalue(fixture)
    ds = Gr00tDataset(root, "new_embodiment")
    assert len(ds) == EPISODES * (LENGTH - HORIZON + 1)
    frames = parquet_frames(root)
    rng = np.random.default_rng(0)
    for index in [0, len(ds) - 1, *rng.integers(0, len(ds), size=6).tolist()]:
        s = ds[index]
        ep, t = s["episode_index"], s["step"]
        assert ds.locate(index) == (ep, t) and 0 <= t <= LENGTH - HORIZON
        rows = frames[frames.episode_index == ep].reset_index(drop=True)
        state = np.stack(rows["observation.state"].to_numpy())
        action = np.stack(rows["action"].to_numpy())
        np.testing.assert_array_equal(s["state"]["arm"], state[t : t + 1, :6])
        np.testing.assert_array_equal(s["state"]["gripper"], state[t : t + 1, 6:7])
        np.testing.assert_array_equal(s["action"]["arm"], action[t : t + HORIZON, :6])
        np.testing.assert_array_equal(s["action"]["gripper"], action[t : t + HORIZON, 6:7])
        assert s["state"]["arm"].dtype == np.float32 and s["action"]["arm"].shape == (HORIZON, 6)
        assert s["language"] == TASKS[int(rows["task_index"][t])]
        assert s["embodiment"] == "new_embodiment"
        for view in ("front", "wrist"):
            video = s["video"][view]
            assert video.dtype == np.uint8 and video.shape == (1, 96, 128, 3)
            assert read_frame_code(video[0]) == (ep, t)  # the exact frame was decoded


def test_sample_order_is_episode_major(demo_dataset_v3: Path) -> None:
    ds = Gr00tDataset(demo_dataset_v3, "new_embodiment", load_video=False)
    per_ep = LENGTH - HORIZON + 1
    assert ds.locate(0) == (0, 0) and ds.locate(per_ep - 1) == (0, LENGTH - HORIZON)
    assert ds.locate(per_ep) == (1, 0)
    with pytest.raises(IndexError, match=str(len(ds))):
        ds[len(ds)]
    assert ds[3]["video"] == {}


def test_negative_deltas_clamp_to_episode_start(demo_dataset_v3: Path) -> None:
    emb = embodiment_with(state={"delta_indices": [-2, 0]}, video={"delta_indices": [-1, 0]})
    ds = Gr00tDataset(demo_dataset_v3, emb)
    s0 = ds[0]
    assert s0["state"]["arm"].shape == (2, 6)
    np.testing.assert_array_equal(s0["state"]["arm"][0], s0["state"]["arm"][1])
    assert [read_frame_code(f) for f in s0["video"]["front"]] == [(0, 0), (0, 0)]
    s5 = ds.sample(0, 5)
    assert [read_frame_code(f) for f in s5["video"]["wrist"]] == [(0, 4), (0, 5)]


def test_missing_modality_key_is_named(demo_dataset_v3: Path) -> None:
    emb = embodiment_with(video={"keys": ["front", "ego_view"]})
    with pytest.raises(KeyError, match=r"video keys \['ego_view'\]"):
        Gr00tDataset(demo_dataset_v3, emb)


def test_window_equals_random_access(demo_dataset_v21: Path) -> None:
    ds = Gr00tDataset(demo_dataset_v21, "new_embodiment")
    seg = ds.window(2, 10, 8)
    for k, s in enumerate(seg):
        ref = ds.sample(2, 10 + k)
        assert s["step"] == 10 + k
        for view in ("front", "wrist"):
            assert np.array_equal(s["video"][view], ref["video"][view])
        np.testing.assert_array_equal(s["action"]["arm"], ref["action"]["arm"])


def _with_stats(src: Path, dst: Path) -> Path:
    from gr00t.data.stats import compute_and_write

    shutil.copytree(src, dst)
    compute_and_write(dst, "new_embodiment")
    return dst


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["n16_tiny", "qwen3_vl_tiny"])
def test_dataloader_to_model_forward(demo_dataset_v3: Path, tmp_path: Path, preset: str) -> None:
    from gr00t.data.processor import Gr00tProcessor
    from gr00t.data.stats import load_stats
    from gr00t.data.tokenizer import build_tiny_tokenizer
    from gr00t.model.gr00t_n16 import Gr00tN16Model
    from gr00t.model.presets import load_preset

    root = _with_stats(demo_dataset_v3, tmp_path / "demo")
    config = load_preset(preset, use_relative_action=True, apply_sincos_state_encoding=True)
    stats, rel = load_stats(root, "new_embodiment")
    processor = Gr00tProcessor.from_config(
        config,
        [("new_embodiment", stats, rel)],
        build_tiny_tokenizer(),
        vlm_overrides={"min_pixels": 4 * 32 * 32} if preset != "n16_tiny" else None,
    )
    data = MixtureDataset([Gr00tDataset(root, "new_embodiment")], transform=processor)
    sampler = MixtureSampler(data.sizes, seed=0, round_to=4)
    loader = DataLoader(
        data,
        batch_size=4,
        sampler=sampler,
        num_workers=2,
        collate_fn=Gr00tCollator(processor.tokenizer.pad_token_id),
    )
    batch = next(iter(loader))
    assert batch.head.state.shape == (4, 1, config.max_state_dim)
    assert batch.head.action.shape == (4, config.action_horizon, config.max_action_dim)
    assert batch.head.embodiment_id.tolist() == [10] * 4
    torch.manual_seed(0)
    out = Gr00tN16Model(config)(batch)
    assert torch.isfinite(out.loss) and out.loss > 0
    json.dumps(processor.to_dict())  # the processor state of this run is JSON-serialisable


def test_mixture_dataset_from_mixture_file(
    demo_dataset_v3: Path, demo_dataset_v21: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from gr00t.data.mixture import load_mixture

    monkeypatch.setenv("GR00T_MIXTURES_DIR", str(tmp_path))
    (tmp_path / "two.yaml").write_text(
        yaml.safe_dump(
            {
                "datasets": [
                    {"name": "a", "path": str(demo_dataset_v3), "embodiment": "new_embodiment", "weight": 3},
                    {"name": "b", "path": str(demo_dataset_v21), "embodiment": "new_embodiment", "weight": 1},
                ]
            }
        )
    )
    mixture = load_mixture("two")
    data = MixtureDataset.from_mixture(mixture)
    per = EPISODES * (LENGTH - HORIZON + 1)
    assert data.sizes == [per, per] and len(data) == 2 * per
    sampler = MixtureSampler(data.sizes, weights=mixture.weights, seed=0)
    which = sampler.dataset_of(np.array(list(sampler)))
    assert np.bincount(which).tolist() == [3 * per // 2, per // 2]
    s = data.raw(per + 5)  # first dataset's samples come first, then the second's
    assert (s["episode_index"], s["step"]) == (0, 5) and read_frame_code(s["video"]["front"][0]) == (0, 5)


@pytest.fixture(scope="module")
def augmenting(demo_dataset_v3: Path, tmp_path_factory: pytest.TempPathFactory):
    """(dataset root with stats, train-mode processor with crop, rotation and colour jitter)."""
    from gr00t.data.image_transforms import ImageTransformConfig
    from gr00t.data.processor import Gr00tProcessor
    from gr00t.data.stats import load_stats
    from gr00t.data.tokenizer import build_tiny_tokenizer
    from gr00t.model.presets import load_preset

    root = _with_stats(demo_dataset_v3, tmp_path_factory.mktemp("augment") / "demo")
    stats, rel = load_stats(root, "new_embodiment")
    images = ImageTransformConfig(size=64, rotation_degrees=10, brightness=0.3, contrast=0.3, hue=0.05)
    processor = Gr00tProcessor.from_config(
        load_preset("n16_tiny"),
        [("new_embodiment", stats, rel)],
        build_tiny_tokenizer(),
        images,
        training=True,
    )
    return root, processor


def test_augmentation_is_keyed_by_sample_position(augmenting) -> None:
    from gr00t.data.sampler import SampleIndex

    root, processor = augmenting
    data = MixtureDataset([Gr00tDataset(root, "new_embodiment", episodes=[0])], transform=processor)
    a, again = data[SampleIndex(5, 0, 0, 3)], data[SampleIndex(5, 0, 0, 3)]
    assert torch.equal(a["backbone"].pixel_values, again["backbone"].pixel_values)
    for other in (SampleIndex(5, 0, 0, 4), SampleIndex(5, 0, 1, 3), SampleIndex(5, 1, 0, 3)):
        b = data[other]  # same sample, drawn at another place (or by another seed): another augmentation
        assert not torch.equal(a["backbone"].pixel_values, b["backbone"].pixel_values)
        assert torch.equal(a["state"], b["state"]) and torch.equal(
            a["backbone"].input_ids, b["backbone"].input_ids
        )
    plain = data[5]  # a plain index: keyed by (dataset seed, index), stable across reads
    assert torch.equal(plain["backbone"].pixel_values, data[5]["backbone"].pixel_values)


@pytest.mark.slow
def test_augmented_samples_resume_exactly_with_any_worker_count(augmenting) -> None:
    root, processor = augmenting
    data = MixtureDataset([Gr00tDataset(root, "new_embodiment", episodes=[0, 1])], transform=processor)
    kw = dict(sizes=data.sizes, seed=11, epoch_length=10, round_to=2)
    batch = 2

    def run(sampler: MixtureSampler, num_samples: int, workers: int) -> list[dict]:
        out: list[dict] = []
        while len(out) < num_samples:  # across epoch ends, as the trainer's endless sampler does
            for b in DataLoader(
                data, batch_size=batch, sampler=sampler, num_workers=workers, collate_fn=list
            ):
                out.extend(b)
                sampler.advance(len(b))
                if len(out) >= num_samples:
                    break
        return out

    k, n = 6, 10  # resume mid-epoch 0; the tail crosses into epoch 1
    uninterrupted = run(MixtureSampler(**kw), k + n, workers=2)
    resumed_sampler = MixtureSampler(**kw)
    resumed_sampler.load_state_dict(MixtureSampler(**kw).state_dict(consumed=k))
    resumed = run(resumed_sampler, n, workers=1)
    for got, want in zip(resumed, uninterrupted[k:], strict=True):
        got, want = flatten_sample(got), flatten_sample(want)
        assert set(got) == set(want)
        for key in got:
            assert torch.equal(torch.as_tensor(got[key]), torch.as_tensor(want[key])), key
    pv = [s["backbone"].pixel_values for s in uninterrupted]
    assert all(not torch.equal(pv[i], pv[j]) for i in range(len(pv)) for j in range(i))


@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_image_feature_cameras_random_access_and_windows(version: str, tmp_path: Path) -> None:
    """Cameras stored as LeRobot image features (PNG in parquet, no mp4) read like video cameras."""
    from gr00t.data.demo import write_demo_dataset
    from tests.data.test_lerobot_compat import FRONT, SIZES, WRIST, _to_image_dataset

    lengths = [7, 9]
    root = write_demo_dataset(
        tmp_path / "ds", version=version, num_episodes=2, episode_length=lengths, height=24, width=64
    )
    rng = np.random.default_rng(3)
    images = {
        k: [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(sum(lengths))]
        for k, (h, w) in SIZES.items()
    }
    _to_image_dataset(root, images)
    emb = embodiment_with(video={"delta_indices": [-1, 0]}, action={"delta_indices": [0, 1, 2, 3]})
    ds = Gr00tDataset(root, emb)
    assert ds.reader.video_keys == [] and len(ds) == (7 - 3) + (9 - 3)
    views = {"front": FRONT, "wrist": WRIST}
    for index in range(len(ds)):
        s = ds[index]
        ep, t = s["episode_index"], s["step"]
        rows = sum(lengths[:ep]) + np.clip([t - 1, t], 0, lengths[ep] - 1)
        for view, key in views.items():
            assert s["video"][view].shape == (2, *SIZES[key], 3)
            assert np.array_equal(s["video"][view], np.stack([images[key][r] for r in rows])), (index, view)
    assert ds.keyframe_layout() == (1, 0)  # no mp4: every frame decodes on its own
    seg = ds.window(1, 0, 6)
    for k, s in enumerate(seg):
        ref = ds.sample(1, k)
        for view in views:
            assert np.array_equal(s["video"][view], ref["video"][view])
