"""Assertions shared by the API tests."""

from __future__ import annotations


def error_of(response) -> dict:
    """The ``error`` of an answer, after checking it has the one error shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "fields"}, body
    return body["error"]
