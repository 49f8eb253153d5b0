"""Query-string filters for the list endpoints."""

from __future__ import annotations

import datetime

from django import forms
from django.core.exceptions import ValidationError
from django_filters import fields as filter_fields
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema_field

from campaigns.models import Campaign, OptOut, Recipient
from delivery.models import Delivery


@extend_schema_field({"type": "string", "enum": ["true", "false"]})
class StrictBooleanFilter(filters.ChoiceFilter):
    """true or false, and nothing else: an unknown value is a 400, not an ignored filter."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, choices=[("true", "true"), ("false", "false")], **kwargs)

    def filter(self, queryset, value):
        if value in ("", None):
            return queryset
        return super().filter(queryset, value == "true")


class UtcIsoDateTimeField(filter_fields.IsoDateTimeField):
    """An ISO 8601 time read as the same moment in UTC: ISO allows offsets up to ±23:59, PostgreSQL
    takes up to ±15:59, so a time is converted before it reaches the query."""

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(datetime.timezone.utc)
        except OverflowError:
            raise ValidationError("This time has no equivalent in UTC between the years 1 and 9999.", code="invalid")


class UtcIsoDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


ID_MOST = 2**31 - 1  # a campaign's id is a PostgreSQL integer


class IdField(forms.IntegerField):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, min_value=1, max_value=ID_MOST, **kwargs)


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": ID_MOST})
class IdFilter(filters.NumberFilter):
    """A campaign's id: a whole number in the range ids have (anything else is a 400, not a database error)."""

    field_class = IdField


class RecipientFilter(filters.FilterSet):
    is_active = StrictBooleanFilter()
    country = filters.CharFilter(method="filter_country", help_text="Two-letter code, any case.")

    class Meta:
        model = Recipient
        fields = ["is_active", "department", "country", "external_id", "aad_object_id"]

    def filter_country(self, queryset, name, value):
        return queryset.filter(country=value.upper())


class CampaignFilter(filters.FilterSet):
    category = filters.CharFilter(field_name="category__slug", help_text="A category slug.")
    follows = IdFilter(field_name="follows_id",
                                   help_text="A campaign's id: only its follow-ups (reminders, and sent again).")

    class Meta:
        model = Campaign
        fields = ["status", "kind", "category", "follows"]


class DeliveryFilter(filters.FilterSet):
    ambiguous = StrictBooleanFilter(help_text="true: only people who may have received the message twice.")
    read = StrictBooleanFilter(field_name="read_at", lookup_expr="isnull", exclude=True,
                               help_text="true: only people Teams reported read it; false: the others.")
    acknowledged = StrictBooleanFilter(field_name="acknowledged_at", lookup_expr="isnull", exclude=True,
                                       help_text="true: only people who acknowledged it as it is now; false: the others.")
    finished_after = UtcIsoDateTimeFilter(
        field_name="finished_at", lookup_expr="gte", help_text="Ended at or after this time (ISO 8601)."
    )
    finished_before = UtcIsoDateTimeFilter(
        field_name="finished_at", lookup_expr="lt", help_text="Ended before this time (ISO 8601)."
    )

    class Meta:
        model = Delivery
        fields = ["status", "error_code", "ambiguous", "read", "acknowledged", "finished_after", "finished_before"]


class OptOutFilter(filters.FilterSet):
    recipient = filters.CharFilter(field_name="recipient__external_id", help_text="The person's external id.")
    category = filters.CharFilter(field_name="category__slug", help_text="A category slug.")
    everything = StrictBooleanFilter(
        field_name="category", lookup_expr="isnull", help_text="true: only opt-outs of every category."
    )

    class Meta:
        model = OptOut
        fields = ["recipient", "category", "source", "everything"]
