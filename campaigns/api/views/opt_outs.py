"""Opt-outs: recording, listing and removing who asked not to receive which messages."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.response import Response

from campaigns.models import ApiKey, OptOut
from campaigns.audit import Actor
from campaigns.services import opt_out_delete, opt_out_record

from ..filters import OptOutFilter
from ..serializers.opt_outs import OptOutSerializer
from .base import ApiViewSet


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
