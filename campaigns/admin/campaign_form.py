"""The campaign's change form, which refuses an edit of a campaign no longer a draft or scheduled under
its row's lock, and the list's "waiting for approval" filter."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils import timezone

from core.errors import ApplicationError

from ..models import Audience, Campaign
from ..models.content import (
    POLL_OPTION_MOST, POLL_OPTIONS, REMIND_TIMES_MOST, WELCOME_NOT_LISTED, acknowledgement_problems, clicks_problems, poll_problems,
    reminder_problems, urgent_problems,
)
from ..services import campaign_require_editable

S = Campaign.Status


class PollOptionsField(forms.CharField):
    """A poll's options, one a line, kept as a list (blank lines left out)."""

    widget = forms.Textarea(attrs={"rows": 4, "cols": 60})

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        text = super().to_python(value) or ""
        return [line.strip() for line in text.splitlines() if line.strip()]


class CampaignForm(forms.ModelForm):
    poll_options = PollOptionsField(
        label="Poll options", required=False,
        help_text=f"One answer a line, from {POLL_OPTIONS[0]} to {POLL_OPTIONS[1]}, each at most {POLL_OPTION_MOST} "
        "characters. Results are counted by their place: the Watch page shows them live.")

    remind_times = forms.IntegerField(
        label="Reminders", required=False, initial=1, min_value=1, max_value=REMIND_TIMES_MOST,
        help_text=f"At most how many reminders, from 1 to {REMIND_TIMES_MOST}; each goes only to those still to do it.")

    def clean_remind_times(self):
        return self.cleaned_data.get("remind_times") or 1

    def clean(self):
        cleaned = super().clean()
        audience = cleaned.get("audience")
        kind = cleaned.get("kind", self.instance.kind)
        if kind == Campaign.Kind.WELCOME and audience is not None and audience.kind in Audience.LISTED_KINDS:
            self.add_error("audience" if "audience" in self.fields else None, WELCOME_NOT_LISTED)
        urgent = cleaned.get("urgent", self.instance.urgent)
        text = cleaned.get("urgent_text", self.instance.urgent_text)
        for field, problem in urgent_problems(kind=kind, urgent=urgent, urgent_text=text).items():
            self.add_error(field if field in self.fields else None, problem)
        category = cleaned.get("category", self.instance.category if self.instance.category_id else None)
        for field, problem in acknowledgement_problems(
                kind=kind, acknowledgement=cleaned.get("acknowledgement", self.instance.acknowledgement),
                category_mandatory=category.mandatory if category is not None else None).items():
            if field not in self.errors:
                self.add_error(field if field in self.fields else None, problem)
        for field, problem in clicks_problems(track_clicks=cleaned.get("track_clicks", False)).items():
            self.add_error(field if field in self.fields else None, problem)
        for field, problem in poll_problems(
                question=cleaned.get("poll_question", self.instance.poll_question),
                options=cleaned.get("poll_options", self.instance.poll_options),
                closes_at=cleaned.get("poll_closes_at", self.instance.poll_closes_at),
                closes_changed="poll_closes_at" in self.changed_data).items():
            if field not in self.errors:
                self.add_error(field if field in self.fields else None, problem)
        for field, problem in reminder_problems(
                kind=kind, **{name: cleaned.get(name, getattr(self.instance, name)) for name in (
                    "remind_who", "remind_after", "remind_times", "acknowledgement", "poll_question")}).items():
            if field not in self.errors:
                self.add_error(field if field in self.fields else None, problem)
        if self.instance.pk is None:
            return cleaned
        # Locked until the admin's transaction commits the save, so a launch cannot slip in between.
        current = Campaign.objects.select_for_update().only("status", "kind", "name").get(pk=self.instance.pk)
        try:
            campaign_require_editable(current)
        except ApplicationError as exc:
            raise ValidationError(exc.message) from exc
        if current.status == S.SCHEDULED and "send_at" in self.fields:
            send_at = cleaned.get("send_at")
            if send_at is None:
                self.add_error("send_at", "A scheduled campaign needs a time; cancel it to stop it.")
            elif "send_at" in self.changed_data and send_at <= timezone.now():
                self.add_error("send_at", "Must be in the future; use “Launch now” to send it now.")
        return cleaned


class WaitingForApprovalFilter(admin.SimpleListFilter):
    """What waits for the approvers: campaigns whose author asked for approval, not approved yet."""

    title = "approval"
    parameter_name = "approval"

    def lookups(self, request, model_admin):
        return [("waiting", "Waiting for approval")]

    def queryset(self, request, queryset):
        if self.value() == "waiting":
            return queryset.filter(
                approval_requested_at__isnull=False, approved_at__isnull=True, status__in=(S.DRAFT, S.SCHEDULED)
            ).order_by("approval_requested_at")
        return queryset
