"""Use cases on tokens only: open a unit of work, apply the domain, record events, commit.

Never sees a PAN or CVV: the PCI side hands it sealed cards and masked card records.
"""
