"""Campaigns and their actions (launch, schedule, test-send, pause, resume, cancel), their deliveries,
and direct messages."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.response import Response

from delivery.exports import acknowledgements_csv, deliveries_csv, poll_answers_csv
from delivery.follow_ups import follow_up_send_again
from campaigns.models import ApiKey, AuditEntry, Campaign
from campaigns.audit import Actor
from campaigns.services import campaign_require_editable, campaign_update
from core.errors import ApplicationError
from delivery.models import Delivery
from delivery.reports import campaign_funnel, funnel_problem
from delivery.services import (
    campaign_cancel,
    campaign_installs_stop,
    campaign_launch,
    campaign_pause,
    campaign_resume,
    campaign_schedule,
    campaign_send_direct,
)

from ..filters import CampaignFilter, DeliveryFilter
from ..serializers.campaigns import (
    CampaignFunnelSerializer,
    CampaignSerializer,
    DirectMessageSerializer,
    TestSendSerializer,
    CampaignPauseSerializer,
    CampaignScheduleSerializer,
    DeliverySerializer,
)
from .base import ApiViewSet


class CampaignViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    ApiViewSet,
):
    """Announcements and welcome messages. Only a draft or scheduled campaign can be edited."""

    queryset = Campaign.objects.select_related("category")
    serializer_class = CampaignSerializer
    filterset_class = CampaignFilter
    conflict_actions = frozenset({"update", "partial_update", "launch", "schedule", "pause", "resume", "cancel",
                                  "send_again"})

    def get_serializer_context(self):
        # Counts cost a Redis round trip per campaign: given for one campaign, null in lists.
        return {**super().get_serializer_context(), "with_counts": self.action != "list"}

    def update(self, request, *args, **kwargs):
        campaign_require_editable(self.get_object())  # a conflict is reported before any field error
        return super().update(request, *args, **kwargs)

    def perform_update(self, serializer):
        # The service checks again under the row's lock: it may have been launched since.
        serializer.instance = campaign_update(
            campaign_id=serializer.instance.pk, changes=serializer.validated_data, actor=Actor(api_key=self.request.auth)
        ).campaign

    def _answer(self, campaign: Campaign) -> Response:
        return Response(self.get_serializer(self.get_queryset().get(pk=campaign.pk)).data)

    @extend_schema(request=None, responses=CampaignSerializer, description="Starts sending now.")
    @action(detail=True, methods=["post"], scope=ApiKey.Scope.CAMPAIGNS_SEND)
    def launch(self, request, pk=None):
        return self._answer(campaign_launch(campaign_id=self.get_object().pk, actor=Actor(api_key=request.auth)))

    @extend_schema(
        request=CampaignScheduleSerializer,
        responses=CampaignSerializer,
        description="Sends it at send_at (in the future); scheduling again moves it.",
    )
    @action(detail=True, methods=["post"], scope=ApiKey.Scope.CAMPAIGNS_SEND)
    def schedule(self, request, pk=None):
        campaign = self.get_object()
        body = CampaignScheduleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._answer(campaign_schedule(
            campaign_id=campaign.pk, send_at=body.validated_data["send_at"], actor=Actor(api_key=request.auth)
        ))

    @extend_schema(
        request=TestSendSerializer,
        responses={201: CampaignSerializer},
        description="Sends the campaign's message now to a few named people (at most 5 a call), to check it; the "
        "campaign itself is not touched. Tests count toward the reach that needs approval, as direct messages do. "
        "Answers with the direct message that carries the test.",
    )
    @action(detail=True, methods=["post"], url_path="test-send", scope=ApiKey.Scope.CAMPAIGNS_SEND)
    def test_send(self, request, pk=None):
        campaign = self.get_object()
        body = TestSendSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        test = campaign_send_direct(
            name=f"Test of {campaign.name}"[:200], template_id=campaign.template_id, category=campaign.category,
            external_ids=body.validated_data["recipients"], actor=Actor(api_key=request.auth), asking_like=campaign,
        )
        return Response(self.get_serializer(test).data, status=201)

    @extend_schema(request=CampaignPauseSerializer, responses=CampaignSerializer,
                   description="Holds a running campaign; nobody is sent to until it is resumed.")
    @action(detail=True, methods=["post"], scope=ApiKey.Scope.CAMPAIGNS_SEND)
    def pause(self, request, pk=None):
        campaign = self.get_object()
        body = CampaignPauseSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._answer(campaign_pause(
            campaign_id=campaign.pk, reason=body.validated_data.get("reason", ""), actor=Actor(api_key=request.auth)
        ))

    @extend_schema(request=None, responses=CampaignSerializer, description="Carries on with a paused campaign.")
    @action(detail=True, methods=["post"], scope=ApiKey.Scope.CAMPAIGNS_SEND)
    def resume(self, request, pk=None):
        return self._answer(campaign_resume(campaign_id=self.get_object().pk, actor=Actor(api_key=request.auth)))

    @extend_schema(request=None, responses=CampaignSerializer, description=(
        "A running or paused campaign that installs the app no longer does: the people waiting for their install "
        "are sent to as they are, and those who lack the app fail with Teams' answer. The way out when Graph refuses "
        "the installs (the campaign paused saying why) and nobody will fix that."))
    @action(detail=True, methods=["post"], url_path="stop-installing", scope=ApiKey.Scope.CAMPAIGNS_SEND)
    def stop_installing(self, request, pk=None):
        return self._answer(campaign_installs_stop(campaign_id=self.get_object().pk, actor=Actor(api_key=request.auth)))

    @extend_schema(request=None, responses={201: CampaignSerializer}, description=(
        "Sends a completed announcement again, now, to the people it failed for who have not had it since (once the "
        "cause is fixed: the app installed, a policy changed), as a campaign of its own that follows it (`follows`), "
        "with its own results; opt-outs are respected, and a failure after which Teams may have the message is never "
        "sent again. Its approval covers it while what it sends is as approved; otherwise the new campaign is a "
        "draft (`status_reason` says why) for an approver to approve, then to launch. Answers with the new campaign. "
        "409 `follow_up_open` while another follow-up of it sends; 409 `nobody_to_follow_up` when nobody is left."))
    @action(detail=True, methods=["post"], url_path="send-again", scope=ApiKey.Scope.CAMPAIGNS_SEND)
    def send_again(self, request, pk=None):
        again = follow_up_send_again(campaign_id=self.get_object().pk, actor=Actor(api_key=request.auth))
        return Response(self.get_serializer(self.get_queryset().get(pk=again.pk)).data, status=201)

    @extend_schema(
        request=None,
        responses=CampaignSerializer,
        description="Stops it for good; whoever was not sent to yet is skipped. Answers once the sends already "
        "on their way to Teams are finished, so nothing is sent after the answer.",
    )
    @action(detail=True, methods=["post"], scope=ApiKey.Scope.CAMPAIGNS_SEND)
    def cancel(self, request, pk=None):
        return self._answer(campaign_cancel(campaign_id=self.get_object().pk, actor=Actor(api_key=request.auth)))

    @extend_schema(
        responses={(200, "text/csv"): OpenApiTypes.STR},
        description="Who acknowledged which version of the campaign's message, and when, as CSV, oldest first (a "
        "policy's audit record: one line a person and version; `current` says whether it is the version now). "
        "Streamed; an audit entry records that the list was taken.",
    )
    @action(detail=True, methods=["get"])
    def acknowledgements(self, request, pk=None):
        campaign = self.get_object()
        Actor(api_key=request.auth).record(
            AuditEntry.Action.EXPORT, campaign=campaign,
            summary=f"Exported who acknowledged “{campaign}”, version by version")
        response = StreamingHttpResponse(
            acknowledgements_csv(campaign_id=campaign.pk, current_version=campaign.message_version,
                                 policy=campaign.acknowledgement == Campaign.Acknowledgement.POLICY),
            content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-acknowledgements.csv"'
        return response

    @extend_schema(
        parameters=[OpenApiParameter(
            "by", str, OpenApiParameter.QUERY, required=False,
            description="A field of the people (department, the default; location, country, job_title, locale) or "
            "attributes.<key>.")],
        responses=CampaignFunnelSerializer,
        description="Who the campaign reached, by a field of the people: how many were sent it, read it (a lower "
        "bound: Teams reports no read where read receipts are off), acknowledged it and answered its poll, the "
        "largest groups first (50, the rest in one line, \"(all others)\"; people without a value: \"(none)\").",
    )
    @action(detail=True, methods=["get"])
    def funnel(self, request, pk=None):
        campaign = self.get_object()
        by = request.query_params.get("by", "department")
        if problem := funnel_problem(by):
            raise ApplicationError(problem, fields={"by": [problem]})
        return Response(campaign_funnel(campaign=campaign, by=by))

    @extend_schema(
        responses={(200, "text/csv"): OpenApiTypes.STR},
        description="Every answer to the campaign's poll as CSV, one person a line, oldest first: the options they "
        "chose by their text (several joined by \"; \"), when they answered and last changed it. Streamed; an "
        "audit entry records that the list was taken. The counts per option are in `counts.poll`.",
    )
    @action(detail=True, methods=["get"])
    def poll(self, request, pk=None):
        campaign = self.get_object()
        Actor(api_key=request.auth).record(
            AuditEntry.Action.EXPORT, campaign=campaign, summary=f"Exported the poll answers of “{campaign}”")
        response = StreamingHttpResponse(
            poll_answers_csv(campaign_id=campaign.pk, options=list(campaign.poll_options or [])),
            content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-poll.csv"'
        return response


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("campaign_id", int, OpenApiParameter.PATH, description="The campaign's id.")],
        description="What happened to each person a campaign selected.",
    )
)
class CampaignDeliveryViewSet(mixins.ListModelMixin, ApiViewSet):
    serializer_class = DeliverySerializer
    filterset_class = DeliveryFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Delivery.objects.none()
        return Delivery.objects.of_campaign(self.kwargs["campaign_id"]).select_related("recipient").only(
            *(name for name in DeliverySerializer.Meta.fields if name != "recipient"), "recipient__external_id"
        )

    def list(self, request, *args, **kwargs):
        get_object_or_404(Campaign.objects.only("id"), pk=kwargs["campaign_id"])
        return super().list(request, *args, **kwargs)

    @extend_schema(
        parameters=[OpenApiParameter("campaign_id", int, OpenApiParameter.PATH, description="The campaign's id.")],
        responses={(200, "text/csv"): OpenApiTypes.STR},
        description="Every person's result as CSV (the same filters as the list), streamed.",
    )
    @action(detail=False, methods=["get"])
    def export(self, request, *args, **kwargs):
        get_object_or_404(Campaign.objects.only("id"), pk=kwargs["campaign_id"])
        rows = self.filter_queryset(Delivery.objects.of_campaign(kwargs["campaign_id"]))
        response = StreamingHttpResponse(deliveries_csv(rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="campaign-{kwargs["campaign_id"]}-deliveries.csv"'
        return response


class DirectMessageViewSet(ApiViewSet):
    """A message to named people, sent now: a transactional notice such as "your laptop is ready",
    with its own category. Its results are a campaign's (kind "direct")."""

    write_scope = ApiKey.Scope.CAMPAIGNS_SEND
    serializer_class = DirectMessageSerializer

    @extend_schema(request=DirectMessageSerializer, responses={201: CampaignSerializer})
    def create(self, request):
        body = DirectMessageSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        template = data["template"]
        campaign = campaign_send_direct(
            name=data.get("name") or f"{template.name} to {len(data['recipients'])} people",
            template_id=template.pk, category=data["category"], external_ids=data["recipients"],
            actor=Actor(api_key=request.auth),
        )
        context = {**self.get_serializer_context(), "with_counts": True}
        return Response(CampaignSerializer(campaign, context=context).data, status=201)
