"""The light client package (clients/python, `gr00t-client`): one protocol implementation, shared by
gr00t, installable on its own into a venv without torch, where it drives a real `gr00t-serve`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gr00t_client
from gr00t_client.protocol import pack, unpack
from tests.policy.test_policy import make_obs
from tests.policy.test_serve_process import _start_server

REPO = Path(__file__).resolve().parents[2]
CLIENT_SRC = REPO / "clients" / "python"


def test_gr00t_reexports_the_client_package():
    """gr00t.policy.{base,client,protocol} are the client package's objects, not copies."""
    import gr00t.policy as gp
    import gr00t_client.protocol as shared
    from gr00t.policy import base, client, protocol

    assert base.Policy is gr00t_client.Policy is gp.Policy
    assert client.PolicyClient is gr00t_client.PolicyClient is gp.PolicyClient
    for name in shared.__all__:
        assert getattr(protocol, name) is getattr(shared, name), name
    assert Path(gr00t_client.__file__).is_relative_to(CLIENT_SRC / "src")
    # no second implementation of the wire format inside gr00t
    for path in (REPO / "gr00t").rglob("*.py"):
        assert "def decode_ndarray" not in path.read_text(), path


def test_client_package_metadata():
    import re

    text = (CLIENT_SRC / "pyproject.toml").read_text()
    assert re.search(r'^name = "gr00t-client"$', text, re.M)
    deps = re.search(r"^dependencies = \[(.*)\]$", text, re.M).group(1)
    names = {re.split(r"[<>=!~ \[]", d)[0].lower() for d in re.findall(r'"([^"]+)"', deps)}
    assert names == {"pyzmq", "msgpack", "numpy"}


def _client_venv(tmp_path: Path) -> Path:
    """A plain venv (no system site-packages, no repo on the path) with `pip install <clients/python>`."""
    source = tmp_path / "client-src"
    shutil.copytree(CLIENT_SRC, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    venv = tmp_path / "robot-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_clean_env(),
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return python


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


ROBOT_SCRIPT = """
import sys
from pathlib import Path

from gr00t_client import Policy, PolicyClient
from gr00t_client.protocol import pack, unpack

for name in ("torch", "gr00t"):
    try:
        __import__(name)
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit(f"{name} is importable in the client venv")
port, token, work = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
obs = unpack((work / "obs.msgpack").read_bytes())
with PolicyClient(host="127.0.0.1", port=port, timeout_ms=120000, api_token=token) as client:
    assert isinstance(client, Policy)
    assert client.ping()
    action = client.get_action(obs, {"seed": 21})
    single = client.get_action({m: {k: v[0] for k, v in s.items()} for m, s in obs.items()}, {"seed": 21})
    config = client.get_modality_config()
    assert client.reset() == {}
(work / "answer.msgpack").write_bytes(pack({"action": action, "single": single, "config": config}))
print("robot ok", sorted(sys.modules.keys() & {"torch", "transformers", "gr00t"}))
"""


@pytest.mark.slow
def test_client_installs_without_torch_and_drives_gr00t_serve(tiny_checkpoint, tmp_path):
    from gr00t.policy.policy import Gr00tPolicy

    python = _client_venv(tmp_path)
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout.lower()
    installed = {line.split("==")[0] for line in listed.split()}
    assert "gr00t-client" in installed and {"pyzmq", "msgpack", "numpy"} <= installed
    assert not installed & {"torch", "transformers", "gr00t"}, installed

    work = tmp_path / "robot"
    work.mkdir()
    obs = make_obs(2)
    (work / "obs.msgpack").write_bytes(pack(obs))
    (work / "robot.py").write_text(ROBOT_SCRIPT)
    proc, port = _start_server(tiny_checkpoint, "api_token=tok")
    try:
        done = subprocess.run(
            [str(python), str(work / "robot.py"), str(port), "tok", str(work)],
            capture_output=True,
            text=True,
            cwd=work,
            env=_clean_env(),
            timeout=300,
        )
    finally:
        proc.kill()
        proc.wait()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "robot ok []" in done.stdout
    answer = unpack((work / "answer.msgpack").read_bytes())

    local = Gr00tPolicy.from_checkpoint(tiny_checkpoint, "new_embodiment").get_action(obs, {"seed": 21})
    assert sorted(answer["action"]) == sorted(local) == ["arm", "gripper"]
    for key in local:
        got = answer["action"][key]
        assert got.dtype == np.float32 and got.shape == local[key].shape == (2, 16, local[key].shape[-1])
        np.testing.assert_allclose(got, local[key], atol=1e-5)
        assert answer["single"][key].shape == local[key].shape[1:]
    assert answer["config"]["state"]["modality_keys"] == ["arm", "gripper"]
