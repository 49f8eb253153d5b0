"""Welcome messages: the running welcome campaign reaches each new person once, when they
install the bot or when their start date arrives, whichever comes first."""

from __future__ import annotations

import datetime

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from campaigns.models import Campaign, Recipient
from campaigns.selectors import audience_recipients

from .models import Delivery, delivery_id


def welcome_campaign() -> Campaign | None:
    return Campaign.objects.filter(kind=Campaign.Kind.WELCOME, status=Campaign.Status.RUNNING).first()


def _welcome(campaign: Campaign, people) -> list[int]:
    """Creates the missing welcome deliveries for ``people`` and queues them after commit."""
    people_sql, params = audience_recipients(audience=campaign.audience).filter(
        pk__in=people.values("pk")
    ).values("id").query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Delivery._meta.db_table} (id, campaign_id, recipient_id) "
            f"SELECT %s + people.id, %s, people.id FROM ({people_sql}) AS people "
            "ON CONFLICT (id) DO NOTHING RETURNING id",
            [delivery_id(campaign.pk, 0), campaign.pk, *params],
        )
        ids = [row[0] for row in cursor.fetchall()]
        if ids:
            # Its rows are its total so far: the watch page counts what is still on its way against them.
            Campaign.objects.filter(pk=campaign.pk).update(total_deliveries=F("total_deliveries") + len(ids))
            transaction.on_commit(lambda: welcome_enqueue(ids))
    return ids


def welcome_enqueue(ids: list[int]) -> None:
    """Welcomes are not fed like campaigns: they go straight to the queue that never waits."""
    from .feeding import DIRECT_QUEUE, publish

    publish(ids, queue=DIRECT_QUEUE)


def welcome_on_install(*, aad_object_id: str) -> list[int]:
    campaign = welcome_campaign()
    if campaign is None:
        return []
    return _welcome(campaign, Recipient.objects.filter(aad_object_id=aad_object_id))


def welcome_new_starters(*, today: datetime.date | None = None) -> list[int]:
    """People whose start date has come since the welcome campaign was launched. People who
    started before it are not welcomed retroactively (unless they install the bot)."""
    campaign = welcome_campaign()
    if campaign is None:
        return []
    today = today or timezone.localdate()
    since = timezone.localtime(campaign.launched_at).date() if campaign.launched_at else today
    starters = Recipient.objects.filter(start_date__gte=since, start_date__lte=today)
    return _welcome(campaign, starters)
