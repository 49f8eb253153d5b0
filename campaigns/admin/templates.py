"""Message templates: what a campaign says."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from ..models import MessageTemplate, Recipient
from ..rendering import compile_message
from .common import JSON_AS_TEXT

SAMPLE_RECIPIENT = Recipient(
    external_id="sample", first_name="Alex", last_name="Sample", display_name="Alex Sample",
    email="alex.sample@example.com", department="Sales", job_title="Account manager", country="FR",
)


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    formfield_overrides = JSON_AS_TEXT
    list_display = ("name", "kind", "updated_at")
    list_filter = ("kind",)
    search_fields = ("name", "text")
    readonly_fields = ("preview", "created_at", "updated_at")
    fields = ("name", "kind", "text", "card", "preview", "created_at", "updated_at")

    @admin.display(description="Preview (what Teams receives)")
    def preview(self, template: MessageTemplate) -> str:
        if template.pk is None:
            return "Save to see a preview."
        person = Recipient.objects.filter(is_active=True).order_by("id").first() or SAMPLE_RECIPIENT
        message = compile_message(kind=template.kind, text=template.text or "", card=template.card)
        activity = json.dumps(json.loads(message.render(person)), indent=2, ensure_ascii=False)
        return format_html("<p>For {}:</p><pre>{}</pre>", person, activity)
