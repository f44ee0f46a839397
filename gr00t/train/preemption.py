"""Graceful preemption: a signal sets a flag, the trainer finishes the step, saves and exits.

Protocol (SLURM scripts rely on it):

* ``SIGTERM`` and ``SIGUSR1`` (configurable) only set a flag; nothing is interrupted mid-step.
* At the end of every optimiser step the flag is OR-ed over all ranks (one tiny all-reduce), so every
  rank stops after the same step even if the signal reached only some of them.
* The trainer then writes a complete checkpoint, writes ``<run_dir>/PREEMPTED`` and the process
  exits with :data:`REQUEUE_EXIT_CODE` (75, ``EX_TEMPFAIL`` of sysexits.h: "temporary failure,
  retry"). Under ``torchrun`` the launcher turns a worker's non-zero exit into its own failure code,
  so batch scripts should requeue when either the exit code is 75 or ``PREEMPTED`` exists.
* The next start of the same run resumes from that checkpoint and removes ``PREEMPTED``.

SLURM sends ``SIGTERM`` ``KillWait`` seconds (default 30) before ``SIGKILL``; ask for an earlier
warning with ``#SBATCH --signal=USR1@<seconds>`` so that one step plus one checkpoint fit.

SLURM (and torchrun, which forwards SIGTERM with ``killpg``) signal every process of the job,
DataLoader workers included. Workers therefore ignore the preemption signals
(`configure_worker_signals`, called from the DataLoader's ``worker_init_fn``; they are forked
with those signals blocked, so none lands before that call) and leave shutdown to
the trainer; otherwise the trainer would die of "DataLoader worker killed by signal" before saving.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Iterable, Iterator
from types import FrameType

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from gr00t.train.lifetime import die_with_parent

logger = logging.getLogger(__name__)

REQUEUE_EXIT_CODE = 75
DEFAULT_SIGNALS: tuple[str, ...] = ("SIGTERM", "SIGUSR1")


def _resolve(sig: str | int | signal.Signals) -> signal.Signals:
    if isinstance(sig, signal.Signals):
        return sig
    if isinstance(sig, int):
        return signal.Signals(sig)
    name = sig.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return signal.Signals[name]
    except KeyError as e:
        raise ValueError(
            f"unknown preemption signal {sig!r}; expected a name such as 'SIGTERM' or 'SIGUSR1'"
        ) from e


def worker_signal_set(signals: Iterable[str | int | signal.Signals] = DEFAULT_SIGNALS) -> set[signal.Signals]:
    """The signals DataLoader workers ignore: the defaults plus the configured preemption signals."""
    return {_resolve(sig) for sig in set(DEFAULT_SIGNALS) | set(signals)}


def configure_worker_signals(signals: Iterable[str | int | signal.Signals] = DEFAULT_SIGNALS) -> None:
    """In a DataLoader worker: ignore the preemption signals and die (SIGKILL) with the trainer.

    Workers are forked with these signals blocked (`signals_blocked`), so one that arrives between
    the fork and this call stays pending and is discarded once ignored, instead of killing the worker.
    """
    wanted = worker_signal_set(signals)
    for sig in wanted:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, wanted)
    die_with_parent()


@contextlib.contextmanager
def signals_blocked(signals: Iterable[str | int | signal.Signals] = DEFAULT_SIGNALS) -> Iterator[None]:
    """Block the worker signals in this thread while DataLoader workers are forked.

    Forked children inherit the mask; in the parent a signal that arrives meanwhile stays pending
    and reaches the preemption handler when the previous mask is restored.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, worker_signal_set(signals))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class PreemptionHandler:
    """Installs flag-setting handlers for the given signals; use as a context manager.

    ``requested`` becomes True on the first signal; ``signal_name`` and ``received_at`` record it.
    ``sync()`` OR-s the flag across ranks (call it at the same point on every rank).
    """

    def __init__(self, signals: Iterable[str | int | signal.Signals] = DEFAULT_SIGNALS) -> None:
        self.signals = [_resolve(s) for s in signals]
        self.requested = False
        self.signal_name: str | None = None
        self.received_at: float | None = None
        self._previous: dict[signal.Signals, object] = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.requested:
            self.requested = True
            self.signal_name = signal.Signals(signum).name
            self.received_at = time.monotonic()
            # Logging from a signal handler is safe enough here: it only runs between bytecodes.
            logger.warning(
                "received %s: will save a checkpoint after the current step and exit", self.signal_name
            )

    def install(self) -> PreemptionHandler:
        """Install the handlers (main thread only; a no-op elsewhere)."""
        for sig in self.signals:
            try:
                self._previous[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread
                logger.warning("cannot install a %s handler outside the main thread", sig.name)
        return self

    def uninstall(self) -> None:
        """Restore the handlers that were there before :meth:`install`."""
        for sig, prev in self._previous.items():
            try:
                signal.signal(sig, prev)  # type: ignore[arg-type]
            except (ValueError, TypeError):
                pass
        self._previous.clear()

    def __enter__(self) -> PreemptionHandler:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def sync(self) -> bool:
        """True if any rank received a signal (a collective when torch.distributed is initialised)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            backend = dist.get_backend()
            device = (
                torch.device("cuda", torch.cuda.current_device())
                if backend == "nccl"
                else torch.device("cpu")
            )
            flag = torch.tensor([1 if self.requested else 0], dtype=torch.int32, device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if int(flag.item()) and not self.requested:
                self.requested = True
                self.signal_name = "peer"
                self.received_at = time.monotonic()
        return self.requested

    def seconds_since_signal(self) -> float | None:
        """Seconds since the first signal (None when none arrived)."""
        return None if self.received_at is None else time.monotonic() - self.received_at


class StopOnPreemption(TrainerCallback):
    """After each optimiser step: if any rank got a preemption signal, save and stop training.

    ``triggered_at_step`` is the step after which training stopped (None when it did not).
    """

    def __init__(self, handler: PreemptionHandler) -> None:
        self.handler = handler
        self.triggered_at_step: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.handler.sync() and self.triggered_at_step is None:
            self.triggered_at_step = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control
