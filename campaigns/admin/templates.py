"""Message templates: what a campaign says. The change page is a composer: simple fields that build
an Adaptive Card (or the raw card JSON, for whoever prefers it), buttons that insert placeholders, a
live preview drawn by the official Adaptive Cards renderer as a chosen person would see it, and
"Send a test to me". The form posts as ever; ``MessageTemplate.clean`` (``validate_template``) judges."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import capfirst

from core.errors import ApplicationError
from delivery.staff_tests import staff_test_send

from ..approvals import template_approve_direct, template_edit_require
from ..audit import Actor
from ..cards import MAX_BUTTONS, card_from_design, design_normalise, design_problems
from ..models import MessageTemplate, Recipient
from ..rendering import PLACEHOLDER_FIELDS, compile_message
from ..staff import staff_recipient
from .common import JSON_AS_TEXT, SAMPLE_RECIPIENT, RecordsChanges

PICKER_SIZE = 10  # people offered in the preview's picker before searching
SEARCH_SIZE = 20

K = MessageTemplate.Kind


class Editor:
    """How a card is being written: with the simple fields, or as JSON by hand."""

    DESIGN, JSON = "design", "json"
    CHOICES = ((DESIGN, "Simple fields"), (JSON, "JSON"))


def _button(n: int) -> tuple[str, str]:
    return f"button_{n}_label", f"button_{n}_url"


def _button_fields(n: int) -> tuple[forms.Field, forms.Field]:
    return (
        forms.CharField(label=f"Button {n}", required=False, max_length=200),
        forms.CharField(label="Link", required=False, max_length=2000,
                        widget=forms.TextInput(attrs={"class": "vTextField", "placeholder": "https://"})),
    )


BUTTON_ROWS = [_button(n) for n in range(1, MAX_BUTTONS + 1)]
DESIGN_FIELDS = ("design_title", "design_image", "design_body")


def _design_field(key: str) -> str | None:
    """The form field a problem of ``design_problems`` belongs to (``buttons[0].url`` → ``button_1_url``)."""
    if key in ("title", "image", "body"):
        return f"design_{key}"
    if key.startswith("buttons[") and "]." in key:
        index, part = key[len("buttons["):].split("].", 1)
        return f"button_{int(index) + 1}_{part}"
    return None


class MessageTemplateForm(forms.ModelForm):
    """The template, plus the card editor's fields. With the simple fields (``editor`` = design), the
    card is built from them on the server and the JSON box is not read; with JSON, the card is the JSON
    and the design is forgotten. A post without ``editor`` (no script ran) is read as JSON, and keeps the
    design only while the card is unchanged."""

    editor = forms.ChoiceField(choices=Editor.CHOICES, required=False, widget=forms.HiddenInput)
    design_title = forms.CharField(label="Title", required=False, max_length=500)
    design_image = forms.CharField(
        label="Image link", required=False, max_length=2000,
        help_text="Optional. An https:// link to a picture, shown across the card.",
        widget=forms.TextInput(attrs={"class": "vTextField", "placeholder": "https://"}),
    )
    design_body = forms.CharField(
        label="Text", required=False, max_length=20000, widget=forms.Textarea(attrs={"rows": 8, "cols": 80}),
        help_text="Markdown as Teams shows it in cards: **bold**, _italic_, [a link](https://…), lists.",
    )
    # One line each (label, link): as many as cards.MAX_BUTTONS.
    button_1_label, button_1_url = _button_fields(1)
    button_2_label, button_2_url = _button_fields(2)
    button_3_label, button_3_url = _button_fields(3)
    button_4_label, button_4_url = _button_fields(4)
    button_5_label, button_5_url = _button_fields(5)
    button_6_label, button_6_url = _button_fields(6)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.design_problems: dict[str, str] = {}
        template = self.instance
        if "text" in self.fields:
            self.fields["text"].help_text = (
                "Markdown text, or for a card the notification summary shown in Teams' activity feed. "
                "Placeholders: {{first_name}}, {{first_name|fallback}} (used when the person has none), "
                "{{attributes.key}}."
            )
        # "editor" stays empty until the composer's script fills it in: a page without the script shows
        # the JSON box with the simple fields, and what is saved is the JSON box.
        design = design_normalise(template.design)
        self.initial.update({f"design_{key}": design[key] for key in ("title", "image", "body")})
        for n, button in enumerate(design["buttons"][:MAX_BUTTONS], start=1):
            label, url = _button(n)
            self.initial.update({label: button["label"], url: button["url"]})

    @staticmethod
    def editor_of(template: MessageTemplate) -> str:
        """A card opens in the simple fields when they made it (and it was not changed since, through
        the API), else as JSON."""
        made_by_hand = template.design is None or card_from_design(template.design) != template.card
        return Editor.JSON if template.kind == K.ADAPTIVE_CARD and template.card and made_by_hand else Editor.DESIGN

    def design(self) -> dict:
        """The simple fields as given, one entry per button row (empty ones too)."""
        data = self.cleaned_data
        return {
            "title": data.get("design_title"), "image": data.get("design_image"), "body": data.get("design_body"),
            "buttons": [{"label": data.get(label), "url": data.get(url)} for label, url in BUTTON_ROWS],
        }

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk is not None:
            try:
                template_edit_require(template_id=self.instance.pk)
            except ApplicationError as error:
                raise forms.ValidationError(error.message, code=error.code) from error
        editor, kind = cleaned.get("editor"), cleaned.get("kind")
        if "kind" not in self.fields:
            return cleaned
        if not editor:  # no script ran: the card is the JSON box, and a design that no longer matches goes
            if kind != K.ADAPTIVE_CARD or "card" in self.changed_data:
                self.instance.design = None
            return cleaned
        if kind == K.MARKDOWN:  # the page hides the card of a markdown message: it goes
            self.errors.pop("card", None)
            cleaned["card"], self.instance.design = None, None
        elif kind == K.ADAPTIVE_CARD and editor == Editor.DESIGN:
            self.errors.pop("card", None)  # the JSON box only mirrors the fields
            design = self.design()
            self.design_problems = design_problems(design)
            for key, problem in self.design_problems.items():
                self.add_error(_design_field(key), problem)
            design = design_normalise(design)
            cleaned["card"], self.instance.design = card_from_design(design), design
        else:
            self.instance.design = None
        return cleaned

    def _post_clean(self):
        # JSON that could not be read leaves the model nothing to judge: its own error is enough.
        unreadable = len(self._errors.get("card", ()))
        super()._post_clean()
        if unreadable:
            del self._errors["card"][unreadable:]
        # Built from the simple fields, the card is not on the page: what the model's checks say of
        # it (its size, say) is shown above the form, unless the fields' own errors already say it.
        if self.cleaned_data.get("editor") == Editor.DESIGN and self.cleaned_data.get("kind") == K.ADAPTIVE_CARD:
            problems = self.errors.pop("card", None)
            for problem in problems.as_data() if problems and not self.design_problems else []:
                self.add_error(None, problem)


@admin.register(MessageTemplate)
class MessageTemplateAdmin(RecordsChanges, admin.ModelAdmin):
    form = MessageTemplateForm
    formfield_overrides = JSON_AS_TEXT
    list_display = ("name", "kind", "direct_approval", "updated_at")
    list_filter = ("kind",)
    search_fields = ("name", "text")
    readonly_fields = ("preview", "created_at", "updated_at")
    actions = ("approve_for_direct_messages",)

    @admin.display(description="Direct messages")
    def direct_approval(self, template: MessageTemplate) -> str:
        if template.direct_approved_at is None:
            return "Counted toward the approval threshold"
        return f"Approved by {template.direct_approved_by or 'an approver'}"

    def has_approve_permission(self, request) -> bool:
        return request.user.has_perm("campaigns.approve_campaign")

    @admin.action(description="Approve for direct messages to any number of people (transactional notices)",
                  permissions=["approve"])
    def approve_for_direct_messages(self, request, queryset):
        for template in queryset:
            try:
                template_approve_direct(template_id=template.pk, actor=Actor(user=request.user))
            except ApplicationError as exc:
                self.message_user(request, f"“{template}”: {exc.message}", messages.ERROR)
            else:
                self.message_user(
                    request, f"“{template}” is approved for direct messages until it is edited.", messages.SUCCESS
                )

    def get_fieldsets(self, request, obj=None):
        fieldsets = [
            (None, {"fields": ("name", "kind", "editor")}),
            ("Card", {"fields": (*DESIGN_FIELDS, *BUTTON_ROWS), "classes": ("composer-design",)}),
            ("Card JSON", {"fields": ("card",), "classes": ("composer-json",)}),
            (None, {"fields": ("text",), "classes": ("composer-text",)}),
        ]
        if obj is not None:
            fieldsets += [
                ("What Teams receives (the saved version)", {"fields": ("preview",), "classes": ("collapse",)}),
                ("Dates", {"fields": ("created_at", "updated_at")}),
            ]
        return fieldsets

    @admin.display(description="Preview (what Teams receives)")
    def preview(self, template: MessageTemplate) -> str:
        if template.pk is None:
            return "Save to see a preview."
        person = Recipient.objects.filter(is_active=True).order_by("id").first() or SAMPLE_RECIPIENT
        message = compile_message(kind=template.kind, text=template.text or "", card=template.card)
        activity = json.dumps(json.loads(message.render(person)), indent=2, ensure_ascii=False)
        return format_html("<p>For {}:</p><pre>{}</pre>", person, activity)

    # --- The composer: its settings, the live preview and the test send ---------------------------

    def get_urls(self):
        def view(function):
            return self.admin_site.admin_view(function)

        return [
            path("composer/preview/", view(self.preview_view), name="campaigns_messagetemplate_preview"),
            path("composer/people/", view(self.people_view), name="campaigns_messagetemplate_preview_people"),
            path("<path:object_id>/test-send/", view(self.test_send_view), name="campaigns_messagetemplate_test_send"),
            *super().get_urls(),
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        editable = self.has_change_permission(request, obj) if obj else self.has_add_permission(request)
        if editable:
            context["composer"] = {
                "preview_url": reverse("admin:campaigns_messagetemplate_preview"),
                "people_url": reverse("admin:campaigns_messagetemplate_preview_people"),
                "placeholders": [
                    [name, capfirst(Recipient._meta.get_field(name).verbose_name)] for name in PLACEHOLDER_FIELDS
                ],
                "people": _picker_people(request.user),
                "max_buttons": MAX_BUTTONS,
                "editor": MessageTemplateForm.editor_of(obj or MessageTemplate()),
            }
        if obj is not None and obj.pk and self.has_change_permission(request, obj):
            context["test_send_url"] = reverse("admin:campaigns_messagetemplate_test_send", args=[obj.pk])
        return super().render_change_form(request, context, add, change, form_url, obj)

    def preview_view(self, request):
        """The activity the form's current fields would send the chosen person, as JSON; never saves.
        Invalid fields come back as ``{"errors": {field: [message, ...]}}`` with status 400."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = self.get_form(request, None, change=False)(request.POST)
        form.is_valid()
        # The name does not change the message (and an unsaved one may not have one yet).
        errors = {name: list(problems) for name, problems in form.errors.items() if name != "name"}
        person, problem = _preview_person(request)
        if problem:
            errors["preview_recipient"] = [problem]
        if errors:
            return JsonResponse({"errors": errors}, status=400)
        data = form.cleaned_data
        message = compile_message(kind=data["kind"], text=data.get("text") or "", card=data.get("card"))
        return JsonResponse({"recipient": str(person), "activity": json.loads(message.render(person))})

    def people_view(self, request):
        """People whose name, e-mail or HR id holds ``q``, for the preview's picker."""
        if not (self.has_view_permission(request) and request.user.has_perm("campaigns.view_recipient")):
            raise PermissionDenied
        term = request.GET.get("q", "").replace("\x00", "").strip()  # PostgreSQL text holds no NUL
        people = Recipient.objects.filter(is_active=True)
        if term:
            people = people.filter(
                Q(display_name__icontains=term) | Q(first_name__icontains=term) | Q(last_name__icontains=term)
                | Q(email__icontains=term) | Q(external_id=term)
            )
        return JsonResponse({"people": [_person(person) for person in people.order_by("id")[:SEARCH_SIZE]]})

    def test_send_view(self, request, object_id: str):
        """"Send a test to me": the saved template, now, to the person the staff member is in Teams."""
        template = self.get_object(request, unquote(object_id))
        if template is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, template):
            raise PermissionDenied
        change_url = reverse("admin:campaigns_messagetemplate_change", args=[template.pk])
        if request.method != "POST":
            return HttpResponseRedirect(change_url)
        try:
            staff_test_send(user=request.user, template_id=template.pk)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, f"Test sent to {staff_recipient(request.user)} in Teams.", messages.SUCCESS)
        return HttpResponseRedirect(change_url)


def _person(person: Recipient) -> dict:
    detail = " · ".join(part for part in (person.department, person.email) if part)
    return {"id": person.pk, "name": str(person), "detail": detail}


def _picker_people(user) -> dict:
    """Who the preview can be drawn for at first: a sample person, the staff member themselves, and a
    few people (more by searching)."""
    me = staff_recipient(user)
    can_see_people = user.has_perm("campaigns.view_recipient")
    others = Recipient.objects.filter(is_active=True).order_by("id")
    if me is not None:
        others = others.exclude(pk=me.pk)
    return {
        "sample": str(SAMPLE_RECIPIENT),
        "me": _person(me) if me else None,
        "others": [_person(person) for person in others[:PICKER_SIZE]] if can_see_people else [],
        "can_search": can_see_people,
    }


def _preview_person(request) -> tuple[Recipient, str | None]:
    """The person the preview is drawn for: ``preview_recipient`` (an id), or the sample person."""
    value = request.POST.get("preview_recipient", "").strip()
    if not value:
        return SAMPLE_RECIPIENT, None
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        return SAMPLE_RECIPIENT, "Choose a person from the list."
    person = Recipient.objects.filter(pk=int(value)).first()
    own = staff_recipient(request.user)
    if person is None or not (request.user.has_perm("campaigns.view_recipient") or person == own):
        return SAMPLE_RECIPIENT, "That person is not in Crier (any more)."
    return person, None

