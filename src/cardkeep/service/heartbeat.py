"""Heartbeats of the background loops (sweeper and recovery, the webhook dispatcher).

Each loop registers with its interval and beats after every completed run; ``late`` names the loops
that have not completed a run within three of their intervals (real time), which ``/health``
reports as ``degraded`` (CONTRACT §11). A process that runs no loop has nothing late.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cardkeep.service.ports import Clock

LATE_AFTER_INTERVALS = 3


@dataclass
class _Loop:
    interval: timedelta
    last_run_at: datetime


class Heartbeats:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._loops: dict[str, _Loop] = {}

    def register(self, name: str, interval_seconds: float) -> None:
        """A loop that starts now (it counts as having run at start)."""
        self._loops[name] = _Loop(timedelta(seconds=interval_seconds), self._clock.now())

    def beat(self, name: str) -> None:
        self._loops[name].last_run_at = self._clock.now()

    def late(self) -> dict[str, datetime]:
        """Loop name → the last time it completed a run, for loops that are late."""
        now = self._clock.now()
        return {
            name: loop.last_run_at
            for name, loop in self._loops.items()
            if now - loop.last_run_at > loop.interval * LATE_AFTER_INTERVALS
        }
