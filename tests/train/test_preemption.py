"""Preemption flag handling (in-process) and the full SIGUSR1 -> checkpoint -> requeue path (slow)."""

from __future__ import annotations

import os
import signal

import pytest

from gr00t.train.preemption import REQUEUE_EXIT_CODE, PreemptionHandler


def test_signal_sets_flag_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    with PreemptionHandler(["SIGUSR1", "term"]) as handler:
        assert not handler.requested and not handler.sync()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert handler.requested and handler.sync()
        assert handler.signal_name == "SIGUSR1"
        assert handler.seconds_since_signal() is not None
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal changes nothing (and does not kill us)
        assert handler.signal_name == "SIGUSR1"
    assert signal.getsignal(signal.SIGUSR1) == before


def test_unknown_signal_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="SIGNOPE"):
        PreemptionHandler(["SIGNOPE"])


def test_requeue_exit_code_is_distinct() -> None:
    # 75 = EX_TEMPFAIL; must differ from success, generic failure, `timeout`'s 124 and kill codes.
    assert REQUEUE_EXIT_CODE == 75
    assert REQUEUE_EXIT_CODE not in (0, 1, 2, 124, 137, 143)


@pytest.mark.slow
def test_sigusr1_checkpoints_and_exits_with_requeue_code(train_data, tmp_path) -> None:
    import json
    import subprocess
    import sys
    import time
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import REPO, describe, logged, run_worker, worker_command, worker_env

    from gr00t.train import checkpoint as ckpt

    args = [
        "--run-dir",
        str(tmp_path),
        "--data",
        str(train_data),
        "--max-steps",
        "500",
        "--save-steps",
        "1000",
        "--batch",
        "2",
        "--step-sleep",
        "0.2",
    ]
    proc = subprocess.Popen(
        worker_command(args),
        env=worker_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            metrics = tmp_path / "metrics.jsonl"
            if metrics.exists() and any(r.get("step", 0) >= 2 for r in logged(tmp_path)):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "worker ended before it could be signalled"
        proc.send_signal(signal.SIGUSR1)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert proc.returncode == REQUEUE_EXIT_CODE, describe(done)
    marker = json.loads((tmp_path / ckpt.PREEMPTED_MARKER).read_text())
    step = marker["step"]
    assert marker["signal"] == "SIGUSR1" and 2 <= step < 500
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest == tmp_path / f"checkpoint-{step}"  # save_steps=1000: only the preemption saved
    assert json.loads((latest / ckpt.DATA_STATE_NAME).read_text())["consumed"] == 2 * step
    assert "RESULT_JSON" not in out  # exited before returning

    # The requeued job resumes from there and clears the marker.
    rerun, result = run_worker(
        [
            "--run-dir",
            str(tmp_path),
            "--data",
            str(train_data),
            "--max-steps",
            str(step + 2),
            "--save-steps",
            "1000",
            "--batch",
            "2",
        ]
    )
    assert rerun.returncode == 0 and result is not None, describe(rerun)
    assert result["resumed_from"] == str(latest) and result["global_step"] == step + 2
    assert not (tmp_path / ckpt.PREEMPTED_MARKER).exists()
