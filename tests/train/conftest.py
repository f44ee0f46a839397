"""Helpers for the trainer tests: run the training worker (plain or under torchrun) and compare weights."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from safetensors.torch import load_file

WORKER = Path(__file__).resolve().parent / "_worker_train.py"
REPO = Path(__file__).resolve().parents[2]
TORCH_EXTENSIONS_DIR = Path.home() / ".cache" / "gr00t_torch_extensions"


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        WANDB_MODE="disabled",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        TORCH_EXTENSIONS_DIR=str(TORCH_EXTENSIONS_DIR),
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_command(args: list[str], nproc: int = 1) -> list[str]:
    if nproc == 1:
        return [sys.executable, str(WORKER), *args]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--nnodes=1",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        str(WORKER),
        *args,
    ]


def run_worker(
    args: list[str], nproc: int = 1, timeout: float = 400
) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Run the worker to completion; returns the process and its RESULT_JSON (None if absent)."""
    proc = subprocess.run(
        worker_command(args, nproc),
        env=worker_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT_JSON "):
            result = json.loads(line[len("RESULT_JSON ") :])
    return proc, result


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"


def assert_same_weights(a: Path, b: Path) -> int:
    """Both checkpoints' safetensors hold bit-identical tensors; returns the tensor count."""
    ta, tb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:5]}"
    return len(ta)


def logged(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def train_data(demo_dataset_v3, tmp_path_factory) -> Path:
    """A private copy of the demo dataset (LeRobot v3.0, real mp4) with its statistics written."""
    from _pipeline import prepare_demo_data

    return prepare_demo_data(demo_dataset_v3, tmp_path_factory.mktemp("train_data") / "demo")


# ---- process trees, as a cluster sees them ---------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(root: int) -> list[int]:
    """Live (non-zombie) descendants of ``root``, found through /proc (parents before children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped counts as dead)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def signal_job(root: int, sig: int) -> list[int]:
    """Send ``sig`` to every process group of ``root``'s tree, as scancel/SLURM signal every job process.

    Returns the pids that were in the tree. torchrun starts trainers in their own sessions, so one
    killpg of the launcher's group would not reach them (nor their DataLoader workers).
    """
    pids = [root, *descendants(root)]
    groups = []
    for pid in pids:
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            continue
        if pgid not in groups:
            groups.append(pgid)
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
    return pids


def kill_pids(pids: list[int]) -> None:
    """SIGKILL the given processes (test clean-up of processes the test started)."""
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
