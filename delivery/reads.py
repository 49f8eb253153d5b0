"""Who read a message, and how they reacted to it: Teams' read receipts and reactions in a person's one-to-one
chat with the bot (bots.services hands each one here).

Teams tells the bot the last message the person has read (``lastReadMessageId``): every message of theirs whose
activity id is at or below it, compared as integers, has been read. A receipt is sent each time the person opens
the chat, so most tell nothing new: the person's address keeps the last id reported (``last_read_id``), and a
receipt at or below it costs one indexed update and nothing more. A new one marks, in one statement, the person's
sent messages of the campaigns of the last ``READ_WINDOW_DAYS`` (and of a welcome campaign still running) that
were not read yet, with the moment Teams first reported them read (``read_at``), and adds to each campaign's
``read`` counter once the statement has committed.

A read is a lower bound: a person, or their organisation, may turn read receipts off, and then Teams reports no
read at all; and there are none outside one-to-one chats.

A reaction (like, heart, or any emoji's id) is kept once a kind for each delivery, for a message Crier sent the
person who reacted, and taken back when they take it back.

An endpoint that subscribes hears of each message marked read (``delivery.read``) and of each reaction added
(``reaction.added``), written in the same transaction as the marks and the reactions.
"""

from __future__ import annotations

import logging
import re
from collections import Counter

from django.db import connection, transaction
from django.utils import timezone


from . import progress, webhooks
from .models import PERSON_BITS, entra_object_id

logger = logging.getLogger(__name__)

MOST_DIGITS = 30  # activity ids are integers: Teams' are epoch milliseconds with a few more digits
READ_WINDOW_DAYS = 90  # older campaigns' reads are not looked for: a receipt would probe every campaign ever sent
_DIGITS = re.compile(rf"^[0-9]{{1,{MOST_DIGITS}}}$")

# The campaigns whose messages a receipt or a reaction may concern, each with the person's row in it (one probe
# of the primary key each).
_PERSON_ROWS = f"""
ARRAY(SELECT c.id * {1 << PERSON_BITS} + r.id
        FROM campaigns_campaign AS c, campaigns_recipient AS r
       WHERE r.aad_object_id = %(aad)s AND c.launched_at IS NOT NULL
         AND (c.launched_at > %(now)s - make_interval(days => {READ_WINDOW_DAYS}) OR c.status = 'running'))
"""
# The receipt moves the person's last read id forward; the marks follow only when that told something new (or the
# person has no address to keep it). Ids are compared as integers only where they are integers: the CASE keeps the
# cast off any other id. One statement: a receipt costs one round trip, in a transaction of its own.
_MARK = f"""
WITH moved AS (
  UPDATE bots_teamsaddress SET last_read_id = %(last)s::numeric
   WHERE aad_object_id = %(aad)s AND (last_read_id IS NULL OR last_read_id < %(last)s::numeric)
  RETURNING 1),
     news AS (
  SELECT EXISTS (SELECT 1 FROM moved)
         OR NOT EXISTS (SELECT 1 FROM bots_teamsaddress WHERE aad_object_id = %(aad)s) AS told),
     marked AS (
  UPDATE delivery_delivery AS d SET read_at = %(now)s
   WHERE (SELECT told FROM news) AND d.id = ANY({_PERSON_ROWS})
     AND d.status = 'sent' AND d.read_at IS NULL
     AND CASE WHEN d.activity_id ~ '^[0-9]{{1,{MOST_DIGITS}}}$' THEN d.activity_id::numeric END <= %(last)s::numeric
  RETURNING d.id, d.campaign_id, d.recipient_id, d.read_at)
"""
MARK = _MARK + "SELECT id, campaign_id FROM marked"
# The marks and, when an endpoint subscribes, a ``delivery.read`` webhook event for each, in the same statement.
MARK_WITH_EVENTS = _MARK + """,
     events AS (
  INSERT INTO delivery_webhookevent (type, payload, created_at)
  SELECT 'delivery.read', json_build_object('delivery', m.id, 'campaign', m.campaign_id,
                                            'recipient', r.external_id, 'read_at', m.read_at), now()
    FROM marked AS m JOIN campaigns_recipient AS r ON r.id = m.recipient_id)
SELECT id, campaign_id FROM marked
"""


def reads_record(*, aad_object_id: str, last_read: str) -> int:
    """Marks the person's messages read up to ``last_read`` (an activity id); returns how many it marked."""
    aad = entra_object_id(aad_object_id)
    if aad is None or not isinstance(last_read, str) or not _DIGITS.match(last_read):
        return 0
    sql = MARK_WITH_EVENTS if "delivery.read" in webhooks.wanted_types() else MARK
    with connection.cursor() as cursor:
        cursor.execute(sql, {"now": timezone.now(), "aad": aad, "last": last_read})
        campaigns = Counter(row[1] for row in cursor.fetchall())
    if not campaigns:
        return 0
    # Counted once the marks are there for good: a rebuild of the counters in between would lose the increment.
    transaction.on_commit(lambda: [progress.record(campaign, read=read) for campaign, read in campaigns.items()])
    return sum(campaigns.values())


# --- Reactions -------------------------------------------------------------------------------------------------

MOST_KIND = 100
KIND = re.compile(rf"^[A-Za-z0-9_+-]{{1,{MOST_KIND}}}$")  # like, heart, laugh, 2705_whiteheavycheckmark…
# The person's message the reaction is to, and the kinds added and taken back, in one statement (a kind both added
# and taken back in one activity ends taken back: the caller leaves it out of those added). With ``events``, a
# ``reaction.added`` webhook event for each kind added, in the same statement.
REACT = f"""
WITH message AS (
  SELECT d.id, d.campaign_id, r.external_id FROM delivery_delivery AS d
    JOIN campaigns_recipient AS r ON r.id = d.recipient_id
   WHERE d.id = ANY({_PERSON_ROWS}) AND d.status = 'sent' AND d.activity_id = %(activity)s
   ORDER BY d.id LIMIT 1),
     added AS (
  INSERT INTO delivery_reaction (delivery_id, kind, created_at)
  SELECT m.id, kind, now() FROM message AS m, unnest(%(added)s::text[]) AS kind
  ON CONFLICT DO NOTHING RETURNING kind),
     removed AS (
  DELETE FROM delivery_reaction WHERE delivery_id = (SELECT id FROM message) AND kind = ANY(%(removed)s::text[])
  RETURNING kind),
     events AS (
  INSERT INTO delivery_webhookevent (type, payload, created_at)
  SELECT 'reaction.added', json_build_object('delivery', m.id, 'campaign', m.campaign_id, 'recipient', m.external_id,
                                             'kind', a.kind), now()
    FROM message AS m, added AS a WHERE %(events)s)
SELECT m.id, m.campaign_id, ARRAY(SELECT kind FROM added ORDER BY kind), ARRAY(SELECT kind FROM removed ORDER BY kind)
  FROM message AS m
"""


def reactions_record(*, aad_object_id: str, activity_id: str, added: list[str], removed: list[str]) -> int:
    """The person's reactions to one of the messages Crier sent them: kinds added (once each, however often
    Teams says so) and taken back. A reaction to anything else, or from anyone else, counts for nothing; a kind
    that is no name is left out, and logged. Returns how many rows changed."""
    aad = entra_object_id(aad_object_id)
    if aad is None or not activity_id:
        return 0
    kinds_removed = sorted({kind for kind in removed if KIND.match(kind)})
    kinds_added = sorted({kind for kind in added if KIND.match(kind)} - set(kinds_removed))
    named = [kind for kind in [*added, *removed] if not KIND.match(kind)]
    if named:
        logger.info("reactions left out, not being names: %r", named)
    with connection.cursor() as cursor:
        cursor.execute(REACT, {"aad": aad, "activity": activity_id[:500], "now": timezone.now(),
                               "added": kinds_added, "removed": kinds_removed,
                               "events": "reaction.added" in webhooks.wanted_types()})
        found = cursor.fetchone()
    if found is None:
        return 0
    _, campaign_id, kinds_in, kinds_out = found
    counted: Counter = Counter({kind: 1 for kind in kinds_in})
    counted.update({kind: -1 for kind in kinds_out})
    if counted:  # the counters follow once the rows are there for good
        transaction.on_commit(lambda: progress.record(
            campaign_id, **{f"{progress.REACTION}{kind}": n for kind, n in counted.items()}))
    return sum(abs(n) for n in counted.values())
