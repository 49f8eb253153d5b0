"""The runs of the Entra ID sync in the admin, and the fields Entra ID owns shown read-only."""

from __future__ import annotations

from unittest import mock

import pytest

from campaigns.admin import directory
from campaigns.models import DirectorySync
from tests import factories
from tests.admin.conftest import messages_of

pytestmark = pytest.mark.django_db
RUNS = "/admin/campaigns/directorysync/"


def test_a_superuser_sees_each_runs_progress_and_problems_but_never_its_delta_link(admin_client):
    run = DirectorySync.objects.create(full=True, seen=12, created=3, pages=2, problems=["<b>x</b>: too long"],
                                       delta_link="https://graph.example/delta?$deltatoken=secret")

    listing = admin_client.get(RUNS).content.decode()
    page = admin_client.get(f"{RUNS}{run.pk}/change/").content.decode()

    assert '<td class="field-kind">full</td>' in listing and '<td class="field-seen">12</td>' in listing
    assert "&lt;b&gt;x&lt;/b&gt;: too long" in page  # escaped
    assert "secret" not in page


def test_sync_now_queues_a_run_for_a_superuser_when_the_sync_is_on(admin_client, settings):
    settings.ENTRA_SYNC = True
    with mock.patch.object(directory.current_app, "send_task") as queued:
        response = admin_client.post(f"{RUNS}start/", follow=True)

    queued.assert_called_once_with("campaigns.tasks.sync_entra")
    assert any("queued" in text for _, text in messages_of(response))
    assert "Sync people from Entra ID now" in admin_client.get(RUNS).content.decode()


def test_sync_now_says_the_sync_is_off_and_queues_nothing(admin_client, settings):
    settings.ENTRA_SYNC = False
    with mock.patch.object(directory.current_app, "send_task") as queued:
        response = admin_client.post(f"{RUNS}start/", follow=True)

    queued.assert_not_called()
    assert any(level == "error" and "ENTRA_SYNC=true" in text for level, text in messages_of(response))


def test_sync_now_starts_nothing_on_a_get_or_without_a_tenant(admin_client, settings):
    settings.ENTRA_SYNC = True
    with mock.patch.object(directory.current_app, "send_task") as queued:
        admin_client.get(f"{RUNS}start/")
        settings.GRAPH_AUTHORITY = "https://login.microsoftonline.com/botframework.com"
        response = admin_client.post(f"{RUNS}start/", follow=True)

    queued.assert_not_called()
    assert any(level == "error" and "GRAPH_AUTHORITY" in text for level, text in messages_of(response))


def test_staff_who_are_not_superusers_cannot_start_a_run(client, comms_user, settings):
    settings.ENTRA_SYNC = True
    client.force_login(comms_user)
    with mock.patch.object(directory.current_app, "send_task") as queued:
        assert client.post(f"{RUNS}start/").status_code == 403
    queued.assert_not_called()


def test_the_fields_entra_id_owns_are_read_only_for_the_people_it_knows(admin_client, settings):
    settings.ENTRA_SYNC = True
    settings.ENTRA_SYNC_FIELDS = "department=department,attributes.cost=employeeOrgData.costCenter"
    linked = factories.recipient(department="Sales", entra_managed=True)
    hr_only = factories.recipient(department="Sales")  # an Entra object id, but the sync does not keep them

    linked_page = admin_client.get(f"/admin/campaigns/recipient/{linked.pk}/change/").content.decode()
    hr_page = admin_client.get(f"/admin/campaigns/recipient/{hr_only.pk}/change/").content.decode()

    assert 'name="department"' not in linked_page and 'name="attributes"' not in linked_page
    assert 'name="first_name"' in linked_page
    assert 'name="department"' in hr_page
