"""Storage adapters implementing ``service.ports.Storage``: SQLite (default) and an in-memory fake.

Never imports the HTTP layers or the cardholder-data side; sees sealed cards only.
"""
