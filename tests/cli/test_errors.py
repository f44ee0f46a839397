"""User mistakes: exit code 2, one `gr00t-<cmd>: error: ...` line naming the key or file, no traceback
(`--debug` shows it), and found before torch or transformers is imported (bench/cli_errors.py times it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Runs a command's main() with torch and transformers made unimportable: an error found by a cheap
# check arrives as the one-line message; one found later would end in an ImportError traceback.
GUARDED = """
import importlib.abc, sys
class NoHeavyImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "deepspeed"):
            raise ImportError(f"{name} imported before the input was checked")
sys.meta_path.insert(0, NoHeavyImports())
from importlib import import_module
sys.exit(import_module("gr00t.cli." + sys.argv[1]).main(sys.argv[2:]))
"""


def _guarded(command: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", GUARDED, command, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd or REPO,
    )


def _one_line_error(proc: subprocess.CompletedProcess, prog: str, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-4000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def cases(tmp_path_factory, demo_dataset_v3) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("errors")
    no_modality = root / "no_modality"
    shutil.copytree(demo_dataset_v3, no_modality)
    (no_modality / "meta" / "modality.json").unlink()
    run = root / "run"  # a run folder whose only checkpoint never completed
    (run / "checkpoint-4.tmp-123").mkdir(parents=True)
    ckpt = root / "ckpt"  # a checkpoint folder trained for new_embodiment (no weights needed by the checks)
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    (ckpt / "model.safetensors").write_bytes(b"")
    (ckpt / "processor_config.json").write_text(
        json.dumps({"embodiments": {"new_embodiment": {"embodiment": {"name": "new_embodiment"}}}})
    )
    return {"data": demo_dataset_v3, "no_modality": no_modality, "run": run, "ckpt": ckpt, "root": root}


def test_finetune_errors(cases, tmp_path):
    nm = cases["no_modality"]
    _one_line_error(
        _guarded("finetune", f"data={nm}", cwd=tmp_path),
        "gr00t-finetune",
        f"{nm}/meta/modality.json is missing",
        f"gr00t-stats {nm} --write-modality",
    )
    _one_line_error(
        _guarded("finetune", "data=/nowhere/robot", cwd=tmp_path), "gr00t-finetune", "no such dataset folder"
    )
    _one_line_error(
        _guarded("finetune", f"data={cases['data']}", "embodiment=g1", cwd=tmp_path),
        "gr00t-finetune",
        "video keys ['ego_view'] of embodiment 'g1'",
    )
    _one_line_error(
        _guarded("finetune", f"data={cases['data']}", "embodiment=new_embodimnt", cwd=tmp_path),
        "gr00t-finetune",
        "Did you mean 'new_embodiment'?",
    )
    _one_line_error(
        _guarded("finetune", f"data={cases['data']}", f"base={cases['run']}", cwd=tmp_path),
        "gr00t-finetune",
        "no complete checkpoint-<step>/",
    )
    _one_line_error(
        _guarded("finetune", f"data={cases['data']}", "base=acme/not-cached", cwd=tmp_path),
        "gr00t-finetune",
        "hf download acme/not-cached",
    )
    _one_line_error(
        _guarded("finetune", f"data={cases['data']}", "trainer.deepspeed=zero5", cwd=tmp_path),
        "gr00t-finetune",
        "trainer.deepspeed='zero5'",
    )
    assert not (tmp_path / "runs").exists()  # nothing left behind


def test_train_errors(cases, tmp_path):
    _one_line_error(
        _guarded("train", f"data_root={tmp_path}", "model=n16_tiny", cwd=tmp_path),
        "gr00t-train",
        "not found",
        str(tmp_path / "real" / "unitree_g1"),
    )
    _one_line_error(_guarded("train", "max_steps=3"), "gr00t-train", "Did you mean 'trainer.max_steps'?")


def test_stats_errors(cases):
    _one_line_error(_guarded("stats", "/nowhere", "embodiment=g1"), "gr00t-stats", "not a LeRobot dataset")
    _one_line_error(
        _guarded("stats", str(cases["no_modality"]), "embodiment=new_embodiment"),
        "gr00t-stats",
        "modality.json is missing",
    )


def test_serve_errors(cases):
    _one_line_error(
        _guarded("serve", "checkpoint=/nowhere/ckpt", "embodiment=new_embodiment"),
        "gr00t-serve",
        "checkpoint='/nowhere/ckpt': no such checkpoint folder",
    )
    _one_line_error(
        _guarded("serve", f"checkpoint={cases['run']}", "embodiment=new_embodiment"),
        "gr00t-serve",
        "neither a checkpoint folder",
        "incomplete: ['checkpoint-4.tmp-123']",
    )
    _one_line_error(
        _guarded("serve", f"checkpoint={cases['ckpt']}", "embodiment=g1"),
        "gr00t-serve",
        "embodiment='g1'",
        "was trained for ['new_embodiment']",
    )
    _one_line_error(
        _guarded("serve", f"checkpoint={cases['ckpt']}"), "gr00t-serve", "missing required key(s) embodiment="
    )
    _one_line_error(
        _guarded("serve", f"checkpoint={cases['ckpt']}", "embodiment=new_embodiment", "port=http"),
        "gr00t-serve",
        "port='http': expected an integer",
    )


def test_eval_errors(cases):
    _one_line_error(
        _guarded(
            "eval", f"data={cases['no_modality']}", "embodiment=new_embodiment", f"checkpoint={cases['ckpt']}"
        ),
        "gr00t-eval",
        "modality.json is missing",
    )
    _one_line_error(
        _guarded("eval", f"data={cases['data']}", "embodiment=new_embodiment", "checkpoint=/nowhere"),
        "gr00t-eval",
        "no such checkpoint folder",
    )
    ok = (f"data={cases['data']}", "embodiment=new_embodiment", f"checkpoint={cases['ckpt']}")
    _one_line_error(
        _guarded("eval", *ok, "latency_steps=16"), "gr00t-eval", "latency_steps=16: expected 0..15"
    )
    _one_line_error(
        _guarded("eval", *ok, "latency_steps=4", "rtc_mode=prefix"),
        "gr00t-eval",
        "latency_steps=4 with rtc_mode=prefix: expected 0..0",
        "use rtc_mode=guidance",
    )


def test_demo_data_errors(tmp_path):
    _one_line_error(
        _guarded("demo_data", str(tmp_path / "d"), "version=v9"), "gr00t-demo-data", "version='v9'"
    )


def test_debug_shows_the_traceback(cases):
    proc = _guarded("stats", "/nowhere", "embodiment=g1", "--debug")
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and proc.stderr.strip().endswith(
        "not a LeRobot dataset (no meta/info.json)"
    )


def test_run_folder_resolves_to_its_newest_complete_checkpoint(cases, tmp_path, capsys):
    from gr00t.cli import checks

    run = tmp_path / "run"
    for step in (2, 6):
        shutil.copytree(cases["ckpt"], run / f"checkpoint-{step}")
        (run / f"checkpoint-{step}" / "COMPLETE").write_text("{}")
    (run / "checkpoint-8.tmp-1").mkdir()  # being written
    assert checks.checkpoint("checkpoint", str(run), "gr00t-serve") == run / "checkpoint-6"
    assert "using its newest complete checkpoint checkpoint-6" in capsys.readouterr().err
    assert checks.checkpoint_embodiment(run / "checkpoint-6", "new_embodiment") == "new_embodiment"


@pytest.mark.slow
def test_finetune_on_an_empty_dataset_says_0_episodes(tmp_path):
    """A dataset whose meta lists no episode: one error line naming the folder and "0 episodes", exit 2,
    no run folder left behind."""
    from gr00t.data.demo import write_demo_dataset

    root = write_demo_dataset(tmp_path / "empty", version="v2.1", num_episodes=2, episode_length=30)
    for name in ("episodes.jsonl", "episodes_stats.jsonl"):
        (root / "meta" / name).write_text("")
    info = json.loads((root / "meta/info.json").read_text())
    info.update(total_episodes=0, total_frames=0, splits={})
    (root / "meta/info.json").write_text(json.dumps(info))
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "gr00t.cli.finetune", f"data={root}", "model=n16_tiny"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=work,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert errors == [
        f"gr00t-finetune: error: {root}: the dataset has 0 episodes; nothing to compute statistics from"
    ]
    assert "Traceback" not in proc.stderr and not any(work.iterdir())
