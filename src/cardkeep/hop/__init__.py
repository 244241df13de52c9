"""The internal hop between the API workers and the PCI process: the wire shapes (``wire``) and the
API side's Charger over HTTP (``client``). The PCI side's listener is ``cde.internal``."""
