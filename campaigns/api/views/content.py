"""What campaigns are made of: message templates (preview, approval for direct messages), categories
and audiences (their live count)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.utils import json

from bots.members import ListingError, groups_search
from bots.models import TeamsTeam
from campaigns.rendering import compile_message
from campaigns.models import ApiKey, Audience, Category, MessageTemplate, Recipient
from campaigns.selectors import audience_count
from campaigns.approvals import template_approve_direct, template_edit_require
from campaigns.audit import Actor
from core.errors import ApplicationError

from ..throttling import ApiKeyRateThrottle, GroupSearchThrottle

from ..serializers.common import ErrorSerializer
from ..serializers.content import (
    MessageTemplateSerializer,
    CategorySerializer,
    AudienceSerializer,
    AudienceCountSerializer,
    GroupSerializer,
    TeamSerializer,
)
from ..serializers.campaigns import TemplatePreviewSerializer
from .base import ProtectedModelViewSet


logger = logging.getLogger(__name__)

TEMPLATE_IN_USE = OpenApiResponse(
    ErrorSerializer,
    description="`template_in_use`: a running or paused announcement or direct message sends this template, and "
    "people it has not reached yet would get the new text. Wait until it completes or cancel it (a welcome "
    "campaign's template stays editable). Or a campaign that asks for an acknowledgement or has a poll sent it: "
    "Teams shows each person their card again as Crier draws it from this text; change what they received with "
    "the campaign's edit of its sent message, or copy the template.",
)


@extend_schema_view(
    update=extend_schema(responses={200: MessageTemplateSerializer, 409: TEMPLATE_IN_USE}),
    partial_update=extend_schema(responses={200: MessageTemplateSerializer, 409: TEMPLATE_IN_USE}),
)
class MessageTemplateViewSet(ProtectedModelViewSet):
    """Messages with placeholders such as {{first_name}}, in Markdown or as an Adaptive Card."""

    queryset = MessageTemplate.objects.all()
    serializer_class = MessageTemplateSerializer
    conflict_actions = ProtectedModelViewSet.conflict_actions | {"approve_direct", "update", "partial_update"}

    def update(self, request, *args, **kwargs):
        # A campaign still sending it (running or paused) would send the new, unapproved text.
        template_edit_require(template_id=self.get_object().pk)  # a conflict is reported before any field error
        return super().update(request, *args, **kwargs)

    def perform_update(self, serializer):
        with transaction.atomic():
            template_edit_require(template_id=serializer.instance.pk)  # launched since the check above?
            serializer.save()

    @extend_schema(
        request=None,
        responses={
            200: MessageTemplateSerializer,
            403: OpenApiResponse(ErrorSerializer, description="The key lacks the campaigns:approve scope."),
        },
        description="Approves the template for direct messages (messages/, test-send/) to any number of people, "
        "for transactional notices such as “your payslip is ready”: its direct sends no longer count toward "
        "the reach that needs approval. Editing the template withdraws it. Needs campaigns:approve.",
    )
    @action(detail=True, methods=["post"], url_path="approve-direct", scope=ApiKey.Scope.CAMPAIGNS_APPROVE)
    def approve_direct(self, request, pk=None):
        template = template_approve_direct(template_id=self.get_object().pk, actor=Actor(api_key=request.auth))
        return Response(self.get_serializer(template).data)

    @extend_schema(
        parameters=[OpenApiParameter("recipient", str, required=True, description="The person's external id.")],
        responses=TemplatePreviewSerializer,
        description="The message exactly as this person would receive it (the Bot Framework activity).",
    )
    @action(detail=True, methods=["get"])
    def preview(self, request, pk=None):
        template = self.get_object()
        external_id = request.query_params.get("recipient", "")
        if not external_id:
            raise ValidationError({"recipient": ["Give the external id of the person to preview for."]})
        person = Recipient.objects.filter(external_id=external_id).first()
        if person is None:
            raise ValidationError({"recipient": [f"No recipient with external id {external_id!r}."]})
        compiled = compile_message(kind=template.kind, text=template.text, card=template.card)
        return Response({"recipient": external_id, "activity": json.loads(compiled.render(person))})


class CategoryViewSet(ProtectedModelViewSet):
    """What campaigns are about, for opt-outs. Nobody can opt out of a mandatory category."""

    queryset = Category.objects.all()
    serializer_class = CategorySerializer
    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"


class AudienceViewSet(ProtectedModelViewSet):
    """Who a campaign goes to: everyone active, a static list, attribute rules, an Entra ID group or a team."""

    serializer_class = AudienceSerializer

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "without_counts": self.action == "list"}

    def get_queryset(self):
        if self.action == "count":
            return Audience.objects.all()
        people = Recipient.objects.only("id", "external_id").order_by("id")
        return Audience.objects.prefetch_related(
            Prefetch("members", queryset=people), Prefetch("excluded", queryset=people)
        )

    @extend_schema(responses=AudienceCountSerializer)
    @action(detail=True, methods=["get"])
    def count(self, request, pk=None):
        return Response({"count": audience_count(audience=self.get_object())})

    @extend_schema(
        parameters=[OpenApiParameter("search", str, required=True, description="A word the group's name starts with.")],
        responses={
            200: GroupSerializer(many=True),
            400: OpenApiResponse(ErrorSerializer, description="`invalid`: `search` is missing or empty."),
            502: OpenApiResponse(ErrorSerializer, description="`graph_refused`: Microsoft Graph refused or could not be "
                                 "reached; an administrator finds why in the admin's group search or Crier's log."),
        },
    )
    @action(detail=False, methods=["get"], pagination_class=None,
            throttle_classes=[ApiKeyRateThrottle, GroupSearchThrottle])
    def groups(self, request):
        """Entra ID groups whose name has a word starting with ``search`` (at most 20), to choose an
        ``entra_group`` audience's ``source_id``. At most 60 searches a minute per key."""
        term = request.query_params.get("search", "").strip()
        if not term:
            raise ApplicationError("Give a word of the group's name.", fields={"search": ["This parameter is required."]})
        try:
            found = groups_search(term[:100])
        except ListingError as error:
            logger.warning("group search refused: %s", error)
            raise ApplicationError(
                "Microsoft Graph refused the search, or could not be reached: an administrator can see why in the "
                "admin's group search (it needs the application permission GroupMember.Read.All).",
                code="graph_refused", status=502,
            ) from error
        return Response(GroupSerializer(found, many=True).data)

    @extend_schema(responses=TeamSerializer(many=True))
    @action(detail=False, methods=["get"], pagination_class=None)
    def teams(self, request):
        """The teams Crier's bot is in (a team appears once the app is added to it in Teams), to choose a
        ``team`` audience's ``source_id``."""
        return Response(TeamSerializer(TeamsTeam.objects.filter(installed=True), many=True).data)
