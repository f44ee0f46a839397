"""gr00t/atomic.py: atomic writes that leave no temporaries and honour the process umask."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from gr00t import atomic


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_umask_is_read_without_changing_it(umask):
    assert atomic.current_umask() == umask
    assert atomic.current_umask() == umask  # reading twice changes nothing
    assert atomic.file_mode() == 0o666 & ~umask and atomic.dir_mode() == 0o777 & ~umask


def test_file_writers_honour_umask_and_leave_no_temporaries(tmp_path, umask):
    atomic.write_text(tmp_path / "a.txt", "one")
    atomic.write_bytes(tmp_path / "b.bin", b"\x00\x01")
    atomic.write_json(tmp_path / "sub" / "c.json", {"b": 1, "a": [1, 2]}, sort_keys=True)
    atomic.write_json(tmp_path / "sub" / "c.json", {"b": 2})  # replaced in place
    with atomic.atomic_path(tmp_path / "d.dat") as tmp:
        assert not tmp.exists() and tmp.parent == tmp_path
        tmp.write_bytes(b"by name")
        os.chmod(tmp, 0o600)  # a library that writes private files (safetensors does)
    assert (tmp_path / "a.txt").read_text() == "one"
    assert json.loads((tmp_path / "sub" / "c.json").read_text()) == {"b": 2}
    assert (tmp_path / "d.dat").read_bytes() == b"by name"
    for name in ("a.txt", "b.bin", "sub/c.json", "d.dat"):
        assert mode(tmp_path / name) == 0o666 & ~umask, name
    assert mode(tmp_path / "sub") == 0o777 & ~umask
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.txt", "b.bin", "c.json", "d.dat", "sub"]


def test_failed_writes_keep_the_old_file_and_remove_the_temporary(tmp_path):
    target = tmp_path / "x.json"
    atomic.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic.atomic_file(target) as fh:
        fh.write('{"v": 2, "trunc')
        raise RuntimeError("crash mid-write")
    with pytest.raises(TypeError):
        atomic.write_text(target, 5)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic.atomic_path(target):
        pass
    assert json.loads(target.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["x.json"]


def test_atomic_dir_publishes_whole_folders_with_shareable_modes(tmp_path, umask):
    target = tmp_path / "dataset"
    with atomic.atomic_dir(target) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".dataset.tmp-")
        (staging / "meta").mkdir()
        (staging / "meta" / "info.json").write_text("{}")
        (staging / "run.sh").write_text("#!/bin/sh\n")
        os.chmod(staging / "run.sh", 0o700)
        os.chmod(staging / "meta" / "info.json", 0o600)
        assert not target.exists()  # nothing visible before the folder is complete
    assert mode(target) == 0o777 & ~umask and mode(target / "meta") == 0o777 & ~umask
    assert mode(target / "meta" / "info.json") == 0o666 & ~umask
    assert mode(target / "run.sh") == 0o777 & ~umask  # executable bits survive (within the umask)

    with pytest.raises(OSError):  # an existing non-empty folder is not replaced unless asked
        with atomic.atomic_dir(target) as staging:
            (staging / "other").write_text("x")
    with pytest.raises(ValueError), atomic.atomic_dir(target, replace=True) as staging:
        (staging / "half").write_text("x")
        raise ValueError("crash before publishing")
    assert (target / "meta" / "info.json").is_file()
    with atomic.atomic_dir(target, replace=True) as staging:
        (staging / "new").write_text("x")
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]


def test_temporary_names_carry_their_owner(tmp_path):
    tmp = atomic.temp_path(tmp_path / "stats.json")
    assert tmp.parent == tmp_path and atomic.temp_owner(tmp) == os.getpid()
    assert atomic.temp_owner(tmp_path / "checkpoint-3.tmp-77") == 77
    assert atomic.temp_owner(tmp_path / "stats.json") is None
    assert atomic.pid_alive(os.getpid())
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert not atomic.pid_alive(pid_max + 1) and not atomic.pid_alive(0)
