"""Processes and measurements for the benchmarks: a database of their own, the emulator, Celery
worker and beat processes, and samplers of Redis memory and worker RSS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
DB_NAME = "crier_bench"
REDIS_URL = "redis://127.0.0.1:6379/12"


def base_env(emulator) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "TEAMS_", "DJANGO_"))},
        "DJANGO_SETTINGS_MODULE": "settings.settings",
        "CRIER_ENV": "development",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
        "REDIS_URL": REDIS_URL,
        "BOT_APP_ID": "00000000-0000-0000-0000-00000000b07a",
        "BOT_APP_PASSWORD": "emulator-secret",
        "BOT_TENANT_ID": "11111111-1111-1111-1111-111111111111",
        "BOT_AUTHORITY": emulator.authority,
        "TEAMS_SERVICE_URL": emulator.service_url,
        "BOT_OPENID_METADATA_URL": emulator.openid_metadata_url,
        "REQUESTS_CA_BUNDLE": str(emulator.ca_file),
        "LOG_LEVEL": "WARNING",
    }


class Processes:
    """Celery workers and beat, started and stopped (or killed) on demand."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.running: dict[str, subprocess.Popen] = {}
        (VAR / "log").mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(VAR / "log" / f"{name}.log", "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "settings", *args],
            cwd=ROOT, env={**self.env, **(extra_env or {})}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.running[name] = process
        return process

    def worker(
        self, name: str, queues: str, extra_env: dict[str, str] | None = None, include: str = "",
        pool: tuple[str, ...] = ("--pool", "prefork", "-c", "1"),
    ) -> None:
        args = ["worker", "-Q", queues, *pool, "-n", f"{name}@%h", "--loglevel", "WARNING",
                "--without-gossip", "--without-mingle", "--without-heartbeat"]
        if include:
            args += ["-I", include]
        self.start(name, args, extra_env)

    def beat(self, extra_env: dict[str, str] | None = None) -> None:
        self.start("beat", ["beat", "--loglevel", "WARNING", "--schedule", str(VAR / "beat-schedule")], extra_env)

    def pids(self, prefix: str = "worker") -> list[int]:
        """The worker processes and their pool children."""
        pids = []
        for name, process in self.running.items():
            if name.startswith(prefix) and process.poll() is None:
                pids.append(process.pid)
                children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
                if children.exists():
                    pids += [int(pid) for pid in children.read_text().split()]
        return pids

    def kill9(self, name: str) -> None:
        process = self.running[name]
        for pid in self.pids(name):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.running.clear()


HOG = """
import sys, time
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    pass
"""


class CpuHog:
    """Keeps every core busy: one busy-looping process per core, at the workers' own priority. Each
    ends by itself after ``seconds`` even if the benchmark dies; ``stop`` ends them sooner."""

    def __init__(self, seconds: float, cores: int | None = None) -> None:
        self.seconds = seconds
        self.cores = cores or os.cpu_count() or 2
        self.running: list[subprocess.Popen] = []

    def __enter__(self) -> CpuHog:
        for _ in range(self.cores):
            self.running.append(subprocess.Popen(
                [sys.executable, "-c", HOG, str(self.seconds)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            ))
        return self

    def alive(self) -> int:
        return sum(process.poll() is None for process in self.running)

    def stop(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.kill()
        for process in self.running:
            process.wait()
        self.running.clear()

    def __exit__(self, *exc) -> None:
        self.stop()


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Sampler(threading.Thread):
    """Samples Redis memory and the workers' RSS every ``interval`` seconds."""

    def __init__(self, processes: Processes, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.processes = processes
        self.interval = interval
        self.redis_peak = 0
        self.rss: list[tuple[float, float]] = []  # (time, total MB of the worker processes)
        self._halt = threading.Event()
        self.client = redis.Redis.from_url(REDIS_URL)

    def run(self) -> None:
        started = time.monotonic()
        while not self._halt.is_set():
            try:
                self.redis_peak = max(self.redis_peak, int(self.client.info("memory")["used_memory"]))
            except redis.RedisError:
                pass
            self.rss.append((time.monotonic() - started, sum(rss_mb(pid) for pid in self.processes.pids())))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def wait_for(condition, timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")


def sh(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)
