"""Audiences and message templates."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.utils.html import format_html

from ..models import Audience, MessageTemplate, Recipient
from ..rendering import compile_message
from ..rules import OPERATORS, RULE_FIELDS
from ..selectors import audience_count
from .common import JSON_AS_TEXT

# --- Audiences and templates -------------------------------------------------------------------

class AudienceForm(forms.ModelForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "rules" in self.fields:
            self.fields["rules"].help_text = (
                f"{Audience._meta.get_field('rules').help_text} Fields: {', '.join(RULE_FIELDS)} or attributes.<key>. "
                f"Operators: {', '.join(OPERATORS)}. Only for the “Attribute rules” kind."
            )

    def clean_rules(self):
        return self.cleaned_data["rules"] or []  # an emptied textarea means no rules


@admin.register(Audience)
class AudienceAdmin(admin.ModelAdmin):
    form = AudienceForm
    formfield_overrides = JSON_AS_TEXT
    # The count is one query per row: fine for the dozens of audiences an organisation keeps.
    list_display = ("name", "kind", "people", "updated_at")
    list_filter = ("kind",)
    search_fields = ("name",)
    autocomplete_fields = ("members", "excluded")
    readonly_fields = ("people", "created_at", "updated_at")
    fields = ("name", "kind", "rules", "members", "excluded", "people", "created_at", "updated_at")

    @admin.display(description="People it selects now")
    def people(self, audience: Audience) -> int | str:
        return audience_count(audience=audience) if audience.pk else "Save to count."


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


