"""Starting real Celery worker and beat processes against the test database and Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def engine_env(teams) -> dict[str, str]:
    """What a worker and beat started by a test need: the test database and Redis, the emulator as
    Teams, and short intervals so a test does not wait for the scheduler."""
    from django.conf import settings
    from django.db import connection

    return {
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "BOT_AUTHORITY": teams.authority,
        "TEAMS_SERVICE_URL": teams.service_url,
        "BOT_OPENID_METADATA_URL": teams.openid_metadata_url,
        "REQUESTS_CA_BUNDLE": str(teams.ca_file),
        "SCHEDULER_INTERVAL_SECONDS": "1",
        "COMPLETION_INTERVAL_SECONDS": "1",
        "WELCOME_INTERVAL_SECONDS": "2",
        "DELIVERY_BACKOFF_BASE_SECONDS": "0.5",
    }


class CeleryProcesses:
    def __init__(self, *, env: dict[str, str], log_dir: Path) -> None:
        self.env = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "settings.test"}
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "wb")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "settings", *args],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def start_worker(self, name: str = "worker") -> None:
        self.start(name, ["worker", "-Q", "direct,deliveries,control,default", "--pool", "threads", "-c", "4", "-n", f"{name}@%h",
                          "--loglevel", "INFO", "--without-gossip", "--without-mingle"])

    def start_beat(self) -> None:
        self.start("beat", ["beat", "--loglevel", "INFO", "--schedule", str(self.log_dir / "beat-schedule")])

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{self.log(name)[-3000:]}")

    def wait_until(self, condition, *, timeout: float = 120.0, what: str = "condition"):
        """Polls ``condition`` until it returns something true (returned), failing with the worker's
        log if a process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            value = condition()
            if value:
                return value
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}\n--- worker log ---\n{self.log('worker')[-4000:]}")

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextmanager
def running_engine(teams, *, bot_endpoint: str, log_dir: Path, beat: bool = True):
    """A worker (and beat) sending through the emulator, which enforces Teams' published limits."""
    teams.client.config(limits=True, bot_endpoint=bot_endpoint)
    processes = CeleryProcesses(env=engine_env(teams), log_dir=log_dir)
    processes.start_worker()
    if beat:
        processes.start_beat()
    try:
        yield processes
    finally:
        processes.stop()
