"""Audiences: who a campaign reaches. The change page has a rule editor (rows that write the rules
JSON into the ``rules`` field, so the form posts as ever and ``Audience.clean`` judges), a live
count and sample of the people selected, and a CSV upload that adds people to the include or
exclude list."""

from __future__ import annotations

from dataclasses import asdict

from django import forms
from django.contrib import admin, messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseNotAllowed, JsonResponse
from django.urls import path, reverse
from django.utils.text import capfirst

from bots.members import ListingError, groups_search
from bots.models import TeamsTeam

from ..members import listing_look, listing_needs_look, listing_summary
from ..models import Audience, Recipient
from ..rules import ATTRIBUTE_KEY_PATTERN, OPERATORS, RULE_FIELDS
from ..selectors import (
    PEOPLE_FILE_MAX_BYTES,
    PEOPLE_FILE_MAX_ROWS,
    audience_count,
    audience_preview,
    recipient_field_values,
    recipients_from_csv,
)
from .common import JSON_AS_TEXT, PrettyJSONField, RecordsChanges

# A list longer than this is shown as a count, not as a list of names to edit: each name is a
# field of the form post, and Django refuses posts of more than 1,000 fields.
EDITABLE_LIST_SIZE = 400
LISTS = ("members", "excluded")
# The suggested values take one pass over the people (about half a second for a million): kept a
# few minutes, for every page.
SUGGESTIONS_CACHE_KEY = "crier:audience-editor:suggestions"
SUGGESTIONS_CACHE_SECONDS = 300

KIND_HELP = (
    "Everyone active: every active person. A static list: the people in the include list. "
    "Attribute rules: the people the rules select, plus the include list. "
    "An Entra ID group (nested and dynamic groups too) or the members of a team: the people Crier knows among its "
    "members, plus the include list; they are listed when the audience is saved and again when a campaign is "
    "launched, which is sent to the people listed then. "
    "The exclude list removes people whatever the kind."
)
LIST_LABELS = {"members": "Include", "excluded": "Exclude"}
LIST_HELP = {
    "members": "People always selected: for a static list, exactly these people; for attribute rules, "
    "added to the people the rules select (everyone active already includes everyone). "
    "Only active people are ever selected.",
    "excluded": "People never selected, whatever the kind, the rules or the include list say.",
}


class PeopleFileAction:
    INCLUDE, EXCLUDE, REMOVE = "include", "exclude", "remove"
    CHOICES = [
        (INCLUDE, "the include list"),
        (EXCLUDE, "the exclude list"),
        (REMOVE, "neither: take them off both lists"),
    ]


class AudienceForm(forms.ModelForm):
    rules = PrettyJSONField(
        required=False, widget=forms.Textarea(attrs={"rows": 12, "cols": 80}), label="Rules"
    )
    people_file = forms.FileField(
        label="Add people from a CSV file",
        required=False,
        help_text=f"A header row with an external_id or email column, then one person a row (at most "
        f"{PEOPLE_FILE_MAX_ROWS:,} rows, {PEOPLE_FILE_MAX_BYTES // (1024 * 1024)} MB). Every row must match "
        "somebody, or nothing is saved.",
    )
    people_file_action = forms.ChoiceField(
        label="Put them in",
        choices=PeopleFileAction.CHOICES,
        initial=PeopleFileAction.INCLUDE,
        required=False,
        widget=forms.RadioSelect,
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.people_from_file = None
        if "kind" in self.fields:
            self.fields["kind"].help_text = KIND_HELP
        if "rules" in self.fields:
            self.fields["rules"].help_text = (
                f"{Audience._meta.get_field('rules').help_text} Fields: {', '.join(RULE_FIELDS)} or attributes.<key>. "
                f"Operators: {', '.join(OPERATORS)}. Only for the “Attribute rules” kind."
            )
        for name in LISTS:
            if name in self.fields:
                self.fields[name].label = LIST_LABELS[name]
                self.fields[name].help_text = LIST_HELP[name]

    def clean_rules(self):
        return self.cleaned_data["rules"] or []  # an emptied textarea means no rules

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("people_file")
        if upload:
            try:
                self.people_from_file = recipients_from_csv(file=upload)
            except ValidationError as exc:
                self.add_error("people_file", exc)
        return cleaned


class AudiencePreviewForm(forms.Form):
    """What the editor posts to count: the form's current kind and rules (the rules field's text)
    and the ids in its include and exclude lists, comma-separated."""

    kind = forms.ChoiceField(choices=Audience.Kind.choices)
    rules = PrettyJSONField(required=False)
    members = forms.CharField(required=False)
    excluded = forms.CharField(required=False)
    audience = forms.IntegerField(required=False, min_value=1)
    source_id = forms.CharField(required=False, max_length=200)

    def _ids(self, name: str) -> list[int] | None:
        if name not in self.data:
            return None  # not on the page (too long to list): the saved audience's own
        try:
            return [int(part) for part in self.cleaned_data[name].split(",") if part.strip()]
        except ValueError:
            raise ValidationError(f"{LIST_LABELS[name]}: ids are whole numbers.") from None

    def clean(self):
        cleaned = super().clean()
        for name in LISTS:
            cleaned[f"{name}_ids"] = self._ids(name)
        return cleaned


@admin.register(Audience)
class AudienceAdmin(RecordsChanges, admin.ModelAdmin):
    form = AudienceForm
    formfield_overrides = JSON_AS_TEXT
    # The count is one query per row: fine for the dozens of audiences an organisation keeps.
    list_display = ("name", "kind", "people", "updated_at")
    list_filter = ("kind",)
    search_fields = ("name",)
    autocomplete_fields = ("members", "excluded")
    readonly_fields = ("members_summary", "excluded_summary", "people", "listing", "created_at", "updated_at")
    actions = ["list_again"]

    class Media:
        js = ("crier/dom.js", "crier/audience-rules.js", "crier/audience-source.js")
        css = {"all": ("crier/audience-rules.css",)}

    def get_fields(self, request, obj=None):
        lists = [f"{name}_summary" if name in self._long_lists(obj) else name for name in LISTS]
        upload = ["people_file", "people_file_action"] if self._can_edit(request, obj) else []
        listed = ["listing"] if obj is not None and obj.kind in Audience.LISTED_KINDS else []
        return ["name", "kind", "source_id", "source_name", "rules", *lists, *upload, "people", *listed,
                "created_at", "updated_at"]

    @admin.display(description="Members listed")
    def listing(self, audience: Audience) -> str:
        return listing_summary(audience=audience)

    @admin.action(description="List the members of their group or team again", permissions=["change"])
    def list_again(self, request, queryset):
        started = [audience for audience in queryset if listing_look(audience=audience) is not None]
        skipped = queryset.count() - len(started)
        if started:
            self.message_user(request, f"Listing the members of {len(started)} audience(s): the count follows in a moment.",
                              messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} audience(s) are not a group or a team: nothing to list.",
                              messages.WARNING)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        moved = {"kind", "source_id"} & set(form.changed_data)
        if obj.kind in Audience.LISTED_KINDS and (moved or listing_needs_look(audience=obj)):
            listing_look(audience=obj)

    def _can_edit(self, request, obj) -> bool:
        return self.has_change_permission(request, obj) if obj else self.has_add_permission(request)

    @staticmethod
    def _long_lists(obj: Audience | None) -> set[str]:
        if obj is None or obj.pk is None:
            return set()
        if not hasattr(obj, "_long_lists"):
            obj._long_lists = {name for name in LISTS if _list_size(obj, name) > EDITABLE_LIST_SIZE}
        return obj._long_lists

    @admin.display(description=LIST_LABELS["members"])
    def members_summary(self, audience: Audience) -> str:
        return _summary(audience, "members")

    @admin.display(description=LIST_LABELS["excluded"])
    def excluded_summary(self, audience: Audience) -> str:
        return _summary(audience, "excluded")

    @admin.display(description="People it selects now")
    def people(self, audience: Audience) -> int | str:
        return audience_count(audience=audience) if audience.pk else "Save to count."

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        found = form.people_from_file
        if found is None:
            return
        audience = form.instance
        action = form.cleaned_data.get("people_file_action") or PeopleFileAction.INCLUDE
        name = form.cleaned_data["people_file"].name
        people = f"{len(found.ids):,} {'person' if len(found.ids) == 1 else 'people'}"
        if action == PeopleFileAction.REMOVE:
            audience.members.remove(*found.ids)
            audience.excluded.remove(*found.ids)
            self.message_user(request, f"{people} from {name} are on neither list now.", messages.SUCCESS)
            return
        name_of_list = "members" if action == PeopleFileAction.INCLUDE else "excluded"
        getattr(audience, name_of_list).add(*found.ids)
        self.message_user(
            request, f"{people} from {name} added to the {LIST_LABELS[name_of_list].lower()} list.", messages.SUCCESS
        )
        if action == PeopleFileAction.INCLUDE:
            excluded = audience.excluded.filter(pk__in=found.ids).count()
            if excluded:
                self.message_user(
                    request,
                    f"{excluded:,} of them {'is' if excluded == 1 else 'are'} also on the exclude list, which wins: "
                    "they are not selected.",
                    messages.WARNING,
                )

    # --- The editor: configuration and the live count ---------------------------------------------

    def get_urls(self):
        preview = path(
            "preview/", self.admin_site.admin_view(self.preview_view), name="campaigns_audience_preview"
        )
        groups = path("groups/", self.admin_site.admin_view(self.groups_view), name="campaigns_audience_groups")
        return [preview, groups, *super().get_urls()]

    def groups_view(self, request):
        """Entra ID groups whose name has a word starting with ``q``, as JSON, for the group picker."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        term = request.GET.get("q", "")[:100]
        try:
            found = groups_search(term)
        except ListingError as error:
            return JsonResponse({"groups": [], "errors": [str(error)]})
        return JsonResponse({"groups": [asdict(group) for group in found], "errors": []})

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if self._can_edit(request, obj):
            context["audience_editor"] = {
                "preview_url": reverse("admin:campaigns_audience_preview"),
                "audience": obj.pk if obj is not None else None,
                "fields": [[name, capfirst(Recipient._meta.get_field(name).verbose_name)] for name in RULE_FIELDS],
                "attribute_key_pattern": ATTRIBUTE_KEY_PATTERN,
                "suggestions": cache.get_or_set(
                    SUGGESTIONS_CACHE_KEY, recipient_field_values, SUGGESTIONS_CACHE_SECONDS
                ),
                "groups_url": reverse("admin:campaigns_audience_groups"),
                "teams": [[team.team_id, team.name or team.team_id] for team in TeamsTeam.objects.filter(installed=True)],
            }
        return super().render_change_form(request, context, add, change, form_url, obj)

    def preview_view(self, request):
        """The count and first names an audience being edited would select, as JSON; never saves."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = AudiencePreviewForm(request.POST)
        if not form.is_valid():
            errors = [
                message if name == "__all__" else f"{form.fields[name].label or capfirst(name)}: {message}"
                for name, messages_ in form.errors.items()
                for message in messages_
            ]
            return JsonResponse({"count": None, "sample": [], "errors": errors})
        data = form.cleaned_data
        preview = audience_preview(
            kind=data["kind"],
            rules=data["rules"],
            member_ids=data["members_ids"],
            excluded_ids=data["excluded_ids"],
            audience_id=data["audience"],
            source_id=data["source_id"],
        )
        return JsonResponse(asdict(preview))


def _list_size(audience: Audience, name: str) -> int:
    return getattr(Audience, name).through.objects.filter(audience_id=audience.pk).count()


def _summary(audience: Audience, name: str) -> str:
    return (
        f"{_list_size(audience, name):,} people: too many to edit here. Upload a CSV file below to add people, "
        "or to take them off (“neither”)."
    )
