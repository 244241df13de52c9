"""cardkeep: cards on file and merchant-initiated charges, speaking Dojo's Setup/Payment Intents."""

__version__ = "0.1.0"
