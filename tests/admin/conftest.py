"""Staff in each role the data migration creates: an author, an approver and a viewer (none is a
superuser)."""

from __future__ import annotations


import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages

from campaigns import roles as roles_migration


@pytest.fixture
def roles(db) -> dict[str, Group]:
    # A transactional test elsewhere in the run may have flushed the tables: ensure them, the migration's way.
    return roles_migration.roles_ensure(apps)


def _staff(username: str, group: Group) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "not-a-superuser", is_staff=True)
    user.groups.add(group)
    return user


@pytest.fixture
def comms_group(roles) -> Group:
    return roles[roles_migration.AUTHORS]


@pytest.fixture
def comms_user(comms_group) -> User:
    """An author."""
    return _staff("casey", comms_group)


@pytest.fixture
def approver_user(roles) -> User:
    return _staff("avery", roles[roles_migration.APPROVERS])


@pytest.fixture
def viewer_user(roles) -> User:
    return _staff("vic", roles[roles_migration.VIEWERS])


@pytest.fixture
def comms_client(client, comms_user):
    client.force_login(comms_user)
    return client


def messages_of(response) -> list[tuple[str, str]]:
    """The admin messages shown on a page reached with ``follow=True``."""
    return [(message.level_tag, message.message) for message in get_messages(response.wsgi_request)]
