"""People: reading them, the HR system's bulk upload and a full sync."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from campaigns.api.parsers import MAX_BULK_BYTES, BulkJSONParser
from campaigns.models import ApiKey, Recipient, RecipientSync
from campaigns.services import recipient_sync_finish, recipients_bulk_upsert

from ..filters import RecipientFilter
from ..serializers.common import ErrorSerializer
from ..serializers.recipients import (
    recipient_rows_validate,
    recipient_rows_refused_ids,
    RecipientBulkSerializer,
    RecipientSyncSerializer,
    RecipientSyncFinishSerializer,
    RecipientSyncResultSerializer,
    RecipientBulkResultSerializer,
    RecipientSerializer,
    MAX_BULK_ROWS,
)
from .base import ApiViewSet


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
        ignored = [{**item, "index": indexes[item["index"]]} for item in result.ignored]
        return Response({"created": result.created, "updated": result.updated, "deactivated": result.deactivated,
                         "errors": errors, "ignored": ignored})


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
