"""Seeds a demo organisation: people, categories, templates, audiences and campaigns.

``--directory`` writes nothing: it prints the demo's people as Microsoft Graph users, for the emulator's Entra ID,
from which ``sync_entra`` then brings them in; ``--synced`` seeds the rest around the people already synced."""

from __future__ import annotations

import datetime
import json
import uuid

from importlib import import_module

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from campaigns.api.auth import api_key_create
from campaigns.models import ApiKey, Audience, Campaign, Category, MessageTemplate, Recipient, StaffProfile
from campaigns.services import recipients_bulk_upsert
from delivery.services import campaign_launch
from delivery.welcome import welcome_campaign

FIRST = ["Ada", "Bram", "Chloé", "Dmitri", "Eun-ji", "Fatima", "Gustav", "Hana", "Ibrahim", "Jules",
         "Kofi", "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tomás"]
LAST = ["Okafor", "Lindqvist", "Moreau", "Petrov", "Kim", "Haddad", "Berg", "Sato", "Diallo", "Laurent",
        "Mensah", "Fischer", "García", "Rahman", "Nilsson", "Iyer", "Dubois", "Costa", "Holm", "Silva"]
DEPARTMENTS = ["Sales", "Engineering", "Finance", "People", "Operations"]
COUNTRIES = [("FR", "Paris", "Europe/Paris"), ("DE", "Berlin", "Europe/Berlin"), ("GB", "London", "Europe/London"),
             ("US", "Chicago", "America/Chicago"), ("JP", "Tokyo", "Asia/Tokyo")]
NAMESPACE = uuid.UUID("6f1d7c64-4c3e-4e55-9a4e-0c3b8f7f5a11")

ANNOUNCEMENT_CARD = {
    "type": "AdaptiveCard",
    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
    "version": "1.4",
    "body": [
        {"type": "TextBlock", "size": "Large", "weight": "Bolder", "text": "The new office opens on Monday", "wrap": True},
        {"type": "TextBlock", "text": "Hello {{first_name|there}}, the {{department}} team moves to floor 3.", "wrap": True},
        {"type": "FactSet", "facts": [{"title": "Where", "value": "{{location}}"}, {"title": "When", "value": "Monday 9:00"}]},
    ],
    "actions": [
        {"type": "Action.OpenUrl", "title": "Floor plan", "url": "https://example.com/floor-plan"},
        {"type": "Action.Submit", "title": "Stop these messages", "data": {"crier_action": "opt_out", "category": "news"}},
    ],
}


def demo_people(count: int) -> list[dict]:
    today = timezone.localdate()
    people = []
    for n in range(count):
        first, last = FIRST[n % len(FIRST)], LAST[(n // len(FIRST) + n) % len(LAST)]
        country, city, zone = COUNTRIES[n % len(COUNTRIES)]
        people.append({
            "external_id": f"E{n + 1:05d}",
            "email": f"{first.lower()}.{last.lower()}{n + 1}@contoso.example".encode("ascii", "ignore").decode(),
            "aad_object_id": uuid.uuid5(NAMESPACE, f"person-{n + 1}"),
            "tenant_id": settings.BOT_TENANT_ID,
            "first_name": first,
            "last_name": last,
            "display_name": f"{first} {last}",
            "department": DEPARTMENTS[n % len(DEPARTMENTS)],
            "job_title": "Engineer" if n % 5 == 1 else "Specialist",
            "location": city,
            "country": country,
            "time_zone": zone,
            "locale": "en-GB",
            # The last five people start today: the welcome campaign greets them.
            "start_date": today if n >= count - 5 else today - datetime.timedelta(days=365 + n),
            "is_active": True,
            "attributes": {"site": city.lower()},
        })
    return people


def directory_user(row: dict) -> dict:
    """A demo person as Entra ID holds them: the Graph user ``sync_entra`` reads."""
    return {
        "id": str(row["aad_object_id"]), "displayName": row["display_name"], "givenName": row["first_name"],
        "surname": row["last_name"], "mail": row["email"], "userPrincipalName": row["email"],
        "department": row["department"], "jobTitle": row["job_title"], "officeLocation": row["location"],
        "usageLocation": row["country"], "preferredLanguage": row["locale"], "employeeId": row["external_id"],
        "employeeHireDate": f"{row['start_date'].isoformat()}T00:00:00Z", "accountEnabled": True,
    }


def _people(rows: list[dict]) -> list[dict]:
    return [{"aad_object_id": str(r["aad_object_id"]), "name": r["display_name"],
             "new_starter": r["start_date"] == timezone.localdate()} for r in rows]


class Command(BaseCommand):
    help = "Creates a demo organisation and prints, as JSON, what the demo needs (ids, an API key)."

    def add_arguments(self, parser):
        parser.add_argument("--people", type=int, default=200)
        parser.add_argument("--directory", action="store_true",
                            help="Write nothing: print the people as Entra ID users, for the emulator's directory.")
        parser.add_argument("--synced", action="store_true",
                            help="The people came from Entra ID (sync_entra): seed everything else around them.")

    def handle(self, *args, people: int, directory: bool = False, synced: bool = False, **options):
        if settings.PRODUCTION:
            raise CommandError("seed_demo creates an admin/admin account: run it with CRIER_ENV=development only.")
        if not 10 <= people <= 100_000:
            raise CommandError("--people must be between 10 and 100000.")
        rows = demo_people(people)
        if directory:
            self.stdout.write(json.dumps({"users": [directory_user(r) for r in rows], "people": _people(rows)}))
            return
        if synced and Recipient.objects.filter(external_id__in=[r["external_id"] for r in rows]).count() < len(rows):
            raise CommandError("--synced: the demo's people are not all in Crier; run sync_entra first.")
        created = 0 if synced else recipients_bulk_upsert(rows=rows).created
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@contoso.example", "admin")
        # An author and an approver (passwords as their names, demo only), each linked to a person
        # of the demo organisation in Teams so "Send a test to me" reaches the emulator's inbox.
        roles = import_module("campaigns.roles")
        groups = roles.roles_ensure(apps)
        staff = [("admin", None), ("author", roles.AUTHORS), ("approver", roles.APPROVERS)]
        first_people = list(Recipient.objects.filter(external_id__in=[r["external_id"] for r in rows[:3]]).order_by("id"))
        for (username, group), person in zip(staff, first_people):
            user = User.objects.filter(username=username).first()
            if user is None:
                user = User.objects.create_user(username, f"{username}@contoso.example", username, is_staff=True)
            if group:
                user.groups.add(groups[group])
            StaffProfile.objects.update_or_create(user=user, defaults={"recipient": person, "time_zone": person.time_zone or ""})
        news, _ = Category.objects.get_or_create(slug="news", defaults={"name": "Company news"})
        security, _ = Category.objects.get_or_create(
            slug="security", defaults={"name": "IT security", "mandatory": True}
        )
        welcome_template, _ = MessageTemplate.objects.get_or_create(
            name="Welcome",
            defaults={"kind": "markdown", "text": "**Welcome to Contoso, {{first_name}}!** Your first week's plan is in your inbox."},
        )
        card_template, _ = MessageTemplate.objects.get_or_create(
            name="Office move", defaults={"kind": "adaptive_card", "text": "The new office opens on Monday", "card": ANNOUNCEMENT_CARD}
        )
        everyone, _ = Audience.objects.get_or_create(name="Everyone", defaults={"kind": Audience.Kind.EVERYONE})
        Audience.objects.get_or_create(
            name="Sales in France and Germany",
            defaults={"kind": Audience.Kind.RULES, "rules": [
                {"field": "department", "op": "eq", "value": "Sales"},
                {"field": "country", "op": "in", "value": ["FR", "DE"]},
            ]},
        )
        welcome = welcome_campaign()
        if welcome is None:
            welcome = Campaign.objects.create(
                name="Welcome new starters", kind=Campaign.Kind.WELCOME, template=welcome_template, category=security
            )
            campaign_launch(campaign_id=welcome.pk)
        announcement = Campaign.objects.create(
            name=f"Office move ({timezone.localtime():%Y-%m-%d %H:%M})",
            template=card_template,
            audience=everyone,
            category=news,
        )
        key_name = f"demo-{timezone.now():%Y%m%d%H%M%S%f}"
        ApiKey.objects.filter(name__startswith="demo-").update(revoked_at=timezone.now())
        # The demo's integration is trusted to approve the announcements it launches.
        _, secret = api_key_create(name=key_name, scopes=[*ApiKey.DEFAULT_SCOPES, ApiKey.Scope.CAMPAIGNS_APPROVE])
        self.stdout.write(json.dumps({
            "people": _people(rows),
            "created": created,
            "announcement_id": announcement.pk,
            "welcome_id": welcome.pk,
            "api_key": secret,
        }))
