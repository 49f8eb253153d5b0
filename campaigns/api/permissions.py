"""Scopes: what an API key may do. Reading needs ``read``; each kind of write its own scope; and
launching, scheduling, pausing, resuming or cancelling a campaign needs ``campaigns:send``, so a key
can prepare campaigns without being able to send them."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from campaigns.models import ApiKey

SEND_ACTIONS = frozenset({"launch", "schedule", "pause", "resume", "cancel", "test_send"})
APPROVE_ACTIONS = frozenset({"approve_direct"})


def required_scope(*, method: str, view) -> str:
    """The one rule for the scope an operation needs; the permission check and the schema both read it."""
    if method in SAFE_METHODS:
        return ApiKey.Scope.READ
    action = getattr(view, "action", None)
    if action in SEND_ACTIONS:
        return ApiKey.Scope.CAMPAIGNS_SEND
    if action in APPROVE_ACTIONS:
        return ApiKey.Scope.CAMPAIGNS_APPROVE
    return getattr(view, "write_scope", ApiKey.Scope.CAMPAIGNS_WRITE)


class HasScope(BasePermission):
    code = "missing_scope"

    def has_permission(self, request, view) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return False
        scope = required_scope(method=request.method, view=view)
        if scope in api_key.scopes:
            return True
        self.message = f"This API key lacks the {scope} scope."
        return False
