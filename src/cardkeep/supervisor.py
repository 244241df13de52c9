"""The processes of ``serve``: each ``Role`` (the PCI process, each API worker) runs in a process of
its own, started together, restarted when one dies, stopped together on SIGINT/SIGTERM, and never
outliving the supervisor. A role may name environment variables its process must not inherit (an
API worker gets no key material, not even in its environment).

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from cardkeep.logs import get_logger

log = get_logger("cardkeep.supervisor")

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
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


def name_process(name: str) -> None:
    """The process's name as ``ps`` and ``/proc/PID/comm`` show it (at most 15 bytes), so an
    operator tells the PCI process from the API workers."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_NAME, name.encode()[:15])


def parent_alive(parent_pid: int) -> bool:
    """For a worker's own watch: False once it has been re-parented (its supervisor is gone)."""
    return os.getppid() == parent_pid


@dataclass(frozen=True)
class Role:
    """One process to keep running: ``target(*args, index, parent_pid)``, started without the
    environment variables named in ``hide_env``; a ``last`` role is stopped after the others."""

    name: str
    target: Callable[..., None]
    args: tuple[Any, ...]
    hide_env: tuple[str, ...] = ()
    # Stopped (SIGTERM) only once every other role's processes have exited; such a process
    # ignores SIGINT, which a terminal's Ctrl-C sends to every process of the group at once.
    last: bool = False


@contextlib.contextmanager
def _environment_without(names: Sequence[str]) -> Iterator[None]:
    """``os.environ`` without ``names`` while a process is started (spawn copies it then)."""
    hidden = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(hidden)


@dataclass
class _Slot:
    index: int
    role: Role
    process: BaseProcess | None = None
    started_at: float = 0.0
    delay: float = MIN_RESTART_DELAY
    restart_at: float | None = None
    restarts: int = field(default=0)


class Supervisor:
    """Runs each role in a process of its own until told to stop; ``index`` counts the processes
    of one role from 0."""

    def __init__(self, roles: Sequence[Role]) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        counts: dict[str, int] = {}
        self._slots = []
        for role in roles:
            self._slots.append(_Slot(counts.get(role.name, 0), role))
            counts[role.name] = counts.get(role.name, 0) + 1
        self._stopping = False

    def _start(self, slot: _Slot) -> None:
        role = slot.role
        proc = self._ctx.Process(
            target=role.target, args=(*role.args, slot.index, os.getpid()), daemon=False
        )
        # A worker ignores SIGHUP until its event loop takes it over (the keyring's reload): an
        # ignored signal stays ignored across the new process's exec, where a handler would not,
        # so a SIGHUP forwarded while a worker still starts never kills it.
        previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            with _environment_without(role.hide_env):
                proc.start()
        finally:
            signal.signal(signal.SIGHUP, previous)
        slot.process, slot.started_at, slot.restart_at = proc, time.monotonic(), None

    def _stop(self, sig: int, _frame: Any = None) -> None:
        """Stop the processes of roles not marked ``last`` now; the others once these are gone
        (``_join``): API workers finish their charges while the PCI process still answers."""
        self._stopping = True
        self._kill([slot for slot in self._slots if not slot.role.last], sig)

    @staticmethod
    def _kill(slots: Sequence[_Slot], sig: int) -> None:
        for slot in slots:
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
                role=slot.role.name,
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
                    role=slot.role.name,
                    worker=slot.index,
                    pid=slot.process.pid if slot.process else None,
                )

    def _forward_hup(self, signum: int, frame: object) -> None:
        """SIGHUP, forwarded to every process: the PCI process reads the vault's keyring again
        (an API worker, which holds none, ignores it)."""
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
        first = [slot for slot in self._slots if not slot.role.last]
        self._join_all(first)
        last = [slot for slot in self._slots if slot.role.last]
        self._kill(last, signal.SIGTERM)  # a last role ignores SIGINT (a terminal's Ctrl-C)
        self._join_all(last)

    @staticmethod
    def _join_all(slots: Sequence[_Slot]) -> None:
        deadline = time.monotonic() + STOP_GRACE
        for slot in slots:
            proc = slot.process
            if proc is None:
                continue
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error(
                    "worker_killed_at_stop", role=slot.role.name, worker=slot.index, pid=proc.pid
                )
                proc.kill()
                proc.join()
