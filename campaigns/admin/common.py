"""Form pieces shared by the admin pages."""

from __future__ import annotations

import json

from django import forms
from django.db import models
from django.utils import timezone
from django.utils.formats import date_format


class PrettyJSONField(forms.JSONField):
    """JSON shown indented, so a person can edit a card or a rule list in the textarea."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


JSON_AS_TEXT = {
    models.JSONField: {"form_class": PrettyJSONField, "widget": forms.Textarea(attrs={"rows": 12, "cols": 80})}
}


def _when(moment) -> str:
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT") if moment else "—"


