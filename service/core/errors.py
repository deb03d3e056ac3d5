"""The one error type a request's parameters raise in the core library, naming its field.

The HTTP layer turns it into a 422 that names `field` and `allowed`; the CLI prints it.
"""

from __future__ import annotations


class RequestError(ValueError):
    def __init__(self, field: str, message: str, allowed: str):
        super().__init__(message)
        self.field = field
        self.allowed = allowed
