"""Per-recipient results as CSV, streamed: memory stays flat on a million rows.

Every text cell comes from outside (the HR system's ids and addresses, Teams' error messages): one
that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with a single quote,
as OWASP advises against CSV injection, so a spreadsheet shows it as text instead of running it."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator

from django.db.models import QuerySet

from .models import Delivery

COLUMNS = (
    ("external_id", "recipient__external_id"),
    ("email", "recipient__email"),
    ("status", "status"),
    ("skip_reason", "skip_reason"),
    ("error_code", "error_code"),
    ("error_message", "error_message"),
    ("last_status_code", "last_status_code"),
    ("attempts", "attempts"),
    ("ambiguous", "ambiguous"),
    ("activity_id", "activity_id"),
    ("finished_at", "finished_at"),
)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A value as a CSV cell a spreadsheet will not read as a formula (numbers are left as they are)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class _Echo:
    def write(self, value: str) -> str:
        return value


def deliveries_csv(deliveries: QuerySet[Delivery]) -> Iterator[str]:
    """CSV lines for these deliveries, header first, read from the database in batches."""
    writer = csv.writer(_Echo())
    yield writer.writerow([name for name, _ in COLUMNS])
    rows: Iterable[tuple] = deliveries.order_by("id").values_list(*(field for _, field in COLUMNS)).iterator(
        chunk_size=2000
    )
    for row in rows:
        yield writer.writerow([csv_cell(value) for value in row])
