"""What every serializer of the API shares: refusing unknown fields, wrong JSON types in words,
Django's validation errors as field errors, and the one error shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers
from rest_framework.settings import api_settings



def django_errors(exc: DjangoValidationError) -> dict[str, list[str]]:
    """A Django ValidationError as DRF field errors, keyed by field."""
    if hasattr(exc, "error_dict"):
        return exc.message_dict
    return {api_settings.NON_FIELD_ERRORS_KEY: exc.messages}


def wrong_json_type(field: serializers.Field, value: Any) -> str | None:
    """DRF turns 0 into "0" and "yes" into True; an API that documents types should refuse them."""
    if value is None:
        return None  # null is the field's own business (allow_null)
    if isinstance(field, (serializers.CharField, serializers.ChoiceField, serializers.DateTimeField)):
        return None if isinstance(value, str) else "Must be a string."
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Must be true or false."
    if isinstance(field, serializers.IntegerField):
        return None if isinstance(value, int) and not isinstance(value, bool) else "Must be a whole number."
    return None


class RejectUnknownFieldsMixin:
    """Refuses a body that names a field the serializer does not have, or one it does not accept
    (read-only), instead of silently ignoring it: a typo should not look like success."""

    def to_internal_value(self, data):
        refused = {}
        if isinstance(data, Mapping):
            for name, value in data.items():
                field = self.fields.get(name)
                if field is None:
                    refused[name] = ["Unknown field."]
                elif field.read_only:
                    refused[name] = ["This field is read-only."]
                elif (problem := wrong_json_type(field, value)) is not None:
                    refused[name] = [problem]
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if refused and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**exc.detail, **refused}) from exc
            raise
        if refused:
            raise serializers.ValidationError(refused)
        return value


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable, e.g. invalid, not_found, invalid_state.")
    message = serializers.CharField(help_text="One sentence for a person.")
    fields = serializers.DictField(
        child=serializers.JSONField(),
        help_text="Messages per field name (a list of strings, nested for nested fields), when the error "
        "is about the request's fields.",
    )


@extend_schema_serializer(many=False)
class ErrorSerializer(serializers.Serializer):
    """Every error answer has this shape."""

    error = ErrorDetailSerializer()
