"""Who read a message: Teams' read receipts (bots.services hands each one here).

In a person's one-to-one chat with the bot, Teams tells the bot the last message the person has read
(``lastReadMessageId``): every message of theirs whose activity id is at or below it, compared as integers, has
been read. One receipt marks all of them at once, each with the time of its first read (``read_at``), and adds
to each campaign's ``read`` counter by the rows it marked. A receipt repeated, or one about messages already
read, marks nothing.

A read is a lower bound: a person, or their organisation, may turn read receipts off, and then Teams reports no
read at all; and there are none outside one-to-one chats.
"""

from __future__ import annotations

import re
from collections import Counter

from django.db import connection
from django.utils import timezone

from . import progress
from .models import PERSON_BITS

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
