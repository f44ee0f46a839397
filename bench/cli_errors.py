"""How fast a user's mistake is reported: wall time of each command from start to its one-line error.

Usage: python bench/cli_errors.py [--repeat N]
Every case is a real console-script process (the .venv's), as a user starts it; the figure is the
median wall time of N runs. Also timed for reference: `--cfg job` and `--help`. Prints figures only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def _cases(tmp: Path) -> list[tuple[str, list[str]]]:
    from gr00t.data.demo import write_demo_dataset

    data = write_demo_dataset(tmp / "data", num_episodes=2, episode_length=20)
    no_modality = tmp / "no_modality"
    shutil.copytree(data, no_modality)
    (no_modality / "meta" / "modality.json").unlink()
    ckpt = tmp / "ckpt"
    ckpt.mkdir()
    for name, text in (("config.json", "{}"), ("model.safetensors", "")):
        (ckpt / name).write_text(text)
    (ckpt / "processor_config.json").write_text(json.dumps({"embodiments": {"new_embodiment": {}}}))
    (tmp / "run" / "checkpoint-3.tmp-1").mkdir(parents=True)
    return [
        ("finetune: no meta/modality.json", ["gr00t-finetune", f"data={no_modality}"]),
        ("finetune: dataset folder missing", ["gr00t-finetune", "data=/nowhere/robot"]),
        ("finetune: embodiment keys not in dataset", ["gr00t-finetune", f"data={data}", "embodiment=g1"]),
        ("finetune: bad value (--cfg job)", ["gr00t-finetune", "--cfg", "job", "trainer.lr_scheduler=cosin"]),
        ("finetune: base checkpoint missing", ["gr00t-finetune", f"data={data}", "base=/nowhere/ckpt"]),
        ("finetune: Hub id not cached (offline)", ["gr00t-finetune", f"data={data}", "base=acme/missing"]),
        ("train: mixture datasets missing", ["gr00t-train", f"data_root={tmp}", "model=n16_tiny"]),
        ("stats: no meta/modality.json", ["gr00t-stats", str(no_modality), "embodiment=new_embodiment"]),
        ("serve: checkpoint missing", ["gr00t-serve", "checkpoint=/nowhere", "embodiment=new_embodiment"]),
        (
            "serve: run folder, no complete checkpoint",
            ["gr00t-serve", f"checkpoint={tmp / 'run'}", "embodiment=x"],
        ),
        ("serve: embodiment not trained", ["gr00t-serve", f"checkpoint={ckpt}", "embodiment=g1"]),
        (
            "eval: checkpoint missing",
            ["gr00t-eval", f"data={data}", "embodiment=new_embodiment", "checkpoint=/x"],
        ),
        ("reference: finetune --cfg job", ["gr00t-finetune", "recipe=demo", "--cfg", "job"]),
        ("reference: finetune --help", ["gr00t-finetune", "--help"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        cases = _cases(Path(tmp))
        print(f"{'case':<44} {'exit':>4} {'median s':>9}  first stderr line")
        for name, argv in cases:
            times, proc = [], None
            for _ in range(args.repeat):
                start = time.perf_counter()
                proc = subprocess.run(
                    [str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, env=env, cwd=tmp
                )
                times.append(time.perf_counter() - start)
            assert proc is not None
            line = (proc.stderr.strip().splitlines() or [""])[0]
            print(f"{name:<44} {proc.returncode:>4} {statistics.median(times):>9.2f}  {line[:90]}")


if __name__ == "__main__":
    main()
