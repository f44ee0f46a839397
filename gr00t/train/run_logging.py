"""Logging of a training run: stdout from the start, `<run_dir>/<command>.log` once the run folder exists.

Records logged before the run folder exists (the build, warnings at the top of the log) are held
in memory and written to the log file when `RunLog.attach` creates it, so a run that fails before
training leaves no folder behind and a run that starts has its whole log.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


class RunLog:
    """Root logging for one run (rank 0 at INFO, the others at WARNING)."""

    def __init__(self, is_main: bool) -> None:
        self.is_main = is_main
        formatter = logging.Formatter(FORMAT)
        root = logging.getLogger()
        if not any(getattr(h, "_gr00t_stdout", False) for h in root.handlers):
            stream = logging.StreamHandler(sys.stdout)
            stream.setFormatter(formatter)
            stream._gr00t_stdout = True  # type: ignore[attr-defined]
            root.addHandler(stream)
        root.setLevel(logging.INFO)
        logging.getLogger("gr00t").setLevel(logging.INFO if is_main else logging.WARNING)
        # bitsandbytes (trainer.optimizer=adamw_8bit) warns on import about 4-bit CPU kernels we never use
        logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
        self.memory = logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.DEBUG, target=None)
        self.memory.setFormatter(formatter)
        if is_main:
            root.addHandler(self.memory)

    def attach(self, run_dir: Path, name: str) -> None:
        """Start `<run_dir>/<name>.log` (rank 0), with everything logged so far."""
        if not self.is_main or self.memory.target is not None:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(run_dir / f"{name}.log")
        handler.setFormatter(logging.Formatter(FORMAT))
        self.memory.setTarget(handler)
        self.memory.flush()

    def close(self) -> None:
        """Stop writing the log file (its handler is closed)."""
        logging.getLogger().removeHandler(self.memory)
        if self.memory.target is not None:
            self.memory.target.close()
        self.memory.close()
