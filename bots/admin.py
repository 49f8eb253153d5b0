"""Teams addresses in the admin: what Teams told the bot about each person, read-only."""

from __future__ import annotations

from django.contrib import admin
from django.db import models

from core.admin import ReadOnlyAdmin

from .models import TeamsAddress


@admin.register(TeamsAddress)
class TeamsAddressAdmin(ReadOnlyAdmin):
    list_display = ("aad_object_id", "state", "user_id", "installed_at", "updated_at")
    list_filter = ("state",)
    search_fields = ("aad_object_id", "user_id")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # the read-only page still builds a form
