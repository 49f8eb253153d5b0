"""``manage.py create_api_key NAME [--scopes ...] [--expires-in-days N]``: a key for an HR system or
script, shown once."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.api.auth import api_key_create
from campaigns.models import ApiKey
from core.errors import ApplicationError


class Command(BaseCommand):
    help = "Creates an API key and prints its secret, which is not stored and cannot be shown again."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who or what uses the key, e.g. workday-sync. Unique.")
        parser.add_argument(
            "--scopes",
            default=",".join(ApiKey.DEFAULT_SCOPES),
            help=f"Comma-separated, from {', '.join(ApiKey.Scope.values)} "
            f"(default: all but {ApiKey.Scope.CAMPAIGNS_APPROVE}).",
        )
        parser.add_argument("--expires-in-days", type=int, default=None, help="Default: never expires.")

    def handle(self, *args, name: str, scopes: str, expires_in_days: int | None, **options):
        name = name.strip()
        max_length = ApiKey._meta.get_field("name").max_length
        if not name or len(name) > max_length:
            raise CommandError(f"Give the key a name of 1 to {max_length} characters.")
        if ApiKey.objects.filter(name=name).exists():
            raise CommandError(f"An API key named {name!r} already exists; choose another name.")
        if expires_in_days is not None and expires_in_days < 1:
            raise CommandError("--expires-in-days must be at least 1.")
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        try:
            with transaction.atomic():
                _, secret = api_key_create(
                    name=name, scopes=[s.strip() for s in scopes.split(",") if s.strip()], expires_at=expires_at
                )
        except IntegrityError as exc:  # created by someone else in the meantime
            raise CommandError(f"An API key named {name!r} already exists; choose another name.") from exc
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        # The secret alone on stdout, so scripts can capture it; the hint goes to stderr.
        self.stdout.write(secret)
        self.stderr.write("Send it as the header 'Authorization: Bearer <key>'. It will not be shown again.")
