"""D (a very large audience), E (faults: killed workers, Redis and PostgreSQL restarts, Teams' errors) and
F (the API's bulk upload)."""

from __future__ import annotations

import json
import os
import time

from bench.fixtures import (
    CRIER_POOL, create_people, first_sent_at, new_campaign, report, start_crier, stats_delta, wait_completed,
    web_server,
)
from bench.harness import ROOT, Processes, Sampler, sh, wait_for

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
    import urllib.request

    from campaigns.api.auth import api_key_create

    with web_server(env, {"API_RATE_LIMIT": "100000/min"}) as url:
        _, key = api_key_create(name=f"bench-{time.time()}")
        batch = 10_000
        started = time.monotonic()
        for first in range(0, total, batch):
            rows = [{"external_id": f"F{n}", "email": f"f{n}@contoso.example", "first_name": f"F{n}",
                     "department": "F", "country": "FR", "time_zone": "Europe/Paris",
                     "attributes": {"site": "paris", "grade": n % 7}} for n in range(first, min(total, first + batch))]
            request = urllib.request.Request(
                f"{url}/api/v1/recipients/bulk/", data=json.dumps({"recipients": rows}).encode(),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(request, timeout=120) as response:
                answer = json.loads(response.read())
            assert answer["created"] + answer["updated"] == len(rows) and not answer["errors"], answer
        seconds = time.monotonic() - started
    report("F", f"API bulk upsert, {total:,} people in {batch:,}-row calls", f"{total / seconds:,.0f}/s", "goal >= 5,000/s")
