"""What comms staff read while a campaign sends: why people were not reached, in plain words, and
what to do about it.

Selectors only. Every count starts from the campaign and one end state, so it is a range of the
(campaign, status, id) index, never a scan of the deliveries of other campaigns.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

import redis
from django.db import connection
from django.db.models import Count, Max
from django.utils import timezone

from bots.transport import BLOCKED_CODES, RETRYABLE_STATUSES
from campaigns.models import Campaign

from . import progress
from .models import Delivery, campaign_ids

# More distinct reasons than this in one campaign is noise: the most frequent are shown.
MAX_REASONS = 50
# The reasons are kept in Redis with the counts they were read at, and read again only when those
# counts moved; a campaign with this many failed and skipped rows is grouped again at most every
# REASONS_LARGE_EVERY_SECONDS, however many people watch it.
REASONS_LARGE = 10_000
REASONS_LARGE_EVERY_SECONDS = 10


@dataclass(frozen=True)
class Explanation:
    meaning: str  # what happened, for a person who has never read Teams' documentation
    action: str  # what to do about it


NOT_INSTALLED = Explanation(
    "The Crier app is not installed for this person in Teams, so the bot cannot start a chat with them.",
    "Let the campaign install it for them (Install the app for people who lack it), or have a Teams admin install "
    "it for everyone with an app setup policy; then send them the message again.",
)
CREDENTIALS = Explanation(
    "Teams refused the bot's credentials, so nothing could be sent.",
    "Check BOT_APP_ID, BOT_APP_PASSWORD and BOT_TENANT_ID against the bot's Azure registration, and that "
    "its Microsoft Teams channel is enabled; then resume or send again.",
)
TEAMS_UNAVAILABLE = Explanation(
    "Teams was unavailable or overloaded each time Crier tried, until every attempt was used.",
    "Nothing is wrong with the message: send it again to these people later (export the failed deliveries).",
)

# By Teams' error code, whatever the HTTP status it came with.
BY_CODE: dict[str, Explanation] = {
    **dict.fromkeys(
        BLOCKED_CODES,
        Explanation(
            "This person blocked the bot or uninstalled the app: they are recorded as opted out.",
            "Nothing to do: later campaigns skip them until they install the app again or type “start” to the bot.",
        ),
    ),
    "ForbiddenOperationException": NOT_INSTALLED,
    "BotNotInConversationRoster": NOT_INSTALLED,
    "BotDisabledByAdmin": Explanation(
        "A Teams administrator has blocked the Crier app in this organisation.",
        "Ask your Teams administrator to allow the app (Teams admin center, Manage apps), then send again.",
    ),
    "InvalidBotApiHost": Explanation(
        "The message went to the wrong Teams cloud (public, GCC, GCC High or DoD) for this person.",
        "Set TEAMS_SERVICE_URL to your cloud's address; people who install the app are then reached at theirs.",
    ),
    "ConversationNotFound": Explanation(
        "This person's chat with the bot is gone (they deleted it) and a new one could not be made: "
        "usually the app is not installed for them any more.",
        "Install the app for them, then send them the message again.",
    ),
    "MessageSizeTooBig": Explanation(
        "The message is too large for Teams (about 100 KB at most, images and card included).",
        "Shorten the template or link to images instead of embedding them, then send again to these people.",
    ),
    "BadArgument": Explanation(
        "Teams rejected the message as malformed: usually an Adaptive Card it does not accept, "
        "or a person reached in the wrong region.",
        "Preview the template and correct the card; if the message says “different region”, check TEAMS_SERVICE_URL.",
    ),
    "Throttled": Explanation(
        "Teams kept asking Crier to slow down, for longer than the attempts allowed.",
        "Send again to these people later. If it happens often, lower TEAMS_PACE_FRACTION, or look for another "
        "application using the same bot.",
    ),
    "PreconditionFailed": Explanation(
        "Teams was busy with other changes to this person's chat each time Crier tried.",
        "Send again to these people later.",
    ),
    "ServiceError": Explanation(
        "Teams had an internal error. Microsoft advises not to retry these automatically.",
        "Send again to these people later; if it persists, check the Microsoft 365 service health page.",
    ),
    "Timeout": Explanation(
        "Teams did not answer in time, at every attempt. Teams may have accepted some of these messages.",
        "Check the network between Crier and Teams (BOT_HTTP_TIMEOUT_SECONDS); send again later if needed.",
    ),
    "TokenUnavailable": Explanation(
        "Crier could not reach Microsoft's sign-in service to get the bot's token.",
        "Check that this server can reach login.microsoftonline.com (proxy, firewall), then resume or send again.",
    ),
    "PacerUnavailable": Explanation(
        "Crier's own Redis was unavailable, so it could not pace its calls to Teams safely.",
        "Check Redis (REDIS_URL), then send again to these people.",
    ),
    "NoTenant": Explanation(
        "Crier does not know this person's Microsoft 365 tenant, so it cannot address them.",
        "Set the person's tenant id (through the API or the admin), or BOT_TENANT_ID for a single-tenant bot.",
    ),
    "crier_error": Explanation(
        "Sending to this person raised an error in Crier itself (a bug, or data it could not use), at every "
        "attempt; the message shows the error's kind. Teams may have accepted a message whose send raised during the call.",
        "Check the workers' logs for this error and the person's data (custom attributes, template placeholders); "
        "once fixed, send again to these people.",
    ),
    # Installing the app for the person, through Microsoft Graph (delivery.installing).
    "AppConsentMissing": Explanation(
        "Crier was to install the app for this person, but Microsoft Graph refused: the app registration lacks a "
        "permission, or admin consent for it.",
        "Grant the permission the message names, with admin consent (docs/going-live.md, section 6a); then send "
        "again to these people.",
    ),
    "GraphCredentialsRefused": Explanation(
        "Crier was to install the app for this person, but Entra ID or Microsoft Graph refused Crier's own "
        "credentials.",
        "Check BOT_APP_ID, BOT_APP_PASSWORD and GRAPH_AUTHORITY (or BOT_TENANT_ID), then resume or send again.",
    ),
    "AppNotInCatalog": Explanation(
        "Crier was to install the app for this person, but the organisation's app catalog does not have it.",
        "Upload the Teams app package in the Teams admin center under the same app id, then send again.",
    ),
    "AppBlockedByPolicy": Explanation(
        "A Teams app permission policy keeps the app from this person, so Crier could not install it.",
        "Allow the app in the permission policy that applies to them (Teams admin center), then send again.",
    ),
    "UserNotFound": Explanation(
        "Entra ID no longer has this person's account, so the app could not be installed for them.",
        "Nothing to do if they left; otherwise correct their Entra object id.",
    ),
    "GraphUnavailable": Explanation(
        "Microsoft Graph kept failing while Crier tried to install the app for this person.",
        "Check the Microsoft 365 service health page, then send again to these people.",
    ),
    "WorkerLost": Explanation(
        "A Crier worker stopped while sending to this person; Teams may have accepted the message.",
        "Check the workers' logs (memory, restarts); send again only if the person did not receive it.",
    ),
}

# By HTTP status, when the code says nothing known.
BY_STATUS: dict[int, Explanation] = {
    400: BY_CODE["BadArgument"],
    401: CREDENTIALS,
    403: Explanation(
        "Teams refused to let the bot message this person: the app is not installed for them, "
        "or a policy or the bot's credentials forbid it.",
        "Check that the app is installed and allowed for this person, then send again.",
    ),
    404: BY_CODE["ConversationNotFound"],
    412: BY_CODE["PreconditionFailed"],
    413: BY_CODE["MessageSizeTooBig"],
    429: BY_CODE["Throttled"],
    500: BY_CODE["ServiceError"],
    **dict.fromkeys(RETRYABLE_STATUSES - {412, 429}, TEAMS_UNAVAILABLE),
}

SKIPS: dict[str, Explanation] = {
    Delivery.SkipReason.OPTED_OUT: Explanation(
        "This person opted out of this category (or of everything, or blocked the bot) before it reached them.",
        "Nothing to do: their choice is respected. A mandatory category still reaches people who opted out, "
        "but never people who blocked the bot.",
    ),
    Delivery.SkipReason.INACTIVE: Explanation(
        "This person is no longer active (they left, or the HR system marked them inactive).",
        "Nothing to do, unless they are still here: then correct their record in the HR system.",
    ),
    Delivery.SkipReason.NO_TEAMS_IDENTITY: Explanation(
        "Crier has no Entra object id for this person, so it cannot find them in Teams.",
        "Add their Entra object id (aad_object_id) in the HR sync or the admin, then send them the message again.",
    ),
    Delivery.SkipReason.CAMPAIGN_CANCELLED: Explanation(
        "The campaign was cancelled before it reached this person.",
        "Nothing to do, unless the cancel was a mistake: then make a new campaign for the people it skipped.",
    ),
}


def failure_explain(*, code: str, status: int | None, message: str = "") -> Explanation:
    """What a Teams failure means and what to do, in plain words; an unknown one is named as it came."""
    if code in BY_CODE:
        return BY_CODE[code]
    if status == 401:
        return CREDENTIALS
    if status is None:
        return BY_CODE["Timeout"]
    if status in BY_STATUS:
        return BY_STATUS[status]
    said = f"{status} {code}".strip() + (f" (“{message[:200]}”)" if message else "")
    return Explanation(
        f"Teams answered {said}, which Crier does not know.",
        "Look the code up in Microsoft's “Status codes from bot conversational APIs”, and export the failed "
        "deliveries to see each person's answer.",
    )


def campaign_failure_reasons(*, campaign_id: int) -> list[dict[str, Any]]:
    """The campaign's failed deliveries by Teams' error code and HTTP status, most frequent first,
    each with an example message and its explanation."""
    rows = (
        Delivery.objects.filter(campaign_id=campaign_id, status=Delivery.Status.FAILED)
        .values("error_code", "last_status_code")
        .annotate(count=Count("id"), example=Max("error_message"))
        .order_by("-count", "error_code")[:MAX_REASONS]
    )
    reasons = []
    for row in rows:
        explanation = failure_explain(code=row["error_code"], status=row["last_status_code"], message=row["example"])
        reasons.append(
            {
                "error_code": row["error_code"],
                "status_code": row["last_status_code"],
                "count": row["count"],
                "example_message": row["example"],
                "meaning": explanation.meaning,
                "action": explanation.action,
            }
        )
    return reasons


def campaign_skip_reasons(*, campaign_id: int) -> list[dict[str, Any]]:
    """The campaign's skipped deliveries by reason, most frequent first, with explanations."""
    labels = dict(Delivery.SkipReason.choices)
    rows = (
        Delivery.objects.filter(campaign_id=campaign_id, status=Delivery.Status.SKIPPED)
        .values("skip_reason")
        .annotate(count=Count("id"))
        .order_by("-count", "skip_reason")
    )
    reasons = []
    for row in rows:
        reason = row["skip_reason"]
        explanation = SKIPS.get(
            reason, Explanation(f"Skipped ({reason or 'no reason recorded'}).", "Export the deliveries for details.")
        )
        reasons.append(
            {
                "skip_reason": reason,
                "label": labels.get(reason, reason or "No reason recorded"),
                "count": row["count"],
                "meaning": explanation.meaning,
                "action": explanation.action,
            }
        )
    return reasons


def duration_words(seconds: float | None) -> str:
    """“about 4 min”, “about 2 h 10 min”: a time left as a person says it."""
    if seconds is None:
        return "not known yet"
    if seconds < 60:
        return "less than a minute" if seconds else "none"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes} min" if minutes else f"about {hours} h"


def progress_summary(*, campaign: Campaign, counts: dict[str, Any]) -> str:
    """Progress in words: a share of the people launched to, or, for a welcome campaign (whose
    audience grows as people arrive), how many it welcomed."""
    if campaign.kind == Campaign.Kind.WELCOME:
        return f"{counts['sent']:,} welcomed"
    done = counts["sent"] + counts["failed"] + counts["skipped"]
    return f"{done:,} of {counts['total']:,} people done"


def poll_results(*, campaign: Campaign, counts: dict[str, Any]) -> dict[str, Any] | None:
    """The campaign's poll as the Watch page shows it: each option with how many chose it, and their share of the
    people who answered; None without a poll."""
    if not campaign.poll_question:
        return None
    answered = counts.get("answered", 0)
    by_place = counts.get("poll") or {}
    closes_at = campaign.poll_closes_at
    return {
        "question": campaign.poll_question,
        "multiple": campaign.poll_multiple,
        "closes_at": closes_at.isoformat() if closes_at else None,
        "closed": closes_at is not None and closes_at <= timezone.now(),
        "answered": answered,
        "options": [{"option": option, "count": by_place.get(n, 0),
                     "percent": round(100 * by_place.get(n, 0) / answered, 1) if answered else 0.0}
                    for n, option in enumerate(campaign.poll_options or [])],
    }


def campaign_watch(*, campaign: Campaign) -> dict[str, Any]:
    """Everything the watch page shows, read cheaply enough to poll every few seconds: counters and
    timeline from Redis, reasons from the failed and skipped rows of this campaign only."""
    counts = progress.read(campaign)
    launched = campaign.launched_at is not None
    done = counts["sent"] + counts["failed"] + counts["skipped"]
    total = counts["total"]
    finished = campaign.status in (Campaign.Status.COMPLETED, Campaign.Status.CANCELLED)
    welcome = campaign.kind == Campaign.Kind.WELCOME
    if welcome:
        percent = None  # its audience grows as people arrive: no share of a whole to show
    elif total:
        percent = min(100.0, int(done * 1000 / total) / 10)  # rounded down: 100% only when all are done
    else:
        percent = 100.0 if finished else 0.0
    return {
        "campaign": {"id": campaign.pk, "name": campaign.name, "kind": campaign.kind,
                     "acknowledgement": campaign.acknowledgement, "message_version": campaign.message_version,
                     "track_clicks": campaign.track_clicks},
        "status": campaign.status,
        "status_display": campaign.get_status_display(),
        "status_reason": campaign.status_reason,
        "finished": finished,
        "progress": counts,
        "reactions": [{"kind": kind, "count": count} for kind, count in counts["reactions"].items()],
        # A follow-up's answers count for the campaign it follows (delivery.follow_ups): its poll is that one's.
        "poll_results": poll_results(campaign=campaign, counts=counts if campaign.follows_id is None
                                     else progress.read(campaign.follows)),
        "done": done,
        "percent": percent,
        "summary": progress_summary(campaign=campaign, counts=counts),
        "time_left": duration_words(counts["eta_seconds"]) if campaign.status == Campaign.Status.RUNNING else "",
        "timeline": progress.timeline(campaign.pk) if launched else [],
        **_reasons(campaign.pk, failed=counts["failed"], skipped=counts["skipped"]),
    }


def reasons_key(campaign_id: int) -> str:
    """The watch page's failures and skips by reason, cached while the counts stay the same."""
    return f"crier:reasons:{campaign_id}"


def _reasons(campaign_id: int, *, failed: int, skipped: int) -> dict[str, list[dict[str, Any]]]:
    key = reasons_key(campaign_id)
    try:
        cached = progress.client().get(key)
    except redis.RedisError:
        cached = None
    if cached:
        kept = json.loads(cached)
        same = (kept["failed"], kept["skipped"]) == (failed, skipped)
        recent = failed + skipped >= REASONS_LARGE and time.time() - kept["at"] < REASONS_LARGE_EVERY_SECONDS
        if same or recent:
            return kept["reasons"]
    reasons = {
        "failure_reasons": campaign_failure_reasons(campaign_id=campaign_id) if failed else [],
        "skip_reasons": campaign_skip_reasons(campaign_id=campaign_id) if skipped else [],
    }
    try:
        kept = {"failed": failed, "skipped": skipped, "at": time.time(), "reasons": reasons}
        progress.client().set(key, json.dumps(kept), ex=60)
    except redis.RedisError:
        pass
    return reasons


# --- The funnel: sent → read → acknowledged → answered, by an attribute of the people ------------------------------

FUNNEL_FIELDS = ("department", "location", "country", "job_title", "locale")
FUNNEL_ATTRIBUTE = re.compile(r"^attributes\.[A-Za-z0-9_\-]{1,64}$")
FUNNEL_GROUPS = 50  # groups shown; the rest are added up in one line
FUNNEL_CACHE_SECONDS = 15  # while it sends; once it has ended, what changes is reads and answers: a few minutes
FUNNEL_CACHE_ENDED_SECONDS = 300
FUNNEL_SMALLEST = 5  # a group of fewer people is added to "(all others)": a funnel shows no single person
FUNNEL_COUNTS = ("sent", "read", "acknowledged", "answered", "clicked")
NONE = "(none)"
OTHERS = "(all others)"
FUNNEL = """
SELECT {value} AS value, count(*) AS sent, count(d.read_at) AS read, count(d.acknowledged_at) AS acknowledged,
       count(p.delivery_id) AS answered, {clicked} AS clicked
  FROM delivery_delivery AS d
  JOIN campaigns_recipient AS r ON r.id = d.recipient_id
  LEFT JOIN delivery_pollanswer AS p ON p.delivery_id = d.id AND p.delivery_id >= %(lowest)s AND p.delivery_id < %(end)s
 WHERE d.id >= %(lowest)s AND d.id < %(end)s AND d.status = 'sent'
 GROUP BY 1
"""


# What happened when, hour by hour: a message sent, first read, acknowledged (as it is now), a poll first answered, a
# first click. One pass over the campaign's rows, one over its answers and one over its clicks.
OVER_TIME = """
SELECT date_trunc('hour', e.at) AS hour, e.kind, count(*)
  FROM delivery_delivery AS d
 CROSS JOIN LATERAL (VALUES (d.finished_at, 'sent'), (d.read_at, 'read'), (d.acknowledged_at, 'acknowledged')) AS e(at, kind)
 WHERE d.id >= %(lowest)s AND d.id < %(end)s AND d.status = 'sent' AND e.at IS NOT NULL
 GROUP BY 1, 2
UNION ALL
SELECT date_trunc('hour', p.answered_at), 'answered', count(*)
  FROM delivery_pollanswer AS p JOIN delivery_delivery AS d ON d.id = p.delivery_id AND d.status = 'sent'
 WHERE p.delivery_id >= %(lowest)s AND p.delivery_id < %(end)s
 GROUP BY 1
UNION ALL
SELECT hour, 'clicked', count(*)
  FROM (SELECT date_trunc('hour', min(k.first_at)) AS hour FROM delivery_click AS k
         WHERE k.delivery_id >= %(lowest)s AND k.delivery_id < %(end)s GROUP BY k.delivery_id) AS first_clicks
 GROUP BY 1
"""
OVER_TIME_MOST_POINTS = 500


def engagement_over_time(*, campaign: Campaign) -> list[dict[str, int]]:
    """The funnel over time: for each hour in which something happened, how many people had by its end been sent the
    message, read it, acknowledged it, answered its poll and opened a link (cumulative), oldest first; at most
    ``OVER_TIME_MOST_POINTS`` points, evenly spaced and ending with the latest."""
    lowest, end = campaign_ids(campaign.pk)
    with connection.cursor() as cursor:
        cursor.execute(OVER_TIME, {"lowest": lowest, "end": end})
        rows = cursor.fetchall()
    hours: dict[int, dict[str, int]] = {}
    for hour, kind, count in rows:
        hours.setdefault(int(hour.timestamp()), {})[kind] = count
    return progress.cumulative_points(hours, kinds=FUNNEL_COUNTS, key="hour", most=OVER_TIME_MOST_POINTS)


def funnel_problem(by: str) -> str | None:
    """Why the people cannot be grouped by ``by``, or None."""
    if by in FUNNEL_FIELDS or FUNNEL_ATTRIBUTE.match(by or ""):
        return None
    return f"Group by one of {', '.join(FUNNEL_FIELDS)}, or attributes.<key>."


def campaign_funnel(*, campaign: Campaign, by: str) -> dict[str, Any]:
    """The people the campaign reached, grouped by one of their fields (``department``…) or attributes
    (``attributes.site``): how many were sent it, read it, acknowledged it, answered its poll and opened one of its
    links, the largest groups
    first (``FUNNEL_GROUPS`` of them, the rest in one line, with every group of fewer than ``FUNNEL_SMALLEST``
    people: no line shows one person). One GROUP BY over the campaign's rows, kept for a few seconds while it sends
    and a few minutes after: the Watch page asks again as it refreshes."""
    if problem := funnel_problem(by):
        raise ValueError(problem)
    key = f"crier:funnel:{campaign.pk}:{by}"
    try:
        cached = progress.client().get(key)
    except redis.RedisError:
        cached = None
    if cached:
        return json.loads(cached)
    value = f"r.{by}" if by in FUNNEL_FIELDS else "r.attributes ->> %(attribute)s"
    lowest, end = campaign_ids(campaign.pk)
    with connection.cursor() as cursor:
        clicked = ("count(*) FILTER (WHERE EXISTS (SELECT 1 FROM delivery_click AS k WHERE k.delivery_id = d.id))"
                   if campaign.track_clicks else "0")  # a probe a row: only where clicks are counted
        cursor.execute(FUNNEL.format(value=f"COALESCE(NULLIF({value}, ''), %(none)s)", clicked=clicked),
                       {"lowest": lowest, "end": end, "none": NONE, "attribute": by.partition(".")[2]})
        rows = [dict(zip(("value", *FUNNEL_COUNTS), row)) for row in cursor.fetchall()]
    rows.sort(key=lambda row: (-row["sent"], row["value"]))
    large = [row for row in rows if row["sent"] >= FUNNEL_SMALLEST]
    shown, rest = large[:FUNNEL_GROUPS], large[FUNNEL_GROUPS:] + [row for row in rows if row["sent"] < FUNNEL_SMALLEST]
    others = {name: sum(row[name] for row in rest) for name in FUNNEL_COUNTS}
    if rest and others["sent"] >= FUNNEL_SMALLEST:  # fewer would show one person: left out, the lines then add up to
        shown.append({"value": OTHERS, **others})  # less than the whole
    funnel = {"by": by, "groups": shown, "acknowledgement": bool(campaign.acknowledgement),
              "poll": bool(campaign.poll_question), "clicks": campaign.track_clicks,
              "over_time": engagement_over_time(campaign=campaign)}
    try:
        ended = campaign.status in (Campaign.Status.COMPLETED, Campaign.Status.CANCELLED)
        progress.client().set(key, json.dumps(funnel), ex=FUNNEL_CACHE_ENDED_SECONDS if ended else FUNNEL_CACHE_SECONDS)
    except redis.RedisError:
        pass
    return funnel


def campaign_clicks(*, campaign: Campaign, counts: dict[int, int]) -> list[dict[str, Any]]:
    """The link buttons of a campaign that counts clicks, in the card's order, with the people who opened each; empty
    for one that does not count them. The buttons are read from its message as it is now."""
    if not campaign.track_clicks:
        return []
    from .clicks import open_urls
    from .message_changes import message_current_content

    _, _, card = message_current_content(campaign=campaign)
    return [{"title": str(action.get("title") or ""), "url": action["url"], "people": counts.get(n, 0)}
            for n, action in enumerate(open_urls(card or {}))]
