"""The migration to ids made of campaign and person keeps every row, and the changes made to sent
messages follow their rows."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from delivery.models import Delivery, DeliveryChange, MessageChange
from tests import factories

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("latest_schema_afterwards")]

BEFORE = [("delivery", "0006_delivery_rows_without_foreign_key_checks")]
AFTER = [("delivery", "0007_delivery_ids_from_campaign_and_person")]


def migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)


def test_rows_written_before_get_their_new_ids_and_their_changes_follow():
    first, second = factories.campaign(), factories.campaign()
    ann, bob = factories.recipient(), factories.recipient()
    recall = MessageChange.objects.create(campaign=first, action=MessageChange.Action.RECALL, total=1)

    migrate(BEFORE)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO delivery_delivery (campaign_id, recipient_id, status) VALUES (%s, %s, 'sent'),"
                " (%s, %s, 'pending'), (%s, %s, 'failed') RETURNING id",
                [first.pk, ann.pk, first.pk, bob.pk, second.pk, ann.pk],
            )
            old_ids = [row[0] for row in cursor.fetchall()]
            cursor.execute(
                "INSERT INTO delivery_deliverychange (change_id, delivery_id, status, error_code, error_message, attempts)"
                " VALUES (%s, %s, 'done', '', '', 1)",
                [recall.pk, old_ids[0]],
            )
    finally:
        migrate(AFTER)

    rows = list(Delivery.objects.order_by("id").values_list("id", "campaign_id", "recipient_id", "status"))
    assert sorted(rows) == sorted([
        (first.pk * 2**32 + ann.pk, first.pk, ann.pk, "sent"),
        (first.pk * 2**32 + bob.pk, first.pk, bob.pk, "pending"),
        (second.pk * 2**32 + ann.pk, second.pk, ann.pk, "failed"),
    ])
    # (only the columns this migration knows: later ones are not there yet)
    change = DeliveryChange.objects.values_list("delivery__campaign_id", "delivery__recipient_id").get()
    assert change == (first.pk, ann.pk)
