"""Thin route handlers: decode with ``web.requests``, call one use case, render with
``web.responses``."""
