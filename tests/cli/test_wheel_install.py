"""A wheel installed (not editable) into a fresh venv trains from a folder outside the repository.

The venv sees the big dependencies (torch, transformers, ...) of `.venv` through a `.pth` line, so
nothing is downloaded; gr00t itself comes only from the wheel (the editable install's finder is not
loaded, and the repository is not on the path).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _source_copy(dst: Path) -> Path:
    """The repository's files (tracked and new, not ignored) copied to `dst`: the build leaves no trace here."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = REPO / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    return dst


@pytest.mark.slow
def test_wheel_installs_and_trains_outside_the_repo(tmp_path):
    source = _source_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(source),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("gr00t-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "gr00t/configs/recipes/demo.yaml",
        "gr00t/configs/model/n16_tiny.yaml",
        "gr00t/configs/embodiment/new_embodiment.yaml",
        "gr00t/configs/data_mixtures/pretrain_n16.yaml",
        "gr00t/configs/deepspeed/zero2.json",
        "gr00t/configs/trainer/demo.yaml",
        "gr00t_client/protocol.py",  # the light client package ships inside the gr00t wheel too
        "gr00t_client/client.py",
    ):
        assert shipped in names, shipped

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (purelib / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GR00T_CONFIG_DIR", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false")
    where = subprocess.run(
        [
            str(python),
            "-c",
            "import gr00t, gr00t.paths as p, gr00t_client, gr00t.policy.protocol as w; "
            "assert w.pack is gr00t_client.protocol.pack; "
            "print(gr00t.__file__); print(p.shipped_root()); print(gr00t_client.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd=outside,
        env=env,
        check=True,
    ).stdout.split()
    assert all(Path(w).is_relative_to(venv) for w in where), where  # the wheel's copy, not the repo's

    proc = subprocess.run(
        [str(venv / "bin" / "gr00t-finetune"), "recipe=demo", "trainer.max_steps=3", "trainer.save_steps=3"],
        capture_output=True,
        text=True,
        cwd=outside,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = outside / "runs" / "demo" / "checkpoint-3"
    assert (ckpt / "COMPLETE").is_file() and (ckpt / "model.safetensors").is_file()
    assert (outside / "demo_data" / "meta" / "modality.json").is_file()
