"""H: installing the app. A campaign to people who never installed it, with ``install_app`` on: the emulator's
Graph installs at its published limit (30 a second per app and tenant, 429 beyond) and its Teams enforces
Teams' limits. Crier's web server is the bot's endpoint, as in production: each installation reaches it with the
person's chat. Everyone is reached once; the installs' pace is read from Graph's own count, sampled as it goes."""

from __future__ import annotations

import threading
import time

from bench.fixtures import (
    create_people, new_campaign, report, send_span, start_crier, stats_delta, wait_completed, web_server,
)
from bench.harness import Processes

GRAPH_INSTALL_LIMIT = 30.0  # Microsoft's published installs a second per app and tenant, as the emulator enforces
LOAD_BATCH = 1_000


def bench_h(processes: Processes, emulator, n: int) -> None:
    from campaigns.models import Recipient

    create_people(50_000_000, n, "HI")
    people = [str(aad) for aad in Recipient.objects.filter(department="HI").values_list("aad_object_id", flat=True)]
    client = emulator.client
    client.config(limits=True, auto_install=False, faults={}, keep_bodies=False)
    for first in range(0, n, LOAD_BATCH):
        batch = people[first:first + LOAD_BATCH]
        client.graph_users([{"id": aad, "displayName": f"Newcomer {aad[:8]}"} for aad in batch])
        client.register_users([{"aad_object_id": aad, "installed": False} for aad in batch])
    graph = {"GRAPH_BASE_URL": emulator.graph_url, "GRAPH_AUTHORITY": emulator.authority,
             "GRAPH_TOKEN_SCOPE": "https://graph.microsoft.com/.default"}
    with web_server({**processes.env, **graph}) as url:
        client.config(bot_endpoint=f"{url}/api/messages")
        try:
            _installing(processes, emulator, n, graph)
        finally:
            client.config(bot_endpoint="http://127.0.0.1:9/api/messages")


def _installing(processes: Processes, emulator, n: int, graph_env: dict[str, str]) -> None:
    from campaigns.approvals import approval_fingerprint
    from delivery.services import campaign_launch

    client = emulator.client
    start_crier(processes, graph_env)
    campaign = new_campaign("HI", "H installing the app")
    campaign.install_app = True  # approved as it stands: with the installs
    campaign.approved_fingerprint = approval_fingerprint(campaign=campaign)
    campaign.save(update_fields=["install_app", "approved_fingerprint"])
    before, graph_before = client.stats(), client.graph_stats()
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.monotonic(), client.graph_stats()["installs"] - graph_before["installs"]))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    campaign_launch(campaign_id=campaign.pk)
    try:
        wait_completed(campaign, 1800)
    finally:
        done.set()
        sampler.join()
    graph = client.graph_stats()
    installs = graph["installs"] - graph_before["installs"]
    started = next(t for t, count in samples if count > 0)
    ended = next(t for t, count in samples if count >= installs)
    # The first install happened within a sample before ``started``: count the span from the sample before it.
    earlier = [t for t, count in samples if count == 0 and t < started]
    span = ended - (earlier[-1] if earlier else started)
    rate = installs / max(span, 0.001)
    # The longest time the installs stood still between the first and the last (a hand-on, a starved installer).
    moving = [(t, count) for t, count in samples if (earlier[-1] if earlier else started) <= t <= ended]
    still = max((b[0] - a[0] for a, b in zip(moving, moving[1:]) if b[1] == a[1]), default=0.0)
    sent, send_seconds = send_span(campaign)
    delta = stats_delta(before, client.stats())
    report("H", f"installing the app for {n:,} people: installs/s", f"{rate:,.1f}/s",
           f"goal >= {0.9 * GRAPH_INSTALL_LIMIT:.0f}/s (90% of {GRAPH_INSTALL_LIMIT:.0f})")
    report("H", "  the longest the installs stood still", f"{still:.2f} s", "")
    throttled = graph["install_throttled"] - graph_before["install_throttled"]
    when_made = graph["install_throttled_when_made"] - graph_before["install_throttled_when_made"]
    report("H", "  installs / Graph's 429s (over the limit as Crier made them)", f"{installs}/{throttled} ({when_made})",
           f"goal {n}/0 (0)")
    report("H", "  sent / emulator messages / duplicates", f"{sent}/{delta['messages']}/{delta['duplicates']}",
           f"goal {n}/{n}/0")
    report("H", "  sends/s; Teams calls answered 429", f"{sent / max(send_seconds, 0.001):,.1f}/s; {delta['throttled']}",
           "Teams' pace, no 429")
    processes.stop_all()
