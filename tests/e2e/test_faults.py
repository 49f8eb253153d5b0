"""A campaign of a few hundred people sent by real Celery worker and beat processes to the Teams
emulator, while something goes wrong: a worker killed with ``kill -9`` mid-send, Redis flushed and
restarted, Teams answering 503, 429 with Retry-After, or not at all. Whatever happens, every row
ends in a final state, the campaign completes, and nobody receives the message twice unless their
row is marked ambiguous (Teams may have had it when the worker lost track)."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest
from django.db.models import Q

from campaigns.models import Campaign, Recipient
from delivery import services
from delivery.models import Delivery
from tests import factories

from .processes import FAST_RECOVERY, own_redis, running_engine

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
PEOPLE = 300
DEADLINE = 60.0  # seconds for a campaign to complete, whatever went wrong on the way


def people(count: int = PEOPLE) -> list[Recipient]:
    return Recipient.objects.bulk_create(
        Recipient(external_id=f"F{n:04d}", aad_object_id=uuid.uuid4(), tenant_id=factories.TENANT, first_name=f"P{n}")
        for n in range(count)
    )


def launched() -> Campaign:
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    return campaign


def statuses(campaign: Campaign) -> Counter:
    return Counter(Delivery.objects.of_campaign(campaign.pk).values_list("status", flat=True))


def wait_for(condition, processes, *, timeout: float, what: str, interval: float = 0.02):
    """Polls often (a moment mid-send is short), failing with the logs if a process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes.check_alive()
        if value := condition():
            return value
        time.sleep(interval)
    return processes.wait_until(condition, timeout=0, what=what)


def completed(campaign: Campaign, processes) -> None:
    try:
        processes.wait_until(
            lambda: Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.COMPLETED,
            timeout=DEADLINE, what="the campaign to complete",
        )
    except AssertionError as error:
        raise AssertionError(f"rows: {dict(statuses(campaign))}; {error}") from None


def assert_every_row_final_and_duplicates_explained(campaign: Campaign, recipients: list[Recipient], teams) -> dict:
    rows = Delivery.objects.of_campaign(campaign.pk)
    counts = statuses(campaign)
    assert sum(counts.values()) == len(recipients)
    assert set(counts) <= set(Delivery.FINAL), counts
    assert not rows.filter(status=Delivery.Status.FAILED).filter(Q(error_code="") | Q(error_code__isnull=True)).exists()
    received = Counter(m["aad_object_id"] for m in teams.client.messages())
    ids = {str(r.aad_object_id) for r in recipients}
    sent = {str(a) for a in rows.filter(status=Delivery.Status.SENT).values_list("recipient__aad_object_id", flat=True)}
    assert set(received) <= ids
    assert sent <= set(received), "a row says sent but Teams never had the message"
    duplicates = sum(n - 1 for n in received.values())
    ambiguous = rows.filter(ambiguous=True).count()
    assert duplicates <= ambiguous, (duplicates, ambiguous)
    assert teams.client.stats()["duplicates"] <= ambiguous
    return {"counts": counts, "duplicates": duplicates, "ambiguous": ambiguous, "received": received}


def test_it_finishes_a_campaign_whose_worker_was_killed_mid_send(teams, live_server, tmp_path):
    recipients = people()
    with running_engine(teams, bot_endpoint=f"{live_server.url}/api/messages", log_dir=tmp_path,
                        env=FAST_RECOVERY) as processes:
        campaign = launched()

        def mid_send():
            counts = statuses(campaign)
            return counts["sent"] >= 60 and counts["sending"] >= 1

        wait_for(mid_send, processes, timeout=DEADLINE, what="sends to be under way")
        processes.kill9("worker")
        in_flight = statuses(campaign)["sending"]  # claimed by a worker that no longer exists
        assert in_flight >= 1
        processes.start_worker("worker2")
        completed(campaign, processes)

    result = assert_every_row_final_and_duplicates_explained(campaign, recipients, teams)
    # The rows the dead worker held were taken back as ambiguous and sent again.
    assert result["ambiguous"] >= in_flight
    assert result["counts"] == {"sent": PEOPLE}
    assert len(result["received"]) == PEOPLE


def test_it_finishes_a_campaign_after_redis_is_flushed_and_restarted(teams, live_server, tmp_path, settings):
    recipients = people()
    with own_redis(tmp_path) as redis_server:
        settings.REDIS_URL = redis_server.url  # the engine's counters, pacer and queue: the test's own Redis
        with running_engine(teams, bot_endpoint=f"{live_server.url}/api/messages", log_dir=tmp_path,
                            env=FAST_RECOVERY) as processes:
            campaign = launched()
            wait_for(lambda: statuses(campaign)["sent"] >= 80, processes, timeout=DEADLINE, what="sends to be under way")
            redis_server.flush_and_restart()
            assert statuses(campaign)["sent"] < PEOPLE  # lost mid-campaign, not after
            completed(campaign, processes)

    result = assert_every_row_final_and_duplicates_explained(campaign, recipients, teams)
    assert result["counts"] == {"sent": PEOPLE}
    assert len(result["received"]) == PEOPLE


def test_it_finishes_a_campaign_while_teams_answers_503_429_and_times_out(teams, live_server, tmp_path):
    recipients = people(200)  # each 429 holds every worker back and slows the pace: fewer calls keep it short
    # No reconciler in this test (its first look is ten minutes away): every retry is the deliver task's own.
    env = {**FAST_RECOVERY, "RECONCILE_INTERVAL_SECONDS": "600"}
    with running_engine(teams, bot_endpoint=f"{live_server.url}/api/messages", log_dir=tmp_path, env=env) as processes:
        teams.client.config(seed=12, faults={
            "status_503": 0.08, "status_429": 0.015, "timeout": 0.02, "retry_after_seconds": 2, "timeout_seconds": 3,
        })
        campaign = launched()
        completed(campaign, processes)

    stats = teams.client.stats()
    injected = stats["faults"]
    assert injected["status_503"] > 0 and injected["status_429"] > 0 and injected["timeout"] > 0, injected
    result = assert_every_row_final_and_duplicates_explained(campaign, recipients, teams)
    # Every one of these answers is worth another try, and eight tries in a row all failing at these rates
    # is a one-in-ten-million chance: everyone gets the message, once.
    assert result["counts"] == {"sent": len(recipients)}
    assert set(result["received"].values()) == {1}
    # Each failed call was tried again (by the task itself): at most one extra attempt per failed call.
    retried = Delivery.objects.of_campaign(campaign.pk).filter(attempts__gt=1).count()
    assert 0 < retried <= sum(injected.values())
    # Nobody called Teams during a Retry-After it had given.
    assert stats["early_calls"] == 0, stats["early_call_samples"]
