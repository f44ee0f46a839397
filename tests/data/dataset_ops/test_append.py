"""append: a new session's episodes added to a dataset in place, whole or not at all."""

from __future__ import annotations

import json

import pytest

from gr00t.data.dataset_ops import DatasetOpsError, append, layout_v21, layout_v30, merge
from tests.data.dataset_ops.checks import (
    assert_dataset_holds,
    assert_episode_stats_recomputed,
    assert_stats_recomputed,
    leftovers,
    tree_digest,
)


@pytest.mark.parametrize(
    "base_name, new_name, version", [("a3", "b3", "v3.0"), ("a21", "b21", "v2.1"), ("a21", "b3", "v3.0")]
)
def test_append_adds_the_session_exactly(inputs, copy_of, base_name, new_name, version):
    base = copy_of(inputs[base_name], "base")
    report = append(base, inputs[new_name])
    assert report.version == version and report.episodes == 5
    reader = assert_dataset_holds(base, [(inputs[base_name], [0, 1, 2]), (inputs[new_name], [0, 1])])
    assert reader.version == version
    assert_stats_recomputed(base)
    assert_episode_stats_recomputed(base)
    assert leftovers(base.parent, "base") == []
    if base_name == "a21" and version == "v3.0":
        assert any("was v2.1; appending v3.0 data made it v3.0" in n for n in report.notes)


def test_append_links_unchanged_base_files(inputs, copy_of):
    base = copy_of(inputs["a3"], "base")
    before = {p.relative_to(base): p.stat().st_ino for p in (base / "videos").rglob("*.mp4")}
    before[base.joinpath("data/chunk-000/file-000.parquet").relative_to(base)] = (
        (base / "data/chunk-000/file-000.parquet").stat().st_ino
    )
    report = append(base, inputs["b3"])
    assert report.files_reused >= len(before)
    for rel, inode in before.items():  # the very same files: nothing of the base was rewritten
        assert (base / rel).stat().st_ino == inode, rel


def test_append_twice_equals_one_merge(inputs, copy_of, tmp_path):
    base = copy_of(inputs["a3"], "base")
    append(base, inputs["b3"])
    append(base, inputs["b21"], allow_duplicates=True)  # b21 holds b3's recordings in v2.1
    merged = tmp_path / "merged"
    merge([inputs["a3"], inputs["b3"], inputs["b21"]], merged)
    assert_dataset_holds(base, [(inputs["a3"], [0, 1, 2]), (inputs["b3"], [0, 1]), (inputs["b21"], [0, 1])])
    assert json.loads((base / "meta/stats.json").read_text()) == json.loads(
        (merged / "meta/stats.json").read_text()
    )


def _fail(*args, **kwargs):
    raise RuntimeError("injected failure halfway")


@pytest.mark.parametrize(
    "base_name, module, step, error",
    [
        ("a3", layout_v30, "_write_episodes", RuntimeError),  # data and videos written, metadata not yet
        ("a21", layout_v21, "write_common_meta", RuntimeError),
        ("a3", layout_v30, "write_json", KeyboardInterrupt),  # Ctrl-C while writing info.json
    ],
)
def test_interrupted_append_leaves_base_unchanged(
    inputs, copy_of, monkeypatch, base_name, module, step, error
):
    base = copy_of(inputs[base_name], "base")
    digest = tree_digest(base)

    def interrupt(*args, **kwargs):
        raise error("injected failure halfway")

    monkeypatch.setattr(module, step, interrupt)
    with pytest.raises(error, match="injected failure halfway"):
        append(base, inputs["b3"] if base_name == "a3" else inputs["b21"])
    assert tree_digest(base) == digest
    assert leftovers(base.parent, "base") == []


def test_interrupted_merge_publishes_nothing(inputs, tmp_path, monkeypatch):
    monkeypatch.setattr(layout_v30, "_write_episodes", _fail)
    with pytest.raises(RuntimeError, match="injected failure halfway"):
        merge([inputs["a3"], inputs["b21"]], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()
    assert leftovers(tmp_path, "merged") == []


@pytest.mark.parametrize("again", ["b3", "b21"])  # the same session again, as written or in the other format
def test_appending_a_session_twice_is_refused(inputs, copy_of, again):
    base = copy_of(inputs["a21"], "base")
    append(base, inputs["b3"])
    before = tree_digest(base)
    with pytest.raises(DatasetOpsError) as err:
        append(base, inputs[again])
    message = str(err.value)
    assert "\n" not in message
    assert f"{inputs[again]}: 2 of its 2 episodes are already in {base}" in message
    assert "new = base episode: 0 = 3, 1 = 4" in message and "observation.state" in message
    assert tree_digest(base) == before and leftovers(base.parent, "base") == []


def test_a_partly_repeated_session_is_refused_and_other_data_passes(inputs, copy_of, tmp_path):
    partial = tmp_path / "partial"
    merge([inputs["b21"], inputs["a21"]], partial)  # b's two episodes, then a's three
    base = copy_of(inputs["a3"], "base")
    with pytest.raises(
        DatasetOpsError, match=r"3 of its 5 episodes .* \(new = base episode: 2 = 0, 3 = 1, 4 = 2;"
    ):
        append(base, partial)
    report = append(base, inputs["b21"])  # other recordings: no complaint
    assert report.episodes == 5
