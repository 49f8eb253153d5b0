"""Scopes: what an API key may do. Reading needs ``read``; a viewset's own writes (create, update,
delete) its ``write_scope``; and every other action declares its scope where it is defined,
``@action(..., scope=...)`` (launching, scheduling, pausing, resuming or cancelling a campaign needs
``campaigns:send``, so a key can prepare campaigns without being able to send them). An action that
declares none is refused rather than given a default."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from rest_framework.permissions import SAFE_METHODS, BasePermission

from campaigns.models import ApiKey


def required_scope(*, method: str, view) -> str:
    """The one rule for the scope an operation needs; the permission check and the schema both read it."""
    if method in SAFE_METHODS:
        return ApiKey.Scope.READ
    declared = getattr(view, "scope", None)  # set by @action(..., scope=...)
    if declared:
        return declared
    action = getattr(view, "action", None)
    # An action of its own (made by @action, which gives it a ``mapping``) that forgot its scope is refused
    # rather than given one.
    if action and hasattr(getattr(type(view), action, None), "mapping"):
        raise ImproperlyConfigured(f"{type(view).__name__}.{action} changes things and declares no scope: "
                                   "give it @action(..., scope=...)")
    # The viewset's own writes, and what DRF asks for them: a method the route does not take (action
    # None, answered 405 to a key that could write here) and OPTIONS ("metadata", which asks per method).
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
