"""Deliveries in the admin: read-only, and built for campaigns of a million rows (no full count,
no DISTINCT over the whole table, searches that match exactly)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.paginator import Paginator
from django.db import models
from django.db.models import Q
from django.utils.functional import cached_property
from django.utils.html import format_html

from campaigns.models import Recipient
from core.admin import ReadOnlyAdmin

from . import webhooks
from .models import Delivery, WebhookAttempt, WebhookEndpoint

CAMPAIGN_PARAMETER = "campaign__id__exact"  # what the campaign filter puts in the URL


class ErrorCodeFilter(admin.SimpleListFilter):
    """Teams' error codes are an open set: offered for the campaign being looked at (its failed
    rows, through the (campaign, status) index), never by a DISTINCT over every delivery."""

    title = "error code"
    parameter_name = "error_code"

    def lookups(self, request, model_admin):
        codes: list[str] = []
        campaign_id = request.GET.get(CAMPAIGN_PARAMETER, "")
        if campaign_id.isdigit():
            codes = list(
                Delivery.objects.filter(campaign_id=int(campaign_id), status=Delivery.Status.FAILED)
                .exclude(error_code="")
                .order_by("error_code")
                .values_list("error_code", flat=True)
                .distinct()[:50]
            )
        if self.value() and self.value() not in codes:
            codes.append(self.value())
        return [(code, code) for code in codes]

    def queryset(self, request, queryset):
        return queryset.filter(error_code=self.value()) if self.value() else queryset


class CappedCountPaginator(Paginator):
    """Counts at most ``CAP`` rows: Django's list counts what it shows, and a list of a million rows
    (or of every row) would be counted whole on every page."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list[: self.CAP + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.CAP


class CampaignFilter(admin.RelatedFieldListFilter):
    """A campaign's rows through the primary key's range (delivery.models), not a scan of every row."""

    def queryset(self, request, queryset):
        campaign_id = request.GET.get(CAMPAIGN_PARAMETER, "")
        return queryset.of_campaign(int(campaign_id)) if campaign_id.isdigit() else super().queryset(request, queryset)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    # Five columns whose text wraps (a foreign key's column would not): the list fits a laptop's
    # screen beside the filters. The row's own page has every field.
    list_display = ("person", "campaign_name", "result", "attempts", "finished_at")
    list_filter = ("status", "skip_reason", ErrorCodeFilter, "install", ("campaign", CampaignFilter))
    search_fields = ("recipient__external_id", "recipient__email")
    search_help_text = "A person's exact external id or e-mail address."
    list_select_related = ("campaign", "recipient")
    # A campaign can have a million rows: counted no further than the paginator's cap, never per
    # filter choice, and newest first (the rows still moving are the last campaign's).
    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    ordering = ("-id",)

    @admin.display(description="Person", ordering="recipient_id")
    def person(self, delivery: Delivery) -> str:
        person = delivery.recipient
        return format_html('{}<br><span class="quiet">{}</span>', person, person.external_id)

    @admin.display(description="Campaign", ordering="campaign_id")
    def campaign_name(self, delivery: Delivery) -> str:
        return delivery.campaign.name

    @admin.display(description="Result", ordering="status")
    def result(self, delivery: Delivery) -> str:
        """“Failed: ConversationBlockedByUser (HTTP 403)”, “Skipped: opted out”, “Sent (HTTP 201), installed by
        Crier”; a failed install's code (AppBlockedByPolicy...) is its error, and its page says what to do."""
        reason = delivery.get_skip_reason_display().lower() if delivery.skip_reason else delivery.error_code
        answer = f" (HTTP {delivery.last_status_code})" if delivery.last_status_code else ""
        install = f", {delivery.get_install_display().lower()}" if delivery.install else ""
        return f"{delivery.get_status_display()}{f': {reason}' if reason else ''}{answer}{install}"

    def get_search_results(self, request, queryset, search_term):
        """Exact matches only: the people with that external id or address, then their rows
        through the primary key (one probe per campaign); a contains-search would scan every row."""
        term = search_term.strip()
        if not term:
            return queryset, False
        people = Recipient.objects.filter(Q(external_id=term) | Q(email__iexact=term)).values_list("pk", flat=True)[:20]
        rows = Q(pk__in=[])
        for recipient_id in people:
            rows |= Q(pk__in=Delivery.objects.of_person(recipient_id).values("pk"))
        return queryset.filter(rows), False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Endpoints that receive delivery and opt-out events; their calls are logged below them."""

    list_display = ("name", "url", "active", "failures", "next_attempt_at", "cursor")
    fields = ("name", "url", "events", "secret", "active", "failures", "next_attempt_at", "cursor")
    readonly_fields = ("failures", "next_attempt_at", "cursor")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # "hr.example/hook" means HTTPS

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.base_fields["events"] = forms.MultipleChoiceField(
            choices=WebhookEndpoint.Event.choices, widget=forms.CheckboxSelectMultiple,
            initial=list(WebhookEndpoint.Event.values),
        )
        form.base_fields["secret"].initial = webhooks.new_secret()
        return form

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        webhooks.forget_subscriptions()  # this process sees it at once; workers within seconds


@admin.register(WebhookAttempt)
class WebhookAttemptAdmin(ReadOnlyAdmin):
    """The webhook delivery log: every call, with its answer."""

    list_display = ("created_at", "endpoint", "events", "first_event_id", "last_event_id", "status_code", "ok",
                    "duration_ms", "error")
    list_filter = ("endpoint", "ok")
    list_select_related = ("endpoint",)
    show_full_result_count = False
