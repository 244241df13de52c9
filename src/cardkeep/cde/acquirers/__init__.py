"""Acquirer connectors: the protocol and its implementations (the sandbox, later real ones)."""
