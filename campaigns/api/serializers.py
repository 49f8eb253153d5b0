"""The API's serializers: thin shapes over the models. Validation that the models already know
(template and rule checks) goes through the models' ``clean()``; writes with logic go through
``campaigns.services`` and ``delivery.services`` from the views."""

from __future__ import annotations

import functools
import re
import uuid
import zoneinfo
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator
from django.db import transaction
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.settings import api_settings

from campaigns.attributes import WHOLE, attributes_problems, text_problem
from campaigns.models import Audience, Campaign, Category, MessageTemplate, OptOut, Recipient, RecipientSync
from campaigns.selectors import audience_count
from delivery.progress import read as campaign_progress
from delivery.models import Delivery

MAX_BULK_ROWS = 10_000


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


# --- Errors ----------------------------------------------------------------------------------

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


# --- Recipients ------------------------------------------------------------------------------

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


# --- Templates and categories ----------------------------------------------------------------

@extend_schema_field({"type": "object", "nullable": True, "description": "Adaptive Card JSON."})
class CardField(serializers.JSONField):
    pass


class MessageTemplateSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """A message with placeholders such as {{first_name}}; checked as it would be sent."""

    card = CardField(required=False, allow_null=True)

    class Meta:
        model = MessageTemplate
        fields = ["id", "name", "kind", "text", "card", "direct_approved_at", "created_at", "updated_at"]
        read_only_fields = ["id", "direct_approved_at", "created_at", "updated_at"]

    def validate(self, attrs):
        current = self.instance
        candidate = MessageTemplate(
            kind=attrs.get("kind", current.kind if current else MessageTemplate.Kind.MARKDOWN),
            text=attrs.get("text", current.text if current else ""),
            card=attrs.get("card", current.card if current else None),
        )
        try:
            candidate.clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(django_errors(exc)) from exc
        if "card" in attrs:
            attrs["design"] = None  # a card written through the API is no longer what the admin's card editor made
        return attrs


class CategorySerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """What a campaign is about; people opt out per category."""

    class Meta:
        model = Category
        fields = ["slug", "name", "description", "mandatory"]


# --- Audiences -------------------------------------------------------------------------------

@extend_schema_field(
    {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "field": {"type": "string", "description": "A recipient field or attributes.<key>."},
                "op": {"type": "string", "enum": ["eq", "neq", "in", "not_in", "gte", "lte"]},
                "value": {"description": "A string, or a list of strings for in and not_in."},
            },
            "required": ["field", "op", "value"],
            "additionalProperties": False,
        },
        "description": 'All must hold, e.g. [{"field": "department", "op": "eq", "value": "Sales"}].',
    }
)
class RulesField(serializers.JSONField):
    """The shape is checked here (a list of objects); what the rules say, by ``validate_rules``."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, list) or not all(isinstance(rule, dict) for rule in value):
            raise serializers.ValidationError("A list of {field, op, value} objects.")
        return value


class ExternalIdsField(serializers.ListField):
    """People by their HR ids, both ways; the serializer resolves them to rows in one query."""

    child = serializers.CharField(max_length=255)

    def to_representation(self, manager):
        return [person.external_id for person in manager.all()]


class AudienceSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """Who a campaign goes to. People are named by their external ids, as the HR system knows them."""

    rules = RulesField(required=False)
    members = ExternalIdsField(
        required=False,
        help_text="External ids of the people always selected: a static audience's people, or people added to "
        "those a rules audience's rules select.",
    )
    excluded = ExternalIdsField(required=False, help_text="External ids of people never selected, whatever the kind.")
    count = serializers.SerializerMethodField(
        help_text="How many active people it selects now. Given for a single audience; null in lists."
    )

    class Meta:
        model = Audience
        fields = ["id", "name", "kind", "rules", "members", "excluded", "count", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_count(self, audience: Audience) -> int | None:
        if self.context.get("without_counts"):
            return None  # a count per row would be a COUNT over the recipients for each audience listed
        return audience_count(audience=audience)

    def validate(self, attrs):
        current = self.instance
        candidate = Audience(
            kind=attrs.get("kind", current.kind if current else Audience.Kind.EVERYONE),
            rules=attrs.get("rules", current.rules if current else []),
        )
        try:
            candidate.clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(django_errors(exc)) from exc
        wanted = {*attrs.get("members", []), *attrs.get("excluded", [])}
        ids = dict(Recipient.objects.filter(external_id__in=wanted).values_list("external_id", "id")) if wanted else {}
        errors = {}
        for name in ("members", "excluded"):
            if name not in attrs:
                continue
            unknown = sorted({e for e in attrs[name] if e not in ids})
            if unknown:
                shown = ", ".join(unknown[:20]) + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")
                errors[name] = [f"Unknown external ids: {shown}."]
            attrs[name] = [ids[e] for e in attrs[name] if e in ids]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def create(self, validated_data):
        return self._save(Audience(), validated_data)

    def update(self, instance, validated_data):
        return self._save(instance, validated_data)

    @staticmethod
    def _save(audience: Audience, data: dict[str, Any]) -> Audience:
        members, excluded = data.pop("members", None), data.pop("excluded", None)
        with transaction.atomic():
            for name, value in data.items():
                setattr(audience, name, value)
            audience.save()
            if members is not None:
                audience.members.set(members)
            if excluded is not None:
                audience.excluded.set(excluded)
        return audience


class AudienceCountSerializer(serializers.Serializer):
    count = serializers.IntegerField()


# --- Campaigns and deliveries ----------------------------------------------------------------

class CampaignCountsSerializer(serializers.Serializer):
    """Progress, from counters kept as deliveries move (cheap to read during a million-person send)."""

    total = serializers.IntegerField(help_text="People with a delivery row so far.")
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    remaining = serializers.IntegerField(help_text="Pending, being sent or waiting to retry.")
    ambiguous = serializers.IntegerField(
        help_text="Sends retried after a worker stopped while Teams was answering (may have arrived twice)."
    )
    rate_per_second = serializers.FloatField(help_text="Messages sent per second over the last 10 seconds.")
    eta_seconds = serializers.IntegerField(allow_null=True, help_text="Estimated seconds left at the current rate.")


class CampaignSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """A message to an audience. status and the dates change through the launch, schedule, pause,
    resume and cancel actions."""

    category = serializers.SlugRelatedField(slug_field="slug", queryset=Category.objects.all())
    counts = serializers.SerializerMethodField(
        help_text="Deliveries per state. Given for a single campaign; null in lists."
    )

    class Meta:
        model = Campaign
        fields = [
            "id", "public_id", "name", "kind", "template", "audience", "category", "status", "status_reason",
            "send_at", "approved_at", "launched_at", "materialised_at", "completed_at", "cancelled_at", "counts",
        ]
        read_only_fields = [
            "id", "public_id", "status", "status_reason", "send_at", "approved_at", "launched_at", "materialised_at",
            "completed_at", "cancelled_at",
        ]
        extra_kwargs = {"send_at": {"help_text": "When a scheduled campaign starts; set it with the schedule action."}}

    @extend_schema_field(CampaignCountsSerializer(allow_null=True))
    def get_counts(self, campaign: Campaign) -> dict[str, int] | None:
        if not self.context.get("with_counts"):
            return None
        return campaign_progress(campaign)

    def validate_kind(self, value: str) -> str:
        if self.instance is not None and value != self.instance.kind:
            raise serializers.ValidationError("The kind is chosen when the campaign is created.")
        return value


class DirectMessageSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """A message to named people, now."""

    template = serializers.PrimaryKeyRelatedField(queryset=MessageTemplate.objects.all())
    category = serializers.SlugRelatedField(slug_field="slug", queryset=Category.objects.all())
    recipients = serializers.ListField(
        child=serializers.CharField(max_length=255), min_length=1, max_length=1000,
        help_text="External ids of the people, up to 1,000.",
    )
    name = serializers.CharField(max_length=200, required=False, help_text="For the admin and the results.")


MAX_TEST_RECIPIENTS = 5  # a test is for the few people who check a message, not a way round approval


class TestSendSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    recipients = serializers.ListField(
        child=serializers.CharField(max_length=255), min_length=1, max_length=MAX_TEST_RECIPIENTS,
        help_text=f"External ids of the people who check the message, up to {MAX_TEST_RECIPIENTS}.",
        error_messages={"max_length": f"A test goes to at most {MAX_TEST_RECIPIENTS} people a call."},
    )


class TemplatePreviewSerializer(serializers.Serializer):
    recipient = serializers.CharField(help_text="The external id it was rendered for.")
    activity = serializers.DictField(help_text="The Bot Framework message activity Teams would receive.")


class CampaignPauseSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)


class CampaignScheduleSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """When a scheduled campaign starts."""

    send_at = serializers.DateTimeField(help_text="When to start, in the future (ISO 8601).")


class DeliverySerializer(serializers.ModelSerializer):
    """What happened to one person in a campaign."""

    recipient = serializers.CharField(source="recipient.external_id", read_only=True, help_text="External id.")

    class Meta:
        model = Delivery
        fields = [
            "id", "recipient", "status", "skip_reason", "error_code", "error_message", "last_status_code",
            "attempts", "activity_id", "created_at", "finished_at",
        ]
        read_only_fields = fields


# --- Opt-outs --------------------------------------------------------------------------------

class OptOutSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """A person who asked not to receive a category, or anything (category null)."""

    recipient = serializers.SlugRelatedField(
        slug_field="external_id", queryset=Recipient.objects.all(), help_text="The person's external id."
    )
    category = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Category.objects.all(),
        required=False,
        allow_null=True,
        help_text="A category slug, or null for every non-mandatory category.",
    )

    class Meta:
        model = OptOut
        fields = ["id", "recipient", "category", "source", "note", "created_at"]
        read_only_fields = ["id", "source", "created_at"]
        validators = []  # recording an existing opt-out again is not an error: the view answers 200

    def validate_category(self, category: Category | None) -> Category | None:
        if category is not None and category.mandatory:
            raise serializers.ValidationError(f"{category.slug} is mandatory: nobody can opt out of it.")
        return category
