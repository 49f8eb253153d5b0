"""Approvals while someone else acts at the same moment: real threads, each with its own database
connection, real commits. The interleaving each test needs is made to happen, not hoped for."""

from __future__ import annotations

import threading
import time

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.api import views
from campaigns.api.auth import api_key_create
from campaigns.approval_requests import approval_request
from campaigns.approvals import approval_fingerprint
from campaigns.models import AuditEntry
from campaigns.roles import AUTHORS, roles_ensure
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def in_thread(work) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = work()
        except BaseException as error:  # noqa: BLE001 - reported by the assertions
            outcome["error"] = error
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def waits_for_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


def edit_template_while(template, other, monkeypatch) -> tuple[dict, dict]:
    """Edits the template through the API and, once the edit holds the template's row, runs
    ``other()`` in another thread; the edit goes on once ``other`` waits for that row (or is done)."""
    checked = views.template_edit_require
    holding, release = threading.Event(), threading.Event()

    def held_check(**kwargs):
        checked(**kwargs)
        if connection.in_atomic_block and not holding.is_set():  # the template's row is now locked
            holding.set()
            assert release.wait(timeout=30)

    monkeypatch.setattr(views, "template_edit_require", held_check)
    _, secret = api_key_create(name="hr-sync")

    def edit():
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return api.patch(f"/api/v1/templates/{template.pk}/", {"text": "Edited for the next one"}, format="json")

    other_pid: list[int] = []

    def other_with_pid():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            other_pid.append(cursor.fetchone()[0])
        return other()

    editing, edit_outcome = in_thread(edit)
    try:
        assert holding.wait(timeout=30)
        meanwhile, other_outcome = in_thread(other_with_pid)
        deadline = time.monotonic() + 30
        while meanwhile.is_alive() and not (other_pid and waits_for_a_lock(other_pid[0])):
            assert time.monotonic() < deadline, "the other work neither waited nor finished"
            time.sleep(0.01)
    finally:
        release.set()
        editing.join(timeout=30)
    meanwhile.join(timeout=30)
    assert not editing.is_alive() and not meanwhile.is_alive()
    return edit_outcome, other_outcome


def test_asking_again_for_an_approval_that_no_longer_counts_while_the_template_is_edited_both_go_through(
    settings, monkeypatch
):
    """The campaign was approved, then its category changed: its approval no longer counts, and its
    author asks again while someone edits its template. The edit withdraws the old approval."""
    settings.APPROVAL_THRESHOLD = 2
    for _ in range(3):
        factories.recipient()
    template = factories.template()
    campaign = factories.campaign(name="Town hall", template=template)
    campaign.approved_at = timezone.now()
    campaign.approved_fingerprint = approval_fingerprint(campaign=campaign)
    campaign.approved_people = 3
    campaign.save()
    campaign.category = factories.category()
    campaign.save()
    author = User.objects.create_user("casey", is_staff=True)
    author.groups.add(roles_ensure()[AUTHORS])

    edited, asked = edit_template_while(
        template, lambda: approval_request(campaign_id=campaign.pk, user=author), monkeypatch
    )

    assert "error" not in edited and edited["result"].status_code == 200, edited
    assert "error" not in asked, asked
    campaign.refresh_from_db()
    assert campaign.approval_requested_at is not None and campaign.approved_at is None
    assert AuditEntry.objects.filter(campaign=campaign, action=AuditEntry.Action.APPROVAL_WITHDRAWN).count() == 1
