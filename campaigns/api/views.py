"""The REST API's views: thin interfaces over the selectors and services. Every answer that is
not a success has the one error shape of ``campaigns.api.errors``."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Prefetch, ProtectedError
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.utils import json

from core.errors import ApplicationError
from campaigns.rendering import compile_message
from campaigns.api.parsers import MAX_BULK_BYTES, BulkJSONParser
from delivery.exports import deliveries_csv
from campaigns.models import (
    ApiKey,
    Audience,
    Campaign,
    Category,
    IdempotencyRecord,
    MessageTemplate,
    OptOut,
    Recipient,
    RecipientSync,
)
from campaigns.selectors import audience_count
from campaigns.approvals import template_approve_direct, template_edit_require
from campaigns.audit import Actor
from campaigns.services import (
    campaign_require_editable,
    campaign_update,
    opt_out_delete,
    opt_out_record,
    recipient_sync_finish,
    recipients_bulk_upsert,
)
from delivery.models import Delivery
from delivery.services import (
    campaign_cancel,
    campaign_launch,
    campaign_pause,
    campaign_resume,
    campaign_schedule,
    campaign_send_direct,
)

from . import idempotency
from .filters import CampaignFilter, DeliveryFilter, OptOutFilter, RecipientFilter
from .permissions import HasScope
from .schema import CrierAutoSchema
from .serializers import (
    MAX_BULK_ROWS,
    AudienceCountSerializer,
    AudienceSerializer,
    CampaignPauseSerializer,
    CampaignScheduleSerializer,
    CampaignSerializer,
    DirectMessageSerializer,
    CategorySerializer,
    DeliverySerializer,
    ErrorSerializer,
    MessageTemplateSerializer,
    OptOutSerializer,
    RecipientBulkSerializer,
    RecipientBulkResultSerializer,
    RecipientSerializer,
    RecipientSyncFinishSerializer,
    RecipientSyncResultSerializer,
    RecipientSyncSerializer,
    TemplatePreviewSerializer,
    TestSendSerializer,
    recipient_rows_refused_ids,
    recipient_rows_validate,
)




class ApiViewSet(viewsets.GenericViewSet):
    """The base of every endpoint: scopes (``write_scope`` for its own writes, ``scope`` for each other
    action, see ``permissions``) and ``Idempotency-Key`` on POST (see ``idempotency``)."""

    schema = CrierAutoSchema()
    permission_classes = [IsAuthenticated, HasScope]
    conflict_actions: frozenset[str] = frozenset()
    write_scope: str = ApiKey.Scope.CAMPAIGNS_WRITE
    scope: str | None = None  # an action's own, from @action(..., scope=...)
    _idempotency: IdempotencyRecord | None = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication, scopes
        key = request.headers.get(idempotency.HEADER)
        if request.method == "POST" and key is not None:
            fingerprint = idempotency.request_fingerprint(method=request.method, path=request.path, data=request.data)
            self._idempotency = idempotency.idempotency_begin(api_key=request.auth, key=key, fingerprint=fingerprint)

    def handle_exception(self, exc):
        if isinstance(exc, idempotency.Replay):
            return Response(exc.body, status=exc.status, headers={"Idempotent-Replayed": "true"})
        try:
            return super().handle_exception(exc)
        except Exception:
            # An unexpected error (a 500): the key is released, so the client can simply retry.
            if self._idempotency is not None:
                self._idempotency.delete()
                self._idempotency = None
            raise

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if self._idempotency is not None:
            idempotency.idempotency_finish(record=self._idempotency, status=response.status_code, body=response.data)
            self._idempotency = None
        return response


class ProtectedDestroyMixin(mixins.DestroyModelMixin):
    """Deleting something campaigns still use is a conflict, not a server error."""

    conflict_actions = frozenset({"destroy"})

    def perform_destroy(self, instance):
        try:
            instance.delete()
        except ProtectedError as exc:
            raise ApplicationError(
                f"{instance} is used by campaigns; it cannot be deleted.", code="in_use", status=409
            ) from exc


# --- Recipients ------------------------------------------------------------------------------

class RecipientViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """The people Crier can message, as the HR system sent them."""

    queryset = Recipient.objects.all()
    serializer_class = RecipientSerializer
    filterset_class = RecipientFilter
    write_scope = ApiKey.Scope.RECIPIENTS_WRITE

    @extend_schema(
        request=RecipientBulkSerializer,
        responses={
            200: RecipientBulkResultSerializer,
            413: OpenApiResponse(ErrorSerializer, description=f"The body is over {MAX_BULK_BYTES} bytes."),
        },
        description=(
            f"Creates or updates up to {MAX_BULK_ROWS} people by external_id. A row changes only the fields "
            "it names: a field left out stays as it is (a new person gets it empty) and null clears it; "
            "is_active=false deactivates a leaver. Invalid rows are reported "
            "in `errors` with their index and the valid ones are still saved."
        ),
    )
    @action(detail=False, methods=["post"], parser_classes=[BulkJSONParser], scope=ApiKey.Scope.RECIPIENTS_WRITE)
    def bulk(self, request):
        body = request.data
        if not isinstance(body, dict):
            raise ValidationError('Send a JSON object: {"recipients": [...]}.')
        unknown = sorted(set(body) - {"recipients", "sync"})
        if unknown:
            raise ValidationError({name: ["Unknown field."] for name in unknown})
        sync = None
        if "sync" in body:
            given = body["sync"]
            is_id = isinstance(given, int) and not isinstance(given, bool)
            sync = RecipientSync.objects.filter(pk=given).first() if is_id else None
            if sync is None:
                raise ValidationError({"sync": [f"No sync with id {body['sync']!r}; start one at /api/v1/recipients/syncs/."]})
        rows = body.get("recipients")
        if not isinstance(rows, list):
            raise ValidationError({"recipients": ["A list of people is required."]})
        if len(rows) > MAX_BULK_ROWS:
            raise ValidationError(
                {"recipients": [f"At most {MAX_BULK_ROWS} people per call; this one has {len(rows)}. Split it."]}
            )
        valid, indexes, errors = recipient_rows_validate(rows)
        refused = recipient_rows_refused_ids(rows, errors) if sync is not None else []
        result = recipients_bulk_upsert(rows=valid, sync=sync, also_listed=refused)
        errors.extend({**error, "index": indexes[error["index"]]} for error in result.errors)
        errors.sort(key=lambda error: error["index"])
        return Response(
            {"created": result.created, "updated": result.updated, "deactivated": result.deactivated, "errors": errors}
        )


class RecipientSyncViewSet(mixins.CreateModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """A full sync: start one, send every active employee through recipients/bulk/ with its id
    (in as many calls as it takes), then finish it, first with dry_run to see how many people it
    would deactivate."""

    queryset = RecipientSync.objects.all()
    serializer_class = RecipientSyncSerializer
    write_scope = ApiKey.Scope.RECIPIENTS_WRITE
    conflict_actions = frozenset({"finish"})

    @extend_schema(request=RecipientSyncFinishSerializer, responses=RecipientSyncResultSerializer,
                   description="Deactivates everyone active the sync did not list (with dry_run: only counts them).")
    @action(detail=True, methods=["post"], scope=ApiKey.Scope.RECIPIENTS_WRITE)
    def finish(self, request, pk=None):
        body = RecipientSyncFinishSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = recipient_sync_finish(sync=self.get_object(), dry_run=body.validated_data["dry_run"])
        return Response({"listed": result.listed, "deactivated": result.deactivated, "dry_run": result.dry_run})


# --- Templates, categories, audiences --------------------------------------------------------

class ProtectedModelViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    ProtectedDestroyMixin,
    ApiViewSet,
):
    """List, read, create, update, and delete unless campaigns still use it."""


TEMPLATE_IN_USE = OpenApiResponse(
    ErrorSerializer,
    description="`template_in_use`: a running or paused announcement or direct message sends this template, and "
    "people it has not reached yet would get the new text. Wait until it completes or cancel it (a welcome "
    "campaign's template stays editable).",
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
    """Who a campaign goes to: everyone active, a static list, or attribute rules."""

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


# --- Campaigns -------------------------------------------------------------------------------

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
    conflict_actions = frozenset({"update", "partial_update", "launch", "schedule", "pause", "resume", "cancel"})

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
            external_ids=body.validated_data["recipients"], actor=Actor(api_key=request.auth),
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

    @extend_schema(
        request=None,
        responses=CampaignSerializer,
        description="Stops it for good; whoever was not sent to yet is skipped. Answers once the sends already "
        "on their way to Teams are finished, so nothing is sent after the answer.",
    )
    @action(detail=True, methods=["post"], scope=ApiKey.Scope.CAMPAIGNS_SEND)
    def cancel(self, request, pk=None):
        return self._answer(campaign_cancel(campaign_id=self.get_object().pk, actor=Actor(api_key=request.auth)))


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


# --- Opt-outs --------------------------------------------------------------------------------

class OptOutViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    ApiViewSet,
):
    """People who asked not to receive a category, or anything. Deleting one opts the person back in."""

    write_scope = ApiKey.Scope.OPT_OUTS_WRITE
    queryset = OptOut.objects.select_related("recipient", "category")
    serializer_class = OptOutSerializer
    filterset_class = OptOutFilter

    @extend_schema(
        responses={201: OptOutSerializer, 200: OptOutSerializer},
        description="Records an opt-out (source api). 201 when new; 200 with the existing one when already recorded.",
    )
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        opt_out, created = opt_out_record(
            recipient=data["recipient"],
            category=data.get("category"),
            source=OptOut.Source.API,
            note=data.get("note", ""),
            actor=Actor(api_key=request.auth),
        )
        return Response(
            self.get_serializer(opt_out).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    def perform_destroy(self, instance):
        opt_out_delete(opt_out=instance, actor=Actor(api_key=self.request.auth))
