"""JSON Schema validators for the component schemas of Dojo's OpenAPI spec (2025-09-10).

``validator("SetupIntentResponse")`` returns a Draft 2020-12 validator for that component. The
spec is OpenAPI 3.0, whose schema dialect is not JSON Schema, so the components are converted once:

- ``nullable: true`` also allows ``null`` (``type: [t, "null"]``, or ``anyOf [..., null]`` when
  the schema has no plain type, e.g. a ``oneOf``/``$ref``);
- ``$ref: '#/components/schemas/X'`` resolves through a ``referencing`` Registry holding the
  converted components;
- an ``allOf`` whose parts are all closed objects (``additionalProperties: false``) is merged
  into one closed object (union of properties and of ``required``): as written, no object could
  satisfy two closed parts with different properties (SetupIntentResponse,
  PaymentCustomerDetails);
- formats: only ``date-time`` and ``uri`` are checked, by explicit checkers below (jsonschema's
  own need optional packages and silently pass without them); ``timespan``/``int64``/``int32``
  and the rest are dropped; OpenAPI-only keywords (``example``, ``x-*``, …) are dropped;
- the keys the contract allows outside the spec (CONTRACT §2 "Output", the ones Dojo itself emits)
  are added, and nothing else: ``paymentEvents``/``paymentSource`` on PaymentIntent,
  ``config.branding``/``config.tradingName`` (PaymentIntentConfigResponse), and
  ``secrets[].lastUsedAt`` (SubscriptionSecret). ``additionalProperties: false`` stays everywhere
  the spec says it, so an unexpected key fails.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).with_name("dojo-openapi-2025-09-10.yaml")
BASE_URI = "https://cardkeep.invalid/contract/dojo-openapi-2025-09-10.json"
REF_PREFIX = "#/components/schemas/"

# The contract's timestamp shape (CONTRACT §2): UTC, "Z", microseconds or (for
# clientSessionSecretExpirationDate) whole seconds. Stricter than RFC 3339, on purpose.
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z$")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")

# Schema keywords kept as they are (after converting their subschemas where they have any).
_KEPT = {
    "type",
    "enum",
    "const",
    "required",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "multipleOf",
    "description",
    "title",
    "default",
}
_CHECKED_FORMATS = {"date-time", "uri"}

# Keys outside the spec's schemas that the contract allows (§2 "Output" and §12).
EXTENSIONS: dict[str, dict[str, Any]] = {
    "PaymentIntent": {
        "paymentEvents": {
            "type": "array",
            "items": {"$ref": REF_PREFIX + "PaymentStatusResponse"},
        },
        "paymentSource": {"type": "string"},
    },
    "PaymentIntentConfigResponse": {
        # Shape as in the spec's own response examples: {} or {logoUrl, faviconUrl}.
        "branding": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "logoUrl": {"type": "string", "format": "uri"},
                "faviconUrl": {"type": "string", "format": "uri"},
            },
        },
        "tradingName": {"type": "string"},
    },
    "SubscriptionSecret": {
        "lastUsedAt": {"type": "string", "format": "date-time", "nullable": True},
    },
}


def is_timestamp(value: object) -> bool:
    if not isinstance(value, str):
        return True  # formats only constrain strings
    if not TIMESTAMP.match(value):
        return False
    try:
        datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:  # 2026-13-45T…
        return False
    return True


def is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not value or any(c.isspace() or ord(c) < 0x20 for c in value):
        return False
    parts = urlsplit(value)
    if not _URI_SCHEME.match(parts.scheme):
        return False  # an absolute URI has a scheme
    return parts.scheme.lower() not in ("http", "https") or bool(parts.hostname)


def format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    checker.checks("date-time")(is_timestamp)
    checker.checks("uri")(is_uri)
    return checker


@cache
def raw_components() -> dict[str, Any]:
    """The spec's ``components.schemas``, exactly as published."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open("rb") as f:
        spec = yaml.load(f, Loader=loader)  # a safe loader, C-accelerated when available
    return spec["components"]["schemas"]  # type: ignore[no-any-return]


def _deref(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith(REF_PREFIX):
            raise ValueError(f"unsupported $ref {ref!r}")
        schema = components[ref[len(REF_PREFIX) :]]
    return schema


def _closed_object(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "object" and schema.get("additionalProperties") is False


def _merge_all_of(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """allOf of closed objects → one closed object; any other allOf is left as it is."""
    parts = [_deref(p, components) for p in schema["allOf"]]
    parts = [_merge_all_of(p, components) if "allOf" in p else p for p in parts]
    if len(parts) < 2 or not all(_closed_object(p) for p in parts):
        return schema
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    merged.update(type="object", additionalProperties=False, properties={})
    required: list[str] = []
    for part in parts:
        for name, sub in part.get("properties", {}).items():
            if name in merged["properties"]:
                raise ValueError(f"allOf parts both define {name!r}")
            merged["properties"][name] = sub
        required += [r for r in part.get("required", []) if r not in required]
    if required:
        merged["required"] = required
    return merged


def convert(schema: Any, components: dict[str, Any]) -> Any:
    """One OpenAPI 3.0 schema object → JSON Schema 2020-12 (see the module docstring)."""
    if isinstance(schema, bool):
        return schema
    if "allOf" in schema:
        schema = _merge_all_of(schema, components)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$ref":
            if not value.startswith(REF_PREFIX):
                raise ValueError(f"unsupported $ref {value!r}")
            out["$ref"] = value
        elif key == "properties":
            out[key] = {name: convert(sub, components) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = convert(value, components)
        elif key in ("allOf", "oneOf", "anyOf"):
            out[key] = [convert(sub, components) for sub in value]
        elif key == "format":
            if value in _CHECKED_FORMATS:
                out[key] = value
        elif key in _KEPT:
            out[key] = value
        # else: nullable (below), example, x-*, readOnly, discriminator, …: not validation
    if schema.get("nullable") is True:
        simple = isinstance(out.get("type"), str) and not {"$ref", "allOf", "oneOf", "anyOf"} & set(
            out
        )
        if simple:
            out["type"] = [out["type"], "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def converted_components() -> dict[str, Any]:
    components = copy.deepcopy(raw_components())
    for name, extra in EXTENSIONS.items():
        props = components[name]["properties"]
        clash = set(extra) & set(props)
        if clash:
            raise ValueError(f"{name} already defines {sorted(clash)}: drop the extension")
        props.update(copy.deepcopy(extra))
    return {name: convert(schema, components) for name, schema in components.items()}


@cache
def registry() -> Registry:
    document = {"components": {"schemas": converted_components()}}
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    return Registry().with_resource(BASE_URI, resource)


@cache
def validator(component: str) -> Draft202012Validator:
    """A validator for ``#/components/schemas/<component>``, with its format checks on."""
    if component not in converted_components():
        raise KeyError(f"no component schema {component!r} in the spec")
    schema = {"$ref": BASE_URI + REF_PREFIX + component}
    return Draft202012Validator(schema, registry=registry(), format_checker=format_checker())


def errors_of(component: str, instance: Any) -> list[str]:
    """Every schema violation, one line each: the JSON path, the message and the failing rule.

    For ``oneOf``/``anyOf`` failures the deepest sub-errors are listed too, so the real cause (an
    unexpected key inside a nullable object, say) shows rather than "is not valid under any".
    """
    lines: list[str] = []

    def walk(error: Any, depth: int) -> None:
        rule = "/".join(str(p) for p in error.absolute_schema_path)
        lines.append(
            f"{'  ' * depth}{error.json_path}: {error.message[:300]} [rule: {error.validator} at {rule}]"
        )
        for sub in sorted(error.context or [], key=lambda e: list(e.absolute_schema_path)):
            if sub.validator != "type" or sub.validator_value != "null":  # the null branch
                walk(sub, depth + 1)

    for error in sorted(validator(component).iter_errors(instance), key=lambda e: e.json_path):
        walk(error, 0)
    return lines
