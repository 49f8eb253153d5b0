"""The admin's sign-in with Entra ID (``campaigns.sign_in``): a link on the login page starts it, Entra ID's answer
comes back to the callback, and the staff member lands where they were going, or reads why not on the login page.
Both answer 404 while ``STAFF_SIGN_IN`` is off."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.http import Http404, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from ..sign_in import BACKEND, SignInRefused, sign_in_finish, sign_in_start


def sign_in_context(request) -> dict:
    """For the login page: whether to offer Entra ID and the password form."""
    return {"crier_sign_in": {"entra": settings.STAFF_SIGN_IN, "passwords": settings.LOCAL_PASSWORDS}}


def _callback_url(request) -> str:
    """Entra ID's answer comes back here: the public address when there is one (the redirect URI registered on the
    app registration), else the address this request came to (Host is checked against ALLOWED_HOSTS)."""
    callback = reverse("crier-sign-in-callback")
    return f"{settings.PUBLIC_BASE_URL}{callback}" if settings.PUBLIC_BASE_URL else request.build_absolute_uri(callback)


def _safe_next(request, wanted: str | None) -> str:
    if wanted and url_has_allowed_host_and_scheme(wanted, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return wanted
    return reverse("admin:index")


@never_cache
@require_GET
def sign_in(request):
    if not settings.STAFF_SIGN_IN:
        raise Http404
    try:
        address = sign_in_start(session=request.session, redirect_uri=_callback_url(request),
                                next_url=_safe_next(request, request.GET.get("next")))
    except SignInRefused as refused:
        messages.error(request, str(refused))
        return HttpResponseRedirect(reverse("admin:login"))
    return HttpResponseRedirect(address)


@never_cache
@require_GET
def sign_in_callback(request):
    if not settings.STAFF_SIGN_IN:
        raise Http404
    try:
        user, going = sign_in_finish(session=request.session, answer=request.GET.dict())
    except SignInRefused as refused:
        messages.error(request, str(refused))
        return HttpResponseRedirect(reverse("admin:login"))
    login(request, user, backend=BACKEND)  # a new session key: nothing from before the sign-in carries over
    # Then Entra ID is asked again, and the roles with it: a person disabled there is out within these hours.
    request.session.set_expiry(timezone.now() + timedelta(hours=settings.STAFF_SIGN_IN_SESSION_HOURS))
    return HttpResponseRedirect(_safe_next(request, going))


def sign_in_urls() -> list:
    return [
        path("sign-in/entra/", sign_in, name="crier-sign-in"),
        path("sign-in/entra/callback/", sign_in_callback, name="crier-sign-in-callback"),
    ]
