"""The one page people reach from a message: a link button of a campaign that counts clicks (``delivery.clicks``)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .clicks import click_follow


@never_cache
@require_GET
def click_redirect(request: HttpRequest, token: str) -> HttpResponse:
    """Counts the click and leads on; a link Crier did not sign, or of a message taken back, leads nowhere and says
    nothing of where it would have."""
    target = click_follow(token)
    if target is None:
        return HttpResponse("This link is not valid, or its message was taken back.", status=404,
                            content_type="text/plain; charset=utf-8")
    response = HttpResponseRedirect(target)
    response["Referrer-Policy"] = "no-referrer"  # the site opened learns nothing of the link it came through
    return response
