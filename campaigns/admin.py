"""The admin, as the comms staff who run Crier use it: a thin interface over the services and
selectors. State changes go through ``delivery.services``; an ``ApplicationError`` becomes an admin
error message, never a server error."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import Count, OuterRef, Q, Subquery
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join

from bots.models import TeamsAddress
from delivery import progress
from delivery.models import Delivery
from delivery.services import campaign_cancel, campaign_launch, campaign_pause, campaign_resume, campaign_schedule

from .api.auth import api_key_create
from .errors import ApplicationError
from .models import ApiKey, Audience, Campaign, Category, MessageTemplate, OptOut, Recipient
from .rendering import compile_message
from .rules import OPERATORS, RULE_FIELDS
from .selectors import audience_count, campaign_counts
from .services import opt_out_record


class PrettyJSONField(forms.JSONField):
    """JSON shown indented, so a person can edit a card or a rule list in the textarea."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


JSON_AS_TEXT = {
    models.JSONField: {"form_class": PrettyJSONField, "widget": forms.Textarea(attrs={"rows": 12, "cols": 80})}
}


def _when(moment) -> str:
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT") if moment else "—"


# --- People ----------------------------------------------------------------------------------

class TeamsStateFilter(admin.SimpleListFilter):
    title = "Teams"
    parameter_name = "teams"
    NO_ADDRESS = "none"

    def lookups(self, request, model_admin):
        return [(self.NO_ADDRESS, "No Teams address yet"), *TeamsAddress.State.choices]

    def queryset(self, request, queryset):
        if self.value() == self.NO_ADDRESS:
            return queryset.filter(teams_state__isnull=True)
        return queryset.filter(teams_state=self.value()) if self.value() else queryset


class RecipientForm(forms.ModelForm):
    def clean_attributes(self):
        return self.cleaned_data["attributes"] or {}  # an emptied textarea means no attributes


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):
    form = RecipientForm
    formfield_overrides = JSON_AS_TEXT
    list_display = ("__str__", "external_id", "email", "department", "country", "is_active", "teams")
    list_filter = ("is_active", TeamsStateFilter, "department", "country")
    search_fields = ("display_name", "first_name", "last_name", "email", "external_id", "department")
    readonly_fields = ("teams_address", "opt_outs", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("external_id", "first_name", "last_name", "display_name", "email", "upn", "is_active")}),
        ("Organisation", {"fields": (
            "department", "job_title", "location", "country", "time_zone", "locale", "start_date",
        )}),
        ("Teams", {"fields": ("aad_object_id", "tenant_id", "teams_address")}),
        ("Opt-outs", {"fields": ("opt_outs",)}),
        ("Other attributes", {"fields": ("attributes",)}),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    def get_queryset(self, request):
        state = TeamsAddress.objects.filter(aad_object_id=OuterRef("aad_object_id")).values("state")[:1]
        return super().get_queryset(request).annotate(teams_state=Subquery(state))

    @admin.display(description="Teams", ordering="teams_state")
    def teams(self, recipient: Recipient) -> str:
        state = getattr(recipient, "teams_state", None)
        return TeamsAddress.State(state).label if state else "No address yet"

    @admin.display(description="Teams address")
    def teams_address(self, recipient: Recipient) -> str:
        if recipient.aad_object_id is None:
            return "No Entra object id: Teams cannot reach this person."
        address = TeamsAddress.objects.filter(aad_object_id=recipient.aad_object_id).first()
        if address is None:
            return "Teams has not told the bot about this person yet (the app is not installed)."
        return format_html(
            '{}; installed {}; updated {} (<a href="{}">details</a>)',
            address.get_state_display(),
            _when(address.installed_at),
            _when(address.updated_at),
            reverse("admin:bots_teamsaddress_change", args=[address.pk]),
        )

    @admin.display(description="Opted out of")
    def opt_outs(self, recipient: Recipient) -> str:
        if recipient.pk is None:
            return "—"
        add = format_html(
            '<a href="{}?recipient={}">Record an opt-out</a>', reverse("admin:campaigns_optout_add"), recipient.pk
        )
        rows = recipient.opt_outs.select_related("category")
        if not rows:
            return format_html("Nothing. {}", add)
        items = format_html_join(
            "",
            '<li><a href="{}">{}</a>: {}, {}</li>',
            (
                (
                    reverse("admin:campaigns_optout_change", args=[opt_out.pk]),
                    opt_out.category or "every non-mandatory category",
                    opt_out.get_source_display(),
                    _when(opt_out.created_at),
                )
                for opt_out in rows
            ),
        )
        return format_html('<ul style="margin-left: 0">{}</ul>{}', items, add)


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "mandatory")
    list_filter = ("mandatory",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    fields = ("name", "slug", "description", "mandatory")


# --- Audiences and templates -------------------------------------------------------------------

class AudienceForm(forms.ModelForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "rules" in self.fields:
            self.fields["rules"].help_text = (
                f"{Audience._meta.get_field('rules').help_text} Fields: {', '.join(RULE_FIELDS)} or attributes.<key>. "
                f"Operators: {', '.join(OPERATORS)}. Only for the “Attribute rules” kind."
            )

    def clean_rules(self):
        return self.cleaned_data["rules"] or []  # an emptied textarea means no rules


@admin.register(Audience)
class AudienceAdmin(admin.ModelAdmin):
    form = AudienceForm
    formfield_overrides = JSON_AS_TEXT
    # The count is one query per row: fine for the dozens of audiences an organisation keeps.
    list_display = ("name", "kind", "people", "updated_at")
    list_filter = ("kind",)
    search_fields = ("name",)
    autocomplete_fields = ("members", "excluded")
    readonly_fields = ("people", "created_at", "updated_at")
    fields = ("name", "kind", "rules", "members", "excluded", "people", "created_at", "updated_at")

    @admin.display(description="People it selects now")
    def people(self, audience: Audience) -> int | str:
        return audience_count(audience=audience) if audience.pk else "Save to count."


SAMPLE_RECIPIENT = Recipient(
    external_id="sample", first_name="Alex", last_name="Sample", display_name="Alex Sample",
    email="alex.sample@example.com", department="Sales", job_title="Account manager", country="FR",
)


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    formfield_overrides = JSON_AS_TEXT
    list_display = ("name", "kind", "updated_at")
    list_filter = ("kind",)
    search_fields = ("name", "text")
    readonly_fields = ("preview", "created_at", "updated_at")
    fields = ("name", "kind", "text", "card", "preview", "created_at", "updated_at")

    @admin.display(description="Preview (what Teams receives)")
    def preview(self, template: MessageTemplate) -> str:
        if template.pk is None:
            return "Save to see a preview."
        person = Recipient.objects.filter(is_active=True).order_by("id").first() or SAMPLE_RECIPIENT
        message = compile_message(kind=template.kind, text=template.text or "", card=template.card)
        activity = json.dumps(json.loads(message.render(person)), indent=2, ensure_ascii=False)
        return format_html("<p>For {}:</p><pre>{}</pre>", person, activity)


# --- Campaigns -----------------------------------------------------------------------------------

S = Campaign.Status


@dataclass(frozen=True)
class Transition:
    label: str  # the button
    question: str  # the confirmation page's question
    confirm: str  # the confirmation page's button
    done: str  # the success message, after the campaign's name
    shown_when: tuple[str, ...]  # statuses in which the change page offers it
    run: Callable[[Campaign, object], Campaign]


def _schedule(campaign: Campaign, user) -> Campaign:
    if campaign.send_at is None:
        raise ApplicationError("Set “Send at” and save the campaign before scheduling it.")
    return campaign_schedule(campaign_id=campaign.pk, send_at=campaign.send_at)


TRANSITIONS = {
    "launch": Transition(
        "Launch now", "Send now? Messages start going out at once; this cannot be undone.", "Yes, send it now",
        "was launched: sending has started", (S.DRAFT, S.SCHEDULED),
        lambda campaign, user: campaign_launch(campaign_id=campaign.pk),
    ),
    "schedule": Transition(
        "Schedule", "Schedule it for its “Send at” time?", "Yes, schedule it", "is scheduled", (S.DRAFT,), _schedule
    ),
    "pause": Transition(
        "Pause", "Pause sending? Nobody more receives it until it is resumed.", "Yes, pause it",
        "is paused: nobody more receives it until it is resumed", (S.RUNNING,),
        lambda campaign, user: campaign_pause(campaign_id=campaign.pk, reason=f"Paused by {user} in the admin."),
    ),
    "resume": Transition(
        "Resume", "Resume sending?", "Yes, resume", "is running again", (S.PAUSED,),
        lambda campaign, user: campaign_resume(campaign_id=campaign.pk),
    ),
    "cancel": Transition(
        "Cancel", "Cancel for good? Whoever has not received it yet will not; this cannot be undone.",
        "Yes, cancel it", "is cancelled: whoever had not received it yet is skipped",
        (S.SCHEDULED, S.RUNNING, S.PAUSED),
        lambda campaign, user: campaign_cancel(campaign_id=campaign.pk),
    ),
}


class CampaignChangeList(ChangeList):
    """The list's delivery counts: one aggregate query for the campaigns of the page, not one per
    campaign, and not in the paginator's count (which would join every delivery of every campaign)."""

    def get_results(self, request):
        super().get_results(request)
        page = list(self.result_list)
        counts = Campaign.objects.filter(pk__in=[campaign.pk for campaign in page]).values("pk").annotate(
            sent=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.SENT)),
            failed=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.FAILED)),
            skipped=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.SKIPPED)),
            total=Count("deliveries"),
        )
        by_campaign = {row.pop("pk"): row for row in counts}
        for campaign in page:
            campaign.list_counts = by_campaign[campaign.pk]
        self.result_list = page


class CampaignForm(forms.ModelForm):
    def clean(self):
        cleaned = super().clean()
        if self.instance.pk is None:
            return cleaned
        # Locked until the admin's transaction commits the save, so a launch cannot slip in between.
        current = Campaign.objects.select_for_update().only("status").get(pk=self.instance.pk)
        if not current.is_editable:
            raise ValidationError(
                f"This campaign is {current.get_status_display().lower()}; only a draft or scheduled one can be edited."
            )
        if current.status == S.SCHEDULED and "send_at" in self.fields:
            send_at = cleaned.get("send_at")
            if send_at is None:
                self.add_error("send_at", "A scheduled campaign needs a time; cancel it to stop it.")
            elif "send_at" in self.changed_data and send_at <= timezone.now():
                self.add_error("send_at", "Must be in the future; use “Launch now” to send it now.")
        return cleaned


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    list_display = ("name", "kind", "status", "send_at", "launched_at", "delivery_counts")
    list_filter = ("status", "kind", "category")
    search_fields = ("name",)
    list_select_related = ("category",)
    actions = ("launch_selected", "schedule_selected", "pause_selected", "resume_selected", "cancel_selected")
    EDITABLE = ("name", "kind", "template", "audience", "category", "send_at")
    STATE = ("status", "status_reason", "counts", "pace", "deliveries")
    DATES = ("launched_at", "materialised_at", "completed_at", "cancelled_at", "created_at", "updated_at")

    def get_changelist(self, request, **kwargs):
        return CampaignChangeList

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": self.EDITABLE})]
        return [
            (None, {"fields": self.EDITABLE}), ("Progress", {"fields": self.STATE}), ("Dates", {"fields": self.DATES})
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        editable = ("kind",) if obj.is_editable else self.EDITABLE  # the kind is chosen once, as in the API
        return (*editable, *self.STATE, *self.DATES)

    def has_delete_permission(self, request, obj=None):
        # Deliveries are the record of who received what: only a draft (which has none) goes.
        return super().has_delete_permission(request, obj) and (obj is None or obj.status == S.DRAFT)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.save()
        else:
            rescheduled = obj.status == S.SCHEDULED and "send_at" in form.changed_data
            obj.save(update_fields=[*(f for f in form.changed_data if f != "send_at" or not rescheduled), "updated_at"])
            if rescheduled:
                self._apply(request, obj, "schedule")
        if obj.status == S.DRAFT and obj.send_at:
            self.message_user(
                request,
                f"“{obj}” is still a draft: choose “Schedule” to send it at {_when(obj.send_at)}.",
                messages.WARNING,
            )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.pk:
            context["campaign_transitions"] = [
                (transition.label, reverse("admin:campaigns_campaign_transition", args=[obj.pk, name]))
                for name, transition in TRANSITIONS.items()
                if obj.status in transition.shown_when and (name != "schedule" or obj.send_at)
            ]
            if not obj.is_editable:
                context.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        view = self.admin_site.admin_view(self.transition_view)
        transition = path("<path:object_id>/do/<slug:name>/", view, name="campaigns_campaign_transition")
        return [transition, *super().get_urls()]

    # --- read-only fields

    def _counts(self, campaign: Campaign) -> dict[str, int]:
        if not hasattr(campaign, "_admin_counts"):
            campaign._admin_counts = campaign_counts(campaign=campaign)
        return campaign._admin_counts

    @admin.display(description="Sent / failed / skipped / total")
    def delivery_counts(self, campaign: Campaign) -> str:
        counts = getattr(campaign, "list_counts", None)
        if counts is None:
            return "—"
        return "{sent} / {failed} / {skipped} / {total}".format(**counts)

    @admin.display(description="Deliveries by state")
    def counts(self, campaign: Campaign) -> str:
        counts = self._counts(campaign)
        labels = dict(Delivery.Status.choices)
        return format_html_join(", ", "{}: {}", ((labels[state], counts[state]) for state in labels))

    @admin.display(description="Pace")
    def pace(self, campaign: Campaign) -> str:
        if campaign.status != S.RUNNING:
            return "—"
        now = progress.read(campaign)  # Redis counters: cheap while a million-person campaign runs
        if not now["remaining"]:
            return "Nothing left to send: it completes in a moment."
        left = f", about {max(1, round(now['eta_seconds'] / 60))} min left" if now["eta_seconds"] else ""
        return f"{now['remaining']} to go at {now['rate_per_second']} messages a second{left}."

    @admin.display(description="Who it reached")
    def deliveries(self, campaign: Campaign) -> str:
        url = f"{reverse('admin:delivery_delivery_changelist')}?campaign__id__exact={campaign.pk}"
        return format_html('<a href="{}">View {} deliveries</a>', url, self._counts(campaign)["total"])

    # --- state changes: list actions and change-page buttons, both through TRANSITIONS

    def _apply(self, request, campaign: Campaign, name: str) -> None:
        transition = TRANSITIONS[name]
        try:
            transition.run(campaign, request.user)
        except ApplicationError as exc:
            self.message_user(request, f"“{campaign}”: {exc.message}", messages.ERROR)
        else:
            self.message_user(request, f"“{campaign}” {transition.done}.", messages.SUCCESS)

    def _reach(self, campaign: Campaign, name: str) -> str:
        if name != "launch":
            return ""
        if campaign.kind == Campaign.Kind.WELCOME:
            return f"welcomes each new starter{f' in {campaign.audience}' if campaign.audience else ''}"
        people = audience_count(audience=campaign.audience)
        mandatory = " (mandatory: reaches people who opted out)" if campaign.category.mandatory else ""
        return (
            f"“{campaign.template}” to {people} people of {campaign.audience or 'everyone active'}, "
            f"category {campaign.category}{mandatory}"
        )

    def _confirmation(self, request, campaigns: list[Campaign], name: str, action: str = "") -> TemplateResponse:
        transition = TRANSITIONS[name]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{transition.label}: are you sure?",
            "transition": transition,
            "campaigns": [(campaign, self._reach(campaign, name)) for campaign in campaigns],
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "back_url": reverse("admin:campaigns_campaign_change", args=[campaigns[0].pk])
            if not action
            else reverse("admin:campaigns_campaign_changelist"),
        }
        return TemplateResponse(request, "admin/campaigns/campaign/confirm_transition.html", context)

    def _run_action(self, request, queryset, name: str, action: str, confirm: bool):
        campaigns = list(queryset.select_related("template", "audience", "category"))
        if confirm and request.POST.get("post") != "yes":
            return self._confirmation(request, campaigns, name, action)
        for campaign in campaigns:
            self._apply(request, campaign, name)
        return None

    @admin.action(description="Launch now…", permissions=["change"])
    def launch_selected(self, request, queryset):
        return self._run_action(request, queryset, "launch", "launch_selected", confirm=True)

    @admin.action(description="Schedule at their “Send at” time", permissions=["change"])
    def schedule_selected(self, request, queryset):
        return self._run_action(request, queryset, "schedule", "schedule_selected", confirm=False)

    @admin.action(description="Pause", permissions=["change"])
    def pause_selected(self, request, queryset):
        return self._run_action(request, queryset, "pause", "pause_selected", confirm=False)

    @admin.action(description="Resume", permissions=["change"])
    def resume_selected(self, request, queryset):
        return self._run_action(request, queryset, "resume", "resume_selected", confirm=False)

    @admin.action(description="Cancel…", permissions=["change"])
    def cancel_selected(self, request, queryset):
        return self._run_action(request, queryset, "cancel", "cancel_selected", confirm=True)

    def transition_view(self, request, object_id: str, name: str):
        """A change-page button: GET asks for confirmation, POST does it."""
        if name not in TRANSITIONS:
            raise Http404
        campaign = self.get_object(request, unquote(object_id))
        if campaign is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, campaign):
            raise PermissionDenied
        if request.method != "POST":
            return self._confirmation(request, [campaign], name)
        self._apply(request, campaign, name)
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))


# --- Opt-outs and API keys -----------------------------------------------------------------------

@admin.register(OptOut)
class OptOutAdmin(admin.ModelAdmin):
    list_display = ("recipient", "scope", "source", "note", "created_at")
    list_filter = ("source", "category")
    search_fields = ("recipient__display_name", "recipient__email", "recipient__external_id")
    list_select_related = ("recipient", "category")
    autocomplete_fields = ("recipient",)
    fields = ("recipient", "category", "source", "note", "created_at")

    @admin.display(description="Category", ordering="category__name")
    def scope(self, opt_out: OptOut) -> str:
        return str(opt_out.category or "Every non-mandatory category")

    def get_readonly_fields(self, request, obj=None):
        # An opt-out is what a person asked for: it is deleted, not rewritten; only the note changes.
        return ("created_at",) if obj is None else ("recipient", "category", "source", "created_at")

    def get_changeform_initial_data(self, request):
        return {"source": OptOut.Source.ADMIN, **super().get_changeform_initial_data(request)}

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["note"])
            return
        saved, _ = opt_out_record(recipient=obj.recipient, category=obj.category, source=obj.source, note=obj.note)
        obj.pk, obj.created_at = saved.pk, saved.created_at
        obj._state.adding = False


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys for the HR system. The secret is shown once, when the key is made; only its hash is kept."""

    list_display = ("name", "prefix", "created_at", "last_used_at", "active")
    search_fields = ("name", "prefix")
    exclude = ("key_hash",)
    actions = ("revoke",)

    def get_fields(self, request, obj=None):
        return ("name",) if obj is None else ("name", "prefix", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.get_fields(request, obj)

    @admin.display(description="Active", boolean=True, ordering="revoked_at")
    def active(self, api_key: ApiKey) -> bool:
        return api_key.is_active

    def save_model(self, request, obj, form, change):
        if change:
            return  # nothing of a key changes; it is revoked with the action
        api_key, secret = api_key_create(name=obj.name)
        for field in ApiKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(api_key, field.attname))
        obj._state.adding = False
        self.message_user(
            request,
            f"The key for “{api_key.name}” is {secret} — copy it now: only its hash is stored, "
            "it will not be shown again.",
            messages.SUCCESS,
        )

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{revoked} key(s) revoked: they no longer authenticate.", messages.SUCCESS)
