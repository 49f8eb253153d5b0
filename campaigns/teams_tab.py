"""The admin inside Teams: the app package's personal tab (``TEAMS_TAB``) opens ``/tab/``, which shows the admin
to a signed-in staff member and otherwise offers to sign in.

Entra ID's sign-in page refuses to be shown in a frame, so inside Teams the sign-in runs in a window Teams opens
(Microsoft's Teams JavaScript library, ``authentication.authenticate``), which ends on ``/tab/signed-in/`` to tell
the tab; outside Teams the same button is an ordinary link. Teams' own sites may frame ``/tab/`` and the admin
(``TeamsFramingMiddleware``), and nobody else may."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.views.decorators.cache import never_cache

FRAMED = ("/admin/", "/tab/")


class TeamsFramingMiddleware:
    """Lets Teams (``TEAMS_FRAME_ANCESTORS``) frame the tab and the admin, instead of no site at all. Placed after
    Django's X-Frame-Options middleware, it exempts these pages from that header, which cannot name sites."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if settings.TEAMS_TAB and request.path.startswith(FRAMED):
            response._csp_replace = {"frame-ancestors": ["'self'", *settings.TEAMS_FRAME_ANCESTORS]}
            response.xframe_options_exempt = True
        return response


def _tab_on() -> None:
    if not settings.TEAMS_TAB:
        raise Http404


@never_cache
def tab(request):
    _tab_on()
    if request.user.is_authenticated and request.user.is_active and request.user.is_staff:
        return HttpResponseRedirect(reverse("admin:index"))
    signed_in = reverse("crier-tab-signed-in")
    return render(request, "crier/tab.html", {"settings_for_script": {
        "entra": settings.STAFF_SIGN_IN,
        "signIn": f"{reverse('crier-sign-in')}?next={signed_in}",  # in the window Teams opens
        "signInHere": f"{reverse('crier-sign-in')}?next={reverse('admin:index')}",  # outside Teams
        "admin": reverse("admin:index"),
    }, "login": reverse("admin:login")})


@never_cache
def tab_signed_in(request):
    """Where the sign-in window ends: it tells the tab, which then shows the admin."""
    _tab_on()
    return render(request, "crier/tab_signed_in.html", {"admin": reverse("admin:index")})


def tab_urls() -> list:
    return [path("tab/", tab, name="crier-tab"), path("tab/signed-in/", tab_signed_in, name="crier-tab-signed-in")]
