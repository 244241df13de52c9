"""Structured JSON logging with card-data redaction in one place, for every layer (neutral: no
HTTP, no card types).

Every log line passes ``redact``: any Luhn-valid run of 12-19 digits is masked to first six/last
four (``domain.card.mask_pans``), and values under card-data or secret keys are replaced outright.
Nothing else in the code base formats log output.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from cardkeep.domain.card import mask_pans

_SENSITIVE_KEYS = frozenset(
    {
        "cardnumber",
        "pan",
        "cv2",
        "cvv",
        "cvc",
        "carddetails",
        "authorization",
        "clientsessionsecret",
        "secret",
        "key",
    }
)


def scrub(value: Any) -> Any:
    if isinstance(value, str):
        return mask_pans(value)
    if isinstance(value, dict):
        return {
            k: "[REDACTED]" if str(k).lower() in _SENSITIVE_KEYS else scrub(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = "[REDACTED]" if key.lower() in _SENSITIVE_KEYS else scrub(event_dict[key])
    return event_dict


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    """JSON lines to ``stream`` (stderr by default). Also quiets the servers' own loggers, whose
    lines could carry a query string."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.WriteLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,  # reconfigurable (tests, `serve` workers)
    )
    for name in ("uvicorn.access",):
        logging.getLogger(name).disabled = True


def get_logger(name: str = "cardkeep") -> Any:
    return structlog.get_logger(name)
