"""Materialisation: a campaign's audience becomes its delivery rows, one range of recipient ids at a
time. The launch writes the first range in its own transaction (``deliveries_materialise_chunk``); a
task writes the rest (``campaign_materialise``), several ranges at once, each committed in the order
of its ids, while the workers already send."""

from __future__ import annotations

import logging
import select
import threading
from contextlib import ExitStack, contextmanager
from concurrent.futures import ThreadPoolExecutor

import psycopg
from psycopg import pq
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Max
from django.utils import timezone

from campaigns.models import Campaign, Recipient
from core.locks import advisory_lock
from campaigns.selectors import campaign_people_known, campaign_recipients, opted_out_people_sql

from . import progress
from .follow_up_people import follow_up_people
from .models import delivery_id
from .reach import pause_outgrown, reach_limit

logger = logging.getLogger(__name__)

# One range of recipient ids of the audience becomes delivery rows (a range, not ORDER BY ... LIMIT,
# which makes the planner scan and sort the whole table for every chunk); people who opted out (or
# blocked the bot) and people without a Teams identity are written already skipped, with the
# reason. The rows are computed inside PostgreSQL and either inserted by the same statement (the
# launch's first range) or streamed, as PostgreSQL's binary COPY format and untouched, from a
# second connection into COPY ... FROM STDIN, which writes a page of rows at a time instead of one
# row at a time, while the other connection computes the next rows on the other core. A range
# that may hold rows already (a materialisation resumed after a crash) is inserted with ON CONFLICT
# DO NOTHING. The primary key (campaign and person in one number) holds in every case.
MATERIALISE_ROWS = """
WITH chunk AS (
    SELECT people.id, people.aad_object_id FROM ({people}) AS people
     WHERE people.id > %s AND people.id <= %s
), opted AS (
    SELECT DISTINCT o.recipient_id FROM ({opted_out}) AS o WHERE o.recipient_id > %s AND o.recipient_id <= %s
)
SELECT %s::bigint + c.id, %s::bigint, c.id::bigint,
       (CASE WHEN c.opted_out OR c.aad_object_id IS NULL THEN 'skipped' ELSE 'pending' END)::text,
       (CASE WHEN c.opted_out THEN 'opted_out' WHEN c.aad_object_id IS NULL THEN 'no_teams_identity' ELSE '' END)::text,
       CASE WHEN c.opted_out OR c.aad_object_id IS NULL THEN %s::timestamptz END
  FROM (SELECT chunk.id, chunk.aad_object_id, opted.recipient_id IS NOT NULL AS opted_out
          FROM chunk LEFT JOIN opted ON opted.recipient_id = chunk.id) AS c
"""
COPY_BLOCK = 1 << 16
MATERIALISE_COLUMNS = "delivery_delivery (id, campaign_id, recipient_id, status, skip_reason, finished_at)"
# The rows of a range this transaction wrote skipped (they end when it began), counted through
# delivery_outcome_idx: a RETURNING clause would keep every row inserted until the statement ends.
SKIPPED_IN_RANGE = """
SELECT count(*) FROM delivery_delivery
 WHERE status = 'skipped' AND campaign_id = %s AND id > %s AND id <= %s AND finished_at = now()
"""


def deliveries_materialise_chunk(*, campaign: Campaign, after: int) -> tuple[int, int, int, bool]:
    """Writes the delivery rows for the audience's people whose id is in the next
    ``MATERIALISE_CHUNK_SIZE`` ids above ``after``, in the caller's transaction, which holds the
    campaign row. Returns (the range's end, rows inserted, of which skipped, finished: no recipient
    has a higher id)."""
    upper = after + settings.MATERIALISE_CHUNK_SIZE
    inserted, skipped = _deliveries_insert(campaign=campaign, after=after, upper=upper)
    finished = upper >= _highest_recipient_id()
    Campaign.objects.filter(pk=campaign.pk).update(
        total_deliveries=F("total_deliveries") + inserted, **({"materialised_at": timezone.now()} if finished else {})
    )
    return upper, inserted, skipped, finished


def _highest_recipient_id() -> int:
    return Recipient.objects.aggregate(highest=Max("id"))["highest"] or 0


def _deliveries_insert(*, campaign: Campaign, after: int, upper: int, reader=None) -> tuple[int, int]:
    """Writes the rows of one range of recipient ids; returns (inserted, of which skipped). Must
    run in a transaction. ``reader``, a second connection to the database (``_reader``), computes
    the rows for COPY; without it one INSERT statement does both."""
    people, params = _people(campaign).values("id", "aad_object_id").query.sql_with_params()
    rows = MATERIALISE_ROWS.format(people=people, opted_out=opted_out_people_sql(mandatory="%s", category="%s"))
    with connection.cursor() as cursor:
        # The planner prices the statement over 50,000 people high enough to compile it just in
        # time, which costs more than the statement itself.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SELECT now()")
        params = [
            *params, after, upper, campaign.category.mandatory, campaign.category_id, after, upper,
            delivery_id(campaign.pk, 0), campaign.pk, cursor.fetchone()[0],
        ]
        try:
            with transaction.atomic():
                if reader is None:
                    cursor.execute(f"INSERT INTO {MATERIALISE_COLUMNS} {rows}", params)
                else:
                    _rows_copy(cursor, reader, rows, params)
                inserted = cursor.rowcount
        except IntegrityError:  # some of the range is written already
            cursor.execute(f"INSERT INTO {MATERIALISE_COLUMNS} {rows} ON CONFLICT (id) DO NOTHING", params)
            inserted = cursor.rowcount
        cursor.execute(SKIPPED_IN_RANGE, [campaign.pk, delivery_id(campaign.pk, after), delivery_id(campaign.pk, upper)])
        skipped = cursor.fetchone()[0]
    return inserted, skipped


def _people(campaign: Campaign):
    """Whom the campaign's rows are for: its audience's people, or a follow-up's of the campaign it follows."""
    if campaign.follows_id is not None:
        return follow_up_people(campaign=campaign)
    return campaign_recipients(campaign=campaign)


def _rows_copy(cursor, reader, rows: str, params: list) -> None:
    """Streams the rows ``reader`` computes into COPY on ``cursor``'s connection, untouched.

    PostgreSQL sends a COPY's output one row at a time; psycopg's ``Copy`` hands over each through
    its generator machinery, about 1.2 s of this process's CPU per million rows. libpq's own calls,
    in a plain loop, cost half that: rows are read without blocking (waiting for the socket with
    the GIL released, so the worker's other threads keep sending) and written 64 KiB at a time."""
    encoding = reader.info.encoding
    source = reader.pgconn

    def failed(result) -> Exception:
        _drain(source)  # the reader is left ready for its next statement
        return psycopg.errors.error_from_result(result, encoding=encoding)

    with connection.wrap_database_errors:  # a duplicate row is Django's IntegrityError, as for INSERT
        with psycopg.ClientCursor(reader) as binder:
            query = binder.mogrify(f"COPY ({rows}) TO STDOUT (FORMAT binary)", params)
        source.send_query(query.encode(encoding))
        started = _result(source)
        if started.status != pq.ExecStatus.COPY_OUT:
            raise failed(started)
        try:
            with cursor.copy(f"COPY {MATERIALISE_COLUMNS} FROM STDIN (FORMAT binary)") as into:
                block = bytearray()
                while (data := _copy_data(source)) is not None:
                    block += data
                    if len(block) >= COPY_BLOCK:
                        into.write(bytes(block))
                        block.clear()
                # The reader's end: its error, if any, aborts the COPY before it takes what was sent.
                while (finished := _result(source)) is not None:
                    if finished.status != pq.ExecStatus.COMMAND_OK:
                        raise failed(finished)
                into.write(bytes(block))
        except BaseException:
            if source.transaction_status == pq.TransactionStatus.ACTIVE:
                reader.cancel_safe()  # the writer failed while the reader was still sending
                _drain(source)
            raise


def _read_more(source) -> None:
    """Waits for the socket with the GIL released, then hands what came to libpq."""
    select.select([source.socket], [], [])
    source.consume_input()


def _wait(source) -> None:
    """Until libpq has the next answer."""
    while source.is_busy():
        _read_more(source)


def _result(source):
    _wait(source)
    return source.get_result()


def _copy_data(source) -> bytes | None:
    """The next row of a COPY's output, or None at its end."""
    while True:
        size, data = source.get_copy_data(1)
        if size > 0:
            return data
        if size < 0:
            return None
        _read_more(source)


def _drain(source) -> None:
    """Reads what is left of the reader's statement, COPY output included, and drops it."""
    if source.transaction_status == pq.TransactionStatus.ACTIVE:
        try:
            while _copy_data(source) is not None:
                pass
        except psycopg.Error:  # the output broke off: its error is among the results below
            pass
    while _result(source) is not None:
        pass


@contextmanager
def _reader():
    """A connection of its own (autocommit) that computes delivery rows for COPY."""
    reader = connection.get_new_connection(connection.get_connection_params())
    try:
        reader.autocommit = True
        reader.execute("SET jit = off")
        yield reader
    finally:
        reader.close()


class _Turn:
    """Whether a range's transaction committed, for the range above it, which commits only after."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.committed = False

    def end(self, committed: bool) -> None:
        self.committed = committed
        self._done.set()

    def wait(self) -> bool:
        self._done.wait()
        return self.committed


# What ``_deliveries_materialise_range`` returns for a range it did not commit because its rows
# would take the campaign past the people its approval covers.
OUTGROWN = -1


def _deliveries_materialise_range(
    *, campaign: Campaign, after: int, upper: int, below: _Turn | None, turn: _Turn, own_connection: bool = False,
    reader=None,
) -> int | None:
    """One range in its own transaction; returns the rows inserted, or None when it was not
    committed (the campaign was cancelled, or the range below was not committed), or ``OUTGROWN``
    when it was not committed because the campaign would reach more people than it may."""
    committed = False
    try:
        with transaction.atomic():
            inserted, skipped = _deliveries_insert(campaign=campaign, after=after, upper=upper, reader=reader)
            # Ranges commit in the order of their ids, so the rows written are always everyone of
            # the audience up to some id: the reconciler resumes a lost materialisation from the
            # last person who has a row, whatever was written at once.
            if below is not None and not below.wait():
                transaction.set_rollback(True)
                return None
            # The campaign row's lock orders each range against a cancel: this update waits for a
            # cancel in progress and then finds the campaign cancelled (the range is rolled back),
            # or the cancel waits for this commit and then skips these rows.
            counted = Campaign.objects.filter(pk=campaign.pk).exclude(status=Campaign.Status.CANCELLED).update(
                total_deliveries=F("total_deliveries") + inserted
            )
            if not counted:
                transaction.set_rollback(True)
                return None
            limit = reach_limit(campaign=campaign)
            if limit is not None and Campaign.objects.filter(pk=campaign.pk).values_list(
                "total_deliveries", flat=True
            ).get() > limit:
                transaction.set_rollback(True)  # nobody unapproved gets a row
                return OUTGROWN
        committed = True
    finally:
        turn.end(committed)
        if own_connection:
            connection.close()
    progress.record(campaign.pk, skipped=skipped)
    return inserted


def campaign_materialise(*, campaign_id: int, after: int) -> int:
    """The rest of a large audience, one committed range at a time, so workers send meanwhile.
    ``MATERIALISE_CONNECTIONS`` ranges are written at once, each by its own connection (inside a
    caller's transaction, which other connections could not see, one after the other). One task
    writes a campaign at a time: another one (the reconciler restarts a task whose Redis key was
    lost while it still runs) leaves it to the first; the lock goes with the first's connection."""
    with advisory_lock(MATERIALISING_LOCK, campaign_id) as held:
        if not held:
            logger.info("campaign %s is being materialised by another task", campaign_id)
            return 0
        return _campaign_materialise(campaign_id=campaign_id, after=after)


# The first key of the advisory lock held while a campaign is materialised (the second is its id).
MATERIALISING_LOCK = 0x6D617431


def _campaign_materialise(*, campaign_id: int, after: int) -> int:
    # Other connections (the ranges' own, the readers for COPY) would not see what a caller's
    # transaction holds: inside one, the ranges are written one after the other by INSERT.
    alone = connection.in_atomic_block
    lanes = 1 if alone else max(1, settings.MATERIALISE_CONNECTIONS)
    size = settings.MATERIALISE_RANGE_SIZE
    total = 0
    # The lanes' threads end before their readers close.
    with ExitStack() as stack, ThreadPoolExecutor(max_workers=lanes - 1 or 1, thread_name_prefix="materialise") as pool:
        readers = [None if alone else stack.enter_context(_reader()) for _ in range(lanes)]  # one per lane, kept
        while True:
            progress.client().set(materialising_key(campaign_id), after, ex=settings.RETRY_GRACE_SECONDS * 4)
            campaign = Campaign.objects.select_related("category", "audience").get(pk=campaign_id)
            if not campaign_people_known(campaign=campaign):  # its group's or team's listing comes first
                logger.warning("campaign %s is not written: its people are not listed yet", campaign_id)
                break
            highest = _highest_recipient_id()
            if campaign.status != Campaign.Status.CANCELLED:
                starts = [after + i * size for i in range(lanes) if i == 0 or after + i * size < highest]
                turns = [_Turn() for _ in starts]
                jobs = [
                    dict(campaign=campaign, after=start, upper=start + size, below=turns[i - 1] if i else None, turn=turns[i],
                         reader=readers[i])
                    for i, start in enumerate(starts)
                ]
                others = [pool.submit(_deliveries_materialise_range, **job, own_connection=True) for job in jobs[1:]]
                written = [_deliveries_materialise_range(**jobs[0]), *(future.result() for future in others)]
                total += sum(rows for rows in written if rows and rows > 0)
                if OUTGROWN in written:
                    pause_outgrown(campaign=campaign)
                elif None not in written:
                    after = starts[-1] + size
                    if after < highest:
                        continue
            # Finished, or cancelled (a cancelled campaign's audience is written as far as it goes).
            Campaign.objects.filter(pk=campaign_id).update(materialised_at=timezone.now())
            break
    progress.client().delete(materialising_key(campaign_id))
    return total


def materialising_key(campaign_id: int) -> str:
    """Present while a task writes the campaign's rows: the reconciler restarts one that vanished."""
    return f"crier:materialising:{campaign_id}"


