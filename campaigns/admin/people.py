"""People, categories and opt-outs."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from bots.models import TeamsAddress
from core.errors import ApplicationError

from ..models import Category, OptOut, Recipient
from ..audit import Actor
from ..entra_fields import MAPPABLE, owned_fields
from ..services import opt_out_delete, opt_out_record
from .common import JSON_AS_TEXT, RecordsChanges, _when

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
    readonly_fields = ("teams_address", "opt_outs", "created_at", "updated_at", "origin")
    fieldsets = (
        (None, {"fields": ("external_id", "first_name", "last_name", "display_name", "email", "upn", "is_active")}),
        ("Organisation", {"fields": (
            "department", "job_title", "location", "country", "time_zone", "locale", "start_date",
        )}),
        ("Teams", {"fields": ("aad_object_id", "tenant_id", "teams_address")}),
        ("Opt-outs", {"fields": ("opt_outs",)}),
        ("Other attributes", {"fields": ("attributes",)}),
        ("History", {"fields": ("origin", "created_at", "updated_at")}),
    )

    def save_model(self, request, obj, form, change):
        if "is_active" in form.changed_data:  # a person decided it: the Entra ID sync no longer brings them back
            obj.inactive_from_entra = False
        super().save_model(request, obj, form, change)

    def get_readonly_fields(self, request, obj=None):
        """The fields Entra ID owns are its to change, for the people its sync keeps (``ENTRA_SYNC_FIELDS``)."""
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.entra_managed:
            try:
                owned = owned_fields()
            except ApplicationError:  # a field map no run can follow (manage.py check says so): all read-only
                owned = set(MAPPABLE) | {"attributes.*"}
            fields += sorted(name for name in owned if not name.startswith("attributes."))
            if any(name.startswith("attributes.") for name in owned):
                fields.append("attributes")
        return fields

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
class CategoryAdmin(RecordsChanges, admin.ModelAdmin):
    list_display = ("name", "slug", "mandatory")
    list_filter = ("mandatory",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    fields = ("name", "slug", "description", "mandatory")




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
        saved, _ = opt_out_record(
            recipient=obj.recipient, category=obj.category, source=obj.source, note=obj.note, actor=Actor(user=request.user)
        )
        obj.pk, obj.created_at = saved.pk, saved.created_at
        obj._state.adding = False

    def delete_model(self, request, obj):
        opt_out_delete(opt_out=obj, actor=Actor(user=request.user))

    def delete_queryset(self, request, queryset):
        for opt_out in queryset.select_related("recipient", "category"):
            opt_out_delete(opt_out=opt_out, actor=Actor(user=request.user))


