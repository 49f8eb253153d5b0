"""Query-string filters for the list endpoints."""

from __future__ import annotations

from django_filters import rest_framework as filters

from campaigns.models import Campaign, OptOut, Recipient
from delivery.models import Delivery


class RecipientFilter(filters.FilterSet):
    country = filters.CharFilter(method="filter_country", help_text="Two-letter code, any case.")

    class Meta:
        model = Recipient
        fields = ["is_active", "department", "country", "external_id", "aad_object_id"]

    def filter_country(self, queryset, name, value):
        return queryset.filter(country=value.upper())


class CampaignFilter(filters.FilterSet):
    category = filters.CharFilter(field_name="category__slug", help_text="A category slug.")

    class Meta:
        model = Campaign
        fields = ["status", "kind", "category"]


class DeliveryFilter(filters.FilterSet):
    finished_after = filters.IsoDateTimeFilter(
        field_name="finished_at", lookup_expr="gte", help_text="Ended at or after this time (ISO 8601)."
    )
    finished_before = filters.IsoDateTimeFilter(
        field_name="finished_at", lookup_expr="lt", help_text="Ended before this time (ISO 8601)."
    )

    class Meta:
        model = Delivery
        fields = ["status", "error_code", "ambiguous", "finished_after", "finished_before"]


class OptOutFilter(filters.FilterSet):
    recipient = filters.CharFilter(field_name="recipient__external_id", help_text="The person's external id.")
    category = filters.CharFilter(field_name="category__slug", help_text="A category slug.")
    everything = filters.BooleanFilter(
        field_name="category", lookup_expr="isnull", help_text="true: only opt-outs of every category."
    )

    class Meta:
        model = OptOut
        fields = ["recipient", "category", "source", "everything"]
