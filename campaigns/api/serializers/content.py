"""What campaigns are made of: message templates, categories and audiences."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from campaigns.members import latest_listing, listing_look, listing_needs_look
from campaigns.models import Audience, Category, MemberListing, MessageTemplate, Recipient
from campaigns.selectors import audience_count

from .common import django_errors, RejectUnknownFieldsMixin


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


class MemberListingSerializer(serializers.ModelSerializer):
    """The members of a group or team as Crier listed them: who it knows, who not, or why it failed."""

    class Meta:
        model = MemberListing
        fields = ["id", "status", "source_id", "source_name", "started_at", "finished_at", "pages", "listed",
                  "matched", "unknown", "unknown_sample", "error"]
        read_only_fields = fields


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
        help_text="How many active people it selects now (a group or team: as last listed). Given for a single "
        "audience; null in lists."
    )
    listing = serializers.SerializerMethodField(
        help_text="A group or team audience's latest listing of its members (null for other kinds, and in lists)."
    )

    class Meta:
        model = Audience
        fields = ["id", "name", "kind", "source_id", "source_name", "rules", "members", "excluded", "count", "listing",
                  "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {
            "source_id": {"help_text": "entra_group: the group's object id; team: the team's Teams id (19:…@thread.tacv2, "
                                       "one of GET /api/v1/audiences/teams/). Empty for other kinds."},
        }

    @extend_schema_field(MemberListingSerializer(allow_null=True))
    def get_listing(self, audience: Audience) -> dict | None:
        if self.context.get("without_counts") or audience.kind not in Audience.LISTED_KINDS:
            return None
        listing = latest_listing(audience=audience, succeeded=False)
        return MemberListingSerializer(listing).data if listing is not None else None

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_count(self, audience: Audience) -> int | None:
        if self.context.get("without_counts"):
            return None  # a count per row would be a COUNT over the recipients for each audience listed
        return audience_count(audience=audience)

    def validate(self, attrs):
        current = self.instance
        candidate = Audience(
            pk=current.pk if current else None,
            kind=attrs.get("kind", current.kind if current else Audience.Kind.EVERYONE),
            rules=attrs.get("rules", current.rules if current else []),
            source_id=attrs.get("source_id", current.source_id if current else ""),
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
            moved = audience.pk is None or bool({"kind", "source_id"} & set(data))
            audience.save()
            if members is not None:
                audience.members.set(members)
            if excluded is not None:
                audience.excluded.set(excluded)
            if audience.kind in Audience.LISTED_KINDS and (moved or listing_needs_look(audience=audience)):
                listing_look(audience=audience)  # its members are listed by a task, for the count
        return audience


class AudienceCountSerializer(serializers.Serializer):
    count = serializers.IntegerField()


class GroupSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The group's object id: an audience's source_id.")
    name = serializers.CharField()
    description = serializers.CharField()
    dynamic = serializers.BooleanField(help_text="Its members follow a rule (a dynamic group).")


class TeamSerializer(serializers.Serializer):
    id = serializers.CharField(source="team_id", help_text="The team's Teams id: an audience's source_id.")
    name = serializers.CharField()
    installed_at = serializers.DateTimeField(allow_null=True, help_text="When Crier's bot was added to it.")
