"""People from Entra ID: the sync against the emulator's Microsoft Graph (real HTTPS, real msal tokens),
full and by delta, what it writes and what it leaves to HR, and how it fails."""

from __future__ import annotations

import uuid

import pytest
from django.core.management import CommandError, call_command

from bots.graph import GraphClient
from bots.tokens import graph_token_provider
from campaigns.entra_fields import field_maps, owned_fields
from campaigns.entra_sync import entra_sync
from campaigns.models import DirectorySync, Recipient
from campaigns.services import recipient_sync_finish
from core.errors import ApplicationError
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def oid(n: int) -> str:
    return str(uuid.UUID(int=0xE0000 + n))


def entra_user(n: int, **properties) -> dict:
    return {"id": oid(n), "displayName": f"Person {n}", "givenName": f"P{n}", "surname": "Entra",
            "mail": f"p{n}@contoso.com", "userPrincipalName": f"p{n}@contoso.com", "department": "Sales",
            "jobTitle": "Rep", "officeLocation": "Leeds", "usageLocation": "gb", "preferredLanguage": "en-GB",
            **properties}


@pytest.fixture
def graph_on(teams, settings):
    settings.ENTRA_SYNC = True
    settings.BOT_TENANT_ID = factories.TENANT
    return teams


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def person(n: int) -> Recipient:
    return Recipient.objects.get(aad_object_id=oid(n))


def test_a_first_run_lists_everyone_page_by_page_and_creates_them(graph_on):
    graph_on.client.graph_users([entra_user(n) for n in range(5)])
    graph_on.client.graph_config(page_size=2)

    run = entra_sync()

    assert (run.status, run.full, run.pages, run.seen, run.created) == ("succeeded", True, 3, 5, 5)
    created = person(0)
    assert (created.display_name, created.first_name, created.last_name, created.email, created.upn) == (
        "Person 0", "P0", "Entra", "p0@contoso.com", "p0@contoso.com")
    assert (created.department, created.job_title, created.location, created.country, created.locale) == (
        "Sales", "Rep", "Leeds", "GB", "en-GB")
    assert (created.origin, created.is_active, created.external_id) == ("entra", True, f"entra:{oid(0)}")
    assert created.tenant_id == factories.TENANT
    assert run.delta_link


def test_the_next_run_applies_only_the_changes_and_leaves_the_rest(graph_on):
    graph_on.client.graph_users([entra_user(n) for n in range(3)])
    entra_sync()
    Recipient.objects.filter(aad_object_id=oid(1)).update(time_zone="Europe/London")  # a field Entra ID does not own
    graph_on.client.graph_users([{"id": oid(1), "department": "Finance"}, entra_user(7)])

    run = entra_sync()

    assert (run.full, run.seen, run.created, run.updated, run.unchanged) == (False, 2, 1, 1, 0)
    changed = person(1)
    assert (changed.department, changed.display_name, changed.time_zone) == ("Finance", "Person 1", "Europe/London")
    assert person(7).display_name == "Person 7"


def test_a_removed_or_disabled_account_makes_its_person_inactive_and_never_deletes_them(graph_on):
    graph_on.client.graph_users([entra_user(n) for n in range(3)])
    entra_sync()
    graph_on.client.graph_delete(oid(0))
    graph_on.client.graph_users([{"id": oid(1), "accountEnabled": False}])

    run = entra_sync()

    assert run.deactivated == 2
    assert [person(n).is_active for n in range(3)] == [False, False, True]
    graph_on.client.graph_users([{"id": oid(1), "accountEnabled": True}])
    assert entra_sync().reactivated == 1
    assert person(1).is_active


def test_an_account_enabled_again_does_not_bring_back_a_person_hr_made_inactive(graph_on):
    hr_person = factories.recipient(aad_object_id=oid(4), is_active=False, external_id="HR-4")
    graph_on.client.graph_users([entra_user(4, accountEnabled=True, employeeId="HR-4")])

    run = entra_sync()

    hr_person.refresh_from_db()
    assert (hr_person.is_active, hr_person.origin, run.reactivated, run.updated) == (False, "hr", 0, 1)
    assert hr_person.display_name == "Person 4"


def test_it_matches_a_person_hr_created_by_their_hr_id_and_gives_them_their_entra_id(graph_on):
    hr_person = factories.recipient(aad_object_id=None, external_id="E-100")
    graph_on.client.graph_users([entra_user(5, employeeId="E-100")])

    run = entra_sync()

    hr_person.refresh_from_db()
    assert (run.created, run.updated) == (0, 1)
    assert (str(hr_person.aad_object_id), hr_person.department, hr_person.origin) == (oid(5), "Sales", "hr")


def test_an_expired_delta_link_starts_a_full_run_that_ends_people_entra_no_longer_lists(graph_on):
    graph_on.client.graph_users([entra_user(n) for n in range(3)])
    entra_sync()
    hr_only = factories.recipient(aad_object_id=None)
    graph_on.client.graph_expire_delta_links()
    graph_on.client.reset()  # a directory that lost person 2 without a trace
    graph_on.client.graph_users([entra_user(n) for n in range(2)])

    run = entra_sync()

    assert (run.status, run.full, run.seen) == ("succeeded", True, 2)
    assert not person(2).is_active and person(0).is_active
    hr_only.refresh_from_db()
    assert hr_only.is_active  # HR's people are HR's to end


def test_a_dry_run_counts_and_changes_nothing_and_keeps_no_delta_link(graph_on):
    graph_on.client.graph_users([entra_user(n) for n in range(3)])

    run = entra_sync(dry_run=True)

    assert (run.status, run.dry_run, run.created, run.delta_link) == ("succeeded", True, 3, "")
    assert not Recipient.objects.exists()
    assert entra_sync().full  # the next real run still lists everyone


def test_it_honours_graphs_retry_after_and_goes_on(graph_on):
    graph_on.client.graph_users([entra_user(0)])
    graph_on.client.graph_config(throttle_next=2, retry_after_seconds=3)
    sleeps = Sleeps()

    run = entra_sync(client=GraphClient(sleep=sleeps))

    assert (run.status, run.created) == ("succeeded", 1)
    assert sleeps.waits == [3.0, 3.0]


def test_a_missing_permission_fails_the_run_saying_which_and_keeps_the_last_delta_link(graph_on):
    graph_on.client.graph_users([entra_user(0)])
    first = entra_sync()
    graph_on.client.graph_config(permissions=["TeamsActivity.Send"])
    graph_token_provider.invalidate()

    run = entra_sync()

    assert run.status == "failed"
    assert "User.Read.All" in run.error and "consent" in run.error
    assert run.finished_at is not None
    graph_on.client.graph_config(permissions=["User.Read.All"])
    graph_token_provider.invalidate()
    again = entra_sync()
    assert (again.status, again.full) == ("succeeded", False)  # from the link the first run kept
    assert first.status == "succeeded"


def test_wrong_credentials_fail_the_run_in_plain_words(graph_on, settings):
    settings.BOT_APP_PASSWORD = "wrong"
    graph_token_provider.invalidate()

    run = entra_sync()

    assert run.status == "failed"
    assert "credentials" in run.error and "BOT_APP_PASSWORD" in run.error


def test_it_refuses_to_run_while_off_or_without_a_tenant(settings):
    settings.ENTRA_SYNC = False
    with pytest.raises(ApplicationError, match="ENTRA_SYNC=true"):
        entra_sync()
    settings.ENTRA_SYNC, settings.GRAPH_AUTHORITY = True, ""
    with pytest.raises(ApplicationError, match="BOT_TENANT_ID"):
        entra_sync()
    assert not DirectorySync.objects.exists()


def test_it_refuses_a_field_map_it_cannot_follow(settings):
    assert [item.field for item in field_maps("department=department, attributes.cost=employeeOrgData.costCenter")] == [
        "department", "attributes.cost"]
    with pytest.raises(ApplicationError) as refused:
        field_maps("password=passwordProfile,department")
    assert "ENTRA_SYNC_FIELDS" in refused.value.fields
    settings.ENTRA_SYNC = False
    assert owned_fields() == set()


def test_custom_attributes_come_from_properties_inside_others(graph_on, settings):
    settings.ENTRA_SYNC_FIELDS = "department=department,attributes.cost_center=employeeOrgData.costCenter"
    graph_on.client.graph_users([entra_user(0, employeeOrgData={"costCenter": "CC-9", "division": "North"})])

    entra_sync()

    assert person(0).attributes == {"cost_center": "CC-9"}
    assert person(0).display_name == ""  # not in the map: never written


def test_an_hr_sync_does_not_end_the_people_entra_id_brought(graph_on):
    graph_on.client.graph_users([entra_user(0)])
    entra_sync()
    from campaigns.models import RecipientSync

    sync = RecipientSync.objects.create()
    factories.recipient(last_sync=sync)

    result = recipient_sync_finish(sync=sync, dry_run=False)

    assert result.deactivated == 0
    assert person(0).is_active


def test_the_command_prints_what_it_did_and_fails_readably(graph_on, capsys, settings):
    graph_on.client.graph_users([entra_user(0)])

    call_command("sync_entra", "--dry-run")
    assert "would have created 1" in capsys.readouterr().out

    settings.ENTRA_SYNC = False
    with pytest.raises(CommandError, match="off"):
        call_command("sync_entra", "--full")


def test_guests_are_never_taken_and_one_taken_before_is_ended(graph_on):
    graph_on.client.graph_users([entra_user(0), entra_user(1, userType="Guest")])

    run = entra_sync()

    assert (run.created, run.skipped) == (1, 1)
    assert not Recipient.objects.filter(aad_object_id=oid(1)).exists()
    graph_on.client.graph_users([{"id": oid(0), "userType": "Guest"}])
    assert entra_sync().deactivated == 1
    assert not person(0).is_active


def test_a_person_hr_made_inactive_stays_inactive_whatever_entra_id_lists(graph_on):
    graph_on.client.graph_users([entra_user(0), entra_user(1)])
    entra_sync()
    graph_on.client.graph_users([{"id": oid(1), "accountEnabled": False}])
    entra_sync()  # the sync makes person 1 inactive
    from campaigns.services import recipients_bulk_upsert

    recipients_bulk_upsert(rows=[{"external_id": f"entra:{oid(0)}", "is_active": False},
                                 {"external_id": f"entra:{oid(1)}", "is_active": False}])  # HR: both leavers
    graph_on.client.graph_users([{"id": oid(1), "accountEnabled": True}])

    assert (entra_sync(full=True).reactivated, person(0).is_active, person(1).is_active) == (0, False, False)


def test_changing_the_fields_entra_id_owns_lists_everyone_again(graph_on, settings):
    graph_on.client.graph_users([entra_user(0)])
    entra_sync()
    settings.ENTRA_SYNC_FIELDS = "department=department,job_title=jobTitle"

    run = entra_sync()

    assert (run.full, run.seen) == (True, 1)


def test_a_delta_link_from_another_graph_lists_everyone_again(graph_on):
    graph_on.client.graph_users([entra_user(0)])
    first = entra_sync()
    DirectorySync.objects.filter(pk=first.pk).update(delta_link="https://graph.example.org/v1.0/users/delta?x=1")

    run = entra_sync()

    assert (run.status, run.full) == ("succeeded", True)


def test_only_one_run_goes_at_a_time_and_a_run_left_running_is_taken_over(graph_on):
    import psycopg
    from django.db import connection

    from campaigns.entra_sync import ENTRA_SYNC_LOCK

    dead = DirectorySync.objects.create(full=True)  # its process ended mid-run
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k in ("dbname", "user", "host", "port")}) as other:
        other.execute("SELECT pg_advisory_lock(%s, 0)", [ENTRA_SYNC_LOCK])
        with pytest.raises(ApplicationError, match="already running"):
            entra_sync()
    graph_on.client.graph_users([entra_user(0)])

    assert entra_sync().status == "succeeded"
    dead.refresh_from_db()
    assert (dead.status, "stopped before it finished" in dead.error) == ("failed", True)


def test_values_the_person_cannot_hold_are_left_out_and_said(graph_on, settings):
    settings.ENTRA_SYNC_FIELDS = "department=department,country=usageLocation,time_zone=tz,start_date=employeeHireDate"
    settings.TIME_ZONE = "Asia/Tokyo"
    graph_on.client.graph_users([
        entra_user(0, department="Sa\x00les", usageLocation="United Kingdom", tz="Mars/Base",
                   employeeHireDate="2026-03-31T15:00:00Z"),
    ])

    run = entra_sync()

    created = person(0)
    assert (created.department, created.country, created.time_zone) == ("", "", "")
    assert str(created.start_date) == "2026-04-01"  # midnight in Tokyo
    assert len(run.problems) == 3
    assert any("Null characters" in problem for problem in run.problems)


def test_a_retry_after_longer_than_a_run_waits_fails_the_run_readably(graph_on, settings):
    settings.GRAPH_MAX_RETRY_AFTER_SECONDS = 5
    graph_on.client.graph_config(throttle_next=1, retry_after_seconds=60)
    sleeps = Sleeps()

    run = entra_sync(client=GraphClient(sleep=sleeps))

    assert (run.status, sleeps.waits) == ("failed", [])
    assert "429" in run.error


def test_a_hire_date_kept_as_midnight_utc_is_that_day_in_any_time_zone(graph_on, settings):
    settings.ENTRA_SYNC_FIELDS = "start_date=employeeHireDate"
    settings.TIME_ZONE = "America/New_York"
    graph_on.client.graph_users([entra_user(0, employeeHireDate="2024-03-01T00:00:00Z")])

    entra_sync()

    assert str(person(0).start_date) == "2024-03-01"


def test_user_types_are_compared_without_case_and_an_empty_list_is_refused(graph_on, settings):
    settings.ENTRA_SYNC_USER_TYPES = ["member"]
    graph_on.client.graph_users([entra_user(0)])
    assert entra_sync().created == 1

    settings.ENTRA_SYNC_USER_TYPES = []
    with pytest.raises(ApplicationError, match="ENTRA_SYNC_USER_TYPES"):
        entra_sync()
    assert person(0).is_active


def test_hr_cannot_make_active_again_a_person_whose_account_is_disabled(graph_on):
    from campaigns.services import recipients_bulk_upsert

    graph_on.client.graph_users([entra_user(0)])
    entra_sync()
    graph_on.client.graph_users([{"id": oid(0), "accountEnabled": False}])
    entra_sync()

    result = recipients_bulk_upsert(rows=[{"external_id": f"entra:{oid(0)}", "is_active": True, "time_zone": "UTC"}])

    assert [(item["index"], item["field"]) for item in result.ignored] == [(0, "is_active")]
    assert (person(0).is_active, person(0).time_zone) == (False, "UTC")


def test_a_guest_hr_sent_stays_hrs_but_is_made_inactive_when_the_account_is_disabled(graph_on):
    guest = factories.recipient(aad_object_id=oid(3), department="Partners")
    graph_on.client.graph_users([entra_user(3, userType="Guest", department="Sales")])
    entra_sync()
    guest.refresh_from_db()
    assert (guest.is_active, guest.department, guest.entra_managed) == (True, "Partners", False)

    graph_on.client.graph_users([{"id": oid(3), "accountEnabled": False}])
    entra_sync()

    guest.refresh_from_db()
    assert guest.is_active is False


def test_mapping_a_property_to_another_field_lists_everyone_again(graph_on, settings):
    settings.ENTRA_SYNC_FIELDS = "department=department"
    graph_on.client.graph_users([entra_user(0)])
    entra_sync()
    settings.ENTRA_SYNC_FIELDS = "job_title=department"  # the same property asked of Graph

    run = entra_sync()

    assert (run.full, person(0).job_title) == (True, "Sales")


def test_every_person_listed_is_counted_once(graph_on):
    factories.recipient(aad_object_id=oid(0), display_name="Person 0", first_name="P0", last_name="Entra",
                        email="p0@contoso.com", upn="p0@contoso.com", department="Sales", job_title="Rep",
                        location="Leeds", country="GB", locale="en-GB")  # HR sent them as Entra ID has them
    graph_on.client.graph_users([entra_user(0), entra_user(1), entra_user(2, userType="Guest"),
                                 entra_user(3, accountEnabled=False)])

    run = entra_sync()

    assert (run.seen, run.created, run.updated, run.unchanged, run.skipped) == (4, 1, 0, 1, 2)
    assert run.seen == run.created + run.updated + run.unchanged + run.skipped + run.deactivated + run.reactivated


def test_a_page_is_written_in_a_few_statements_however_many_people_it_lists(graph_on, django_assert_max_num_queries):
    """The speed of a large sync (make bench, G): a page's people are read, created and changed together."""
    graph_on.client.graph_config(page_size=200)
    for n in range(0, 100):  # known: half change, half do not
        factories.recipient(aad_object_id=oid(n), external_id=f"HR{n}", display_name=f"Person {n}", first_name=f"P{n}",
                            last_name="Entra", email=f"p{n}@contoso.com", upn=f"p{n}@contoso.com",
                            department="Sales" if n % 2 else "Old", job_title="Rep", location="Leeds", country="GB",
                            locale="en-GB")
    graph_on.client.graph_users([entra_user(n) for n in range(200)])  # and 100 new

    with django_assert_max_num_queries(20):
        run = entra_sync()

    assert (run.seen, run.created, run.updated, run.unchanged, run.pages) == (200, 100, 50, 50, 1)
    assert Recipient.objects.filter(department="Old").count() == 0
    assert Recipient.objects.filter(origin=Recipient.Origin.ENTRA).count() == 100


def test_whom_a_full_run_did_not_list_is_found_by_one_anti_join_however_many_it_listed():
    """``NOT IN`` a sub-query scans the whole list for each person once the list outgrows work_mem (hours at a
    million people); ``NOT EXISTS`` stays one anti-join."""
    from django.db import connection

    from campaigns.entra_sync import SEEN, unlisted_people

    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {SEEN} (aad uuid PRIMARY KEY)")
        cursor.execute(f"INSERT INTO {SEEN} SELECT gen_random_uuid() FROM generate_series(1, 5000)")
        cursor.execute(f"ANALYZE {SEEN}")
        cursor.execute("SET work_mem = '64kB'")
        try:
            sql, params = unlisted_people().query.sql_with_params()
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("RESET work_mem")
            cursor.execute(f"DROP TABLE {SEEN}")
    assert "Anti Join" in plan and "SubPlan" not in plan, plan
