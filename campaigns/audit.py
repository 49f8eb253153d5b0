"""The audit log: one call records who did what. Services call it inside their own transaction, so
an action and its record stand or fall together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .models import ApiKey, AuditEntry, Campaign


def audit_record(
    action: str,
    *,
    summary: str,
    user: Any = None,
    api_key: ApiKey | None = None,
    campaign: Campaign | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """``user`` is the staff member (an anonymous or missing user counts as nobody)."""
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    return AuditEntry.objects.create(
        action=action, summary=summary[:500], user=user, api_key=api_key, campaign=campaign, detail=detail or {}
    )


@dataclass(frozen=True)
class Actor:
    """Who asks for an action: a staff member in the admin, an API key, or nobody (Crier itself:
    the scheduler, the automatic pause)."""

    user: Any = None
    api_key: ApiKey | None = None

    def record(self, action: str, *, summary: str, campaign: Campaign | None = None, detail: dict | None = None) -> AuditEntry:
        return audit_record(action, summary=summary, user=self.user, api_key=self.api_key, campaign=campaign, detail=detail)

    def __str__(self) -> str:
        if self.user is not None and getattr(self.user, "is_authenticated", False):
            return str(self.user)
        if self.api_key is not None:
            return f"API key {self.api_key.name}"
        return "Crier"


SYSTEM = Actor()
