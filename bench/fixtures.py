"""What every benchmark uses: the figures reported, the database and its people, an approved campaign,
Crier's workers and web server, and waiting for a campaign to end."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.harness import DB_NAME, ROOT, Processes, sh, wait_for

RESULTS: list[tuple[str, str, str, str]] = []  # (benchmark, measure, value, goal)


def report(bench: str, measure: str, value: str, goal: str = "") -> None:
    RESULTS.append((bench, measure, value, goal))
    print(f"  {bench:<3} {measure:<52} {value:>14}  {goal}", flush=True)


def prepare_database(env: dict[str, str]) -> None:
    sh(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"])
    sh(["createdb", "-h", "127.0.0.1", "-U", "postgres", DB_NAME])
    sh([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env)


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def create_people(first: int, count: int, department: str) -> None:
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO campaigns_recipient (external_id, email, upn, aad_object_id, tenant_id, first_name,
                last_name, display_name, department, job_title, location, country, time_zone, locale, start_date,
                is_active, attributes, created_at, updated_at)
            SELECT 'P' || g, 'p' || g || '@contoso.example', '', md5('bench-person-' || g)::uuid, %s,
                   'First' || g, 'Last', '', %s, '', '', 'FR', '', '', NULL, true, '{}', now(), now()
              FROM generate_series(%s, %s) AS g
            """,
            [settings.BOT_TENANT_ID, department, first, first + count - 1],
        )


def new_campaign(department: str, name: str):
    from django.utils import timezone

    from campaigns.approvals import approval_fingerprint
    from campaigns.models import Audience, Campaign, Category, MessageTemplate

    category, _ = Category.objects.get_or_create(slug="bench", defaults={"name": "Benchmarks"})
    template = MessageTemplate.objects.create(
        name=f"{name} {time.time()}", kind="markdown", text=f"**{name}**: hello {{{{first_name}}}}, this is a benchmark."
    )
    audience, _ = Audience.objects.get_or_create(
        name=f"Department {department}",
        defaults={"kind": Audience.Kind.RULES, "rules": [{"field": "department", "op": "eq", "value": department}]},
    )
    # Approved beforehand, as an announcement to this many people must be before anyone launches it.
    campaign = Campaign.objects.create(
        name=name, template=template, audience=audience, category=category, approved_at=timezone.now()
    )
    campaign.approved_fingerprint = approval_fingerprint(campaign=campaign)
    campaign.save(update_fields=["approved_fingerprint"])
    return campaign


def wait_completed(campaign, timeout: float, on_progress=None) -> None:
    from django.db import close_old_connections, connection
    from django.db.utils import InterfaceError, OperationalError

    from delivery import progress

    def done() -> bool:
        try:
            close_old_connections()
            campaign.refresh_from_db()
            if on_progress is not None:
                on_progress(progress.read(campaign))
            return campaign.status == "completed"
        except (OperationalError, InterfaceError):
            connection.close()
            return False

    wait_for(done, timeout, f"campaign {campaign.name} to complete", every=1.0)


def send_span(campaign) -> tuple[int, float]:
    from django.db.models import Max, Min

    from delivery.models import Delivery

    rows = Delivery.objects.of_campaign(campaign.pk).filter(status="sent")
    span = rows.aggregate(first=Min("finished_at"), last=Max("finished_at"))
    return rows.count(), (span["last"] - span["first"]).total_seconds()


def stats_delta(before: dict, after: dict) -> dict:
    keys = ("messages", "requests", "duplicates", "early_calls", "in_flight_at_retry_after", "conversations_created")
    delta = {k: after[k] - before[k] for k in keys}
    delta["throttled"] = sum(after["throttled"].values()) - sum(before["throttled"].values())
    return delta


def first_sent_at(campaign) -> float:
    from django.db.models import Min

    from delivery.models import Delivery

    first = Delivery.objects.of_campaign(campaign.pk).filter(status="sent").aggregate(first=Min("finished_at"))["first"]
    return first.timestamp()


# One process per core, as in A; threads inside each overlap the waits for Teams and PostgreSQL.
CRIER_POOL = ("--pool", "threads", "-c", os.environ.get("BENCH_THREADS", "8"))


def start_crier(processes: Processes, extra: dict[str, str]) -> None:
    for i in (1, 2):
        processes.worker(f"worker{i}", "direct,deliveries,control,default", extra, pool=CRIER_POOL)
    processes.beat(extra)


def answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def web_server(env: dict[str, str], extra: dict[str, str] | None = None, *, workers: int = 2,
               threads: int = 1, nice: int = 0) -> Iterator[str]:
    """Crier's web server (gunicorn, two workers by default; with ``threads``, that many threads in each; ``nice``:
    at that lower CPU priority) on a free port of 127.0.0.1, for the test's length: its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    layout = ["-w", str(workers), *(["--threads", str(threads)] if threads > 1 else [])]
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "settings.wsgi", "-b", f"127.0.0.1:{port}", *layout, "--timeout", "120"],
        cwd=ROOT, env={**env, **(extra or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=(lambda: os.nice(nice)) if nice else None,
    )
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), 60, "the web server")
        yield f"http://127.0.0.1:{port}"
    finally:
        web.terminate()
        web.wait(timeout=30)
