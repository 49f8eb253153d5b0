"""``manage.py create_api_key NAME``: a key for an HR system or script, shown once."""

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction

from campaigns.api.auth import api_key_create
from campaigns.models import ApiKey


class Command(BaseCommand):
    help = "Creates an API key and prints its secret, which is not stored and cannot be shown again."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who or what uses the key, e.g. workday-sync. Unique.")

    def handle(self, *args, name: str, **options):
        name = name.strip()
        max_length = ApiKey._meta.get_field("name").max_length
        if not name or len(name) > max_length:
            raise CommandError(f"Give the key a name of 1 to {max_length} characters.")
        if ApiKey.objects.filter(name=name).exists():
            raise CommandError(f"An API key named {name!r} already exists; choose another name.")
        try:
            with transaction.atomic():
                _, secret = api_key_create(name=name)
        except IntegrityError as exc:  # created by someone else in the meantime
            raise CommandError(f"An API key named {name!r} already exists; choose another name.") from exc
        # The secret alone on stdout, so scripts can capture it; the hint goes to stderr.
        self.stdout.write(secret)
        self.stderr.write("Send it as the header 'Authorization: Bearer <key>'. It will not be shown again.")
