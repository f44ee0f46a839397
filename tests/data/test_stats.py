"""Statistics (gr00t/data/stats.py): accumulation, merging, files, relative stats, ensure_stats."""

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gr00t.data.demo import write_demo_dataset
from gr00t.data.embodiment import EmbodimentConfig, load_embodiment
from gr00t.data.stats import (
    RELATIVE_STATS_FILE,
    STAT_KEYS,
    STATS_FILE,
    StatsAccumulator,
    StatsError,
    compute_and_write,
    ensure_stats,
    load_stats,
    merge_stats,
)

H = 16


def numpy_stats(x):
    return {
        "mean": x.mean(0),
        "std": x.std(0),
        "min": x.min(0),
        "max": x.max(0),
        "q01": np.quantile(x, 0.01, axis=0),
        "q99": np.quantile(x, 0.99, axis=0),
    }


def read_episodes(root):
    """Direct pyarrow read of every data parquet file: {episode: (state [n, 7], action [n, 7])}."""
    frames = []
    for path in sorted((Path(root) / "data").rglob("*.parquet")):
        frames.append(pq.read_table(path).to_pandas())
    import pandas as pd

    df = pd.concat(frames).sort_values(["episode_index", "frame_index"])
    out = {}
    for ep, g in df.groupby("episode_index"):
        out[int(ep)] = (
            np.stack(g["observation.state"].to_numpy()).astype(np.float64),
            np.stack(g["action"].to_numpy()).astype(np.float64),
        )
    return out


def writable_copy(src, tmp_path, drop_videos=True):
    dst = tmp_path / "ds"
    shutil.copytree(src, dst)
    for f in ("stats.json", "relative_stats.json"):
        (dst / "meta" / f).unlink(missing_ok=True)
    if drop_videos:  # statistics must never need the videos
        shutil.rmtree(dst / "videos")
    return dst


def test_accumulator_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(loc=3.0, scale=2.0, size=(1000, 5)) ** 3
    acc = StatsAccumulator()
    for part in np.array_split(x, 7):
        acc.add(part)
    got = acc.result()
    for k, v in numpy_stats(x).items():
        np.testing.assert_allclose(got[k], v, rtol=1e-10, atol=1e-10)
    assert int(got["count"]) == 1000
    # a capped quantile sample keeps mean/std/min/max exact and the quantiles close
    acc = StatsAccumulator(max_quantile_rows=300)
    for part in np.array_split(x, 10):
        acc.add(part)
    small = acc.result()
    for k in ("mean", "std", "min", "max"):
        np.testing.assert_allclose(small[k], numpy_stats(x)[k], rtol=1e-10)
    assert np.all(small["q01"] >= x.min(0)) and np.all(small["q99"] <= x.max(0))


def test_merge_formula():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, size=(300, 3))
    b = rng.normal(5, 3, size=(100, 3))
    sa, sb = numpy_stats(a), numpy_stats(b)
    sa["count"], sb["count"] = np.array(300), np.array(100)
    merged = merge_stats([sa, sb])
    both = np.concatenate([a, b])
    np.testing.assert_allclose(merged["mean"], both.mean(0), rtol=1e-12)
    np.testing.assert_allclose(merged["std"], both.std(0), rtol=1e-10)  # pooled variance is exact
    np.testing.assert_array_equal(merged["min"], both.min(0))
    np.testing.assert_array_equal(merged["max"], both.max(0))
    np.testing.assert_array_equal(merged["q01"], np.minimum(sa["q01"], sb["q01"]))
    np.testing.assert_array_equal(merged["q99"], np.maximum(sa["q99"], sb["q99"]))
    assert int(merged["count"]) == 400
    # explicit weights: sum w(s^2 + m^2) - (sum w m)^2
    w = np.array([0.25, 0.75])
    m = merge_stats([sa, sb], weights=[1, 3])
    mean = w[0] * sa["mean"] + w[1] * sb["mean"]
    var = w[0] * (sa["std"] ** 2 + sa["mean"] ** 2) + w[1] * (sb["std"] ** 2 + sb["mean"] ** 2) - mean**2
    np.testing.assert_allclose(m["mean"], mean)
    np.testing.assert_allclose(m["std"], np.sqrt(var))
    with pytest.raises(StatsError, match="different shapes"):
        merge_stats([sa, numpy_stats(rng.normal(size=(10, 2))) | {"count": 10}])


def check_against_numpy(root, episodes, horizon=H):
    stats = json.loads((root / STATS_FILE).read_text())
    states = np.concatenate([s for s, _ in episodes.values()])
    actions = np.concatenate([a for _, a in episodes.values()])
    for column, values in (("observation.state", states), ("action", actions)):
        for k, v in numpy_stats(values).items():
            np.testing.assert_allclose(stats[column][k], v, rtol=1e-6, atol=1e-7, err_msg=f"{column}.{k}")
        assert stats[column]["count"] == [len(values)]
    chunks = [
        a[t : t + horizon, :6] - s[t, :6] for s, a in episodes.values() for t in range(len(a) - horizon + 1)
    ]
    chunks = np.stack(chunks)
    rel = json.loads((root / RELATIVE_STATS_FILE).read_text())
    assert rel["action_horizon"] == horizon and set(rel["stats"]) == {"arm"}
    for k, v in numpy_stats(chunks).items():
        got = np.asarray(rel["stats"]["arm"][k])
        assert got.shape == (horizon, 6)
        np.testing.assert_allclose(got, v, rtol=1e-6, atol=1e-7, err_msg=f"relative {k}")
    assert rel["stats"]["arm"]["count"] == [len(chunks)]


def test_demo_dataset_v3_stats_without_video(demo_dataset_v3, tmp_path):
    root = writable_copy(demo_dataset_v3, tmp_path)
    compute_and_write(root, "new_embodiment")
    check_against_numpy(root, read_episodes(root))
    grouped, relative = load_stats(root, "new_embodiment")
    assert grouped["state"]["arm"]["mean"].shape == (6,) and grouped["action"]["gripper"]["max"].shape == (1,)
    assert relative["arm"]["min"].shape == (H, 6)


def test_generated_v21_dataset_with_short_episode(tmp_path):
    # one episode shorter than the horizon contributes to plain stats but not to relative stats
    src = write_demo_dataset(
        tmp_path / "gen",
        version="v2.1",
        num_episodes=3,
        episode_length=[25, 9, 40],
        height=24,
        width=64,
        seed=3,
    )
    root = writable_copy(src, tmp_path)
    compute_and_write(root, "new_embodiment")
    check_against_numpy(root, read_episodes(root))


def test_stats_json_keeps_other_entries(demo_dataset_v3, tmp_path):
    root = writable_copy(demo_dataset_v3, tmp_path)
    (root / STATS_FILE).write_text(json.dumps({"observation.images.front": {"mean": [[[0.5]]]}}))
    compute_and_write(root, "new_embodiment")
    data = json.loads((root / STATS_FILE).read_text())
    assert data["observation.images.front"] == {"mean": [[[0.5]]]}
    assert "observation.state" in data and "action" in data
    assert not list((root / "meta").glob(".*.tmp"))  # no half-written leftovers


def test_stats_json_keeps_lerobot_extra_stats_of_our_columns(demo_dataset_v3, tmp_path):
    root = writable_copy(demo_dataset_v3, tmp_path)
    lerobot = {  # what LeRobot may write for the columns we also compute, plus stats we do not compute
        "observation.state": {"mean": [9.0] * 7, "q10": [0.1] * 7, "q50": [0.5] * 7, "q90": [0.9] * 7},
        "action": {"max": [99.0] * 7, "q50": [0.25] * 7},
    }
    (root / STATS_FILE).write_text(json.dumps(lerobot))
    compute_and_write(root, "new_embodiment")
    data = json.loads((root / STATS_FILE).read_text())
    episodes = read_episodes(root)
    state = np.concatenate([s for s, _ in episodes.values()])
    action = np.concatenate([a for _, a in episodes.values()])
    for column, rows in (("observation.state", state), ("action", action)):
        for stat, value in lerobot[column].items():
            if stat in STAT_KEYS:  # ours replace LeRobot's values for the stats we compute
                continue
            assert data[column][stat] == value, (column, stat)  # LeRobot's extra stats survive
        np.testing.assert_allclose(data[column]["mean"], rows.mean(axis=0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(data[column]["max"], rows.max(axis=0))
        assert set(STAT_KEYS) <= set(data[column]) and data[column]["count"] == [len(rows)]
    assert load_stats(root, "new_embodiment")[0]["state"]["gripper"]["mean"].shape == (1,)


def short_horizon_embodiment(horizon):
    data = load_embodiment("new_embodiment").to_dict()
    data["action"]["delta_indices"] = list(range(horizon))
    return EmbodimentConfig.from_dict(data, source=f"<new_embodiment, horizon {horizon}>")


def test_horizon_mismatch_is_an_error(demo_dataset_v3, tmp_path):
    root = writable_copy(demo_dataset_v3, tmp_path)
    compute_and_write(root, "new_embodiment")
    with pytest.raises(StatsError, match="horizon 16.*uses 8"):
        load_stats(root, short_horizon_embodiment(8))
    compute_and_write(root, short_horizon_embodiment(8))
    _, rel = load_stats(root, short_horizon_embodiment(8))
    assert rel["arm"]["mean"].shape == (8, 6)


def test_missing_stats_and_missing_group(demo_dataset_v3, tmp_path):
    root = writable_copy(demo_dataset_v3, tmp_path)
    with pytest.raises(StatsError, match="stats.json does not exist.*gr00t-stats"):
        load_stats(root, "new_embodiment")
    with pytest.raises(StatsError, match="state group 'left_arm'.*missing"):
        compute_and_write(root, "gr1")


def test_ensure_stats_computes_once_and_others_wait(demo_dataset_v3, tmp_path):
    root = writable_copy(demo_dataset_v3, tmp_path)
    barrier = threading.Barrier(2, timeout=60)
    results, errors = {}, []

    def rank(r):
        try:
            results[r] = ensure_stats(
                [root], "new_embodiment", is_main_process=(r == 0), barrier=barrier.wait
            )
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=rank, args=(r,)) for r in (1, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    np.testing.assert_array_equal(
        results[0][0]["state"]["arm"]["mean"], results[1][0]["state"]["arm"]["mean"]
    )
    mtime = (root / STATS_FILE).stat().st_mtime_ns
    ensure_stats([root], "new_embodiment")  # already there: nothing is rewritten
    assert (root / STATS_FILE).stat().st_mtime_ns == mtime


def test_ensure_stats_merges_datasets(demo_dataset_v3, tmp_path):
    a = writable_copy(demo_dataset_v3, tmp_path / "a")
    b = writable_copy(demo_dataset_v3, tmp_path / "b")
    grouped, rel = ensure_stats([a, b], "new_embodiment")
    single, single_rel = load_stats(a, "new_embodiment")
    np.testing.assert_allclose(grouped["state"]["arm"]["std"], single["state"]["arm"]["std"], rtol=1e-9)
    np.testing.assert_allclose(rel["arm"]["mean"], single_rel["arm"]["mean"], rtol=1e-9)
    assert int(grouped["action"]["arm"]["count"]) == 2 * int(single["action"]["arm"]["count"])
