"""Welcome messages: the running welcome campaign reaches each new person once, when they
install the bot or when their start date arrives, whichever comes first; at most
``APPROVAL_THRESHOLD`` new starters within ``APPROVAL_WINDOW_HOURS`` (it needs no approval), past
which it pauses."""

from __future__ import annotations

import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max
from django.utils import timezone

from campaigns.models import AuditEntry, Campaign, Recipient
from campaigns.selectors import audience_recipients

from .control import campaign_pause
from .models import Delivery, delivery_id


def welcome_campaign() -> Campaign | None:
    return Campaign.objects.filter(kind=Campaign.Kind.WELCOME, status=Campaign.Status.RUNNING).first()


def _welcome(campaign: Campaign, people, *, capped: bool = True) -> list[int]:
    """Creates the missing welcome deliveries for ``people`` and queues them after commit.

    A welcome campaign needs no approval, so it may not reach more than ``APPROVAL_THRESHOLD``
    people within ``APPROVAL_WINDOW_HOURS`` (counted since it was last resumed, if that is later):
    ``capped``, it welcomes people, in the order of their ids, until the window is full and then
    pauses, saying why. Uncapped (one person installing the bot), the person is welcomed whatever
    the count, and counts."""
    people_sql, params = audience_recipients(audience=campaign.audience).filter(
        pk__in=people.values("pk")
    ).values("id").query.sql_with_params()
    first = delivery_id(campaign.pk, 0)
    waiting = (
        f"SELECT people.id FROM ({people_sql}) AS people "
        f"WHERE NOT EXISTS (SELECT 1 FROM {Delivery._meta.db_table} AS d WHERE d.id = %s + people.id)"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        # The campaign's row orders welcomes one after the other, so the window is counted once.
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status != Campaign.Status.RUNNING:
            return []
        room = _room(campaign) if capped else None
        cursor.execute(
            f"INSERT INTO {Delivery._meta.db_table} (id, campaign_id, recipient_id) "
            f"SELECT %s + waiting.id, %s, waiting.id FROM ({waiting} ORDER BY people.id LIMIT %s) AS waiting "
            "ON CONFLICT (id) DO NOTHING RETURNING id",
            [first, campaign.pk, *params, first, room],
        )
        ids = [row[0] for row in cursor.fetchall()]
        if ids:
            # Its rows are its total so far: the watch page counts what is still on its way against them.
            Campaign.objects.filter(pk=campaign.pk).update(total_deliveries=F("total_deliveries") + len(ids))
            transaction.on_commit(lambda: welcome_enqueue(ids))
        if room is not None:
            cursor.execute(f"SELECT EXISTS ({waiting})", [*params, first])
            if cursor.fetchone()[0]:
                _pause_full(campaign)
    return ids


def _window_start(campaign: Campaign) -> datetime.datetime:
    """Since when welcomes count: the window, or the last resume if later (a person who resumed the
    campaign looked at who it welcomes)."""
    since = timezone.now() - datetime.timedelta(hours=settings.APPROVAL_WINDOW_HOURS)
    resumed = campaign.audit_entries.filter(action=AuditEntry.Action.RESUME).aggregate(last=Max("created_at"))["last"]
    return max(since, resumed) if resumed else since


def _room(campaign: Campaign) -> int:
    welcomed = Delivery.objects.of_campaign(campaign.pk).filter(created_at__gte=_window_start(campaign)).count()
    return max(0, settings.APPROVAL_THRESHOLD - welcomed)


def _pause_full(campaign: Campaign) -> None:
    hours = settings.APPROVAL_WINDOW_HOURS
    campaign_pause(
        campaign_id=campaign.pk,
        reason=f"Paused: more than {settings.APPROVAL_THRESHOLD} new starters to welcome within {hours} hours, "
        "the number that needs approval (a bulk change of start dates, say). Nobody more is welcomed until a "
        "person looks at who they are and resumes it; the count then starts again.",
    )


def welcome_enqueue(ids: list[int]) -> None:
    """Welcomes are not fed like campaigns: they go straight to the queue that never waits."""
    from .feeding import DIRECT_QUEUE, publish

    publish(ids, queue=DIRECT_QUEUE)


def welcome_on_install(*, aad_object_id: str) -> list[int]:
    campaign = welcome_campaign()
    if campaign is None:
        return []
    # One person installing the bot: welcomed whatever the window's count, which it adds to.
    return _welcome(campaign, Recipient.objects.filter(aad_object_id=aad_object_id), capped=False)


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
