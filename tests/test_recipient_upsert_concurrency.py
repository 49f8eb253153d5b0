"""The bulk upsert against another upload that creates the same person at the same moment."""

import threading
import time

import psycopg
import pytest
from django.db import connection

from campaigns.errors import ApplicationError
from campaigns.models import Recipient
from campaigns.services import recipients_bulk_upsert


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
