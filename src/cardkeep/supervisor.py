"""Worker processes for ``serve --workers N``: started together, restarted when one dies, stopped
together on SIGINT/SIGTERM, and never outliving the supervisor.

A worker dies with its parent even when the parent is killed with SIGKILL: it asks the kernel for
SIGTERM on the parent's death (Linux ``PR_SET_PDEATHSIG``), and also watches its parent pid, so a
restart can bind the ports again at once. A worker that dies is started again, after a delay that
doubles while it keeps dying quickly (at most ``MAX_RESTART_DELAY``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from cardkeep.logs import get_logger

log = get_logger("cardkeep.supervisor")

PR_SET_PDEATHSIG = 1
MIN_RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 60.0  # a worker that lived this long restarts without delay when it dies
STOP_GRACE = 10.0


def die_with_parent(parent_pid: int) -> None:
    """Called first thing in a worker: SIGTERM when the parent dies; exit if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(0)


def parent_alive(parent_pid: int) -> bool:
    """For a worker's own watch: False once it has been re-parented (its supervisor is gone)."""
    return os.getppid() == parent_pid


@dataclass
class _Slot:
    index: int
    process: BaseProcess | None = None
    started_at: float = 0.0
    delay: float = MIN_RESTART_DELAY
    restart_at: float | None = None
    restarts: int = field(default=0)


class Supervisor:
    """Runs ``target(index, parent_pid)`` in ``count`` processes until told to stop."""

    def __init__(self, target: Callable[..., None], args: Sequence[Any], count: int) -> None:
        self._target = target
        self._args = tuple(args)
        self._ctx = multiprocessing.get_context("spawn")
        self._slots = [_Slot(i) for i in range(count)]
        self._stopping = False

    def _start(self, slot: _Slot) -> None:
        proc = self._ctx.Process(
            target=self._target, args=(*self._args, slot.index, os.getpid()), daemon=False
        )
        # A worker ignores SIGHUP until its event loop takes it over (the keyring's reload): an
        # ignored signal stays ignored across the new process's exec, where a handler would not,
        # so a SIGHUP forwarded while a worker still starts never kills it.
        previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            proc.start()
        finally:
            signal.signal(signal.SIGHUP, previous)
        slot.process, slot.started_at, slot.restart_at = proc, time.monotonic(), None

    def _stop(self, sig: int, _frame: Any = None) -> None:
        self._stopping = True
        for slot in self._slots:
            proc = slot.process
            if proc is not None and proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)

    def _reap(self, now: float) -> None:
        for slot in self._slots:
            proc = slot.process
            if proc is None or proc.is_alive() or slot.restart_at is not None:
                continue
            lived = now - slot.started_at
            slot.delay = MIN_RESTART_DELAY if lived >= STABLE_AFTER else slot.delay
            slot.restart_at = now + slot.delay
            log.error(
                "worker_died",
                worker=slot.index,
                pid=proc.pid,
                exitcode=proc.exitcode,
                restart_in_s=round(slot.delay, 2),
            )
            slot.delay = min(slot.delay * 2, MAX_RESTART_DELAY)

    def _restart_due(self, now: float) -> None:
        for slot in self._slots:
            if slot.restart_at is not None and now >= slot.restart_at:
                slot.restarts += 1
                self._start(slot)
                log.info(
                    "worker_restarted",
                    worker=slot.index,
                    pid=slot.process.pid if slot.process else None,
                )

    def _forward_hup(self, signum: int, frame: object) -> None:
        """SIGHUP: each worker reads the vault's keyring again."""
        for slot in self._slots:
            if slot.process is not None and slot.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signal.SIGHUP)

    def run(self) -> None:
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGHUP, self._forward_hup)
        for slot in self._slots:
            self._start(slot)
        while not self._stopping:
            sentinels = [
                s.process.sentinel for s in self._slots if s.process and s.process.is_alive()
            ]
            wait(sentinels, timeout=0.25)
            now = time.monotonic()
            self._reap(now)
            if not self._stopping:
                self._restart_due(now)
        self._join()

    def _join(self) -> None:
        deadline = time.monotonic() + STOP_GRACE
        for slot in self._slots:
            proc = slot.process
            if proc is None:
                continue
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker_killed_at_stop", worker=slot.index, pid=proc.pid)
                proc.kill()
                proc.join()
