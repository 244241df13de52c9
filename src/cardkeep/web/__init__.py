"""HTTP plumbing shared by both listeners: lenient input decoding, wire rendering, ProblemDetails,
version and auth header rules, logging with card-data redaction.

Knows nothing of card data handling (that is ``cde/``) nor of routes (``api/``, ``cde/``).
"""
