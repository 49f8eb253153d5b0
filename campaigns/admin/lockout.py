"""What a locked-out login is answered (django-axes' ``AXES_LOCKOUT_CALLABLE``): the admin's page
saying why and for how long, with 429."""

from __future__ import annotations

import math

from axes.helpers import get_cool_off
from django.contrib import admin
from django.template.response import TemplateResponse


def login_locked_out(request, original_response=None, credentials=None):
    cool_off = get_cool_off(request)
    minutes = max(1, math.ceil(cool_off.total_seconds() / 60)) if cool_off else 0
    response = TemplateResponse(
        request,
        "admin/crier/locked_out.html",
        {**admin.site.each_context(request), "cooloff_minutes": minutes},
        status=429,
    )
    if cool_off:
        response["Retry-After"] = str(math.ceil(cool_off.total_seconds()))
    return response.render()
