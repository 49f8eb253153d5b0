"""Starting real Celery worker and beat processes against the test database and Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import redis

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
        "GRAPH_AUTHORITY": teams.authority,
        "GRAPH_BASE_URL": teams.graph_url,
        "GRAPH_TOKEN_SCOPE": "https://graph.microsoft.com/.default",
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
                log = self.log(name)
                # The reason a worker gave up is logged CRITICAL, often well above the shutdown's own traces.
                critical = "\n".join(line for line in log.splitlines() if "CRITICAL/" in line)
                raise AssertionError(f"{name} exited with {process.returncode}:\n{critical}\n...\n{log[-3000:]}")

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
        logs = "".join(f"\n--- {name} log ---\n{self.log(name)[-4000:]}" for name in self.processes if name != "beat")
        raise AssertionError(f"timed out waiting for {what}{logs}")

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def kill9(self, name: str) -> None:
        """``kill -9`` of the process's whole group (a worker and its pool), as a lost machine would."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

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
def running_engine(teams, *, bot_endpoint: str, log_dir: Path, beat: bool = True, env: dict[str, str] | None = None):
    """A worker (and beat) sending through the emulator, which enforces Teams' published limits;
    ``env`` adds to (or overrides) the engine's environment."""
    teams.client.config(limits=True, bot_endpoint=bot_endpoint)
    processes = CeleryProcesses(env={**engine_env(teams), **(env or {})}, log_dir=log_dir)
    processes.start_worker()
    if beat:
        processes.start_beat()
    try:
        yield processes
    finally:
        processes.stop()


# Recovery in seconds rather than minutes, for tests that kill or starve the engine: calls to Teams
# give up after 2 s, a claim older than 8 s belongs to a dead worker, a row fed 4 s ago and still
# pending was lost, and the reconciler looks every second. A campaign never pauses itself.
FAST_RECOVERY = {
    "BOT_HTTP_TIMEOUT_SECONDS": "2",
    "DELIVERY_TASK_TIME_LIMIT_SECONDS": "6",
    "DELIVERY_LEASE_SECONDS": "8",
    "RETRY_GRACE_SECONDS": "4",
    "RECONCILE_INTERVAL_SECONDS": "1",
    "CAMPAIGN_PAUSE_ERROR_RATE": "1.01",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own, on a free loopback port, with no persistence: one it may
    flush, stop and start again without touching the machine's."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        log = open(self.log_dir / "redis.log", "ab")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:  # until it listens
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def flush_and_restart(self, *, down_seconds: float = 1.0) -> None:
        """Everything Redis held is lost (FLUSHALL), then the server goes away and comes back empty."""
        self.client().flushall()
        self.stop()
        time.sleep(down_seconds)
        self.start()


@contextmanager
def own_redis(log_dir: Path):
    server = RedisServer(log_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
