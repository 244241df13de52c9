"""The API worker's Charger: every charge, re-send, refund and reversal goes over HTTP to the PCI
process's internal listener, the only process that can open a card.

The hop keeps the money-movement rules (``service.money_movement``): whatever goes wrong on the way
(the PCI process unreachable or killed mid-call, a timeout, a refusal, an answer that does not
decode) raises ``HopError``, which the service takes for an unknown outcome: the merchant gets a
503 with Retry-After, the claim stays, and recovery asks again with the same acquirer key once the
PCI process answers, so money moves once whether or not the first call arrived. Nothing here ever
turns a failure into a definite answer.

Each call waits for the acquirer's hard timeout (carried in the request) plus ``MARGIN`` for the
PCI side's own work; connecting waits at most ``CONNECT_TIMEOUT``. Kept-alive connections are
dropped by the client well before the internal listener's keep-alive timeout closes them, so a
request is never sent on a connection the server is closing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import httpx

from cardkeep.hop import wire
from cardkeep.logs import get_logger
from cardkeep.service.ports import ChargeOutcome, ChargeRequest, RefundOutcome, RefundRequest

log = get_logger("cardkeep.hop")

CONNECT_TIMEOUT = 2.0
MARGIN = 5.0
KEEPALIVE_EXPIRY = 1.0
O = TypeVar("O")  # noqa: E741


class HopError(RuntimeError):
    """The PCI process could not be asked or did not answer: the outcome is unknown."""


class InternalCharger:
    """``service.ports.Charger`` over the internal listener at ``base_url``."""

    def __init__(
        self,
        base_url: str,
        secret: str,
        *,
        transport: httpx.BaseTransport | None = None,
        connections: int = 100,
    ) -> None:
        self._client = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
            limits=httpx.Limits(
                max_connections=connections,
                max_keepalive_connections=connections,
                keepalive_expiry=KEEPALIVE_EXPIRY,
            ),
            transport=transport,
            follow_redirects=False,
            trust_env=False,  # never through a proxy the environment names
        )

    def _call(self, path: str, body: bytes, timeout: float, decode: Callable[[bytes], O]) -> O:
        try:
            response = self._client.post(
                path, content=body, timeout=httpx.Timeout(timeout + MARGIN, connect=CONNECT_TIMEOUT)
            )
        except httpx.HTTPError as exc:
            log.error("pci_unreachable", path=path, error_type=type(exc).__name__)
            raise HopError(f"the PCI process did not answer {path}: {type(exc).__name__}") from exc
        if response.status_code != 200:
            # 404: a wrong internal secret or path (the listener tells nothing more); 502: the
            # PCI side's call raised. Either way nothing can be assumed about the money.
            log.error("pci_refused", path=path, status=response.status_code)
            raise HopError(f"the PCI process answered {path} with {response.status_code}")
        try:
            return decode(response.content)
        except wire.WireError as exc:
            log.error("pci_answer_unreadable", path=path, reason=str(exc))
            raise HopError(f"the PCI process's answer to {path} does not decode") from exc

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
