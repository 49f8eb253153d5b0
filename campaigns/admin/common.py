"""Form pieces shared by the admin pages."""

from __future__ import annotations

import json

from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.formats import date_format

from ..approvals import change_record
from ..models import Recipient


class RecordsChanges:
    """For the admin of what a campaign sends or whom it reaches (templates, audiences, categories):
    every save by a staff member is in the audit log, so nobody approves a campaign using something
    they wrote or changed. Django logs each save of the change form (fields, lists, an uploaded file)
    once, after everything is saved: recorded there."""

    def log_addition(self, request, obj, message):
        change_record(user=request.user, obj=obj, summary=f"Created the {obj._meta.verbose_name} “{obj}”")
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        change_record(user=request.user, obj=obj, summary=f"Changed the {obj._meta.verbose_name} “{obj}”")
        return super().log_change(request, obj, message)


class PrettyJSONField(forms.JSONField):
    """JSON shown indented, so a person can edit a card or a rule list in the textarea. JSON nested
    too deep to read is invalid JSON, not a server error."""

    def to_python(self, value):
        try:
            return super().to_python(value)
        except RecursionError:
            raise ValidationError(self.error_messages["invalid"], code="invalid", params={"value": ""}) from None

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return forms.fields.InvalidJSONInput(data)

    def has_changed(self, initial, data):
        try:
            return super().has_changed(initial, data)
        except RecursionError:
            return True

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


JSON_AS_TEXT = {
    models.JSONField: {"form_class": PrettyJSONField, "widget": forms.Textarea(attrs={"rows": 12, "cols": 80})}
}


# Who a preview shows the message to when there is nobody real to show it to.
SAMPLE_RECIPIENT = Recipient(
    external_id="sample", first_name="Alex", last_name="Sample", display_name="Alex Sample",
    email="alex.sample@example.com", department="Sales", job_title="Account manager", country="FR",
)


def pace_text(now: dict, *, unit: str, nothing_left: str) -> str:
    """“N to go at R <unit> a second, about M min left” from a progress reading."""
    if not now["remaining"]:
        return nothing_left
    left = f", about {max(1, round(now['eta_seconds'] / 60))} min left" if now["eta_seconds"] else ""
    return f"{now['remaining']} to go at {now['rate_per_second']} {unit}a second{left}."


def _when(moment) -> str:
    """A moment in the staff member's time zone, written to sit inside a sentence: “5 Dec 2026, 09:30
    CET” (no “a.m.” whose own full stop would double the sentence's)."""
    return date_format(timezone.localtime(moment), "j M Y, H:i T") if moment else "—"


