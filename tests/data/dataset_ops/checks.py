"""Exact comparisons between an output dataset and the input episodes it was built from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gr00t.data.lerobot import open_lerobot_dataset
from gr00t.data.lerobot.base import LeRobotReader

RENUMBERED = ("episode_index", "index")
TASK_COLUMNS = ("task_index", "annotation.human.task_description")


def assert_same_episode(
    out: LeRobotReader, out_ep: int, src: LeRobotReader, src_ep: int, frames: bool = True
):
    """Rows, tasks and decoded frames of output episode `out_ep` equal those of `src_ep` in `src`."""
    assert out.episode_length(out_ep) == src.episode_length(src_ep)
    assert out.episode_tasks(out_ep) == src.episode_tasks(src_ep)
    got, want = out.episode_data(out_ep), src.episode_data(src_ep)
    assert sorted(got) == sorted(want)
    for name, values in want.items():
        if name == "episode_index":
            assert np.all(got[name] == out_ep)
        elif name == "index":
            assert np.array_equal(np.diff(got[name]), np.ones(len(values) - 1, np.int64))
        elif name in TASK_COLUMNS:
            assert [out.tasks[int(i)] for i in got[name]] == [src.tasks[int(i)] for i in values], name
        else:
            assert got[name].dtype == values.dtype and np.array_equal(got[name], values), name
    if frames:
        n = src.episode_length(src_ep)
        for key in src.camera_keys:
            assert np.array_equal(
                out.decode_segment(out_ep, key, 0, n), src.decode_segment(src_ep, key, 0, n)
            ), key
            picks = [n - 1, 0, n // 2]
            assert np.array_equal(
                out.decode_frames(out_ep, key, picks), src.decode_frames(src_ep, key, picks)
            )


def assert_dataset_holds(
    out_root: Path, parts: list[tuple[Path, list[int]]], frames: bool = True
) -> LeRobotReader:
    """The output holds `parts` = [(input root, its episodes in order), ...] back to back, exactly."""
    out = open_lerobot_dataset(out_root)
    expected = [(open_lerobot_dataset(root), ep) for root, eps in parts for ep in eps]
    assert out.episode_indices == list(range(len(expected)))
    first = 0
    for out_ep, (src, src_ep) in enumerate(expected):
        assert_same_episode(out, out_ep, src, src_ep, frames=frames)
        index = out.episode_data(out_ep, ["index"])["index"]
        assert index[0] == first
        first += len(index)
    assert out.total_frames == first == json.loads((out_root / "meta/info.json").read_text())["total_frames"]
    return out


def numeric_rows(reader: LeRobotReader, name: str, episodes=None) -> np.ndarray:
    eps = reader.episode_indices if episodes is None else episodes
    rows = [reader.episode_data(ep, [name])[name].astype(np.float64) for ep in eps]
    return np.concatenate([r.reshape(len(r), -1) for r in rows])


def assert_stats_recomputed(root: Path, embodiment: str | None = "new_embodiment") -> dict:
    """meta/stats.json equals statistics computed here from the output's rows (and gr00t's compute_stats)."""
    reader = open_lerobot_dataset(root)
    stats = json.loads((root / "meta/stats.json").read_text())
    numeric = [k for k, f in reader.features.items() if f["dtype"] not in ("video", "image", "string")]
    assert set(numeric) <= set(stats)
    for name in numeric:
        rows = numeric_rows(reader, name)
        entry = {k: np.asarray(v, np.float64).reshape(-1) for k, v in stats[name].items()}
        assert entry["count"].tolist() == [len(rows)]
        for key, want in (("mean", rows.mean(0)), ("std", rows.std(0))):
            np.testing.assert_allclose(entry[key], want, rtol=1e-12, atol=1e-12, err_msg=f"{name} {key}")
        assert np.array_equal(entry["min"], rows.min(0)) and np.array_equal(entry["max"], rows.max(0)), name
        for q in [k for k in entry if k[0] == "q" and k[1:].isdigit()]:
            want = np.quantile(rows, int(q[1:]) / 100, axis=0)
            assert np.array_equal(entry[q], want), f"{name} {q}"
    if embodiment is not None:
        from gr00t.data.stats import compute_stats

        columns, _ = compute_stats(root, embodiment)
        for column, computed in columns.items():
            for key in ("mean", "std", "min", "max", "q01", "q99"):
                assert np.array_equal(np.asarray(stats[column][key]), computed[key]), f"{column} {key}"
    return stats


def episode_stats(root: Path) -> dict[int, dict]:
    """Per-episode statistics as written (v2.1 episodes_stats.jsonl or v3.0 stats/ columns)."""
    if (root / "meta/episodes_stats.jsonl").is_file():
        rows = [json.loads(x) for x in (root / "meta/episodes_stats.jsonl").read_text().splitlines()]
        return {r["episode_index"]: r["stats"] for r in rows}
    import pyarrow.parquet as pq

    out: dict[int, dict] = {}
    for path in sorted((root / "meta/episodes").glob("*/*.parquet")):
        for row in pq.read_table(path).to_pylist():
            per: dict = {}
            for key, value in row.items():
                if key.startswith("stats/") and value is not None:
                    feature, _, stat = key[6:].rpartition("/")
                    per.setdefault(feature, {})[stat] = value
            out[row["episode_index"]] = per
    return out


def assert_episode_stats_recomputed(root: Path) -> None:
    """Every episode's numeric statistics equal those of its rows."""
    reader = open_lerobot_dataset(root)
    per = episode_stats(root)
    numeric = [k for k, f in reader.features.items() if f["dtype"] not in ("video", "image", "string")]
    for ep in reader.episode_indices:
        for name in numeric:
            rows = numeric_rows(reader, name, [ep])
            entry = per[ep][name]
            assert entry["count"] == [len(rows)]
            for key, want in (
                ("mean", rows.mean(0)),
                ("std", rows.std(0)),
                ("min", rows.min(0)),
                ("max", rows.max(0)),
            ):
                assert np.array_equal(np.asarray(entry[key], np.float64).reshape(-1), want), (ep, name, key)


def reorder_tasks(root: Path, order: list[str]) -> None:
    """Rewrite a dataset's task table to `order` (which must contain its tasks) and remap its rows.

    Makes inputs whose task tables differ, as two separately recorded sessions' tables do.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    reader = open_lerobot_dataset(root)
    new_index = {text: i for i, text in enumerate(order)}
    mapping = {old: new_index[text] for old, text in reader.tasks.items()}
    if reader.version == "v3.0":
        pd.DataFrame({"task_index": range(len(order))}, index=pd.Index(order)).to_parquet(
            root / "meta/tasks.parquet"
        )
    else:
        (root / "meta/tasks.jsonl").write_text(
            "".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(order))
        )
    for path in sorted((root / "data").rglob("*.parquet")):
        table = pq.read_table(path)
        for name in TASK_COLUMNS:
            if name in table.column_names:
                values = [mapping[v] for v in table.column(name).to_pylist()]
                i = table.column_names.index(name)
                table = table.set_column(
                    i, table.schema.field(i), pa.array(values, table.schema.field(i).type)
                )
        pq.write_table(table, path)
    info = json.loads((root / "meta/info.json").read_text())
    info["total_tasks"] = len(order)
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))


def tree_digest(root: Path) -> dict[str, str]:
    """{relative path: sha1 of the bytes} of every file under `root`."""
    import hashlib

    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def leftovers(parent: Path, name: str) -> list[str]:
    """Temporary folders a write of `<parent>/<name>` could leave behind."""
    return sorted(
        p.name for p in parent.iterdir() if p.name.startswith(f".{name}.") and not p.name.endswith(".lock")
    )
