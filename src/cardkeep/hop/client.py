"""The API worker's Charger: every charge, re-send, refund and reversal goes over HTTP to the PCI
process's internal listener, the only process that can open a card.

The hop keeps the money-movement rules (``service.money_movement``): whatever goes wrong on the way
(the PCI process unreachable or killed mid-call, a timeout, a refusal, an answer that does not
decode) raises ``HopError``, which the service takes for an unknown outcome: the merchant gets a
503 with Retry-After, the claim stays, and recovery asks again with the same acquirer key once the
PCI process answers, so money moves once whether or not the first call arrived. Nothing here ever
turns a failure into a definite answer.

A failing hop is logged, but not once per call: while the PCI process is down every sweep re-sends
each stuck charge, so each kind of failure is logged when it first happens and then at most once
every ``LOG_EVERY`` seconds, with the number of failed calls the line stands for; the first answer
after failures is logged as ``pci_answering``.

Over ``https://`` the internal listener's certificate is verified (``trust``): against
CARDKEEP_INTERNAL_CA_FILE, or, under one supervisor without one, against exactly the certificate the
PCI process serves; otherwise the system's CAs. A certificate that fails is a failing hop like any
other (logged ``pci_unreachable``; the outcome unknown).

Each call waits for the acquirer's hard timeout (carried in the request) plus ``MARGIN`` for the
PCI side's own work; connecting waits at most ``CONNECT_TIMEOUT``. Kept-alive connections are
dropped by the client well before the internal listener's keep-alive timeout closes them, so a
request is never sent on a connection the server is closing.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from cardkeep.hop import wire
from cardkeep.logs import get_logger
from cardkeep.service.ports import ChargeOutcome, ChargeRequest, RefundOutcome, RefundRequest

log = get_logger("cardkeep.hop")

CONNECT_TIMEOUT = 2.0
MARGIN = 5.0
KEEPALIVE_EXPIRY = 1.0
LOG_EVERY = 10.0
O = TypeVar("O")  # noqa: E741


class HopError(RuntimeError):
    """The PCI process could not be asked or did not answer: the outcome is unknown."""


def trust(ca_file: Path | None, *, exact: bool = False) -> ssl.SSLContext:
    """How the API side verifies the internal listener over TLS: by the certificates in
    ``ca_file`` (``exact``: ``ca_file`` is the very certificate the listener serves, trusted as it
    is, with no CA above it), or by the system's CAs. The host name is checked either way."""
    context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    if exact:
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


class FailureLog:
    """The hop's failure lines, throttled per kind of failure (thread-safe: calls run in a
    thread pool)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._logged_at: dict[str, float] = {}
        self._unlogged: Counter[str] = Counter()

    def failed(self, event: str, **fields: Any) -> None:
        with self._lock:
            self._unlogged[event] += 1
            now = self._clock()
            last = self._logged_at.get(event)
            if last is not None and now - last < LOG_EVERY:
                return
            self._logged_at[event] = now
            failed_calls = self._unlogged.pop(event)
        log.error(event, failed_calls=failed_calls, **fields)

    def answered(self) -> None:
        if not self._logged_at:  # the usual case, without the lock
            return
        with self._lock:
            if not self._logged_at:
                return
            unlogged = sum(self._unlogged.values())
            self._logged_at.clear()
            self._unlogged.clear()
        log.info("pci_answering", unlogged_failed_calls=unlogged)


class InternalCharger:
    """``service.ports.Charger`` over the internal listener at ``base_url``."""

    def __init__(
        self,
        base_url: str,
        secret: str,
        *,
        transport: httpx.BaseTransport | None = None,
        connections: int = 100,
        failures: FailureLog | None = None,
        verify: ssl.SSLContext | None = None,
    ) -> None:
        self._failures = failures or FailureLog()
        self._client = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
            limits=httpx.Limits(
                max_connections=connections,
                max_keepalive_connections=connections,
                keepalive_expiry=KEEPALIVE_EXPIRY,
            ),
            transport=transport,
            verify=verify if verify is not None else True,
            follow_redirects=False,
            trust_env=False,  # never through a proxy the environment names
        )

    def _call(self, path: str, body: bytes, timeout: float, decode: Callable[[bytes], O]) -> O:
        try:
            response = self._client.post(
                path, content=body, timeout=httpx.Timeout(timeout + MARGIN, connect=CONNECT_TIMEOUT)
            )
        except httpx.HTTPError as exc:
            self._failures.failed("pci_unreachable", path=path, error_type=type(exc).__name__)
            raise HopError(f"the PCI process did not answer {path}: {type(exc).__name__}") from exc
        if response.status_code != 200:
            # 404: a wrong internal secret or path (the listener tells nothing more); 502: the
            # PCI side's call raised. Either way nothing can be assumed about the money.
            self._failures.failed("pci_refused", path=path, status=response.status_code)
            raise HopError(f"the PCI process answered {path} with {response.status_code}")
        try:
            outcome = decode(response.content)
        except wire.WireError as exc:
            self._failures.failed("pci_answer_unreadable", path=path, reason=str(exc))
            raise HopError(f"the PCI process's answer to {path} does not decode") from exc
        self._failures.answered()
        return outcome

    def charge(self, request: ChargeRequest) -> ChargeOutcome:
        body = wire.encode_charge(request)
        return self._call(wire.CHARGE, body, request.timeout, wire.decode_charge_outcome)

    def status(self, request: ChargeRequest) -> ChargeOutcome:
        body = wire.encode_charge(request)
        return self._call(wire.CHARGE_STATUS, body, request.timeout, wire.decode_charge_outcome)

    def refund(self, request: RefundRequest) -> RefundOutcome:
        body = wire.encode_refund(request)
        return self._call(wire.REFUND, body, request.timeout, wire.decode_refund_outcome)

    def refund_status(self, request: RefundRequest) -> RefundOutcome:
        body = wire.encode_refund(request)
        return self._call(wire.REFUND_STATUS, body, request.timeout, wire.decode_refund_outcome)

    def close(self) -> None:
        self._client.close()
