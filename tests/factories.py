"""Small builders for test data (plain functions: the suite needs nothing fancier)."""

from __future__ import annotations

import itertools
import uuid

from campaigns.models import Audience, Campaign, Category, MessageTemplate, Recipient

_counter = itertools.count(1)
TENANT = "11111111-1111-1111-1111-111111111111"


def recipient(**fields) -> Recipient:
    n = next(_counter)
    values = {
        "external_id": f"emp-{n}",
        "email": f"person{n}@example.com",
        "aad_object_id": uuid.uuid4(),
        "tenant_id": TENANT,
        "first_name": f"First{n}",
        "last_name": f"Last{n}",
        "department": "Sales",
        "country": "FR",
    }
    values.update(fields)
    return Recipient.objects.create(**values)


def category(**fields) -> Category:
    n = next(_counter)
    values = {"slug": f"cat-{n}", "name": f"Category {n}"}
    values.update(fields)
    return Category.objects.create(**values)


def template(**fields) -> MessageTemplate:
    n = next(_counter)
    values = {"name": f"Template {n}", "kind": MessageTemplate.Kind.MARKDOWN, "text": "Hello {{first_name}}"}
    values.update(fields)
    return MessageTemplate.objects.create(**values)


def campaign(**fields) -> Campaign:
    n = next(_counter)
    values = {"name": f"Campaign {n}"}
    values.update(fields)
    values.setdefault("template", template())
    values.setdefault("category", category())
    return Campaign.objects.create(**values)


def audience(**fields) -> Audience:
    n = next(_counter)
    values = {"name": f"Audience {n}"}
    values.update(fields)
    return Audience.objects.create(**values)
