"""The cardholder-data environment: the PCI listener, the vault, acquirer connectors and charger.

The only package that ever holds a PAN in plaintext (in memory), and the only one that ever sees a
CVV (in memory, for one authorization). Nothing outside it imports it except the composition root
and the CLI; an import-linter contract checks that.
"""
