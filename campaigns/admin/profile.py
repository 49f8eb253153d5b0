"""“My profile”: a staff member's own time zone and Teams identity, and the middleware that makes
the admin speak in that time zone (dates shown and typed, including “Send at”)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Q
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from core.errors import ApplicationError
from ..models import Recipient
from ..staff import staff_profile, staff_profile_update, staff_time_zone, time_zone_names

def _time_zone_choices() -> list[tuple[str, str]]:
    return [("", "The server's time zone"), *((name, name) for name in time_zone_names())]


class ProfileForm(forms.Form):
    time_zone = forms.ChoiceField(
        choices=_time_zone_choices, required=False,
        help_text="Dates in the admin are shown, and “Send at” is typed, in this time zone.",
    )
    teams_email = forms.CharField(
        label="Who you are in Teams", required=False, max_length=255,
        help_text="Your e-mail address or UPN as the HR system knows it; tests you send go to this person. "
        "It must be the e-mail address of your admin account (an administrator may link anyone).",
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_teams_email(self):
        value = self.cleaned_data["teams_email"].strip().replace("\x00", "")
        if not value:
            return None
        # Tests go to whoever is linked, whatever they opted out of: staff link only themselves.
        own = (self.user.email or "").strip().lower() if self.user is not None else ""
        if self.user is not None and not self.user.is_superuser and value.lower() != own:
            raise forms.ValidationError(
                f"You can link only yourself: use {self.user.email or 'the e-mail address of your account'} "
                "(ask an administrator to set your account's e-mail address if it is not yours)."
            )
        matches = list(
            Recipient.objects.filter(is_active=True).filter(
                Q(email__iexact=value) | Q(upn__iexact=value) | Q(external_id=value)
            )[:2]
        )
        if not matches:
            raise forms.ValidationError(f"Nobody active in Crier has the e-mail, UPN or HR id “{value}”.")
        if len(matches) > 1:
            raise forms.ValidationError(f"More than one person matches “{value}”: use your HR id.")
        return matches[0]


@staff_member_required
def profile_view(request):
    profile = staff_profile(request.user)
    if request.method == "POST":
        form = ProfileForm(request.POST, user=request.user)
        if form.is_valid():
            try:
                staff_profile_update(
                    user=request.user, time_zone=form.cleaned_data["time_zone"], recipient=form.cleaned_data["teams_email"]
                )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, "Your profile is saved.")
                return HttpResponseRedirect(reverse("crier-profile"))
    else:
        linked = profile.recipient
        form = ProfileForm(user=request.user, initial={
            "time_zone": profile.time_zone,
            "teams_email": (linked.email or linked.upn or linked.external_id) if linked else "",
        })
    context = {
        **admin.site.each_context(request),
        "title": "My profile",
        "form": form,
        "linked": profile.recipient,
        "now_local": timezone.localtime(),
    }
    return TemplateResponse(request, "admin/crier/profile.html", context)


def profile_urls():
    """Mounted under the admin's prefix, before the admin's own URLs."""
    return [path("me/", admin.site.admin_view(profile_view), name="crier-profile")]


class StaffTimeZoneMiddleware:
    """Activates the signed-in staff member's own time zone for the request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        zone = staff_time_zone(user) if user is not None and user.is_authenticated and user.is_staff else None
        if zone is None:
            return self.get_response(request)
        with timezone.override(zone):
            return self.get_response(request)
