"""Per-recipient results as CSV, streamed: memory stays flat on a million rows.

Every text cell comes from outside (the HR system's ids and addresses, Teams' error messages): one
that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with a single quote,
as OWASP advises against CSV injection, so a spreadsheet shows it as text instead of running it. Every
cell is also quoted: where the list separator is ";" (Excel in much of Europe), an unquoted
``E1;=cmd|...`` would be split into two cells, the second a formula. Quoting alone is not enough
(a quoted cell is split too once another cell of its row, read with the wrong separator, has thrown
the quotes out of step), so a formula start after a separator-like character (``,``, ``;``, a tab or
a line break, spaces allowed between) gets the same leading quote: ``E1;'=cmd|...``."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator

from django.db.models import QuerySet

from .models import Acknowledgement, Delivery, PollAnswer, campaign_ids

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
    ("read_at", "read_at"),
    ("acknowledged_at", "acknowledged_at"),
)
# A policy's audit: who acknowledged which version of its message, when, and whether that is the version now.
ACKNOWLEDGEMENT_COLUMNS = (
    ("external_id", "delivery__recipient__external_id"),
    ("email", "delivery__recipient__email"),
    ("display_name", "delivery__recipient__display_name"),
    ("version", "version"),
    ("acknowledged_at", "acknowledged_at"),
    ("via", "via"),
)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_AFTER_SEPARATOR = re.compile(r"([,;\t\r\n] *)(?=[=+\-@])")


def csv_cell(value: object) -> object:
    """A value as a CSV cell a spreadsheet will not read as a formula (numbers are left as they are)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return value
    value = _FORMULA_AFTER_SEPARATOR.sub(r"\1'", value)
    return "'" + value if value.startswith(FORMULA_STARTS) else value


class _Echo:
    def write(self, value: str) -> str:
        return value


def deliveries_csv(deliveries: QuerySet[Delivery]) -> Iterator[str]:
    """CSV lines for these deliveries, header first, read from the database in batches."""
    writer = csv.writer(_Echo(), quoting=csv.QUOTE_ALL)
    yield writer.writerow([name for name, _ in COLUMNS])
    rows: Iterable[tuple] = deliveries.order_by("id").values_list(*(field for _, field in COLUMNS)).iterator(
        chunk_size=2000
    )
    for row in rows:
        yield writer.writerow([csv_cell(value) for value in row])


def acknowledgements_csv(*, campaign_id: int, current_version: int, policy: bool) -> Iterator[str]:
    """CSV lines of every acknowledgement of the campaign's message, version by version (a person who acknowledged
    three versions has three lines), oldest first; ``current`` says whether the acknowledgement stands for the
    message as it is now: a policy's only for its current version, any for a campaign that only asks (whose edits
    keep them). Read in batches."""
    writer = csv.writer(_Echo(), quoting=csv.QUOTE_ALL)
    yield writer.writerow([*(name for name, _ in ACKNOWLEDGEMENT_COLUMNS), "current"])
    lowest, end = campaign_ids(campaign_id)
    rows = (Acknowledgement.objects.filter(delivery_id__gte=lowest, delivery_id__lt=end)
            .order_by("acknowledged_at", "id").values_list(*(field for _, field in ACKNOWLEDGEMENT_COLUMNS))
            .iterator(chunk_size=2000))
    version_at = [field for _, field in ACKNOWLEDGEMENT_COLUMNS].index("version")
    for row in rows:
        yield writer.writerow([*(csv_cell(value) for value in row), not policy or row[version_at] == current_version])


POLL_COLUMNS = ("external_id", "email", "display_name", "answer", "answered_at", "changed_at")


def poll_answers_csv(*, campaign_id: int, options: list[str]) -> Iterator[str]:
    """CSV lines of every answer to the campaign's poll, one person a line, oldest first: the options chosen by
    their text (several joined by "; "). Read in batches."""
    writer = csv.writer(_Echo(), quoting=csv.QUOTE_ALL)
    yield writer.writerow(POLL_COLUMNS)
    lowest, end = campaign_ids(campaign_id)
    rows = (PollAnswer.objects.filter(delivery_id__gte=lowest, delivery_id__lt=end)
            .order_by("answered_at", "delivery_id")
            .values_list("delivery__recipient__external_id", "delivery__recipient__email",
                         "delivery__recipient__display_name", "choices", "answered_at", "changed_at")
            .iterator(chunk_size=2000))
    for external_id, email, name, choices, answered_at, changed_at in rows:
        answer = "; ".join(options[n] if n < len(options) else f"option {n + 1}" for n in choices)
        yield writer.writerow([csv_cell(value) for value in (external_id, email, name, answer, answered_at,
                                                                  changed_at)])
