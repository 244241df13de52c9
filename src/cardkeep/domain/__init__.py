"""The pure core: value objects, the two intents' transition tables, events and errors.

Standard library only. No I/O, SQL, HTTP, logging, clock reads or randomness: time and ids come in
as arguments.
"""
