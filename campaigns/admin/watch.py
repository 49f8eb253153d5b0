"""The campaign watch page: progress, states over time and why people were not reached, refreshed
every two seconds while the campaign can still change; its data as JSON; its results as CSV."""

from __future__ import annotations

from datetime import timedelta

from typing import Any
from urllib.parse import urlencode

from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.text import slugify

from delivery.admin import CAMPAIGN_PARAMETER
from delivery.exports import acknowledgements_csv, deliveries_csv, poll_answers_csv
from delivery.follow_ups import follow_ups_summary
from delivery.models import Delivery
from delivery.reads import READ_WINDOW_DAYS
from delivery.reports import FUNNEL_FIELDS, campaign_funnel, campaign_watch, funnel_problem

from ..audit import Actor
from ..models import AuditEntry, Campaign
from .transitions import TRANSITIONS

# Statuses in which a campaign still changes by itself: the page refreshes while in one of them.
WATCHED = (Campaign.Status.SCHEDULED, Campaign.Status.RUNNING, Campaign.Status.PAUSED)
# The change-page buttons a person watching a send needs.
CONTROLS = ("pause", "resume", "cancel", "send_again")
POLL_SECONDS = 2
# A campaign that has ended still hears of its message for a while: reads, reactions, acknowledgements and
# answers. Its page refreshes more slowly then, for as long as reads are looked for (delivery.reads).
ENGAGEMENT_POLL_SECONDS = 10


def _still_heard_of(campaign: Campaign) -> bool:
    launched = campaign.launched_at
    return launched is not None and timezone.now() - launched < timedelta(days=READ_WINDOW_DAYS)


def watch_urls(model_admin) -> list[URLPattern]:
    """The watch page, its data and the CSV export, for ``CampaignAdmin.get_urls`` (before the
    admin's own patterns, whose ``<path:object_id>/`` would otherwise take them)."""
    views = CampaignWatch(model_admin)
    wrap = model_admin.admin_site.admin_view
    return [
        path("<path:object_id>/watch/", wrap(views.page), name="campaigns_campaign_watch"),
        path("<path:object_id>/watch/data/", wrap(views.data), name="campaigns_campaign_watch_data"),
        path("<path:object_id>/export.csv", wrap(views.export), name="campaigns_campaign_export"),
        path("<path:object_id>/acknowledgements.csv", wrap(views.acknowledgements),
             name="campaigns_campaign_acknowledgements"),
        path("<path:object_id>/poll.csv", wrap(views.poll), name="campaigns_campaign_poll"),
        path("<path:object_id>/watch/funnel/", wrap(views.funnel), name="campaigns_campaign_watch_funnel"),
    ]


class CampaignWatch:
    def __init__(self, model_admin) -> None:
        self.model_admin = model_admin

    def _campaign(self, request, object_id: str) -> Campaign:
        admin = self.model_admin
        if not admin.has_view_permission(request):
            raise PermissionDenied
        campaign = admin.get_object(request, unquote(object_id))
        if campaign is None:
            raise Http404("No campaign with this id.")
        if not admin.has_view_permission(request, campaign):
            raise PermissionDenied
        return campaign

    @staticmethod
    def _can_see_deliveries(request) -> bool:
        return request.user.has_perm("delivery.view_delivery") or request.user.has_perm("delivery.change_delivery")

    def _actions(self, request, campaign: Campaign) -> list[dict[str, str]]:

        return [
            {
                "name": name,
                "label": TRANSITIONS[name].label,
                "url": reverse("admin:campaigns_campaign_transition", args=[campaign.pk, name]),
            }
            for name in CONTROLS
            if TRANSITIONS[name].offered(campaign, request.user)
        ]

    def _payload(self, request, campaign: Campaign) -> dict[str, Any]:
        payload = campaign_watch(campaign=campaign)
        deliveries = self._can_see_deliveries(request)
        changelist = reverse("admin:delivery_delivery_changelist")

        def listed(**filters: Any) -> str | None:
            if not deliveries:
                return None
            return f"{changelist}?{urlencode({CAMPAIGN_PARAMETER: campaign.pk, **filters})}"

        for reason in payload["failure_reasons"]:
            code = {"error_code": reason["error_code"]} if reason["error_code"] else {}
            reason["url"] = listed(status__exact=Delivery.Status.FAILED, **code)
        for reason in payload["skip_reasons"]:
            reason["url"] = listed(status__exact=Delivery.Status.SKIPPED, skip_reason__exact=reason["skip_reason"])
        payload.update(
            actions=self._actions(request, campaign),
            poll=campaign.status in WATCHED or _still_heard_of(campaign),
            poll_seconds=POLL_SECONDS if campaign.status in WATCHED else ENGAGEMENT_POLL_SECONDS,
            export_url=reverse("admin:campaigns_campaign_export", args=[campaign.pk]) if deliveries else None,
            acknowledgements_url=(reverse("admin:campaigns_campaign_acknowledgements", args=[campaign.pk])
                                  if deliveries and campaign.acknowledgement else None),
            poll_url=reverse("admin:campaigns_campaign_poll", args=[campaign.pk])
            if deliveries and campaign.poll_question else None,
            deliveries_url=listed(),
        )
        return payload

    def page(self, request, object_id: str) -> TemplateResponse:
        campaign = self._campaign(request, object_id)
        data = self._payload(request, campaign)
        opts = self.model_admin.opts
        context = {
            **self.model_admin.admin_site.each_context(request),
            "opts": opts,
            "title": f"Watching “{campaign}”",
            "subtitle": None,
            "campaign": campaign,
            "data": data,
            "bar_max": max(1, data["progress"]["total"]),
            "bar_value": data["done"] if data["progress"]["total"] else int(data["finished"]),
            "data_url": reverse("admin:campaigns_campaign_watch_data", args=[campaign.pk]),
            "funnel_url": reverse("admin:campaigns_campaign_watch_funnel", args=[campaign.pk]),
            "funnel_fields": FUNNEL_FIELDS,
            "follow_ups": follow_ups_summary(campaign=campaign),
            "time_zone": timezone.get_current_timezone_name(),  # the staff member's own, for the chart
            "has_view_permission": True,
        }
        return TemplateResponse(request, "admin/campaigns/campaign/watch.html", context)

    def data(self, request, object_id: str) -> JsonResponse:
        campaign = self._campaign(request, object_id)
        return JsonResponse(self._payload(request, campaign))

    def export(self, request, object_id: str) -> StreamingHttpResponse:
        """Every delivery of the campaign, one person a line, streamed (flat memory on a million rows)."""
        campaign = self._campaign(request, object_id)
        if not self._can_see_deliveries(request):
            raise PermissionDenied
        rows = Delivery.objects.of_campaign(campaign.pk)
        # Who took a file of people's results (names, e-mail addresses) out of Crier.
        Actor(user=request.user).record(
            AuditEntry.Action.EXPORT, campaign=campaign, summary=f"Exported the per-person results of “{campaign}”"
        )
        response = StreamingHttpResponse(deliveries_csv(rows), content_type="text/csv; charset=utf-8")
        name = slugify(campaign.name)[:60] or "campaign"
        response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-{name}-deliveries.csv"'
        return response

    def acknowledgements(self, request, object_id: str) -> StreamingHttpResponse:
        """Who acknowledged which version of the message, when: a policy's audit record, streamed."""
        campaign = self._campaign(request, object_id)
        if not self._can_see_deliveries(request):
            raise PermissionDenied
        Actor(user=request.user).record(
            AuditEntry.Action.EXPORT, campaign=campaign,
            summary=f"Exported who acknowledged “{campaign}”, version by version")
        response = StreamingHttpResponse(
            acknowledgements_csv(campaign_id=campaign.pk, current_version=campaign.message_version,
                                 policy=campaign.acknowledgement == Campaign.Acknowledgement.POLICY),
            content_type="text/csv; charset=utf-8")
        name = slugify(campaign.name)[:60] or "campaign"
        response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-{name}-acknowledgements.csv"'
        return response

    def poll(self, request, object_id: str) -> StreamingHttpResponse:
        """Every answer to the campaign's poll, one person a line, streamed."""
        campaign = self._campaign(request, object_id)
        if not self._can_see_deliveries(request):
            raise PermissionDenied
        Actor(user=request.user).record(
            AuditEntry.Action.EXPORT, campaign=campaign, summary=f"Exported the poll answers of “{campaign}”")
        response = StreamingHttpResponse(
            poll_answers_csv(campaign_id=campaign.pk, options=list(campaign.poll_options or [])),
            content_type="text/csv; charset=utf-8")
        name = slugify(campaign.name)[:60] or "campaign"
        response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-{name}-poll.csv"'
        return response

    def funnel(self, request, object_id: str) -> JsonResponse:
        """Sent, read, acknowledged and answered, by one of the people's fields or attributes (``?by=``)."""
        campaign = self._campaign(request, object_id)
        if not self._can_see_deliveries(request):  # who was sent what, as deliveries are: the same permission
            raise PermissionDenied
        by = request.GET.get("by", "department")
        if problem := funnel_problem(by):
            return JsonResponse({"error": problem}, status=400)
        return JsonResponse(campaign_funnel(campaign=campaign, by=by))
