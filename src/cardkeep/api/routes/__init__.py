"""Thin route handlers: decode with ``web.wire``, call one use case, render with ``web.wire``."""
