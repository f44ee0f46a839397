"""Staged output folders: published whole by rename, cleaned on failure, one writer at a time."""

from __future__ import annotations

import threading

import pytest

from gr00t.data.dataset_ops import publish
from gr00t.data.dataset_ops.publish import PublishError, output_lock, staged_output, swap_in


def test_swap_in_replaces_a_folder_and_removes_the_old_one(tmp_path):
    target, new = tmp_path / "ds", tmp_path / "new"
    target.mkdir()
    (target / "old.txt").write_text("old")
    new.mkdir()
    (new / "new.txt").write_text("new")
    swap_in(new, target)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_exchange_is_atomic_on_this_file_system(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    assert publish._renameat2_exchange(a, b)  # noqa: SLF001 - the kernel call itself
    assert (b / "x").read_text() == "a" and not (a / "x").exists()


def test_staged_output_publishes_only_on_success(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(ValueError, match="boom"):
        with staged_output(target, replace=False) as tmp:
            (tmp / "half.txt").write_text("half")
            raise ValueError("boom")
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    with staged_output(target, replace=False) as tmp:
        (tmp / "whole.txt").write_text("whole")
    assert (target / "whole.txt").read_text() == "whole"
    with pytest.raises(PublishError, match="not empty"):
        with staged_output(target, replace=False):
            pass


def test_a_second_writer_waits_for_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(publish, "LOCK_TIMEOUT_S", 0.2)
    target = tmp_path / "out"
    errors = []

    def other_job():
        try:
            with staged_output(target, replace=True):
                pass
        except PublishError as err:
            errors.append(str(err))

    with output_lock(target):
        worker = threading.Thread(target=other_job)
        worker.start()
        worker.join()
    assert len(errors) == 1 and "another gr00t-dataset job is writing it" in errors[0]


def test_leftovers_of_a_killed_job_are_cleaned_up(tmp_path):
    target = tmp_path / "ds"
    (tmp_path / ".ds.tmp-killed").mkdir()
    (tmp_path / ".ds.tmp-killed/half.parquet").write_text("half")
    old = tmp_path / ".ds.old-4242"  # killed between the two renames of the fallback swap
    old.mkdir()
    (old / "info.json").write_text("the dataset")
    with staged_output(target, replace=True) as tmp:
        assert (target / "info.json").read_text() == "the dataset"  # put back before anything else
        (tmp / "info.json").write_text("new version")
    assert (target / "info.json").read_text() == "new version"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["ds"]
