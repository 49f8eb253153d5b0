"""The audit log: read-only, for everyone who may see campaigns."""

from __future__ import annotations

from django.contrib import admin

from core.admin import ReadOnlyAdmin

from ..models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "action", "actor", "summary", "campaign")
    list_filter = ("action", "created_at")
    search_fields = ("summary", "user__username", "api_key__name", "campaign__name")
    list_select_related = ("user", "api_key", "campaign")
    date_hierarchy = "created_at"
    fields = ("created_at", "action", "actor", "summary", "campaign", "detail")
    readonly_fields = fields

    @admin.display(description="Who")
    def actor(self, entry: AuditEntry) -> str:
        return entry.actor
