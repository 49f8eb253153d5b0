"""``manage.py teams_app_package --out crier.zip``: the Teams app package to upload to the organisation's
catalog (docs/going-live.md)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from bots.app_package import app_id, app_package_build
from core.errors import ApplicationError


class Command(BaseCommand):
    help = "Writes the Teams app package (manifest.json and two icons, zipped) from the settings."

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="The zip file to write, e.g. crier-teams-app.zip.")

    def handle(self, *args, out: str, **options):
        target = Path(out)
        if target.is_dir():
            raise CommandError(f"--out {out} is a folder; give a file name such as {target / 'crier-teams-app.zip'}.")
        if not target.parent.is_dir():
            raise CommandError(f"--out {out}: the folder {target.parent} does not exist.")
        try:
            package = app_package_build()
        except ApplicationError as error:
            raise CommandError(error.message) from error
        # Written beside the target and moved into place: never a half-written package.
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".teams-app-", suffix=".zip")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(package)
            os.replace(temporary, target)
        except OSError as error:
            Path(temporary).unlink(missing_ok=True)
            raise CommandError(f"--out {out} cannot be written: {error.strerror}.") from error
        self.stdout.write(
            f"Wrote {target} (app id {app_id()}, {len(package)} bytes). Upload it in the Teams admin center."
        )
