"""Starting the emulator as a subprocess (``python -m emulator``) and waiting until it serves.

    running = start_emulator(tmp_path / "emulator", port=0, limits=False)
    running.client.register_users([...])
    ...
    running.stop()
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .client import EmulatorClient

REPO_ROOT = Path(__file__).resolve().parents[1]
LOG_TAIL_CHARS = 4000


class EmulatorStartError(RuntimeError):
    """The emulator did not come up; the message carries the end of its output."""


@dataclass
class RunningEmulator:
    process: subprocess.Popen[bytes]
    state_dir: Path
    log_file: Path
    info: dict[str, Any]
    client: EmulatorClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = EmulatorClient(self.url, self.ca_file)

    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def port(self) -> int:
        return int(self.info["port"])

    @property
    def ca_file(self) -> str:
        return str(self.info["ca_file"])

    @property
    def service_url(self) -> str:
        return str(self.info["service_url"])

    @property
    def authority(self) -> str:
        return str(self.info["authority"])

    @property
    def openid_metadata_url(self) -> str:
        return str(self.info["openid_metadata_url"])

    @property
    def graph_url(self) -> str:
        return str(self.info["graph_url"])

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return _tail(self.log_file)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not stopped within ``timeout``. Safe to call twice."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.client.close()

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return ""


def _switch(value: bool | str) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _read_info(info_file: Path, pid: int) -> dict[str, Any] | None:
    """``emulator.json`` once the process with ``pid`` has written it."""
    try:
        info = json.loads(info_file.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("pid") == pid else None


def start_emulator(
    state_dir: str | os.PathLike[str],
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    app_id: str | None = None,
    app_password: str | None = None,
    tenant_id: str | None = None,
    bot_endpoint: str | None = None,
    limits: bool | str | None = None,
    auto_install: bool | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 20.0,
    python: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> RunningEmulator:
    """Launches an emulator and waits (at most ``timeout`` s) until it wrote ``emulator.json`` and
    answers its health check. Options left as None come from the environment (``env`` is merged
    over this process's) or the emulator's defaults. Raises EmulatorStartError."""
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    command = [python or sys.executable, "-m", "emulator", "--state-dir", str(state), "--port", str(port)]
    command += ["--host", host]
    options = {
        "--app-id": app_id,
        "--app-password": app_password,
        "--tenant-id": tenant_id,
        "--bot-endpoint": bot_endpoint,
        "--limits": None if limits is None else _switch(limits),
        "--auto-install": None if auto_install is None else _switch(auto_install),
    }
    for flag, value in options.items():
        if value is not None:
            command += [flag, str(value)]
    process_env = dict(os.environ)
    process_env.update(env or {})
    process_env["PYTHONUNBUFFERED"] = "1"

    log_file = state / "emulator.log"
    log: IO[bytes] = open(log_file, "ab")
    try:
        process = subprocess.Popen(
            command, cwd=str(cwd or REPO_ROOT), env=process_env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        log.close()  # the child holds its own descriptor

    def fail(reason: str) -> EmulatorStartError:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        return EmulatorStartError(
            f"the Teams emulator {reason} (command: {' '.join(command)}).\n--- its output ---\n{_tail(log_file)}"
        )

    deadline = time.monotonic() + timeout
    info_file = state / "emulator.json"
    while True:
        code = process.poll()
        if code is not None:
            raise fail(f"exited with code {code} while starting")
        info = _read_info(info_file, process.pid)
        if info is not None:
            running = RunningEmulator(process=process, state_dir=state, log_file=log_file, info=info)
            try:
                if running.client.health():
                    atexit.register(running.stop)
                    return running
            except Exception:  # noqa: BLE001 - not answering yet; the deadline decides
                pass
        if time.monotonic() >= deadline:
            raise fail(f"did not become ready within {timeout:g} s")
        time.sleep(0.05)
