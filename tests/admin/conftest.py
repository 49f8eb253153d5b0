"""A comms user: a staff member in the "Comms" group that the data migration creates."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages

comms_migration = importlib.import_module("campaigns.migrations.0004_comms_group")


@pytest.fixture
def comms_group(db) -> Group:
    group = Group.objects.filter(name=comms_migration.GROUP_NAME).first()
    if group is None:
        # A transactional test elsewhere in the run flushed the tables: make it again, the migration's way.
        group = comms_migration.comms_group_ensure(apps)
    return group


@pytest.fixture
def comms_user(comms_group) -> User:
    user = User.objects.create_user("casey", "casey@example.com", "not-a-superuser", is_staff=True)
    user.groups.add(comms_group)
    return user


@pytest.fixture
def comms_client(client, comms_user):
    client.force_login(comms_user)
    return client


def messages_of(response) -> list[tuple[str, str]]:
    """The admin messages shown on a page reached with ``follow=True``."""
    return [(message.level_tag, message.message) for message in get_messages(response.wsgi_request)]
