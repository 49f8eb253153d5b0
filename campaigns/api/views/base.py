"""What every endpoint of the API shares: API-key scopes (``write_scope`` for a viewset's own writes,
``scope`` for each other action: ``permissions``), ``Idempotency-Key`` on POST (``idempotency``), and
deleting what campaigns still use as a conflict."""

from __future__ import annotations

from django.db.models import ProtectedError
from rest_framework import mixins, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from campaigns.models import ApiKey, IdempotencyRecord
from core.errors import ApplicationError

from .. import idempotency
from ..permissions import HasScope
from ..schema import CrierAutoSchema


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


class ProtectedModelViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    ProtectedDestroyMixin,
    ApiViewSet,
):
    """List, read, create, update, and delete unless campaigns still use it."""


