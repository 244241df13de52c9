"""The Refunder the service uses: a refund or reversal of a captured charge, sent to the acquirer.

It needs no card and no vault: the acquirer finds the charge by the key of the attempt that
captured it. An exception from the acquirer call propagates as it is (the service takes it for an
unknown outcome and asks again with the same key); nothing here turns it into an answer.
"""

from __future__ import annotations

from cardkeep.cde.acquirers.base import Acquirer, RefundCall
from cardkeep.service.ports import RefundOutcome, RefundRequest


def refund_call(request: RefundRequest) -> RefundCall:
    return RefundCall(
        request.mode,
        request.kind,
        request.amount,
        request.idempotency_key,
        request.capture_key,
        request.timeout,
    )


class AcquirerRefunder:
    def __init__(self, acquirer: Acquirer) -> None:
        self._acquirer = acquirer

    def refund(self, request: RefundRequest) -> RefundOutcome:
        return self._acquirer.refund(refund_call(request))

    def refund_status(self, request: RefundRequest) -> RefundOutcome:
        return self._acquirer.refund_status(refund_call(request))
