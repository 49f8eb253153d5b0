"""Teams addresses in the admin: what Teams told the bot about each person, read-only; and, for
superusers, the Teams app package to upload to the organisation's catalog."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpResponse
from django.shortcuts import redirect
from django.urls import path, reverse

from core.admin import ReadOnlyAdmin
from core.errors import ApplicationError

from .app_package import app_package_build
from .models import TeamsAddress


@admin.register(TeamsAddress)
class TeamsAddressAdmin(ReadOnlyAdmin):
    list_display = ("aad_object_id", "state", "user_id", "installed_at", "updated_at")
    list_filter = ("state",)
    search_fields = ("aad_object_id", "user_id")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # the read-only page still builds a form

    def get_urls(self):
        view = self.admin_site.admin_view(self.app_package_view)
        download = path("app-package/", view, name="bots_teams_app_package")
        return [download, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "app_package_url": reverse("admin:bots_teams_app_package")}
        return super().changelist_view(request, extra_context=extra_context)

    def app_package_view(self, request):
        """The package as a download (superusers only: it describes the bot to the whole organisation)."""
        if not request.user.is_superuser:
            raise PermissionDenied
        try:
            package = app_package_build()
        except ApplicationError as error:
            messages.error(request, error.message)
            return redirect("admin:bots_teamsaddress_changelist")
        response = HttpResponse(package, content_type="application/zip")
        response["Content-Disposition"] = 'attachment; filename="crier-teams-app.zip"'
        return response
