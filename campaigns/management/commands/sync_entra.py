"""``manage.py sync_entra [--full] [--dry-run]``: people from Entra ID, now (beat runs it every
``ENTRA_SYNC_INTERVAL_SECONDS``)."""

from django.core.management.base import BaseCommand, CommandError

from campaigns.entra_sync import entra_sync
from campaigns.models import DirectorySync
from core.errors import ApplicationError


class Command(BaseCommand):
    help = "Syncs people from Entra ID through Microsoft Graph: the changes since the last run, or everyone."

    def add_arguments(self, parser):
        parser.add_argument("--full", action="store_true", help="List everyone, not the changes since the last run.")
        parser.add_argument("--dry-run", action="store_true", help="Count what would change, and change nothing.")

    def handle(self, *args, full: bool, dry_run: bool, **options):
        try:
            run = entra_sync(full=full, dry_run=dry_run)
        except ApplicationError as error:
            raise CommandError(error.message) from error
        what = "would have" if run.dry_run else "has"
        summary = (f"{'Full' if run.full else 'Delta'} sync {run.pk}: {run.seen} listed in {run.pages} pages; "
                   f"it {what} created {run.created}, updated {run.updated}, made inactive {run.deactivated}, active again "
                   f"{run.reactivated}; {run.unchanged} unchanged, {run.skipped} not taken.")
        for problem in run.problems:
            self.stderr.write(f"  {problem}")
        if run.status == DirectorySync.Status.FAILED:
            raise CommandError(f"{summary} It failed: {run.error}")
        self.stdout.write(summary)
