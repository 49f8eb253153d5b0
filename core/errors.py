"""The one application error type. The API renders it as ``{"error": {"code", "message", "fields"}}``,
the admin as a message, the CLI as a line."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    def __init__(self, message: str, *, code: str = "invalid", fields: dict[str, Any] | None = None, status: int = 400):
        super().__init__(message)
        self.message = message
        self.code = code
        self.fields = fields or {}
        self.status = status


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    """The body of every JSON error Crier answers: the API's and the bot's messaging endpoint's."""
    return {"error": {"code": code, "message": message, "fields": fields or {}}}
