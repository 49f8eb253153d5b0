"""The campaign form's live panel: before a campaign is saved, how many people the chosen audience
reaches today (and a few of them), the chosen template's message as the first of them receives it,
and whether another campaign already has its name. crier/campaign-form.js asks ``live/`` again each
time the audience, template or kind changes, and, with ``only=name``, only for the name's warning
when the name changes (nothing is counted or rendered then)."""

from __future__ import annotations

import json

from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.urls import URLPattern, path, reverse

from ..models import Audience, Campaign, MessageTemplate, Recipient
from ..rendering import compile_message
from ..selectors import audience_recipients, campaign_same_name, recipient_label
from .common import SAMPLE_RECIPIENT

SAMPLE_SIZE = 5
ID_DIGITS = 18  # a bigint; longer is not an id


def live_urls(model_admin) -> list[URLPattern]:
    """For ``CampaignAdmin.get_urls``, before the admin's own ``<path:object_id>/``."""
    view = CampaignLive(model_admin)
    return [path("live/", model_admin.admin_site.admin_view(view.answer), name="campaigns_campaign_live")]


def live_config(campaign: Campaign | None) -> dict:
    """The panel's settings (a json_script): its endpoint, and the kind when the form no longer offers it."""
    return {
        "url": reverse("admin:campaigns_campaign_live"),
        "kind": campaign.kind if campaign else "",
        "campaign": campaign.pk if campaign else None,
    }


def name_warning(*, name: str, exclude_id: int | None) -> str:
    """Names need not be unique; two alike are hard to tell apart, so the form says so (and saves)."""
    same = campaign_same_name(name=name, exclude_id=exclude_id) if name.strip() else None
    if same is None:
        return ""
    return (
        f"Another campaign is also called “{same.name}” (#{same.pk}): a different name tells them apart in lists "
        "and reports."
    )


class _Invalid(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def _chosen(params, field: str, model):
    value = params.get(field, "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= ID_DIGITS):
        raise _Invalid(field, f"Choose a {model._meta.verbose_name} from the list.")
    found = model.objects.filter(pk=int(value)).first()
    if found is None:
        raise _Invalid(field, f"That {model._meta.verbose_name} is not in Crier (any more).")
    return found


def _people(count: int) -> str:
    return "1 person" if count == 1 else f"{count:,} people"


class CampaignLive:
    def __init__(self, model_admin) -> None:
        self.model_admin = model_admin

    def answer(self, request) -> JsonResponse:
        if not self.model_admin.has_view_permission(request):
            raise PermissionDenied
        only_name = request.GET.get("only", "") == "name"  # the name was typed: nothing else changed
        try:
            campaign = _chosen(request.GET, "campaign", Campaign)
            if only_name:
                return JsonResponse({"name_warning": self._name_warning(request, campaign)})
            audience = _chosen(request.GET, "audience", Audience)
            template = _chosen(request.GET, "template", MessageTemplate)
            kind = request.GET.get("kind", "") or Campaign.Kind.ANNOUNCEMENT
            if kind not in Campaign.Kind.values:
                raise _Invalid("kind", f"Choose a kind: {', '.join(Campaign.Kind.values)}.")
        except _Invalid as invalid:
            error = {"code": "invalid", "message": invalid.message, "fields": {invalid.field: [invalid.message]}}
            return JsonResponse({"error": error}, status=400)
        for chosen, permission in ((audience, "view_audience"), (template, "view_messagetemplate")):
            if chosen is not None and not request.user.has_perm(f"campaigns.{permission}"):
                raise PermissionDenied
        # Names and HR data only for staff who may see people; the others see the sample person.
        see_people = request.user.has_perm("campaigns.view_recipient")
        people = audience_recipients(audience=audience)
        first = list(people.order_by("id")[:SAMPLE_SIZE]) if see_people else []
        return JsonResponse({
            "name_warning": self._name_warning(request, campaign),
            "reach": self._reach(audience, kind, people.count(), first),
            "message": self._message(template, first[0] if first else SAMPLE_RECIPIENT),
        })

    @staticmethod
    def _name_warning(request, campaign: Campaign | None) -> str:
        # As the form would take it: no NUL (PostgreSQL text holds none), no longer than the field.
        name = request.GET.get("name", "")
        name = "" if "\x00" in name else name[: Campaign._meta.get_field("name").max_length]
        return name_warning(name=name, exclude_id=campaign.pk if campaign else None)

    @staticmethod
    def _reach(audience: Audience | None, kind: str, count: int, first: list[Recipient]) -> dict:
        if kind == Campaign.Kind.DIRECT:  # made and sent at once by the API (delivery.services)
            text = (
                "A direct message reaches the people named when it is sent through the API: it is not launched "
                "from here."
            )
            return {"count": None, "text": text, "sample": []}
        whom = f"in “{audience}”" if audience else ": everyone active"
        text = f"{_people(count)} {whom} today." if audience else f"{_people(count)}{whom} today."
        if kind == Campaign.Kind.WELCOME:
            text += " A welcome campaign greets each new starter among them as they arrive."
        return {"count": count, "text": text, "sample": [recipient_label(person) for person in first]}

    @staticmethod
    def _message(template: MessageTemplate | None, person: Recipient) -> dict:
        if template is None:
            return {"error": "Choose a template to see its message."}
        message = compile_message(kind=template.kind, text=template.text or "", card=template.card)
        return {"recipient": str(person), "activity": json.loads(message.render(person))}
