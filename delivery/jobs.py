"""Work handed to the Celery workers, by task name.

The services that start work (a launch feeds the queue and writes the rest of the audience, or lists
the members of its group or team first; a resume feeds; the reconciler restarts a lost writing; an edit of a sent message starts its chains)
queue it here, so they never import ``delivery.tasks``, which imports them to run it. Celery routes
each message by its task's name (``CELERY_TASK_ROUTES``) and the worker runs it with the task's own
options, as for ``.delay()``.
"""

from __future__ import annotations

from celery import current_app

FEED = "delivery.tasks.feed_deliveries"
MATERIALISE = "delivery.tasks.campaign_materialise"
LIST_MEMBERS = "delivery.tasks.campaign_list_members"
MESSAGE_CHANGE_CHUNK = "delivery.tasks.message_change_chunk"
INSTALL_APPS = "delivery.tasks.install_apps"
SEND_NOTICES = "delivery.tasks.send_notices"


def feed() -> None:
    """A tick of the feeder now, rather than at its next beat."""
    current_app.send_task(FEED)


def materialise(campaign_id: int, after: int) -> None:
    """Writes the campaign's delivery rows for its audience's people after ``after``."""
    current_app.send_task(MATERIALISE, args=(campaign_id, after))


def list_members(campaign_id: int) -> None:
    """Lists the members of the campaign's group or team, then writes its rows (``delivery.listing``)."""
    current_app.send_task(LIST_MEMBERS, args=(campaign_id,))


def install_apps(*, patience: float = 0.0) -> None:
    """An installer: installs the app for the people whose sends wait for it (``delivery.installing``), waiting up to
    ``patience`` seconds for the one before it to end."""
    current_app.send_task(INSTALL_APPS, kwargs={"patience": patience})


def send_notices(*, patience: float = 0.0) -> None:
    """A notifier: sends urgent campaigns' notices to the activity feed (``delivery.notifying``), waiting up to
    ``patience`` seconds for the one before it to end."""
    current_app.send_task(SEND_NOTICES, kwargs={"patience": patience})


def message_change_chunk(change_id: int, generation: int, *, countdown: float | None = None) -> None:
    """The next task of a chain working through a change of a sent message."""
    current_app.send_task(MESSAGE_CHANGE_CHUNK, args=(change_id, generation), countdown=countdown)
