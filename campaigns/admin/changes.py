"""Editing or recalling a campaign's sent message, and following the change: a form pre-filled
with what people were last sent, a confirmation saying how many people lose the message, and a
read-only list of changes with their progress. The work is ``delivery.message_changes``'s."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from core.admin import ReadOnlyAdmin
from core.errors import ApplicationError
from delivery.message_changes import (
    EDIT_PERMISSION,
    PERMISSION,
    message_change_progress,
    message_change_refusal,
    message_change_start,
    message_current_content,
    message_reach,
)
from delivery.models import DeliveryChange, MessageChange

from ..models import Campaign, MessageTemplate
from .common import PrettyJSONField, _when, pace_text

EDIT_TEMPLATE = "admin/campaigns/campaign/edit_sent.html"
RECALL_TEMPLATE = "admin/campaigns/campaign/confirm_recall.html"


class EditSentForm(forms.Form):
    kind = forms.ChoiceField(choices=MessageTemplate.Kind.choices)
    text = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80}),
        help_text="Markdown body (markdown messages) or the notification summary (cards). Placeholders such as "
        "{{first_name}} are filled in for each person.",
    )
    card = PrettyJSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 16, "cols": 80}),
        help_text="The Adaptive Card JSON (Adaptive Card messages only).",
    )


def change_links(request, campaign: Campaign) -> list[tuple[str, str]]:
    """The change page's buttons for a campaign whose message can be edited or recalled (label, url)."""
    if campaign.status not in (Campaign.Status.COMPLETED, Campaign.Status.CANCELLED):
        return []
    if not request.user.has_perm(PERMISSION):
        return []
    edit = [("Edit the sent message", reverse("admin:campaigns_campaign_edit_sent", args=[campaign.pk]))]
    return [
        *(edit if request.user.has_perm(EDIT_PERMISSION) else []),
        ("Recall the sent message", reverse("admin:campaigns_campaign_recall", args=[campaign.pk])),
    ]


def change_urls(model_admin) -> list:
    """The edit and recall pages of ``CampaignAdmin``: place them before its own URLs."""
    site = model_admin.admin_site

    def edit_view(request, object_id: str):
        return edit_sent_view(model_admin, request, object_id)

    def recall_view(request, object_id: str):
        return recall_sent_view(model_admin, request, object_id)

    return [
        path("<path:object_id>/edit-sent/", site.admin_view(edit_view), name="campaigns_campaign_edit_sent"),
        path("<path:object_id>/recall/", site.admin_view(recall_view), name="campaigns_campaign_recall"),
    ]


def _campaign(model_admin, request, object_id: str) -> Campaign | None:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    return model_admin.get_object(request, unquote(object_id))


def _context(model_admin, request, campaign: Campaign, title: str, **extra) -> dict:
    return {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": title,
        "campaign": campaign,
        "reach": message_reach(campaign_id=campaign.pk),
        "refusal": message_change_refusal(campaign=campaign),
        "back_url": reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        **extra,
    }


def _started(model_admin, request, change: MessageChange, done: str) -> HttpResponseRedirect:
    model_admin.message_user(request, done, messages.SUCCESS)
    return HttpResponseRedirect(reverse("admin:delivery_messagechange_change", args=[change.pk]))


def edit_sent_view(model_admin, request, object_id: str):
    """GET: the form, with what people were last sent. POST: checks it and starts the edit; any
    refusal is shown on the form, with everything typed kept."""
    if not request.user.has_perm(EDIT_PERMISSION):
        raise PermissionDenied  # approvers recall; new words are an author's
    campaign = _campaign(model_admin, request, object_id)
    if campaign is None:
        return model_admin._get_obj_does_not_exist_redirect(request, model_admin.opts, object_id)
    if request.method == "POST":
        form = EditSentForm(request.POST)
        if form.is_valid():
            try:
                change = message_change_start(
                    campaign_id=campaign.pk, action="edit", user=request.user, **form.cleaned_data
                )
            except ApplicationError as exc:
                _show_on_form(form, exc)
            else:
                done = f"The message of “{campaign}” is being edited for {change.total} people."
                return _started(model_admin, request, change, done)
    else:
        kind, text, card = message_current_content(campaign=campaign)
        form = EditSentForm(initial={"kind": kind, "text": text, "card": card})
    context = _context(model_admin, request, campaign, f"Edit the sent message of “{campaign}”", form=form)
    return TemplateResponse(request, EDIT_TEMPLATE, context)


def _show_on_form(form: EditSentForm, error: ApplicationError) -> None:
    shown = False
    for field, problems in error.fields.items():
        if field in form.fields:
            for problem in problems if isinstance(problems, list) else [problems]:
                form.add_error(field, problem)
            shown = True
    if not shown:
        form.add_error(None, error.message)


def recall_sent_view(model_admin, request, object_id: str):
    """GET: says how many people lose the message and asks. POST: starts the recall."""
    campaign = _campaign(model_admin, request, object_id)
    if campaign is None:
        return model_admin._get_obj_does_not_exist_redirect(request, model_admin.opts, object_id)
    error = None
    if request.method == "POST":
        try:
            change = message_change_start(campaign_id=campaign.pk, action="recall", user=request.user)
        except ApplicationError as exc:
            error = exc.message
        else:
            done = f"The message of “{campaign}” is being recalled from {change.total} people."
            return _started(model_admin, request, change, done)
    context = _context(model_admin, request, campaign, f"Recall the sent message of “{campaign}”", error=error)
    return TemplateResponse(request, RECALL_TEMPLATE, context, status=409 if error else 200)


@admin.register(MessageChange)
class MessageChangeAdmin(ReadOnlyAdmin):
    """Edits and recalls, with their progress: read-only, as the engine writes them."""

    list_display = ("campaign", "action", "status", "progress", "requested_by", "created_at", "completed_at")
    list_filter = ("action", "status")
    list_select_related = ("campaign", "requested_by")
    search_fields = ("campaign__name",)
    fields = (
        "campaign", "action", "status", "progress", "pace", "error_summary", "failures", "kind", "text", "card",
        "requested_by", "created_at", "completed_at",
    )
    readonly_fields = fields

    def has_view_permission(self, request, obj=None):
        # Part of a campaign's record: whoever may see campaigns may see what was done to their message.
        return super().has_view_permission(request, obj) or request.user.has_perm("campaigns.view_campaign")

    @admin.display(description="Done / failed / total")
    def progress(self, change: MessageChange) -> str:
        return f"{change.done} / {change.failed} / {change.total}"

    @admin.display(description="Pace")
    def pace(self, change: MessageChange) -> str:
        now = message_change_progress(change_id=change.pk)
        if change.status == MessageChange.Status.COMPLETED:
            return f"Completed {_when(change.completed_at)}."
        return pace_text(now, unit="", nothing_left="Nothing left to do: it completes in a moment.")

    @admin.display(description="Who it failed for (first 20)")
    def failures(self, change: MessageChange) -> str:
        rows = (
            DeliveryChange.objects.filter(change=change, status=DeliveryChange.Status.FAILED)
            .select_related("delivery__recipient")
            .order_by("id")[:20]
        )
        if not rows:
            return "—"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "", "<li>{} ({}): {} {}</li>",
                ((row.delivery.recipient, row.delivery.recipient.external_id, row.error_code, row.error_message)
                 for row in rows),
            ),
        )
