"""`gr00t-dataset`: subcommands, key=value settings, one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gr00t.cli.dataset import Setting, UsageError, _bool, main, parse_key_values
from gr00t.data.demo import write_demo_dataset
from gr00t.data.lerobot import open_lerobot_dataset

SMALL = {"height": 32, "width": 64}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_inputs")
    a = write_demo_dataset(root / "a", version="v3.0", num_episodes=3, episode_length=[9, 8, 7], **SMALL)
    b = write_demo_dataset(root / "b", version="v2.1", num_episodes=2, episode_length=[6, 5], seed=1, **SMALL)
    return a, b


def _one_line_error(capsys, code, *needles):
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("gr00t-dataset: error: "), err
    for needle in needles:
        assert needle in err, err
    return err


def test_info(pair, capsys):
    a, _ = pair
    assert main(["info", str(a)]) == 0
    out = capsys.readouterr().out
    for needle in (
        "LeRobot v3.0",
        "episodes 3, frames 24",
        "fps 15",
        "pick up the red block",
        "observation.state: float32 [7]",
        "video h264 64x32 yuv420p, keyframe every 2 frame(s)",
        "meta/stats.json: present",
        "meta/modality.json: present",
    ):
        assert needle in out, needle
    assert main(["info", str(a), "json=true"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 3 and summary["videos"]["observation.images.front"]["gop"] == 2


def test_merge_append_split(pair, tmp_path, capsys):
    a, b = pair
    assert main(["merge", str(a), str(b), f"out={tmp_path / 'm'}"]) == 0
    assert "v3.0: 5 episodes, 35 frames, 3 tasks" in capsys.readouterr().out
    base = tmp_path / "base"
    assert main(["merge", str(b), str(b.parent / "a"), f"out={base}", "verify=false"]) == 0
    # `a` is in `base` already: appending it again is refused in one line, base untouched
    _one_line_error(
        capsys,
        main(["append", str(base), str(a)]),
        f"{a}: 3 of its 3 episodes are already in {base}",
        "new = base episode: 0 = 2, 1 = 3, 2 = 4",
        "allow_duplicates=true appends them anyway",
    )
    assert open_lerobot_dataset(base).num_episodes == 5
    assert main(["append", str(base), str(a), "allow_duplicates=true"]) == 0
    assert open_lerobot_dataset(base).num_episodes == 8
    assert main(["split", str(tmp_path / "m"), "val=0.4", f"out={tmp_path / 's'}", "seed=2"]) == 0
    assert open_lerobot_dataset(tmp_path / "s/val").num_episodes == 2
    assert open_lerobot_dataset(tmp_path / "s/train").num_episodes == 3


@pytest.mark.parametrize(
    "args, needles",
    [
        (["merge", "{a}", "{b}"], ["missing setting out=..."]),
        (
            ["merge", "{a}", "{b}", "out={tmp}/x", "overwrit=true"],
            ["unknown setting 'overwrit'", "Did you mean 'overwrite'?"],
        ),
        (["merge", "{a}", "{b}", "out={tmp}/x", "verify=maybe"], ["verify='maybe': expected true or false"]),
        (
            ["split", "{a}", "val=2.5", "out={tmp}/s"],
            ["val=2.5: a fraction must lie strictly between 0 and 1"],
        ),
        (["split", "{a}", "out={tmp}/s", "seed=x", "val=1"], ["seed='x': expected an integer"]),
        (["info", "{tmp}/nowhere"], ["nowhere does not exist"]),
        (["merge", "{a}", "{tmp}/empty", "out={tmp}/x"], ["empty/meta/info.json is missing"]),
        (["mrege", "{a}"], ["unknown command 'mrege'", "Did you mean 'merge'?"]),
        (["append", "{a}"], ["append: got 1 dataset path(s)"]),
        (["merge", "{a}", "{b}", "out={tmp}/x", "--force"], ["unknown option '--force'"]),
    ],
)
def test_bad_input_is_one_line_exit_2(pair, tmp_path, capsys, args, needles):
    a, b = pair
    (tmp_path / "empty").mkdir()
    argv = [x.format(a=a, b=b, tmp=tmp_path) for x in args]
    _one_line_error(capsys, main(argv), *needles)


def test_incompatible_datasets_name_file_and_key(pair, tmp_path, capsys):
    a, _ = pair
    other = write_demo_dataset(
        tmp_path / "wide", version="v3.0", num_episodes=1, episode_length=5, height=32, width=128
    )
    code = main(["merge", str(a), str(other), f"out={tmp_path / 'x'}"])
    _one_line_error(capsys, code, "wide/meta/info.json: feature 'observation.images.front'", "[32, 128, 3]")
    assert not (tmp_path / "x").exists()


def test_debug_shows_the_traceback(pair, tmp_path, capsys):
    a, _ = pair
    code = main(["merge", str(a), str(tmp_path / "nowhere"), f"out={tmp_path / 'x'}", "--debug"])
    assert code == 2 and "Traceback (most recent call last)" in capsys.readouterr().err


def test_help(capsys):
    assert main(["split", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: gr00t-dataset split <dir> val=<fraction|count> out=<dir>" in out and "seed:" in out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in ("info <dir>", "merge <a> <b>", "append <base> <new>", "split <dir>"))
    assert main([]) == 2


def test_key_value_parser():
    spec = {"out": Setting(str, None, "", required=True), "flag": Setting(_bool, False, "")}
    assert parse_key_values(["a", "b/c=d", "out=x=y", "flag=yes"], spec) == (
        ["a", "b/c=d"],
        {"out": "x=y", "flag": True},
    )
    with pytest.raises(UsageError, match="paths must come before"):
        parse_key_values(["out=x", "a"], spec)
    with pytest.raises(UsageError, match="given twice"):
        parse_key_values(["out=x", "out=y"], spec)


def test_console_script_runs_as_a_process(pair):
    a, _ = pair
    run = subprocess.run(
        [sys.executable, "-m", "gr00t.cli.dataset", "info", str(a / "missing")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "missing does not exist" in run.stderr


def test_sigterm_removes_the_staging_folder(tmp_path):
    """A job killed with SIGTERM (SLURM preemption, `kill`) publishes nothing and leaves nothing."""
    import signal
    import time

    big = write_demo_dataset(tmp_path / "big", version="v2.1", num_episodes=4, episode_length=60)
    more = write_demo_dataset(tmp_path / "more", version="v3.0", num_episodes=1, episode_length=10)
    out = tmp_path / "merged"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gr00t.cli.dataset",
            "merge",
            str(big),
            str(more),
            f"out={out}",
            "reencode=true",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".merged.tmp-*/videos")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted; no output was published" in err
    assert not out.exists() and not list(tmp_path.glob(".merged.tmp-*"))
