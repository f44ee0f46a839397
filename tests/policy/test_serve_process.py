"""`gr00t-serve` in its own process, queried by the light client; the client imports no torch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gr00t.policy.client import PolicyClient
from gr00t.policy.protocol import ServerError
from tests.policy.test_policy import LANG, make_obs

REPO = Path(__file__).resolve().parents[2]


def test_client_imports_without_torch():
    code = (
        "import sys; import gr00t_client, gr00t.policy.client, gr00t.policy.protocol, gr00t.policy.base; "
        "from gr00t.policy import Policy; assert issubclass(gr00t.policy.client.PolicyClient, Policy); "
        "bad = [m for m in ('torch', 'transformers', 'gr00t.model', 'gr00t.data') if m in sys.modules]; "
        "assert not bad, bad; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def _start_server(checkpoint: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gr00t.cli.serve",
            f"checkpoint={checkpoint}",
            "embodiment=new_embodiment",
            "port=0",
            "device=cpu",
            "log_level=WARNING",
            *extra,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        match = re.search(r"on tcp://127\.0\.0\.1:(\d+)", line)
        if match:
            return proc, int(match.group(1))
    proc.kill()
    raise AssertionError(f"gr00t-serve did not start: {proc.stdout.read()}")


@pytest.mark.slow
def test_serve_process_roundtrip(tiny_checkpoint):
    from gr00t.policy.policy import Gr00tPolicy

    proc, port = _start_server(tiny_checkpoint, "api_token=tok")
    try:
        with PolicyClient(host="127.0.0.1", port=port, timeout_ms=60000, api_token="tok") as client:
            assert client.ping()
            obs = make_obs(2)
            action, info = client.get_action_and_info(obs, {"seed": 21})
            assert info == {}
            local = Gr00tPolicy.from_checkpoint(tiny_checkpoint, "new_embodiment").get_action(
                obs, {"seed": 21}
            )
            for key in ("arm", "gripper"):
                assert action[key].dtype == np.float32 and action[key].shape == local[key].shape
                np.testing.assert_allclose(action[key], local[key], atol=1e-5)
            # an invalid observation is an error reply; the server keeps serving
            bad = make_obs(2)
            bad["state"]["arm"] = bad["state"]["arm"].astype(np.float64)
            with pytest.raises(ServerError, match=r"state\['arm'\]: expected dtype float32"):
                client.get_action(bad)
            with pytest.raises(
                ServerError, match=r"missing key\(s\) \['annotation.human.task_description'\]"
            ):
                client.get_action({**obs, "language": {}})
            cfg = client.get_modality_config()
            assert cfg["language"]["modality_keys"] == [LANG]
            assert client.reset() == {}
            client.kill_server()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "gr00t-serve: stopped" in (proc.stdout.read() if proc.stdout else "")
