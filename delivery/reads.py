"""Who read a message, and how they reacted to it: Teams' read receipts and reactions (bots.services hands each
one here).

In a person's one-to-one chat with the bot, Teams tells the bot the last message the person has read
(``lastReadMessageId``): every message of theirs whose activity id is at or below it, compared as integers, has
been read. One receipt marks all of them at once, each with the time of its first read (``read_at``), and adds
to each campaign's ``read`` counter by the rows it marked. A receipt repeated, or one about messages already
read, marks nothing.

A read is a lower bound: a person, or their organisation, may turn read receipts off, and then Teams reports no
read at all; and there are none outside one-to-one chats.

A reaction (like, heart…) is kept once a kind for each delivery, and taken back when the person takes it back.
"""

from __future__ import annotations

import re
from collections import Counter

from django.db import connection
from django.utils import timezone

from . import progress
from .models import PERSON_BITS, campaign_ids

MOST_DIGITS = 30  # activity ids are integers: Teams' are epoch milliseconds with a few more digits
_DIGITS = re.compile(rf"^[0-9]{{1,{MOST_DIGITS}}}$")

# The person's rows in every campaign that sent anything (one probe of the primary key each), sent and not read
# yet, whose activity id is at or below the one read.
MARK = f"""
UPDATE delivery_delivery AS d SET read_at = %(now)s
 WHERE d.id = ANY(ARRAY(
         SELECT c.id * {1 << PERSON_BITS} + r.id
           FROM campaigns_campaign AS c, campaigns_recipient AS r
          WHERE c.launched_at IS NOT NULL AND r.aad_object_id = %(aad)s))
   AND d.status = 'sent' AND d.read_at IS NULL
   AND d.activity_id ~ '^[0-9]{{1,{MOST_DIGITS}}}$' AND d.activity_id::numeric <= %(last)s::numeric
RETURNING d.campaign_id
"""


def reads_record(*, aad_object_id: str, last_read: str) -> int:
    """Marks the person's messages read up to ``last_read`` (an activity id); returns how many it marked."""
    if not aad_object_id or not isinstance(last_read, str) or not _DIGITS.match(last_read):
        return 0
    with connection.cursor() as cursor:
        cursor.execute(MARK, {"now": timezone.now(), "aad": aad_object_id, "last": last_read})
        campaigns = Counter(campaign_id for (campaign_id,) in cursor.fetchall())
    for campaign_id, read in campaigns.items():
        progress.record(campaign_id, read=read)
    return sum(campaigns.values())


# --- Reactions -------------------------------------------------------------------------------------------------

KIND = re.compile(r"^[A-Za-z0-9_+-]{1,32}$")  # Teams' names: like, heart, laugh, surprised, sad, angry, and more
# The person's sent message with that activity id, in any campaign (one probe of the primary key each).
MESSAGE = f"""
SELECT d.id, d.campaign_id FROM delivery_delivery AS d
 WHERE d.id = ANY(ARRAY(
         SELECT c.id * {1 << PERSON_BITS} + r.id
           FROM campaigns_campaign AS c, campaigns_recipient AS r
          WHERE c.launched_at IS NOT NULL AND r.aad_object_id = %(aad)s))
   AND d.status = 'sent' AND d.activity_id = %(activity)s
"""


def reactions_record(*, aad_object_id: str, activity_id: str, added: list[str], removed: list[str]) -> int:
    """The person's reactions to one of the messages Crier sent them: kinds added (once each, however often
    Teams says so) and taken back. A reaction to anything else, or from anyone else, counts for nothing. Returns
    how many rows changed."""
    if not aad_object_id or not activity_id:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(MESSAGE, {"aad": aad_object_id, "activity": activity_id[:500]})
        found = cursor.fetchone()
        if found is None:
            return 0
        delivery_id, _ = found
        changed = 0
        for kind in {kind for kind in added if KIND.match(kind)}:
            cursor.execute("INSERT INTO delivery_reaction (delivery_id, kind, created_at) VALUES (%s, %s, now())"
                           " ON CONFLICT DO NOTHING", [delivery_id, kind])
            changed += cursor.rowcount
        kinds = [kind for kind in removed if KIND.match(kind)]
        if kinds:
            cursor.execute("DELETE FROM delivery_reaction WHERE delivery_id = %s AND kind = ANY(%s)", [delivery_id, kinds])
            changed += cursor.rowcount
    return changed


def reactions_count(*, campaign_id: int) -> dict[str, int]:
    """The campaign's reactions by kind, most first: one range of the reactions' index."""
    lowest, end = campaign_ids(campaign_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT kind, count(*) FROM delivery_reaction WHERE delivery_id >= %s AND delivery_id < %s"
                       " GROUP BY kind ORDER BY count(*) DESC, kind", [lowest, end])
        return dict(cursor.fetchall())
