"""A campaign that installs the app for people who lack it (``Campaign.install_app``): a send Teams answers "not
installed" hands the row to the installer, outside its claim; the installer installs through the emulator's
Microsoft Graph and hands the row back to be sent by a claim of its own; every outcome stays on the row."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from bots.models import TeamsAddress
from bots.tokens import graph_token_provider
from delivery import control, installing, jobs, progress, recovery, services
from delivery.models import Delivery
from delivery.sending import delivery_send
from tests import factories

pytestmark = pytest.mark.django_db
NOWHERE = "http://127.0.0.1:9/api/messages"


@pytest.fixture(autouse=True)
def installer_afresh(monkeypatch):
    installing._installer.forget_catalog()  # each test's emulator has its catalog afresh
    woken: list[float] = []
    monkeypatch.setattr(jobs, "install_apps", lambda patience=0.0: woken.append(patience))
    return woken


@pytest.fixture
def lacking(teams):
    """Someone in Entra ID and in Teams who never installed the app (and Teams installs it for nobody)."""
    person = factories.recipient()
    aad = str(person.aad_object_id)
    teams.client.graph_users([{"id": aad, "displayName": str(person)}])
    teams.client.register_users([{"aad_object_id": aad, "name": str(person), "installed": False}])
    teams.client.config(auto_install=False, bot_endpoint=NOWHERE)
    return person


def launched(person, **fields) -> Delivery:
    campaign = factories.campaign(**fields)
    services.campaign_launch(campaign_id=campaign.pk)
    return Delivery.objects.get(campaign=campaign, recipient=person)


def welcome_waiting_for_install(person, monkeypatch):
    """A running welcome campaign that installs the app, and the person's welcome, its send handed to the
    installer; the campaign and the delivery's id."""
    from campaigns.models import Campaign
    from delivery import welcome

    campaign = factories.campaign(kind=Campaign.Kind.WELCOME, install_app=True)
    services.campaign_launch(campaign_id=campaign.pk)
    monkeypatch.setattr(welcome, "welcome_enqueue", lambda ids: None)
    [delivery_id] = welcome.welcome_on_install(aad_object_id=str(person.aad_object_id))
    delivery_send(delivery_id=delivery_id)  # waiting for its install
    return campaign, delivery_id


def row(delivery: Delivery) -> Delivery:
    delivery.refresh_from_db()
    return delivery


def installed_counter(delivery: Delivery) -> int | None:
    """The campaign's counter of people Crier installed the app for, in Redis (what the watch page reads)."""
    value = progress.client().hget(progress.key(delivery.campaign_id), "installed")
    return None if value is None else int(value)


def messages_to(teams, person) -> list:
    return teams.client.messages(user=str(person.aad_object_id))


def test_someone_teams_never_told_crier_of_waits_for_the_installer_without_a_call_to_teams(
        teams, lacking, installer_afresh):
    delivery = launched(lacking, install_app=True)
    calls = teams.client.stats()["requests"]

    outcome = delivery_send(delivery_id=delivery.pk)

    assert outcome.status == "installing"
    assert (row(delivery).status, delivery.attempts, delivery.claimed_at) == ("installing", 0, None)
    assert teams.client.stats()["requests"] == calls  # no call spent to hear "not installed"
    assert installer_afresh == [0.0]  # an installer was woken
    assert teams.client.graph_stats()["installs"] == 0  # the send itself installs nothing


def test_a_send_teams_answers_not_installed_waits_for_the_installer_and_the_attempt_does_not_count(teams, lacking):
    # Teams told Crier of them once (they had the app, then lost it without Crier hearing of it)
    TeamsAddress.objects.create(aad_object_id=lacking.aad_object_id, state="installed")
    delivery = launched(lacking, install_app=True)

    outcome = delivery_send(delivery_id=delivery.pk)

    assert outcome.status == "installing"
    assert (row(delivery).status, delivery.attempts, delivery.error_code) == ("installing", 0, "")
    assert teams.client.stats()["requests"] >= 1


def test_a_member_of_a_team_the_bot_is_in_is_reached_through_the_team_not_installed_for(teams, lacking):
    from emulator.state import user_id_for

    # what the team's roster told Crier: the member's Teams id
    TeamsAddress.objects.create(aad_object_id=lacking.aad_object_id, user_id=user_id_for(str(lacking.aad_object_id)),
                                tenant_id=factories.TENANT, service_url=teams.service_url)
    team = teams.client.teams_create("Falcon", [str(lacking.aad_object_id)])
    teams.client.team_install(team["id"])
    delivery = launched(lacking, install_app=True)

    delivery_send(delivery_id=delivery.pk)

    assert (row(delivery).status, delivery.install) == ("sent", "")
    assert teams.client.graph_stats()["installs"] == 0


def test_the_installer_installs_and_the_message_is_then_sent_once_by_a_claim_of_its_own(teams, lacking):
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)

    assert installing.installs_run() == 1

    assert (row(delivery).status, delivery.install, delivery.error_code) == ("retrying", "installed", "")
    assert installed_counter(delivery) == 1 and progress.read(delivery.campaign)["installed"] == 1
    assert teams.client.user(str(lacking.aad_object_id))["installed"] is True
    assert messages_to(teams, lacking) == []  # the installer sends nothing

    delivery_send(delivery_id=delivery.pk)

    assert (row(delivery).status, delivery.install, delivery.attempts) == ("sent", "installed", 1)
    assert len(messages_to(teams, lacking)) == 1
    assert teams.client.graph_stats()["installs"] == 1


def test_the_row_handed_back_is_queued_to_be_sent(teams, lacking, monkeypatch):
    queued = []
    monkeypatch.setattr(installing.feeding, "publish", lambda ids, queue: queued.append((ids, queue)))
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)

    installing.installs_run()

    assert queued == [([delivery.pk], installing.feeding.QUEUE)]


def test_without_the_campaigns_leave_nothing_is_installed_and_teams_answer_is_the_outcome(teams, lacking):
    delivery = launched(lacking, install_app=False)

    delivery_send(delivery_id=delivery.pk)

    assert (row(delivery).status, delivery.error_code, delivery.install) == (
        "failed", "ForbiddenOperationException", "")
    assert teams.client.graph_stats()["installs"] == 0


@pytest.mark.parametrize("state", ["uninstalled", "blocked"])
def test_nobody_who_removed_or_blocked_the_app_has_it_installed_again(teams, lacking, state):
    TeamsAddress.objects.create(aad_object_id=lacking.aad_object_id, state=state)
    delivery = launched(lacking, install_app=True)

    delivery_send(delivery_id=delivery.pk)

    assert (row(delivery).status, delivery.error_code) == ("failed", "ForbiddenOperationException")
    assert teams.client.graph_stats()["installs"] == 0


def test_someone_crier_knows_has_the_app_is_sent_to_without_an_install(teams):
    person = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "name": str(person)}])
    TeamsAddress.objects.create(aad_object_id=person.aad_object_id, state="installed", tenant_id=factories.TENANT)
    delivery = launched(person, install_app=True)

    delivery_send(delivery_id=delivery.pk)

    assert (row(delivery).status, delivery.install) == ("sent", "")
    assert teams.client.graph_stats()["install_conflicts"] + teams.client.graph_stats()["installs"] == 0


def test_someone_teams_never_told_crier_of_who_has_the_app_is_found_to_have_it_and_sent_to(teams):
    person = factories.recipient()
    teams.client.graph_users([{"id": str(person.aad_object_id), "displayName": str(person)}])
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "name": str(person)}])
    teams.client.config(bot_endpoint=NOWHERE)
    delivery = launched(person, install_app=True)

    delivery_send(delivery_id=delivery.pk)
    installing.installs_run()
    delivery_send(delivery_id=delivery.pk)

    assert (row(delivery).status, delivery.install) == ("sent", "present")
    assert teams.client.graph_stats()["install_conflicts"] == 1


def test_an_install_a_policy_refuses_ends_the_delivery_saying_why_and_what_to_do(teams, lacking):
    teams.client.graph_install_policy(True, users=[str(lacking.aad_object_id)])
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)

    installing.installs_run()

    assert (row(delivery).status, delivery.error_code, delivery.install) == ("failed", "AppBlockedByPolicy", "")
    assert "Permission policies" in delivery.error_message and delivery.finished_at is not None
    assert progress.read(delivery.campaign)["failed"] == 1
    assert messages_to(teams, lacking) == []


@pytest.mark.parametrize("refuse, code, advice", [
    (lambda emu: emu.graph_config(permissions=["User.Read.All", "AppCatalog.Read.All"]), "AppConsentMissing",
     "TeamsAppInstallation.ReadWriteAndConsentSelfForUser.All"),
    (lambda emu: emu.graph_catalog([]), "AppNotInCatalog", "upload the Teams app package"),
])
def test_an_install_refused_for_everyone_pauses_the_campaign_saying_what_to_do_and_loses_nobody(
        teams, lacking, refuse, code, advice):
    refuse(teams.client)
    graph_token_provider.invalidate()
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)

    installing.installs_run()

    assert (row(delivery).status, delivery.error_code, delivery.claimed_at) == ("installing", code, None)
    assert advice in delivery.error_message and delivery.install_attempts == 0
    campaign = delivery.campaign
    campaign.refresh_from_db()
    assert campaign.status == "paused" and advice in campaign.status_reason
    assert progress.read(campaign)["failed"] == 0 and messages_to(teams, lacking) == []


def test_a_refusal_about_one_person_counts_toward_pausing_the_campaign_as_about_them(teams, lacking, monkeypatch):
    watched = []
    monkeypatch.setattr(control, "campaign_watch_errors", lambda campaign_id, error: watched.append(error))
    teams.client.graph_install_policy(True)
    delivery_send(delivery_id=launched(lacking, install_app=True).pk)

    installing.installs_run()

    assert [(error.code, error.personal) for error in watched] == [("AppBlockedByPolicy", True)]


def test_graph_away_is_tried_again_later_then_ends_the_delivery(teams, lacking, monkeypatch):
    def away(**_):
        raise installing.InstallRefused("GraphUnavailable", "Microsoft Graph could not be reached", transient=True)

    monkeypatch.setattr(installing._installer, "install", away)
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)

    installing.installs_run()

    assert (row(delivery).status, delivery.error_code, delivery.claimed_at) == ("installing", "GraphUnavailable", None)
    assert timezone.now() + timedelta(seconds=5) < delivery.next_attempt_at < timezone.now() + timedelta(seconds=15)
    assert installing.installs_run() == 0  # not before its time
    for _ in range(installing.MAX_ATTEMPTS - 1):
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        installing.installs_run()

    assert (row(delivery).status, delivery.error_code, delivery.install_attempts) == (
        "failed", "GraphUnavailable", installing.MAX_ATTEMPTS)


def test_a_paused_campaigns_rows_wait_and_a_cancelled_campaigns_are_skipped(teams, lacking):
    paused = launched(lacking, install_app=True)
    delivery_send(delivery_id=paused.pk)
    control.campaign_pause(campaign_id=paused.campaign_id)

    assert installing.installs_run() == 0
    assert row(paused).status == "installing"

    control.campaign_cancel(campaign_id=paused.campaign_id)
    assert (row(paused).status, paused.skip_reason) == ("skipped", "campaign_cancelled")
    assert teams.client.graph_stats()["installs"] == 0


def test_a_resume_wakes_the_installer(teams, lacking, installer_afresh, django_capture_on_commit_callbacks):
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)
    control.campaign_pause(campaign_id=delivery.campaign_id)
    installer_afresh.clear()

    with django_capture_on_commit_callbacks(execute=True):
        control.campaign_resume(campaign_id=delivery.campaign_id)

    assert installer_afresh == [0.0]


def test_a_row_claimed_by_an_installer_that_died_is_taken_again_after_the_lease_and_not_before(teams, lacking):
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)
    Delivery.objects.filter(pk=delivery.pk).update(claimed_at=timezone.now() - timedelta(seconds=60))

    assert installing.installs_run() == 0

    Delivery.objects.filter(pk=delivery.pk).update(
        claimed_at=timezone.now() - timedelta(seconds=installing.LEASE_SECONDS + 1))
    assert installing.installs_run() == 1
    assert (row(delivery).status, delivery.install) == ("retrying", "installed")


def test_an_installer_that_outlived_its_lease_changes_nothing(teams, lacking, monkeypatch):
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)
    started = installing._started

    def overtaken(rows):
        # while it installs, its lease runs out and another installer takes the row
        Delivery.objects.filter(pk=delivery.pk).update(claimed_at=timezone.now() + timedelta(seconds=1))
        return started(rows)

    monkeypatch.setattr(installing, "_started", overtaken)
    installing.installs_run()

    assert (row(delivery).status, delivery.install) == ("installing", "")
    assert installed_counter(delivery) is None


def test_teams_still_answering_not_installed_after_an_install_is_tried_again_without_installing_again(
        teams, lacking, monkeypatch):
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)
    installing.installs_run()
    teams.client.register_users([{"aad_object_id": str(lacking.aad_object_id), "installed": False}])  # not yet known

    outcome = delivery_send(delivery_id=delivery.pk)

    assert (outcome.status, row(delivery).error_code, delivery.install, delivery.last_status_code) == (
        "retrying", "ForbiddenOperationException", "installed", 403)
    assert "still answers that it is not installed" in delivery.error_message
    assert teams.client.graph_stats()["installs"] == 1


def test_people_who_cannot_be_installed_for_go_back_to_be_sent_and_their_send_says_why(teams, lacking):
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)
    lacking.is_active = False
    lacking.save(update_fields=["is_active"])

    installing.installs_run()

    assert (row(delivery).status, delivery.install) == ("retrying", "")
    delivery_send(delivery_id=delivery.pk)
    assert (row(delivery).status, delivery.skip_reason) == ("skipped", "inactive")
    assert teams.client.graph_stats()["installs"] == 0


def test_the_reconciler_starts_an_installer_when_rows_wait_and_none_runs(teams, lacking, installer_afresh):
    delivery = launched(lacking, install_app=True)
    assert recovery.reconcile()["installer_started"] == 0
    delivery_send(delivery_id=delivery.pk)
    installer_afresh.clear()

    assert recovery.reconcile()["installer_started"] == 1
    assert installer_afresh == [0.0]


def test_a_campaign_with_a_row_waiting_for_its_install_does_not_complete(teams, lacking):
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)

    assert services.campaigns_complete_finished() == []

    installing.installs_run()
    delivery_send(delivery_id=delivery.pk)
    assert services.campaigns_complete_finished() == [delivery.campaign_id]


def test_an_installer_hands_on_to_the_next_when_rows_are_left(teams, lacking, installer_afresh, monkeypatch):
    monkeypatch.setattr(installing, "BATCH", 1)
    monkeypatch.setattr(installing, "RUN_SECONDS", 0.2)  # it stops taking rows after the first install
    install = installing._installer.install

    def slow(**arguments):
        time.sleep(0.3)
        return install(**arguments)

    monkeypatch.setattr(installing._installer, "install", slow)
    people = [lacking, factories.recipient()]
    teams.client.graph_users([{"id": str(people[1].aad_object_id), "displayName": "Second"}])
    teams.client.register_users([{"aad_object_id": str(people[1].aad_object_id), "installed": False}])
    campaign = factories.campaign(install_app=True)
    services.campaign_launch(campaign_id=campaign.pk)
    for delivery in Delivery.objects.filter(campaign=campaign):
        delivery_send(delivery_id=delivery.pk)
    installer_afresh.clear()

    installing.installs_run()

    assert installer_afresh == [installing.HAND_ON_PATIENCE]  # the next, waiting for this one to let go of the lock
    assert Delivery.objects.filter(campaign=campaign, status="installing").count() == 1


def test_only_one_installer_works_at_a_time(teams, lacking):
    from django.db import connections

    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)
    other = connections.create_connection("default")  # another worker's installer, at work
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, 0)", [installing.INSTALLER_LOCK])

        assert installing.installs_run() == 0
        assert recovery.reconcile()["installer_started"] == 0
    finally:
        other.close()
    assert row(delivery).status == "installing"
    assert installing.installs_run() == 1


def installation_of(person) -> dict:
    """What Teams sends the bot when the app is installed for the person (``installationUpdate`` add)."""
    return {"type": "installationUpdate", "action": "add", "serviceUrl": "https://smba.example/teams/",
            "from": {"id": "29:someone", "aadObjectId": str(person.aad_object_id)},
            "conversation": {"id": "a:personal-chat", "conversationType": "personal", "tenantId": factories.TENANT},
            "channelData": {"tenant": {"id": factories.TENANT}}}


def test_the_installation_crier_made_sets_off_no_welcome_but_a_persons_own_does(teams, lacking):
    from bots.services import activity_handle
    from campaigns.models import Campaign

    welcome = factories.campaign(kind=Campaign.Kind.WELCOME)
    services.campaign_launch(campaign_id=welcome.pk)
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)
    installing.installs_run()

    activity_handle(data=installation_of(lacking))  # as Teams tells the bot of Crier's install

    assert not Delivery.objects.filter(campaign=welcome).exists()
    assert TeamsAddress.objects.get(aad_object_id=lacking.aad_object_id).conversation_id == "a:personal-chat"
    other = factories.recipient()
    activity_handle(data=installation_of(other))
    assert list(Delivery.objects.filter(campaign=welcome).values_list("recipient_id", flat=True)) == [other.pk]


def test_the_audit_trail_says_a_launch_or_schedule_installs_the_app(teams):
    from campaigns.models import AuditEntry

    installs = factories.campaign(install_app=True)
    services.campaign_launch(campaign_id=installs.pk)
    scheduled = factories.campaign(install_app=True)
    services.campaign_schedule(campaign_id=scheduled.pk, send_at=timezone.now() + timedelta(hours=1))
    plain = factories.campaign(install_app=False)
    services.campaign_launch(campaign_id=plain.pk)

    summaries = dict(AuditEntry.objects.filter(action__in=("launch", "schedule")).values_list("campaign_id", "summary"))
    assert summaries[installs.pk].endswith(", installing the app for people who lack it")
    assert summaries[scheduled.pk].endswith(", installing the app for people who lack it")
    assert "install" not in summaries[plain.pk]


def test_the_installer_handed_on_to_waits_for_the_one_before_it_to_let_go(teams, lacking):
    import threading

    import psycopg
    from django.db import connection

    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)
    db = connection.settings_dict
    before = psycopg.connect(dbname=db["NAME"], host=db["HOST"], port=db["PORT"], user=db["USER"], autocommit=True)
    before.execute("SELECT pg_advisory_lock(%s, 0)", [installing.INSTALLER_LOCK])  # the installer ending
    ending = threading.Timer(0.3, before.close)
    ending.start()
    try:
        assert installing.installs_run(patience=5.0) == 1
    finally:
        ending.join()
    assert row(delivery).install == "installed"


def test_one_person_waiting_in_two_campaigns_is_installed_for_once_and_sent_each_message(teams, lacking):
    first = launched(lacking, install_app=True)
    second = launched(lacking, install_app=True)
    delivery_send(delivery_id=first.pk)
    delivery_send(delivery_id=second.pk)

    installing.installs_run()

    assert {row(first).status, row(second).status} == {"retrying"}
    assert {first.install, second.install} == {"installed", "present"}
    delivery_send(delivery_id=first.pk)
    delivery_send(delivery_id=second.pk)
    assert (row(first).status, row(second).status) == ("sent", "sent")
    assert len(messages_to(teams, lacking)) == 2


def test_a_409_after_crier_installed_the_app_keeps_the_installation_known_as_crier(teams, lacking):
    from bots.services import activity_handle
    from campaigns.models import Campaign

    welcome = factories.campaign(kind=Campaign.Kind.WELCOME)
    services.campaign_launch(campaign_id=welcome.pk)
    first = launched(lacking, install_app=True)
    delivery_send(delivery_id=first.pk)
    installing.installs_run()
    second = launched(lacking, install_app=True)
    delivery_send(delivery_id=second.pk)
    Delivery.objects.filter(pk=second.pk).update(status="installing")  # Teams did not know yet
    installing.installs_run()  # Graph: 409, the app is there (Crier put it there)

    activity_handle(data=installation_of(lacking))  # Teams' news of Crier's install arrives late

    assert row(second).install == "present"
    assert not Delivery.objects.filter(campaign=welcome).exists()


def test_graphs_own_answer_for_a_missing_permission_is_a_missing_consent_not_a_policy(teams, lacking):
    teams.client.graph_config(permissions=["User.Read.All", "AppCatalog.Read.All"])
    graph_token_provider.invalidate()
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)

    installing.installs_run()

    assert row(delivery).error_code == "AppConsentMissing"


def test_a_refusal_about_everyone_pauses_the_campaign_saying_what_to_do_and_a_resume_installs_after_all(
        teams, lacking, django_capture_on_commit_callbacks):
    teams.client.graph_catalog([])  # the app is not in the catalog yet
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)

    installing.installs_run()

    campaign = delivery.campaign
    campaign.refresh_from_db()
    assert (campaign.status, row(delivery).status, delivery.error_code) == ("paused", "installing", "AppNotInCatalog")
    assert "upload the Teams app package" in campaign.status_reason
    teams.client.reset()  # the app uploaded
    teams.client.graph_users([{"id": str(lacking.aad_object_id), "displayName": str(lacking)}])
    teams.client.register_users([{"aad_object_id": str(lacking.aad_object_id), "installed": False}])
    teams.client.config(auto_install=False, bot_endpoint=NOWHERE)
    installing._installer.forget_catalog()
    with django_capture_on_commit_callbacks(execute=True):
        control.campaign_resume(campaign_id=campaign.pk)
    installing.installs_run()
    assert (row(delivery).status, delivery.install) == ("retrying", "installed")


def test_direct_messages_and_tests_never_install_the_app_whatever_the_default(settings):
    from campaigns.audit import Actor
    from delivery.services import campaign_send_direct

    settings.INSTALL_APP_DEFAULT = True
    person = factories.recipient()
    direct = campaign_send_direct(name="Laptop ready", template_id=factories.template().pk,
                                  category=factories.category(), external_ids=[person.external_id], actor=Actor())

    assert direct.install_app is False


def test_an_error_recording_one_install_loses_none_of_the_others(teams, lacking, monkeypatch):
    other = factories.recipient()
    teams.client.graph_users([{"id": str(other.aad_object_id), "displayName": "Other"}])
    teams.client.register_users([{"aad_object_id": str(other.aad_object_id), "installed": False}])
    campaign = factories.campaign(install_app=True)
    services.campaign_launch(campaign_id=campaign.pk)
    deliveries = list(Delivery.objects.filter(campaign=campaign).order_by("id"))
    for delivery in deliveries:
        delivery_send(delivery_id=delivery.pk)
    send_again = installing._send_again

    def failing_once(found, *, install):
        if found.id == deliveries[0].id:
            raise RuntimeError("Redis went away while queuing")
        return send_again(found, install=install)

    monkeypatch.setattr(installing, "_send_again", failing_once)
    installing.installs_run()

    assert row(deliveries[1]).install == "installed"


def test_a_row_whose_person_was_deleted_goes_back_to_be_skipped_and_the_campaign_ends(teams, lacking):
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)
    from django.db import connection

    with connection.cursor() as cursor:  # gone without its rows (a deletion racing the hand-over)
        cursor.execute("DELETE FROM campaigns_recipient WHERE id = %s", [lacking.pk])

    installing.installs_run()
    assert installing._waiting() is False
    delivery_send(delivery_id=delivery.pk)

    assert (row(delivery).status, delivery.skip_reason) == ("skipped", "inactive")


def test_the_migration_adds_its_columns_without_a_scan_of_the_deliveries():
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("sqlmigrate", "delivery", "0010", stdout=out)
    statements = [line for line in out.getvalue().splitlines() if line.startswith("ALTER TABLE")]

    # a constant default and no CHECK: PostgreSQL adds such a column without rewriting or reading the rows
    assert statements and all("ADD COLUMN" in line and "DEFAULT" in line for line in statements)
    assert "CHECK" not in out.getvalue()


@pytest.mark.parametrize("subscribed", [True, False])
def test_a_refused_install_is_recorded_whole_with_its_event_for_whoever_subscribed(teams, lacking, monkeypatch,
                                                                                    subscribed):
    from delivery import webhooks
    from delivery.models import WebhookEndpoint, WebhookEvent

    if subscribed:
        WebhookEndpoint.objects.create(name="hr", url="https://hooks.example/", secret="s", events=["delivery.failed"])
    webhooks.forget_subscriptions()
    watched = []
    monkeypatch.setattr(control, "campaign_watch_errors", lambda campaign_id, error: watched.append((campaign_id, error)))
    teams.client.graph_install_policy(True)
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)
    Delivery.objects.filter(pk=delivery.pk).update(last_status_code=403)  # what an earlier answer left

    installing.installs_run()

    delivery = row(delivery)
    assert (delivery.status, delivery.error_code, delivery.claimed_at, delivery.last_status_code) == (
        "failed", "AppBlockedByPolicy", None, None)
    assert delivery.error_message.startswith("A Teams app permission policy keeps the app from this person")
    assert delivery.finished_at is not None
    assert progress.client().hget(progress.key(delivery.campaign_id), "failed") == b"1"  # what the watch page reads
    [(campaign_id, error)] = watched
    assert (campaign_id, error.code, error.status, error.permanent, error.personal) == (
        delivery.campaign_id, "AppBlockedByPolicy", None, True, True)
    assert error.message == delivery.error_message
    events = list(WebhookEvent.objects.filter(type="delivery.failed").values_list("payload", flat=True))
    if subscribed:
        [payload] = events
        assert (payload["delivery"], payload["status"], payload["error_code"]) == (
            delivery.pk, "failed", "AppBlockedByPolicy")
    else:
        assert events == []


def test_teams_still_answering_not_installed_when_the_attempts_are_spent_fails_about_this_person(
        teams, lacking, monkeypatch, settings):
    watched = []
    monkeypatch.setattr(control, "campaign_watch_errors", lambda campaign_id, error: watched.append(error))
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)
    installing.installs_run()
    teams.client.register_users([{"aad_object_id": str(lacking.aad_object_id), "installed": False}])
    settings.DELIVERY_MAX_ATTEMPTS = 1

    delivery_send(delivery_id=delivery.pk)

    assert (row(delivery).status, delivery.last_status_code) == ("failed", 403)
    [error] = watched
    assert (error.code, error.personal) == ("ForbiddenOperationException", True)


def test_an_installer_that_found_nothing_left_lets_the_next_hand_over_wake_another(teams, installer_afresh):
    progress.client().set(installing.WAKE_KEY, 1, ex=60)  # woken a moment ago
    installing.installer_wake()
    assert installer_afresh == []  # not twice within WAKE_SECONDS

    installing.installs_run()  # nothing to do: it ends

    installing.installer_wake()
    assert installer_afresh == [0.0]


def test_a_send_that_handed_its_row_over_as_the_campaign_was_cancelled_ends_skipped(teams, lacking):
    delivery = launched(lacking, install_app=True)
    control.campaign_cancel(campaign_id=delivery.campaign_id)
    Delivery.objects.filter(pk=delivery.pk).update(status="installing", skip_reason="")  # its hand-over, just after

    recovery.reconcile()

    assert (row(delivery).status, delivery.skip_reason) == ("skipped", "campaign_cancelled")


def test_someone_crier_had_the_app_already_for_is_not_counted_as_installed_by_crier(teams):
    person = factories.recipient()
    teams.client.graph_users([{"id": str(person.aad_object_id), "displayName": str(person)}])
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "name": str(person)}])
    teams.client.config(bot_endpoint=NOWHERE)
    delivery = launched(person, install_app=True)
    delivery_send(delivery_id=delivery.pk)

    installing.installs_run()

    assert (row(delivery).install, installed_counter(delivery)) == ("present", None)


def test_a_welcome_handed_back_after_its_install_goes_to_the_queue_that_waits_behind_no_campaign(
        teams, lacking, monkeypatch):
    queued = []
    monkeypatch.setattr(installing.feeding, "publish", lambda ids, queue: queued.append((ids, queue)))
    _, delivery_id = welcome_waiting_for_install(lacking, monkeypatch)

    installing.installs_run()

    assert queued == [([delivery_id], installing.feeding.DIRECT_QUEUE)]


def test_an_install_that_raised_is_tried_again_later_saying_what_raised(teams, lacking, monkeypatch):
    def broken(**_):
        raise RuntimeError("bad data" + "!" * 400)

    monkeypatch.setattr(installing._installer, "install", broken)
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)

    installing.installs_run()

    assert (row(delivery).status, delivery.error_code, delivery.error_message) == (
        "installing", "crier_error", "RuntimeError: bad data" + "!" * 292)  # the first 300 characters
    assert delivery.next_attempt_at > timezone.now()


def test_someone_who_opted_out_after_the_hand_over_has_nothing_installed_and_is_skipped(teams, lacking):
    from campaigns.models import OptOut

    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)
    OptOut.objects.create(recipient=lacking, source=OptOut.Source.TYPED_STOP)  # meanwhile

    installing.installs_run()
    delivery_send(delivery_id=delivery.pk)

    assert (row(delivery).status, delivery.skip_reason) == ("skipped", "opted_out")
    assert teams.client.graph_stats()["installs"] == 0


def test_a_row_installers_kept_dying_on_ends_saying_so(teams, lacking):
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)
    Delivery.objects.filter(pk=delivery.pk).update(install_attempts=installing.MAX_ATTEMPTS)  # each lease ran out

    installing.installs_run()

    assert (row(delivery).status, delivery.error_code) == ("failed", "GraphUnavailable")
    assert delivery.error_message == (f"Installing the app was tried {installing.MAX_ATTEMPTS} times and never came to "
                                      "an answer Crier could record; see the workers' logs.")
    assert teams.client.graph_stats()["installs"] == 0


def test_a_row_on_its_last_attempt_is_still_installed_for(teams, lacking):
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)
    Delivery.objects.filter(pk=delivery.pk).update(install_attempts=installing.MAX_ATTEMPTS - 1)

    installing.installs_run()

    assert (row(delivery).install, delivery.install_attempts) == ("installed", installing.MAX_ATTEMPTS)


def test_rows_none_of_which_could_be_installed_for_do_not_end_the_run_before_the_next(teams, lacking, monkeypatch):
    monkeypatch.setattr(installing, "BATCH", 1)
    inactive = factories.recipient()
    campaign = factories.campaign(install_app=True)
    services.campaign_launch(campaign_id=campaign.pk)
    rows = {d.recipient_id: d for d in Delivery.objects.filter(campaign=campaign)}
    for delivery in rows.values():
        delivery_send(delivery_id=delivery.pk)
    inactive.is_active = False
    inactive.save(update_fields=["is_active"])

    assert installing.installs_run() == 2

    assert (row(rows[inactive.pk]).status, row(rows[lacking.pk]).install) == ("retrying", "installed")


def test_someone_without_a_tenant_of_their_own_is_installed_for_in_the_bots(teams, settings):
    person = factories.recipient(tenant_id="")
    settings.BOT_TENANT_ID = factories.TENANT
    teams.client.graph_users([{"id": str(person.aad_object_id), "displayName": str(person)}])
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "installed": False,
                                  "tenant_id": factories.TENANT}])
    teams.client.config(auto_install=False, bot_endpoint=NOWHERE)
    delivery = launched(person, install_app=True)
    delivery_send(delivery_id=delivery.pk)

    installing.installs_run()

    assert row(delivery).install == "installed"


def test_a_wake_holds_for_a_few_seconds_and_wakes_anyway_without_redis(teams, installer_afresh, monkeypatch):
    import redis as redis_library

    installing.installer_wake()
    assert 0 < progress.client().ttl(installing.WAKE_KEY) <= installing.WAKE_SECONDS

    class Away:
        def set(self, *args, **kwargs):
            raise redis_library.ConnectionError("gone")

    monkeypatch.setattr(installing.progress, "client", lambda: Away())
    installing.installer_wake()
    assert installer_afresh == [0.0, 0.0]


def test_a_pause_that_fails_leaves_the_row_to_its_lease_rather_than_asking_graph_again_at_once(
        teams, lacking, monkeypatch):
    import redis as redis_library

    def unpausable(**_):
        raise redis_library.ConnectionError("Redis went away")

    monkeypatch.setattr(control, "campaign_pause_saying", unpausable)
    teams.client.graph_catalog([])
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)

    installing.installs_run()
    asked = teams.client.graph_stats()["requests"]
    installing.installs_run()

    assert (row(delivery).status, delivery.install_attempts) == ("installing", 1)
    assert delivery.claimed_at is not None  # until its lease ends
    assert teams.client.graph_stats()["requests"] == asked


def test_a_row_that_could_not_be_handed_back_keeps_none_of_the_others_from_their_install(teams, lacking, monkeypatch):
    inactive = factories.recipient(is_active=True)
    campaign = factories.campaign(install_app=True)
    services.campaign_launch(campaign_id=campaign.pk)
    rows = {d.recipient_id: d for d in Delivery.objects.filter(campaign=campaign)}
    for delivery in rows.values():
        delivery_send(delivery_id=delivery.pk)
    inactive.is_active = False
    inactive.save(update_fields=["is_active"])
    send_again = installing._send_again

    def failing_for_the_inactive(found, *, install):
        if found.id == rows[inactive.pk].id:
            raise RuntimeError("Redis went away while queuing")
        return send_again(found, install=install)

    monkeypatch.setattr(installing, "_send_again", failing_for_the_inactive)
    installing.installs_run()

    assert row(rows[lacking.pk]).install == "installed"
    assert row(rows[inactive.pk]).status == "installing"  # taken again after its lease


def test_consent_granted_after_the_pause_is_seen_at_the_resume_without_anyone_renewing_the_token(
        teams, lacking, monkeypatch, django_capture_on_commit_callbacks):
    from bots import installs

    teams.client.graph_config(permissions=["User.Read.All", "AppCatalog.Read.All"])
    graph_token_provider.invalidate()
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)
    installing.installs_run()
    assert delivery.campaign.__class__.objects.get(pk=delivery.campaign_id).status == "paused"

    teams.client.graph_config(permissions=["User.Read.All", "AppCatalog.Read.All",
                                           "TeamsAppInstallation.ReadWriteAndConsentSelfForUser.All"])
    monkeypatch.setattr(installs, "RENEW_SECONDS", 0.0)  # the administrator took more than a minute
    with django_capture_on_commit_callbacks(execute=True):
        control.campaign_resume(campaign_id=delivery.campaign_id)
    installing.installs_run()

    assert (row(delivery).status, delivery.install) == ("retrying", "installed")


def test_a_campaign_paused_by_refused_installs_can_stop_installing_and_send_to_everyone_as_they_are(
        teams, lacking, django_capture_on_commit_callbacks):
    from campaigns.models import AuditEntry, Campaign
    from campaigns.states import moves_open

    has_app = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(has_app.aad_object_id), "name": "Has App"}])
    TeamsAddress.objects.create(aad_object_id=has_app.aad_object_id, state="installed", tenant_id=factories.TENANT)
    teams.client.graph_catalog([])  # nobody will upload the app
    campaign = factories.campaign(install_app=True)
    services.campaign_launch(campaign_id=campaign.pk)
    waiting = Delivery.objects.get(campaign=campaign, recipient=lacking)
    delivery_send(delivery_id=waiting.pk)
    installing.installs_run()
    campaign.refresh_from_db()
    assert campaign.status == "paused"
    assert campaign.status_reason.endswith("Then resume it, or stop installing the app to send to everyone as they are.")
    assert "stop_installing" in moves_open(campaign)

    with django_capture_on_commit_callbacks(execute=True):
        services.campaign_installs_stop(campaign_id=campaign.pk)
        control.campaign_resume(campaign_id=campaign.pk)
    for delivery in Delivery.objects.filter(campaign=campaign):
        delivery_send(delivery_id=delivery.pk)

    campaign.refresh_from_db()
    assert campaign.install_app is False and "stop_installing" not in moves_open(campaign)
    assert (row(waiting).status, waiting.error_code, waiting.install) == ("failed", "ForbiddenOperationException", "")
    assert Delivery.objects.get(campaign=campaign, recipient=has_app).status == "sent"
    assert services.campaigns_complete_finished() == [campaign.pk]
    assert AuditEntry.objects.filter(campaign=campaign, action="change", summary__startswith="Stopped installing").exists()
    with pytest.raises(Exception, match="only a running or paused campaign stops installing"):
        services.campaign_installs_stop(campaign_id=campaign.pk)
    plain = factories.campaign(install_app=False)
    services.campaign_launch(campaign_id=plain.pk)
    with pytest.raises(Exception, match="does not install the app"):
        services.campaign_installs_stop(campaign_id=plain.pk)
    assert Campaign.objects.get(pk=plain.pk).install_app is False


def test_a_running_campaign_that_stops_installing_queues_its_waiting_rows_to_be_sent(
        teams, lacking, monkeypatch, django_capture_on_commit_callbacks):
    from campaigns.models import Campaign

    queued = []
    monkeypatch.setattr(control.feeding, "publish", lambda ids, queue: queued.append((ids, queue)))
    welcome, delivery_id = welcome_waiting_for_install(lacking, monkeypatch)

    with django_capture_on_commit_callbacks(execute=True):
        services.campaign_installs_stop(campaign_id=welcome.pk)

    assert queued == [([delivery_id], control.feeding.DIRECT_QUEUE)]
    assert Delivery.objects.get(pk=delivery_id).status == "retrying"
    assert Campaign.objects.get(pk=welcome.pk).install_app is False


def test_someone_no_tenant_is_known_for_is_not_installed_for_and_their_send_says_so(teams, settings):
    person = factories.recipient(tenant_id="")
    settings.BOT_TENANT_ID = ""
    teams.client.graph_users([{"id": str(person.aad_object_id), "displayName": str(person)}])
    teams.client.config(bot_endpoint=NOWHERE)
    delivery = launched(person, install_app=True)
    Delivery.objects.filter(pk=delivery.pk).update(status="installing")  # handed over

    installing.installs_run()
    delivery_send(delivery_id=delivery.pk)

    assert (row(delivery).status, delivery.error_code) == ("failed", "NoTenant")
    assert teams.client.graph_stats()["installs"] == 0


def test_refused_credentials_pause_the_campaign_and_the_row_waits_like_a_missing_consent(teams, lacking, monkeypatch):
    def refused(**_):
        raise installing.InstallRefused("GraphCredentialsRefused", "Entra ID or Microsoft Graph refused Crier's "
                                        "credentials (invalid_client): check BOT_APP_ID, BOT_APP_PASSWORD and GRAPH_AUTHORITY.")

    monkeypatch.setattr(installing._installer, "install", refused)
    delivery = launched(lacking, install_app=True)
    delivery_send(delivery_id=delivery.pk)

    installing.installs_run()

    delivery.campaign.refresh_from_db()
    assert (delivery.campaign.status, row(delivery).status, delivery.error_code) == (
        "paused", "installing", "GraphCredentialsRefused")
    assert "BOT_APP_PASSWORD" in delivery.campaign.status_reason
