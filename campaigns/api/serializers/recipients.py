"""People: one row of the HR system's bulk upload, its strict fields and its answer, and a full sync."""

from __future__ import annotations

import functools
import re
import uuid
import zoneinfo
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from campaigns.attributes import WHOLE, attributes_problems, text_problem
from campaigns.models import Recipient, RecipientSync

from .common import RejectUnknownFieldsMixin

MAX_BULK_ROWS = 10_000


class OptionalTextField(serializers.CharField):
    """Text the HR system may leave out, send empty or send as null (all stored empty)."""

    def __init__(self, *, check=None, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)
        self.check = check

    def run_validation(self, data=serializers.empty):
        if data is None:
            return ""
        if type(data) is not str:
            value = super().run_validation(data)
        else:
            # The common case, checked inline: DRF's validator chain costs more than the rest of a
            # 10,000-row upload together. Same rules: trimmed, max_length, no NUL, no surrogates.
            value = data.strip()
            if self.max_length is not None and len(value) > self.max_length:
                self.fail("max_length", max_length=self.max_length)
            if (problem := text_problem(value)) is not None:
                raise serializers.ValidationError(problem)
        if value and self.check is not None:
            try:
                self.check(value)
            except DjangoValidationError as exc:
                raise serializers.ValidationError(exc.messages) from exc
        return value


class StrictUUIDField(serializers.UUIDField):
    """A UUID as the schema says: a string (DRF would also take an integer and make a UUID of it)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class StrictDateField(serializers.DateField):
    """A date as the schema's ``format: date`` says: a YYYY-MM-DD string, nothing else that Python's
    ``fromisoformat`` reads (``2021-W01-1``, ``20240501``)."""

    def to_internal_value(self, value):
        if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
            self.fail("invalid", format="YYYY-MM-DD")
        return super().to_internal_value(value)


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {
            "oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}],
            "nullable": True,
        },
        "description": "Free attributes for rules and placeholders: a flat object of strings, numbers and booleans. "
        "A row's `attributes` replaces the person's attributes as a whole, not merged: a key it leaves out "
        "is removed, and null clears them all. Send every attribute each time.",
    }
)
class AttributesField(serializers.JSONField):
    pass


_COUNTRY = re.compile(r"^[A-Za-z]{2}$")


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class RecipientRowSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """One person, by external_id. A row changes only the fields it names: a field left out stays
    as it is (a new person gets it empty), and null clears it."""

    # A plain serializer (no database access), so thousands of rows validate in a fraction of a
    # second; uniqueness is checked across the batch by the view and against the database by
    # ``recipients_bulk_upsert``.

    external_id = serializers.CharField(max_length=255, help_text="The HR system's id.")
    email = OptionalTextField(max_length=254, check=EmailValidator())
    upn = OptionalTextField(max_length=255)
    aad_object_id = StrictUUIDField(required=False, allow_null=True, help_text="Entra object id.")
    tenant_id = OptionalTextField(max_length=64)
    first_name = OptionalTextField(max_length=150)
    last_name = OptionalTextField(max_length=150)
    display_name = OptionalTextField(max_length=300)
    department = OptionalTextField(max_length=200)
    job_title = OptionalTextField(max_length=200)
    location = OptionalTextField(max_length=200)
    country = OptionalTextField(max_length=2, help_text="ISO 3166-1 alpha-2, any case.")
    time_zone = OptionalTextField(max_length=64, help_text="An IANA zone such as Europe/Paris.")
    locale = OptionalTextField(max_length=35)
    start_date = StrictDateField(required=False, allow_null=True, help_text="YYYY-MM-DD.")
    is_active = serializers.BooleanField(required=False, help_text="false deactivates a leaver.")
    attributes = AttributesField(required=False, allow_null=True)

    # DRF walks every field of every row; one the row leaves out is only skipped (none has a
    # default), and that walk cost more than the checks themselves. Only the row's own fields, and
    # the required ones, are visited.
    _present: frozenset[str] = frozenset()

    def to_internal_value(self, data):
        self._present = frozenset(data) if isinstance(data, Mapping) else frozenset()
        return super().to_internal_value(data)

    @functools.cached_property
    def _all_writable(self) -> tuple[serializers.Field, ...]:
        return tuple(super()._writable_fields)

    @property
    def _writable_fields(self):
        present = self._present
        return [
            field for field in self._all_writable
            if field.field_name in present or field.required or field.default is not serializers.empty
        ]

    def validate_country(self, value: str) -> str:
        if value and not _COUNTRY.match(value):
            raise serializers.ValidationError("Use a two-letter ISO 3166-1 country code, such as FR.")
        return value.upper()

    def validate_time_zone(self, value: str) -> str:
        if value and value not in _time_zones():
            raise serializers.ValidationError(f"Unknown time zone {value!r}; use an IANA name such as Europe/Paris.")
        return value

    def validate_attributes(self, value: Any) -> dict[str, Any]:
        """Bounded as ``campaigns.attributes`` says; a problem with one attribute is reported under its
        key (``attributes.bio``), one with the whole under ``attributes``."""
        if value is None:
            return {}
        if problems := attributes_problems(value):
            if WHOLE in problems:
                raise serializers.ValidationError(problems[WHOLE])
            raise serializers.ValidationError({key: [problem] for key, problem in problems.items()})
        return value


def _flat_errors(detail: Mapping[str, Any], prefix: str = "") -> list[tuple[str, list[Any]]]:
    """A row's errors, each with its dotted field name (``attributes.bio``)."""
    flat: list[tuple[str, list[Any]]] = []
    for name, messages in detail.items():
        if isinstance(messages, Mapping):
            flat.extend(_flat_errors(messages, f"{prefix}{name}."))
        else:
            flat.append((f"{prefix}{name}", messages if isinstance(messages, list) else [messages]))
    return flat


def recipient_rows_validate(rows: list[Any]) -> tuple[list[dict[str, Any]], list[int], list[dict[str, Any]]]:
    """Validates every row on its own. Returns the valid rows, the index each came from, and
    ``{"index", "field", "message"}`` for every problem. A row repeating an earlier row's
    external_id or Entra object id is refused: the earlier row is the one considered."""
    child = RecipientRowSerializer()
    valid: list[dict[str, Any]] = []
    indexes: list[int] = []
    errors: list[dict[str, Any]] = []
    seen_external: dict[str, int] = {}
    seen_aad: dict[uuid.UUID, int] = {}
    for index, row in enumerate(rows):
        row_errors: list[dict[str, Any]] = []
        try:
            data = child.run_validation(row)
        except serializers.ValidationError as exc:
            data = None
            detail = exc.detail if isinstance(exc.detail, dict) else {api_settings.NON_FIELD_ERRORS_KEY: exc.detail}
            for name, messages in _flat_errors(detail):
                for message in messages:
                    row_errors.append({"index": index, "field": name, "message": str(message)})
        source = data if data is not None else (row if isinstance(row, dict) else {})
        external_id = source.get("external_id")
        if isinstance(external_id, str) and external_id.strip():
            external_id = external_id.strip()
            if external_id in seen_external:
                row_errors.append(
                    {"index": index, "field": "external_id", "message": f"Repeats row {seen_external[external_id]}."}
                )
            else:
                seen_external[external_id] = index
        aad = source.get("aad_object_id")
        if aad and not isinstance(aad, uuid.UUID):
            try:
                aad = uuid.UUID(str(aad))
            except ValueError:
                aad = None
        if aad:
            if aad in seen_aad:
                row_errors.append(
                    {"index": index, "field": "aad_object_id", "message": f"Repeats row {seen_aad[aad]}."}
                )
            else:
                seen_aad[aad] = index
        if row_errors:
            errors.extend(row_errors)
        else:
            valid.append(data)
            indexes.append(index)
    return valid, indexes, errors


def recipient_rows_refused_ids(rows: list[Any], errors: list[dict[str, Any]]) -> list[str]:
    """The external ids of the rows refused in ``errors`` that name one validly: a full sync still
    lists those people, so that a typo in one field does not deactivate them."""
    field = RecipientRowSerializer().fields["external_id"]
    ids: set[str] = set()
    for index in {error["index"] for error in errors}:
        row = rows[index]
        if isinstance(row, Mapping) and isinstance(row.get("external_id"), str):
            try:
                ids.add(field.run_validation(row["external_id"]))
            except serializers.ValidationError:
                continue
    return sorted(ids)


class RecipientBulkSerializer(serializers.Serializer):
    """Up to 10,000 people. Each row is checked on its own: a bad row is reported and the others
    are saved."""

    # Documents the body: the view validates row by row (``recipient_rows_validate``).

    recipients = RecipientRowSerializer(many=True, max_length=MAX_BULK_ROWS)
    sync = serializers.IntegerField(required=False, help_text="The id of the full sync these people belong to.")


class RecipientSyncSerializer(serializers.ModelSerializer):
    class Meta:
        model = RecipientSync
        fields = ["id", "started_at", "finished_at", "deactivated"]
        read_only_fields = fields


class RecipientSyncFinishSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    dry_run = serializers.BooleanField(default=True, help_text="Only count whom it would deactivate (the default).")


class RecipientSyncResultSerializer(serializers.Serializer):
    listed = serializers.IntegerField(help_text="People the sync listed.")
    deactivated = serializers.IntegerField(help_text="People deactivated (with dry_run: who would be).")
    dry_run = serializers.BooleanField()


class RecipientBulkErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The row's position in the request, from 0.")
    field = serializers.CharField(help_text="The field at fault, or non_field_errors for the whole row.")
    message = serializers.CharField()


class RecipientBulkResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    deactivated = serializers.IntegerField(help_text="Updated people who were active and are not any more.")
    errors = RecipientBulkErrorSerializer(many=True, help_text="Rows not saved, and why.")
    ignored = RecipientBulkErrorSerializer(
        many=True, help_text="Fields of saved rows left as they were, because Entra ID owns them (ENTRA_SYNC_FIELDS)."
    )


class RecipientSerializer(serializers.ModelSerializer):
    """A person as the HR system sent them."""

    attributes = AttributesField(read_only=True)

    class Meta:
        model = Recipient
        fields = [
            "id", "external_id", "email", "upn", "aad_object_id", "tenant_id", "first_name", "last_name",
            "display_name", "department", "job_title", "location", "country", "time_zone", "locale",
            "start_date", "is_active", "attributes", "created_at", "updated_at",
        ]
        read_only_fields = fields
