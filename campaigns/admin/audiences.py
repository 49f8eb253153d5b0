"""Audiences: who a campaign reaches."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from ..models import Audience
from ..rules import OPERATORS, RULE_FIELDS
from ..selectors import audience_count
from .common import JSON_AS_TEXT


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
