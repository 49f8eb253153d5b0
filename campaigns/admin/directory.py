"""The runs of the people sync from Entra ID: each one's progress while it goes, and what it did (read-only);
and, for superusers, a run started now."""

from __future__ import annotations

from celery import current_app
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html_join

from core.admin import ReadOnlyAdmin
from core.errors import ApplicationError

from ..entra_fields import sync_require
from ..models import DirectorySync

SYNC_TASK = "campaigns.tasks.sync_entra"


@admin.register(DirectorySync)
class DirectorySyncAdmin(ReadOnlyAdmin):
    list_display = ("id", "started_at", "kind", "status", "seen", "created", "updated", "deactivated", "reactivated",
                    "finished_at")
    list_filter = ("status", "full", "dry_run")
    exclude = ("delta_link",)  # a bearer of where the directory's changes start: not for display
    readonly_fields = ("started_at", "finished_at", "full", "dry_run", "status", "pages", "seen", "created", "updated",
                       "deactivated", "reactivated", "unchanged", "problem_list", "error")

    @admin.display(description="run")
    def kind(self, run: DirectorySync) -> str:
        return ("full" if run.full else "changes") + (", dry run" if run.dry_run else "")

    @admin.display(description="problems")
    def problem_list(self, run: DirectorySync) -> str:
        return format_html_join("", "<div>{}</div>", ((problem,) for problem in run.problems)) or "none"

    def get_urls(self):
        start = path("start/", self.admin_site.admin_view(self.start_view), name="campaigns_directorysync_start")
        return [start, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra = {"sync_start_url": reverse("admin:campaigns_directorysync_start"), "sync_on": settings.ENTRA_SYNC}
        return super().changelist_view(request, extra_context={**(extra_context or {}), **extra})

    def start_view(self, request):
        """Queues a run (POST only, superusers only); the list then shows it going."""
        if not request.user.is_superuser:
            raise PermissionDenied
        if request.method != "POST":
            return redirect("admin:campaigns_directorysync_changelist")
        try:
            sync_require()
        except ApplicationError as error:
            messages.error(request, error.message)
        else:
            current_app.send_task(SYNC_TASK)
            messages.success(request, "A sync from Entra ID was queued; it appears here when a worker starts it.")
        return redirect("admin:campaigns_directorysync_changelist")
