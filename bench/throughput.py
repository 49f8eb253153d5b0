"""A (bare Celery), B (Crier unthrottled) and C (at Teams' limits, also with every core busy)."""

from __future__ import annotations

import time

from bench.fixtures import (
    create_people, first_sent_at, new_campaign, report, send_span, start_crier, stats_delta, wait_completed,
)
from bench.harness import REDIS_URL, CpuHog, Processes, wait_for

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
