"""The bulk upsert against another upload that creates the same person at the same moment."""

import threading
import time

import psycopg
import pytest
from django.db import connection

from campaigns.models import Recipient
from campaigns.services import recipients_bulk_upsert
from core.errors import ApplicationError


@pytest.mark.django_db(transaction=True)
def test_an_upload_racing_another_for_a_new_person_loses_nothing_and_asks_to_send_again():
    settings = connection.settings_dict
    other = psycopg.connect(
        dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"], port=settings["PORT"] or 5432,
        password=settings["PASSWORD"] or None,
    )
    table = Recipient._meta.db_table
    other.execute(  # the other upload's row, not committed yet: ours waits for it
        f"INSERT INTO {table} (external_id, email, upn, tenant_id, first_name, last_name, display_name, department, "
        "job_title, location, country, time_zone, locale, is_active, attributes, created_at, updated_at) "
        "VALUES ('E1', '', '', '', 'Theirs', '', '', '', '', '', '', '', '', true, '{}', now(), now())"
    )
    outcome = {}

    def ours():
        try:
            outcome["result"] = recipients_bulk_upsert(rows=[{"external_id": "E1", "first_name": "Ours"}])
        except ApplicationError as exc:
            outcome["error"] = exc
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=ours)
    thread.start()
    time.sleep(0.5)
    other.commit()
    other.close()
    thread.join(timeout=10)

    assert (outcome["error"].code, outcome["error"].status) == ("concurrent_update", 409)
    assert "result" not in outcome
    assert Recipient.objects.get(external_id="E1").first_name == "Theirs"


def _other_connection():
    settings = connection.settings_dict
    return psycopg.connect(
        dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"], port=settings["PORT"] or 5432,
        password=settings["PASSWORD"] or None,
    )


def _insert_person(conn, external_id):
    conn.execute(
        f"INSERT INTO {Recipient._meta.db_table} (external_id, email, upn, tenant_id, first_name, last_name, "
        "display_name, department, job_title, location, country, time_zone, locale, is_active, attributes, "
        "created_at, updated_at) VALUES (%s, '', '', '', 'Theirs', '', '', '', '', '', '', '', '', true, '{}', "
        "now(), now())",
        [external_id],
    )


@pytest.mark.django_db(transaction=True)
def test_two_uploads_of_the_same_new_people_in_opposite_order_do_not_deadlock():
    other = _other_connection()
    other.execute("SET deadlock_timeout = '100ms'")  # were there a deadlock, the other upload would see it first
    _insert_person(other, "A")  # the other upload, in the order A, B: A written, not committed yet
    outcome = {}

    def ours():  # the same people, in the order B, A
        try:
            outcome["result"] = recipients_bulk_upsert(
                rows=[{"external_id": "B", "first_name": "Ours"}, {"external_id": "A", "first_name": "Ours"}]
            )
        except ApplicationError as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=ours)
    thread.start()
    time.sleep(0.5)  # ours is now waiting for A
    try:
        _insert_person(other, "B")
        other.commit()
    except psycopg.errors.DeadlockDetected as exc:
        outcome["other"] = exc
    finally:
        other.close()
    thread.join(timeout=10)

    assert "other" not in outcome, outcome["other"]
    assert (outcome["error"].code, outcome["error"].status) == ("concurrent_update", 409)
    assert sorted(Recipient.objects.values_list("external_id", "first_name")) == [("A", "Theirs"), ("B", "Theirs")]


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])  # deadlock_detected, serialization_failure
@pytest.mark.django_db
def test_a_deadlock_or_serialization_failure_in_the_upsert_is_a_409_asking_to_send_again(monkeypatch, sqlstate):
    from campaigns import services

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION pg_temp.fails(bigint, jsonb) RETURNS TABLE (updated bigint, inserted bigint) "
            f"LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'lost' USING ERRCODE = '{sqlstate}'; END $$"
        )
    monkeypatch.setattr(services, "_upsert_statement", lambda **kwargs: ("SELECT * FROM pg_temp.fails(%s, %s)", ()))

    with pytest.raises(ApplicationError) as raised:
        recipients_bulk_upsert(rows=[{"external_id": "E1", "first_name": "Ada"}])

    assert (raised.value.code, raised.value.status) == ("concurrent_update", 409)
    assert not Recipient.objects.filter(external_id="E1").exists()


@pytest.mark.django_db(transaction=True)
def test_an_upload_into_a_sync_that_finishes_meanwhile_is_refused_rather_than_leaving_a_listed_person_deactivated():
    from campaigns.models import RecipientSync
    from tests import factories

    sync = RecipientSync.objects.create()
    factories.recipient(external_id="listed-before", last_sync=sync)
    factories.recipient(external_id="late")
    finishing = _other_connection()  # the finish, as recipient_sync_finish does it, not committed yet
    finishing.execute(f"SELECT 1 FROM {RecipientSync._meta.db_table} WHERE id = %s FOR UPDATE", [sync.pk])
    finishing.execute(
        f"UPDATE {Recipient._meta.db_table} SET is_active = false WHERE is_active AND last_sync_id IS DISTINCT FROM %s",
        [sync.pk],
    )
    finishing.execute(f"UPDATE {RecipientSync._meta.db_table} SET finished_at = now() WHERE id = %s", [sync.pk])
    outcome = {}

    def upload():  # the view read the sync before the finish: not finished then
        try:
            outcome["result"] = recipients_bulk_upsert(rows=[{"external_id": "late", "first_name": "Late"}], sync=sync)
        except ApplicationError as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=upload)
    thread.start()
    time.sleep(0.5)
    finishing.commit()
    finishing.close()
    thread.join(timeout=10)

    assert "result" not in outcome, "the upload said it listed someone the finished sync had deactivated"
    assert (outcome["error"].code, outcome["error"].status) == ("invalid_state", 409)
    late = Recipient.objects.get(external_id="late")
    assert (late.is_active, late.last_sync_id) == (False, None)
    assert late.first_name != "Late"  # nothing of the refused upload was saved
