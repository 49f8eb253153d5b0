"""`make bench` (python -m bench [--only A,B,...] [--n N] [--big N] [--under-load]): Crier's benchmarks, side by side.

A  bare Celery: a no-op task per recipient, two worker processes (one per core)
B  Crier unthrottled: a real campaign (create conversation + send + record) on the same layout
C  at Teams' limits: Microsoft's published limits enforced by the emulator, with and without
   stored conversations; with --under-load, C with stored conversations while a CPU hog keeps
   every core busy (its rate as a share of 50/s, and the 429s from the app-wide limit)
D  scale: launch to a very large audience, at Teams' pace and unthrottled; materialisation, first message, Redis, worker memory
E  faults: worker kill -9 ×3, a Redis restart, a PostgreSQL restart, and 503/429/timeouts from Teams
F  the API: people uploaded through POST /api/v1/recipients/bulk/ in 10,000-row calls, over HTTP

Everything runs on this machine against its own database (crier_bench) and Redis database 12, but
E restarts the machine's Redis server and PostgreSQL cluster: run it where nothing else needs them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    DB_NAME, REDIS_URL, VAR, CpuHog, Processes, Sampler, base_env, sh, wait_for,
)

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


# --- A and B -----------------------------------------------------------------------------------

def bench_a(processes: Processes, n: int) -> float:
    import redis

    from delivery.feeding import publish

    client = redis.Redis.from_url(REDIS_URL)
    client.delete("bench:first", "bench:last", "bench:done", "bench")
    for start in range(0, n, 5000):
        publish(list(range(start, min(n, start + 5000))), task="bench.tasks.noop", queue="bench")
    for i in (1, 2):
        processes.worker(f"baseline{i}", "bench", include="bench.tasks")
    wait_for(lambda: int(client.get("bench:done") or 0) >= n, 600, "the baseline tasks")
    rate = n / (float(client.get("bench:last")) - float(client.get("bench:first")))
    processes.stop_all()
    report("A", f"bare Celery, no-op task, {n} tasks, 2 worker processes", f"{rate:,.0f}/s")
    return rate


# One process per core, as in A; threads inside each overlap the waits for Teams and PostgreSQL.
CRIER_POOL = ("--pool", "threads", "-c", os.environ.get("BENCH_THREADS", "8"))


def start_crier(processes: Processes, extra: dict[str, str]) -> None:
    for i in (1, 2):
        processes.worker(f"worker{i}", "direct,deliveries,control,default", extra, pool=CRIER_POOL)
    processes.beat(extra)


def bench_b(processes: Processes, emulator, n: int, baseline: float | None) -> None:
    from delivery.services import campaign_launch

    emulator.client.config(limits=False, faults={}, keep_bodies=False)
    create_people(1, n, "BC")
    start_crier(processes, {"TEAMS_RATE_LIMIT_PER_SECOND": "1000000"})
    before = emulator.client.stats()
    campaign = new_campaign("BC", "B unthrottled")
    campaign_launch(campaign_id=campaign.pk)
    wait_completed(campaign, 1200)
    processes.stop_all()
    sent, span = send_span(campaign)
    delta = stats_delta(before, emulator.client.stats())
    rate = sent / span
    report("B", f"Crier unthrottled, {n} recipients, create + send + record", f"{rate:,.0f}/s")
    if baseline:
        report("B/A", "Crier's rate over the bare Celery rate", f"{rate / baseline:.2f}", "goal >= 0.80")
    report("B", "sent / emulator messages / duplicates", f"{sent}/{delta['messages']}/{delta['duplicates']}",
           f"goal {n}/{n}/0")


# --- C -------------------------------------------------------------------------------------------

def bench_c(processes: Processes, emulator, n: int) -> None:
    from bots.models import TeamsAddress
    from campaigns.models import Recipient
    from delivery.services import campaign_launch

    people = Recipient.objects.filter(department="BC")
    if people.count() < n:
        raise SystemExit("C reuses B's recipients and their stored conversations: run B first (or with it)")
    emulator.client.config(limits=True, faults={}, keep_bodies=False)
    create_people(30_000_000, LATER_AUDIENCE, "CL")
    start_crier(processes, {})
    for stored, label, goal in ((True, "stored conversations", 50 * 0.95), (False, "no stored conversation", 25 * 0.95)):
        if not stored:
            TeamsAddress.objects.filter(aad_object_id__in=people.values("aad_object_id")).update(conversation_id="")
        before = emulator.client.stats()
        campaign = new_campaign("BC", f"C {label}")
        campaign_launch(campaign_id=campaign.pk)
        later: dict = {}

        def launch_later(current: dict) -> None:
            """A tenth of the way in, a small campaign is launched beside the large one."""
            if stored and not later and current["sent"] >= n // 10:
                later["campaign"] = new_campaign("CL", "C launched later")
                later["at"] = time.time()
                campaign_launch(campaign_id=later["campaign"].pk)

        wait_completed(campaign, 3600, launch_later)
        sent, span = send_span(campaign)
        delta = stats_delta(before, emulator.client.stats())
        extra = 0
        if later:
            wait_completed(later["campaign"], 600)
            extra, _ = send_span(later["campaign"])
        report("C", f"at Teams' limits, {label}: recipients/s", f"{sent / span:,.1f}/s", f"goal >= {goal:.1f}/s")
        report("C", f"  calls answered 429 ({delta['throttled']} of {delta['requests']})",
               f"{100 * delta['throttled'] / max(1, delta['requests']):.2f}%", "goal < 0.5%")
        report("C", "  sent / emulator messages / duplicates", f"{sent}/{delta['messages'] - extra}/{delta['duplicates']}",
               f"goal {n}/{n}/0")
        if later:
            first = first_sent_at(later["campaign"])
            report("C", f"  a campaign to {LATER_AUDIENCE} launched meanwhile: first message after",
                   f"{first - later['at']:.1f} s", "")
    processes.stop_all()


LATER_AUDIENCE = 20  # people in the campaign C launches while its large one is sending
TEAMS_APP_LIMIT = 50.0  # Microsoft's published calls per second per app per tenant, as the emulator enforces


def bench_c_under_load(processes: Processes, emulator, n: int) -> None:
    """C with stored conversations while every core is kept busy by another process: the workers
    wake late, and the pace must still never put more than 50 calls in any second."""
    from campaigns.models import Recipient
    from delivery.services import campaign_launch

    if Recipient.objects.filter(department="BC").count() < n:
        raise SystemExit("C under load reuses B's recipients and their stored conversations: run B first (or with it)")
    emulator.client.config(limits=True, faults={}, keep_bodies=False)
    start_crier(processes, {})
    time.sleep(3)  # let the workers start before the hog and the clock do
    # Bounded: the hog ends by itself well after the campaign should have (at a fifth of the pace).
    with CpuHog(seconds=n / (TEAMS_APP_LIMIT / 5) + 120) as hog:
        before = emulator.client.stats()
        campaign = new_campaign("BC", "C under load")
        campaign_launch(campaign_id=campaign.pk)
        wait_completed(campaign, n / (TEAMS_APP_LIMIT / 5) + 60)
        busy = hog.alive()
        after = emulator.client.stats()
    processes.stop_all()
    sent, span = send_span(campaign)
    delta = stats_delta(before, after)
    app_429 = after["throttled"]["app"] - before["throttled"]["app"]
    rate = sent / span
    report("C", f"under load ({busy} CPU hogs), stored conversations: recipients/s", f"{rate:,.1f}/s",
           f"{100 * rate / TEAMS_APP_LIMIT:.1f}% of 50/s, goal >= 95%")
    report("C", f"  429s from the app-wide limit, in {delta['requests']} calls", f"{app_429}", "goal 0")
    when_made = after["app_throttled_when_made"] - before["app_throttled_when_made"]
    report("C", "    of them, over the limit by the moments Crier made the calls", f"{when_made}",
           "the rest bunched up on their way (arrival)")
    report("C", f"  all 429s ({delta['throttled']} of {delta['requests']})",
           f"{100 * delta['throttled'] / max(1, delta['requests']):.2f}%", "")
    report("C", "  sent / emulator messages / duplicates", f"{sent}/{delta['messages']}/{delta['duplicates']}",
           f"goal {n}/{n}/0")


def first_sent_at(campaign) -> float:
    from django.db.models import Min

    from delivery.models import Delivery

    first = Delivery.objects.of_campaign(campaign.pk).filter(status="sent").aggregate(first=Min("finished_at"))["first"]
    return first.timestamp()


# --- D -------------------------------------------------------------------------------------------

def bench_d(processes: Processes, emulator, n: int, sending_seconds: float) -> None:
    """Two launches to the same audience: at Teams' published pace, the product's default and the
    goal's condition; then unthrottled, where two workers sending as fast as the emulator answers
    take most of the two cores from the statement writing the rows (a stress, for comparison)."""
    started = time.monotonic()
    create_people(10_000_000, n, "D")
    print(f"      ({n:,} recipients created in {time.monotonic() - started:.1f} s)", flush=True)
    _launch_big(processes, emulator, n, sending_seconds, "at Teams' pace", limits=True, extra={}, goals=True)
    _launch_big(processes, emulator, n, sending_seconds, "unthrottled", limits=False,
                extra={"TEAMS_RATE_LIMIT_PER_SECOND": "1000000"}, goals=False)


def _launch_big(processes: Processes, emulator, n: int, sending_seconds: float, label: str, *, limits: bool,
                extra: dict[str, str], goals: bool) -> None:
    from django.db import connection

    from campaigns.models import Campaign
    from delivery import feeding, progress
    from delivery.services import campaign_cancel, campaign_launch

    emulator.client.config(limits=limits, faults={}, keep_bodies=False)
    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")  # the previous launch's writes are not this one's to flush
    start_crier(processes, extra)
    time.sleep(3)  # let the workers start before the clock does
    sampler = Sampler(processes)
    sampler.start()
    campaign = new_campaign("D", f"D {label}")
    launched = time.time()
    campaign_launch(campaign_id=campaign.pk)
    launch_returned = time.time() - launched
    # Watched through the campaign's counters in Redis: a query for sent rows would read the rows
    # being written, on the same cores, ten times a second.
    counters = progress.client()
    wait_for(lambda: int(counters.hget(progress.key(campaign.pk), "sent") or 0), 120, "the first message", every=0.05)
    wait_for(lambda: Campaign.objects.get(pk=campaign.pk).materialised_at, 600, "materialisation", every=0.2)
    campaign.refresh_from_db()
    materialise_seconds = (campaign.materialised_at - campaign.launched_at).total_seconds()
    time.sleep(max(0.0, sending_seconds - (time.time() - launched)))
    sampler.stop()
    campaign_cancel(campaign_id=campaign.pk)
    # The workers drop the cancelled campaign's queued tasks before they stop, so the next launch
    # does not start behind them.
    wait_for(lambda: feeding.queue_depth() == 0, 120, "the queue to drain", every=0.2)
    processes.stop_all()
    rss = [mb for _, mb in sampler.rss if mb > 0]
    quarter = max(1, len(rss) // 4)
    goal = (lambda text: text) if goals else (lambda text: "")
    report("D", f"launch to {n:,} {label}: delivery rows written/s", f"{campaign.total_deliveries / materialise_seconds:,.0f}/s",
           goal("goal >= 300,000/s"))
    report("D", "  the launch call returned after", f"{launch_returned:.2f} s")
    report("D", "  first message after launch", f"{first_sent_at(campaign) - launched:.2f} s", goal("goal <= 5 s"))
    report("D", "  peak Redis memory", f"{sampler.redis_peak / 2**20:.1f} MB", goal("goal < 64 MB"))
    report("D", "  worker RSS, first quarter -> last quarter (MB)",
           f"{sum(rss[:quarter]) / quarter:.0f} -> {sum(rss[-quarter:]) / quarter:.0f}", goal("goal flat"))


# --- E -------------------------------------------------------------------------------------------

def restart_redis() -> None:
    os.system("redis-cli -h 127.0.0.1 -p 6379 shutdown nosave >/dev/null 2>&1")
    time.sleep(1)
    sh([str(ROOT / "scripts" / "services.sh")])


def restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    sh(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], timeout=120)


def bench_e(processes: Processes, emulator, n: int) -> None:
    from django.db import close_old_connections

    from delivery.models import Delivery
    from delivery.services import campaign_launch

    emulator.client.config(limits=False, keep_bodies=False, seed=7, faults={
        "status_503": 0.10, "status_429": 0.02, "timeout": 0.01, "retry_after_seconds": 1, "timeout_seconds": 4})
    create_people(20_000_000, n, "E")
    # Paced as in production (Microsoft's 50 calls a second per tenant); the faults are the emulator's.
    # Recovery is made quicker so the run ends in minutes: a shorter lease, grace and timeout.
    fast_recovery = {
        "BOT_HTTP_TIMEOUT_SECONDS": "2",
        "DELIVERY_TASK_TIME_LIMIT_SECONDS": "20", "DELIVERY_LEASE_SECONDS": "30", "RETRY_GRACE_SECONDS": "10",
        "RECONCILE_INTERVAL_SECONDS": "5", "DELIVERY_MAX_ATTEMPTS": "12", "CAMPAIGN_PAUSE_ERROR_RATE": "1.01",
    }
    start_crier(processes, fast_recovery)
    before = emulator.client.stats()
    campaign = new_campaign("E", "E faults")
    campaign_launch(campaign_id=campaign.pk)
    events = [(0.10, "kill -9 worker1", lambda: processes.kill9("worker1")),
              (0.20, "restart Redis (queue lost)", restart_redis),
              (0.30, "kill -9 worker2", lambda: processes.kill9("worker2")),
              (0.45, "restart PostgreSQL", restart_postgres),
              (0.60, "kill -9 worker1", lambda: processes.kill9("worker1"))]
    started = time.monotonic()

    def on_progress(current: dict) -> None:
        done = (current["sent"] + current["failed"] + current["skipped"]) / n
        while events and done >= events[0][0]:
            _, what, action = events.pop(0)
            print(f"      at {done:.0%} ({time.monotonic() - started:.0f} s): {what}", flush=True)
            action()
            for name in ("worker1", "worker2"):
                if processes.running[name].poll() is not None:
                    processes.worker(name, "direct,deliveries,control,default", fast_recovery, pool=CRIER_POOL)

    wait_completed(campaign, 3600, on_progress)
    processes.stop_all()
    close_old_connections()
    rows = Delivery.objects.of_campaign(campaign.pk)
    unfinished = rows.exclude(status__in=Delivery.FINAL).count()
    ambiguous = rows.filter(ambiguous=True).count()
    after = emulator.client.stats()
    delta = stats_delta(before, after)
    report("E", f"faults, paced, {n} recipients: completed in", f"{time.monotonic() - started:.0f} s", "goal: completes")
    report("E", "  sent / failed / skipped / not final",
           f"{rows.filter(status='sent').count()}/{rows.filter(status='failed').count()}/"
           f"{rows.filter(status='skipped').count()}/{unfinished}", "goal: not final = 0")
    report("E", "  duplicates seen by the emulator / ambiguous deliveries", f"{delta['duplicates']}/{ambiguous}",
           "goal: duplicates <= ambiguous")
    report("E", "  calls made before a Retry-After expired", f"{delta['early_calls']}", "goal 0")
    report("E", "  calls already on their way when Teams said 429", f"{delta['in_flight_at_retry_after']}",
           "(arrived < 100 ms after it)")
    early = after.get("early_call_samples", [])[-delta["early_calls"]:] if delta["early_calls"] else []
    for sample in early:
        print(f"      early call: {sample['scope']} scope, made {sample['late_ms']} ms after the 429 "
              f"(arrived after {sample['arrived_ms']} ms), "
              f"{sample['left_ms']} ms before its end{', with a token never seen before' if sample['new_token'] else ''}",
              flush=True)


# --- F -------------------------------------------------------------------------------------------

def bench_f(env: dict[str, str], total: int) -> None:
    import socket
    import subprocess
    import urllib.request

    from campaigns.api.auth import api_key_create

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "settings.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2", "--timeout", "120"],
        cwd=ROOT, env={**env, "API_RATE_LIMIT": "100000/min"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 60, "the web server")
        _, key = api_key_create(name=f"bench-{time.time()}")
        batch = 10_000
        started = time.monotonic()
        for first in range(0, total, batch):
            rows = [{"external_id": f"F{n}", "email": f"f{n}@contoso.example", "first_name": f"F{n}",
                     "department": "F", "country": "FR", "time_zone": "Europe/Paris",
                     "attributes": {"site": "paris", "grade": n % 7}} for n in range(first, min(total, first + batch))]
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/recipients/bulk/", data=json.dumps({"recipients": rows}).encode(),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(request, timeout=120) as response:
                answer = json.loads(response.read())
            assert answer["created"] + answer["updated"] == len(rows) and not answer["errors"], answer
        seconds = time.monotonic() - started
    finally:
        web.terminate()
        web.wait(timeout=30)
    report("F", f"API bulk upsert, {total:,} people in {batch:,}-row calls", f"{total / seconds:,.0f}/s", "goal >= 5,000/s")


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="A,B,C,D,E,F", help="benchmarks to run, e.g. A,B")
    parser.add_argument("--n", type=int, default=20_000, help="recipients for A, B, C and E")
    parser.add_argument("--big", type=int, default=1_000_000, help="recipients for D")
    parser.add_argument("--d-seconds", type=float, default=45.0, help="how long D sends before cancelling")
    parser.add_argument("--under-load", action="store_true",
                        help="C runs with stored conversations while a CPU hog keeps every core busy")
    args = parser.parse_args()
    only = {name.strip().upper() for name in args.only.split(",")}

    from emulator.process import start_emulator

    VAR.mkdir(parents=True, exist_ok=True)
    emulator = start_emulator(VAR / "emulator", port=0, limits=False)
    env = base_env(emulator)
    print("preparing the benchmark database", flush=True)
    prepare_database(env)
    setup_django(env)
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    processes = Processes(env)
    print(f"  {'':<3} {'measure':<52} {'value':>14}  goal", flush=True)
    try:
        baseline = bench_a(processes, args.n) if "A" in only else None
        if "B" in only or "C" in only:
            bench_b(processes, emulator, args.n, baseline)
        if "C" in only and args.under_load:
            bench_c_under_load(processes, emulator, args.n)
        elif "C" in only:
            bench_c(processes, emulator, args.n)
        if "D" in only:
            bench_d(processes, emulator, args.big, args.d_seconds)
        if "E" in only:
            bench_e(processes, emulator, args.n)
        if "F" in only:
            bench_f(env, 100_000)
    finally:
        processes.stop_all()
        emulator.stop()
    (VAR / "results.json").write_text(json.dumps(RESULTS, indent=1))
    print("\nResults (also in var/bench/results.json):")
    for bench, measure, value, goal in RESULTS:
        print(f"  {bench:<3} {measure:<52} {value:>14}  {goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
