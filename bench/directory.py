"""G: people from Entra ID. A full sync of a large directory from the emulator's Microsoft Graph (999 people a
page), end to end as an operator runs it (``manage.py sync_entra --full``, its process started and timed
whole), with the sync process's memory sampled as it goes; then a delta in which 1% of them changed."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from bench.fixtures import report
from bench.harness import ROOT, rss_mb

LOAD_BATCH = 5_000


def _directory(emulator, total: int, department: str) -> None:
    for first in range(0, total, LOAD_BATCH):
        emulator.client.graph_users([
            {"id": f"00000000-0000-4000-8000-{n:012d}", "displayName": f"Person {n}", "givenName": f"P{n}",
             "surname": "Directory", "mail": f"p{n}@contoso.example", "userPrincipalName": f"p{n}@contoso.example",
             "department": department, "jobTitle": "Engineer", "officeLocation": "Leeds", "usageLocation": "GB",
             "preferredLanguage": "en-GB", "employeeId": f"G{n}"}
            for n in range(first, min(total, first + LOAD_BATCH))
        ])


def _sync(env: dict[str, str], *arguments: str) -> tuple[float, list[float], str]:
    """Runs one sync to its end: (seconds, the process's RSS in MB every 0.2 s, what it printed)."""
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "manage.py", "sync_entra", *arguments], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples: list[float] = []

    def sample() -> None:
        while process.poll() is None:
            samples.append(rss_mb(process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate(timeout=1800)
    seconds = time.monotonic() - started
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"sync_entra failed: {output}")
    return seconds, [s for s in samples if s > 0], output.strip()


def bench_g(env: dict[str, str], emulator, total: int) -> None:
    env = {**env, "ENTRA_SYNC": "true", "GRAPH_BASE_URL": emulator.graph_url, "GRAPH_AUTHORITY": emulator.authority,
           "GRAPH_TOKEN_SCOPE": "https://graph.microsoft.com/.default"}
    emulator.client.graph_config(page_size=999)
    _directory(emulator, total, "Sales")
    seconds, rss, output = _sync(env, "--full")
    assert f"{total:,} listed" in output or f"{total} listed" in output, output
    report("G", f"Entra ID full sync, {total:,} people (999 a page)", f"{total / seconds:,.0f}/s", "goal >= 5,000/s")
    # After the process has started and its first pages are in (the first quarter), memory should not grow.
    quarter = max(1, len(rss) // 4)
    report("G", "  sync process RSS: 2nd quarter's peak -> last quarter's",
           f"{max(rss[quarter:2 * quarter] or rss):,.0f} -> {max(rss[-quarter:]):,.0f} MB", "flat")
    changed = total // 100
    _directory(emulator, changed, "Marketing")  # 1% moved department
    seconds, _, output = _sync(env)
    assert f"updated {changed:,}" in output or f"updated {changed}" in output, output
    report("G", f"Entra ID delta, {changed:,} of {total:,} changed", f"{seconds:.2f} s", "goal <= 3 s")
