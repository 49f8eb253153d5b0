"""API keys, for superusers: shown once, stored hashed, revocable."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils import timezone

from ..api.auth import api_key_create
from ..models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys for the HR system. The secret is shown once, when the key is made; only its hash is kept."""

    list_display = ("name", "prefix", "created_at", "last_used_at", "active")
    search_fields = ("name", "prefix")
    exclude = ("key_hash",)
    actions = ("revoke",)

    def get_fields(self, request, obj=None):
        return ("name",) if obj is None else ("name", "prefix", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.get_fields(request, obj)

    @admin.display(description="Active", boolean=True, ordering="revoked_at")
    def active(self, api_key: ApiKey) -> bool:
        return api_key.is_active

    def save_model(self, request, obj, form, change):
        if change:
            return  # nothing of a key changes; it is revoked with the action
        api_key, secret = api_key_create(name=obj.name)
        for field in ApiKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(api_key, field.attname))
        obj._state.adding = False
        self.message_user(
            request,
            f"The key for “{api_key.name}” is {secret} — copy it now: only its hash is stored, "
            "it will not be shown again.",
            messages.SUCCESS,
        )

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{revoked} key(s) revoked: they no longer authenticate.", messages.SUCCESS)
