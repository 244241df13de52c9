"""The audit log: security events appended to an append-only table (``UnitOfWork.audit``).

What is recorded, and where:

- ``api_key.created`` / ``api_key.revoked``: in the transaction that stores or revokes the key
  (``Accounts``);
- ``card.authorization``: each card number sent to the acquirer for a verification (and a card
  refused at entry as expired), in the transaction that saves the setup intent's outcome
  (``SetupIntents.create_with_card``/``add_card``);
- ``card.charge``: each charge of a card on file, in the settle transaction (``Charge.settle``);
- ``auth.failed``: refused secret keys, one entry per presented key and minute with a count.

No entry holds a card number or a secret: cards are named by masked number, last four digits and
vault token; a refused key by its id (a revoked key) or, when no key matches, by ``unknown:`` and
the first 12 hex digits of the SHA-256 of what was presented.

Authentication failures are counted in memory, not written one by one. A refused request only
appends ``(key, account, time)`` to a deque (an atomic append: no lock, no I/O, no transaction on
the request path). ``flush_failures`` (the sweeper loop runs it every sweep interval, and ``serve``
once more at shutdown with ``everything=True``) drains the deque into per-(key, minute) counts and
appends one entry for each minute that has closed, with its count, in one write transaction, so
the table stays append-only. The counts are per process: N failures of one key within one minute
in one process make one entry with count N; two workers may each write one for the same minute.
A flush whose write fails keeps its counts for the next one. A process killed without its final
flush loses the counts of its open minutes (at most a minute and a sweep interval of them). At most
``MAX_UNKNOWN_PER_MINUTE`` unknown keys get their own entry per minute; the rest are counted
together under ``unknown:others``, so a flood of random keys cannot flood the table.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cardkeep.domain.audit import Action, AuditEntry, Outcome
from cardkeep.domain.ids import Prefix
from cardkeep.domain.timefmt import iso
from cardkeep.service.ports import UnitOfWork

if TYPE_CHECKING:
    from cardkeep.service.context import Context

MINUTE = timedelta(minutes=1)
MAX_UNKNOWN_PER_MINUTE = 1000
UNKNOWN_OTHERS = "unknown:others"
TAIL_LIMIT = 10_000


def unknown_key(presented: str) -> str:
    """How a refused credential that matches no key is named: never the credential itself."""
    return "unknown:" + hashlib.sha256(presented.encode("utf-8")).hexdigest()[:12]


def record(
    ctx: Context,
    uow: UnitOfWork,
    *,
    actor: str,
    action: Action,
    subject: str,
    outcome: Outcome,
    account_id: str | None,
    detail: Mapping[str, str] | None = None,
) -> AuditEntry:
    """Append an entry, at real time, inside ``uow`` (the transaction of the change)."""
    entry = AuditEntry(
        id=ctx.ids.new(Prefix.AUDIT),
        at=ctx.clock.now(),
        actor=actor,
        action=action.value,
        subject=subject,
        outcome=outcome.value,
        account_id=account_id,
        detail=dict(detail or {}),
    )
    uow.audit.append(entry)
    return entry


@dataclass
class _Minute:
    account_id: str | None
    count: int
    first: datetime
    last: datetime


class AuthFailures:
    """Refused secret keys of this process, counted per (key, minute); see the module docstring.
    ``note`` may be called from any thread; ``closed`` by one caller at a time."""

    def __init__(self) -> None:
        self._noted: deque[tuple[str, str | None, datetime]] = deque()
        self._open: dict[tuple[str, datetime], _Minute] = {}
        self._unknown: Counter[datetime] = Counter()

    def note(self, key: str, account_id: str | None, at: datetime) -> None:
        self._noted.append((key, account_id, at))

    def _drain(self) -> None:
        while self._noted:
            key, account_id, at = self._noted.popleft()
            minute = at.replace(second=0, microsecond=0)
            if (key, minute) not in self._open and key.startswith("unknown:"):
                if self._unknown[minute] >= MAX_UNKNOWN_PER_MINUTE:
                    key = UNKNOWN_OTHERS
                else:
                    self._unknown[minute] += 1
            tally = self._open.get((key, minute))
            if tally is None:
                self._open[(key, minute)] = _Minute(account_id, 1, at, at)
            else:
                tally.count += 1
                tally.first, tally.last = min(tally.first, at), max(tally.last, at)

    def closed(
        self, now: datetime, *, everything: bool = False
    ) -> list[tuple[str, datetime, _Minute]]:
        """Take the counts of the minutes that have closed at ``now`` (all of them with
        ``everything``), oldest first."""
        self._drain()
        due = sorted(
            (k for k in self._open if everything or k[1] + MINUTE <= now), key=lambda k: k[1]
        )
        taken = [(key, minute, self._open.pop((key, minute))) for key, minute in due]
        for minute in {minute for _, minute, _ in taken}:
            if not any(m == minute for _, m in self._open):
                self._unknown.pop(minute, None)
        return taken

    def give_back(self, taken: list[tuple[str, datetime, _Minute]]) -> None:
        """Counts whose write failed: kept for the next flush (``closed``, the only other
        writer of the open counts, is not running meanwhile)."""
        for key, minute, tally in taken:
            self._open[(key, minute)] = tally
            if key.startswith("unknown:") and key != UNKNOWN_OTHERS:
                self._unknown[minute] += 1


class Audit:
    """Reading the audit log, and writing the counted authentication failures."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def tail(self, limit: int, account_id: str | None = None) -> list[AuditEntry]:
        """The last ``limit`` entries (of one account, or of all), oldest first."""
        with self._ctx.storage.transaction(write=False) as uow:
            return uow.audit.recent(max(0, min(limit, TAIL_LIMIT)), account_id=account_id)

    def after(self, seq: int, account_id: str | None = None) -> list[AuditEntry]:
        """The entries appended after ``seq`` (a cursor from an earlier read), oldest first."""
        with self._ctx.storage.transaction(write=False) as uow:
            return uow.audit.recent(TAIL_LIMIT, after=seq, account_id=account_id)

    def flush_failures(self, *, everything: bool = False) -> int:
        """Append one ``auth.failed`` entry per (key, minute) whose minute has closed (every
        minute with ``everything``: at shutdown); how many entries were written."""
        ctx = self._ctx
        taken = ctx.failures.closed(ctx.clock.now(), everything=everything)
        if not taken:
            return 0
        try:
            with ctx.storage.transaction(write=True) as uow:
                for key, minute, tally in taken:
                    uow.audit.append(
                        AuditEntry(
                            id=ctx.ids.new(Prefix.AUDIT),
                            at=minute,
                            actor=key,
                            action=Action.AUTH_FAILED.value,
                            subject="authentication",
                            outcome=Outcome.DENIED.value,
                            account_id=tally.account_id,
                            count=tally.count,
                            detail={"first": iso(tally.first), "last": iso(tally.last)},
                        )
                    )
                uow.commit()
        except BaseException:
            ctx.failures.give_back(taken)
            raise
        return len(taken)
