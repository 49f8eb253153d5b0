"""I: inbound at the scale of a whole organisation reading at once. A campaign asking for an acknowledgement has
reached --engage people; then, while a second campaign sends at Teams' pace, the emulator has every one of them
read it (the read receipt), press its "Acknowledge" button (the invoke, answered in the response with the card
they now see) and like it, as fast as Crier's web server, the bot's endpoint, takes them.

Set-up, not timed: the people, and the first campaign sent to them (and to the sending campaign's people, whose
conversations it stores) through the real path with the emulator's limits off and Crier unthrottled, as B sends:
the emulator then holds each person's message with its card, whose button the invoke presses. Timed: the
emulator's limits on (Teams' published limits), the sending campaign launched, and the engagement: 3 events a
person. Crier's counters and rows must equal what was sent, every call answered 200."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from bench.fixtures import create_people, new_campaign, report, start_crier, wait_completed, web_server
from bench.harness import Processes, wait_for

TEAMS_APP_LIMIT = 50.0  # Microsoft's published calls per second per app per tenant, as the emulator enforces
EVENTS_PER_PERSON = 3  # the read receipt, the invoke, the reaction
ENGAGED, SENDING = "IE", "IS"  # the departments of the engaged people and of the sending campaign's
ENGAGE_SENDING = 6_000  # the sending campaign's people, sent to again by as many campaigns as it takes
ENGAGE_CONCURRENCY = 16  # people acting at once: twice the web server's threads, enough to keep them all busy
ENGAGE_WEB = "3"  # Crier's gunicorn: workers, or workers x threads; 3 workers without threads, as its image runs it
# Below the workers that send: a second of Teams' pace lost is never made up, while an activity can wait a few
# milliseconds (docker/compose.yaml gives the web server a smaller CPU share for the same reason).
ENGAGE_WEB_NICE = 5


def bench_i(processes: Processes, emulator, n: int, sending: int, concurrency: int, web_workers: int,
            web_threads: int, web_nice: int = 0) -> None:
    client = emulator.client
    started = time.monotonic()
    engaged = _set_up(processes, emulator, n, sending)
    setup_seconds = time.monotonic() - started
    report("I", f"  set-up: {n:,} + {sending:,} people, the first campaign sent unthrottled", f"{setup_seconds:,.0f} s",
           "")
    client.config(limits=True, faults={}, keep_bodies=False)
    with web_server(processes.env, workers=web_workers, threads=web_threads, nice=web_nice) as url:
        client.config(bot_endpoint=f"{url}/api/messages")
        try:
            _engaging(processes, emulator, engaged, sending, concurrency, (web_workers, web_threads, web_nice))
            processes.stop_all()
            _ceiling(url, 3 * n, concurrency)
        finally:
            client.config(bot_endpoint="http://127.0.0.1:9/api/messages")
            processes.stop_all()


def _set_up(processes: Processes, emulator, n: int, sending: int):
    """The people, and the campaign asking for an acknowledgement sent to completion, unthrottled."""
    from campaigns.approvals import approval_fingerprint
    from campaigns.models import Audience
    from delivery.services import campaign_launch

    emulator.client.config(limits=False, faults={}, keep_bodies=False)
    create_people(60_000_000, n, ENGAGED)
    create_people(61_000_000, sending, SENDING)
    campaign = new_campaign(ENGAGED, "I asking for an acknowledgement")
    # Everyone, the sending campaign's people too: their chats are created and stored by the way, so that the
    # sending campaign makes one call a person.
    campaign.audience, _ = Audience.objects.get_or_create(
        name=f"Departments {ENGAGED} and {SENDING}",
        defaults={"kind": Audience.Kind.RULES,
                  "rules": [{"field": "department", "op": "in", "value": [ENGAGED, SENDING]}]})
    campaign.acknowledgement = "asked"
    campaign.save(update_fields=["audience", "acknowledgement"])
    campaign.approved_fingerprint = approval_fingerprint(campaign=campaign)  # approved as it stands
    campaign.save(update_fields=["approved_fingerprint"])
    start_crier(processes, {"TEAMS_RATE_LIMIT_PER_SECOND": "1000000"})
    launched = time.monotonic()

    def progress_line(current: dict) -> None:
        done = current["sent"] + current["failed"] + current["skipped"]
        if done and int(time.monotonic() - launched) % 60 == 0:
            print(f"      (set-up: {done:,} of {n + sending:,} sent after {time.monotonic() - launched:.0f} s)",
                  flush=True)

    campaign_launch(campaign_id=campaign.pk)
    wait_completed(campaign, 3 * 3600, progress_line)
    processes.stop_all()
    campaign.refresh_from_db()
    return campaign


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine since it started, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values[:8]) - idle) / tick, sum(values[:8]) / tick


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _web_server_pids() -> list[int]:
    """Crier's gunicorn: the one this process started (which names itself "gunicorn: master") and its workers."""
    masters = []
    for pid in _children(os.getpid()):
        try:
            if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes():
                masters.append(pid)
        except OSError:
            pass
    return masters + [child for master in masters for child in _children(master)]


def _pids_running(name: bytes) -> list[int]:
    """The processes whose command line holds ``name``, and their children."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if name in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found + [child for pid in found for child in _children(pid)]


def _postgres_pids(ours: bool = True) -> list[int]:
    """PostgreSQL's processes: the benchmark's backends and the server's own (writer, WAL writer, checkpointer);
    or (``ours`` false) the backends of the machine's other databases."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE (datname = current_database() OR datname IS NULL) = %s",
                       [ours])
        return [row[0] for row in cursor.fetchall()]


def _other_work() -> list[int]:
    """What else runs on the machine meanwhile: tests (pytest, mutmut), what they start, and their databases."""
    return _pids_running(b"pytest") + _pids_running(b"mutmut") + _postgres_pids(ours=False)


class CpuShares:
    """CPU time spent by each group of processes between ``start`` and ``stop``. ``sample`` (every second) keeps
    each process's latest figure, so that one that ends meanwhile (a database connection closed after its
    ``CONN_MAX_AGE``) still counts what it spent."""

    def __init__(self, groups) -> None:
        self.groups = groups  # name -> callable returning the group's pids
        self.before: dict[str, dict[int, float]] = {}
        self.latest: dict[str, dict[int, float]] = {}
        self.spent: dict[str, float] = {}

    def start(self) -> None:
        self.before = {name: {pid: _cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()}
        self.latest = {name: dict(pids) for name, pids in self.before.items()}
        self.machine = _machine_busy()

    def sample(self) -> None:
        for name, pids in self.groups.items():
            for pid in set(pids()) | set(self.latest[name]):
                cpu = _cpu_seconds(pid)
                if cpu:  # 0 once it is gone: its latest figure stands
                    self.latest[name][pid] = cpu

    def stop(self) -> None:
        self.sample()
        busy, total = _machine_busy()
        for name in self.groups:
            # A process born meanwhile spent all its time in the window.
            self.spent[name] = sum(cpu - self.before[name].get(pid, 0.0) for pid, cpu in self.latest[name].items())
        self.spent["anything else on the machine"] = busy - self.machine[0] - sum(self.spent.values())
        self.spent["idle"] = (total - self.machine[1]) - (busy - self.machine[0])


class Sending(threading.Thread):
    """The sending campaign: campaigns to the sending department's people at Teams' pace, the next launched
    whenever what is left to send falls under ``LOW_WATER`` (the pace is the tenant's, shared evenly: two running
    at once send no faster than one), so that it never runs dry however long the engagement takes."""

    LOW_WATER = int(20 * TEAMS_APP_LIMIT)  # 20 seconds of sending

    def __init__(self, people: int) -> None:
        super().__init__(daemon=True)
        from delivery import progress

        self.people = people
        self.campaigns: list[int] = []
        self.counters = progress.client()
        self._halt = threading.Event()

    def _counts(self, field: str) -> int:
        from delivery import progress

        pipe = self.counters.pipeline(transaction=False)
        for pk in self.campaigns:
            pipe.hget(progress.key(pk), field)
        return sum(int(value or 0) for value in pipe.execute())

    def sent(self) -> int:
        return self._counts("sent")

    def launch(self) -> None:
        from delivery.services import campaign_launch

        campaign = new_campaign(SENDING, f"I sending meanwhile ({len(self.campaigns) + 1})")
        campaign_launch(campaign_id=campaign.pk)
        self.campaigns.append(campaign.pk)

    def run(self) -> None:
        from django.db import connection

        try:
            while not self._halt.is_set():
                ended = sum(self._counts(field) for field in ("sent", "failed", "skipped"))
                if not self.campaigns or self.people * len(self.campaigns) - ended < self.LOW_WATER:
                    self.launch()
                self._halt.wait(0.5)
        finally:
            connection.close()

    def stop(self) -> None:
        """Stops launching, and cancels what is still sending: it has served its purpose."""
        from campaigns.models import Campaign
        from delivery.control import campaign_cancel

        self._halt.set()
        self.join()
        for pk in Campaign.objects.filter(pk__in=self.campaigns, status="running").values_list("pk", flat=True):
            campaign_cancel(campaign_id=pk)


def _engaging(processes: Processes, emulator, engaged, sending: int, concurrency: int,
              layout: tuple[int, int, int]) -> None:
    from django.db import connection

    from campaigns.models import Recipient
    from delivery import progress
    from delivery.models import campaign_ids

    client = emulator.client
    people = [str(aad) for aad in Recipient.objects.filter(department=ENGAGED).values_list("aad_object_id", flat=True)]
    n = len(people)
    before_engaged = progress.read(engaged)
    start_crier(processes, {})  # Teams' pace: the product's default
    outbound = Sending(sending)
    outbound.start()
    # Sending at its pace before the engagement starts: its first seconds (the workers starting) are not counted.
    wait_for(lambda: outbound.sent() >= 5 * TEAMS_APP_LIMIT, 120, "the sending campaign to be under way", every=0.2)
    shares = CpuShares({
        "Crier's web server": _web_server_pids,
        "the emulator": lambda: [emulator.pid],
        "PostgreSQL": _postgres_pids,
        "Crier's workers and beat": lambda: processes.pids("worker") + processes.pids("beat"),
        "Redis": lambda: _pids_running(b"redis-server"),
        "this benchmark's own process": lambda: [os.getpid()],
        "tests run meanwhile": _other_work,
    })
    samples: list[tuple[float, int, int]] = []  # (time, Crier's engagement count, sending campaign's sent)
    done = threading.Event()

    def sample() -> None:
        try:
            while not done.is_set():
                current = progress.read(engaged)
                samples.append((time.monotonic(), current["read"] + current["acknowledged"]
                                + current["reactions"].get("like", 0), outbound.sent()))
                shares.sample()
                done.wait(1.0)
        finally:
            connection.close()

    sampler = threading.Thread(target=sample, daemon=True)
    shares.start()
    sent_before, started = outbound.sent(), time.monotonic()
    sampler.start()
    answer = client.engage(people, read=True, execute="Acknowledge", react="like", concurrency=concurrency,
                           timeout=6 * 3600)
    window = time.monotonic() - started
    sent_after = outbound.sent()
    done.set()
    sampler.join()
    shares.stop()
    outbound.stop()

    after = progress.read(engaged)
    lowest, end = campaign_ids(engaged.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(read_at), count(acknowledged_at) FROM delivery_delivery d JOIN campaigns_recipient r"
            " ON r.id = d.recipient_id WHERE d.id >= %s AND d.id < %s AND r.department = %s", [lowest, end, ENGAGED])
        read_rows, acknowledged_rows = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM delivery_reaction WHERE delivery_id >= %s AND delivery_id < %s"
                       " AND kind = 'like'", [lowest, end])
        like_rows = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM delivery_acknowledgement WHERE delivery_id >= %s AND delivery_id < %s",
                       [lowest, end])
        kept_rows = cursor.fetchone()[0]

    seconds = answer["seconds"]
    events = sum(answer["sent"].values())
    counted = {"read": after["read"] - before_engaged["read"],
               "acknowledged": after["acknowledged"] - before_engaged["acknowledged"],
               "like": after["reactions"].get("like", 0) - before_engaged["reactions"].get("like", 0)}
    # Crier's own pace: its counters over the samples, from the first that moved to the last.
    moving = [s for s in samples if s[1] > samples[0][1]]
    steady = ((moving[-1][1] - samples[0][1]) / (moving[-1][0] - samples[0][0])) if moving else 0.0
    rate = events / max(seconds, 0.001)
    workers, threads, nice = layout
    web = f"gunicorn {workers} workers" + (f" x {threads} threads" if threads > 1 else "") + (
        f", nice {nice}" if nice else "")
    report("I", f"{n:,} people read, acknowledge and like at once: events/s", f"{rate:,.0f}/s",
           f"goal >= 1,000/s ({EVENTS_PER_PERSON} a person, {concurrency} people at a time, {web})")
    report("I", "  by Crier's counters, sampled each second", f"{steady:,.0f}/s", "")
    invoke = answer["invoke_ms"]
    report("I", "  invoke answers p50 / p99 / max (ms)",
           f"{invoke['p50']:.0f} / {invoke['p99']:.0f} / {invoke['max']:.0f}", "goal p99 < 1,000 ms")
    outbound_rate = (sent_after - sent_before) / window
    # The longest it sent nothing, between two samples a second apart.
    still = max((b[0] - a[0] for a, b in zip(samples, samples[1:]) if b[2] == a[2]), default=0.0)
    report("I", f"  sending meanwhile, over the {window:,.0f} s ({len(outbound.campaigns)} campaigns to "
           f"{sending:,})", f"{outbound_rate:,.1f}/s", f"{100 * outbound_rate / TEAMS_APP_LIMIT:.1f}% of 50/s, "
           f"goal >= 95%" + (f"; stood still {still:.1f} s" if still else ""))
    report("I", "  sent by the emulator: read / execute / react",
           f"{answer['sent']['read']}/{answer['sent']['execute']}/{answer['sent']['react']}", f"goal {n}/{n}/{n}")
    report("I", "  Crier's counters: read / acknowledged / like", f"{counted['read']}/{counted['acknowledged']}/"
           f"{counted['like']}", f"goal {n}/{n}/{n}")
    report("I", "  Crier's rows: read / acknowledged (kept) / like",
           f"{read_rows}/{acknowledged_rows} ({kept_rows})/{like_rows}", f"goal {n}/{n} ({n})/{n}")
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(answer["bot_status"].items()))
    report("I", "  errors; invokes answered with a card; bot answers by status",
           f"{answer['errors']}; {answer['invokes'].get('card', 0)}; {statuses}",
           f"goal 0; {n}; 200: {EVENTS_PER_PERSON * n}")
    if answer.get("execute_missing"):
        report("I", "  people whose card had no Acknowledge button", f"{answer['execute_missing']}", "goal 0")
    spent = shares.spent
    report("I", "  CPU an event: web server / emulator / PostgreSQL (ms)", " / ".join(
        f"{1000 * spent[name] / max(events, 1):.1f}" for name in ("Crier's web server", "the emulator", "PostgreSQL")),
        f"over the window; tests run meanwhile took {spent['tests run meanwhile']:.0f} CPU-s")
    cores = os.cpu_count() or 2
    print(f"      CPU over the {window:.0f} s window ({cores} cores: {cores * window:.0f} CPU-seconds), and per event:",
          flush=True)
    for name, cpu in spent.items():
        print(f"        {name:<28} {cpu:8.1f} s  {1000 * cpu / max(events, 1):6.2f} ms", flush=True)


def _ceiling(url: str, requests: int, concurrency: int) -> None:
    """The most the web server could take on these cores: the same endpoint, as many calls at once, each refused at
    its token's first check (no database, no Redis, nothing else running), sent from this process."""
    import asyncio

    import aiohttp

    body = json.dumps({"type": "event", "channelId": "msteams", "serviceUrl": "https://smba.example/"})
    statuses: dict[int, int] = {}

    async def run() -> float:
        calls = iter(range(requests))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            async def caller() -> None:
                for _ in calls:
                    async with session.post(f"{url}/api/messages", data=body, headers={
                            "Authorization": "Bearer not.a.token", "Content-Type": "application/json"}) as answer:
                        await answer.read()
                        statuses[answer.status] = statuses.get(answer.status, 0) + 1

            started = time.monotonic()
            await asyncio.gather(*(caller() for _ in range(concurrency)))
            return time.monotonic() - started

    seconds = asyncio.run(run())
    report("I", "  the web server refusing an unsigned activity, nothing else running: calls/s",
           f"{requests / seconds:,.0f}/s", f"the most it could take here; answers {statuses}")
