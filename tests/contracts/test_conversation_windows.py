"""Microsoft's per-conversation limits for a bot (Learn, "Optimize your bot with rate limiting in Teams":
send to conversation and create conversation, per bot per thread): 7 per 1 s, 8 per 2 s, 60 per 30 s and
1,800 per hour. Crier's pacer and the emulator write them separately; each side is pinned here with the
literal numbers, and each side's behaviour at every window's edge is tested (the pacer's in
tests/bots/test_pacing.py, the emulator's below), so changing any number on either side fails a test.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bots import pacing
from emulator import connector as emulator_connector
from emulator import limits as emulator_limits
from emulator.config import RuntimeConfig, Settings
from emulator.context import Context
from emulator.server import build_app
from emulator.tokens import SigningKey, issue_access_token

# (calls, seconds), as Microsoft publishes them.
MICROSOFT = ((7, 1), (8, 2), (60, 30), (1800, 3600))


def test_the_pacer_keeps_microsofts_per_conversation_windows():
    assert pacing.THREAD_WINDOWS == ((1, 7), (2, 8), (30, 60), (3600, 1800))
    assert [(calls, seconds) for seconds, calls in pacing.THREAD_WINDOWS] == list(MICROSOFT)


def test_the_emulator_keeps_microsofts_per_conversation_windows():
    assert emulator_limits.THREAD_WINDOWS == ((7, 1.0), (8, 2.0), (60, 30.0), (1800, 3600.0))
    assert emulator_limits.CREATE_WINDOWS == emulator_limits.THREAD_WINDOWS
    assert list(emulator_limits.THREAD_WINDOWS) == list(MICROSOFT)


APP_ID = "00000000-0000-0000-0000-00000000b07a"
TENANT = "11111111-1111-1111-1111-111111111111"
START = 100_000.0  # the emulator's monotonic clock, as the test sets it


class EmulatorOnAClock:
    """The emulator's application in this process, over real HTTP on 127.0.0.1, its clock set by the test."""

    def __init__(self, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        settings = Settings(host="127.0.0.1", port=0, state_dir=state_dir, app_id=APP_ID, app_password="secret",
                            tenant_id=TENANT, bot_endpoint="http://127.0.0.1:9/api/messages", limits=True,
                            auto_install=True)
        key = SigningKey.load_or_create(state_dir)
        self.ctx = Context(settings=settings, base_url="http://127.0.0.1", key=key,
                           config=RuntimeConfig.from_settings(settings))
        self.now = START
        monkeypatch.setattr(emulator_connector, "time", SimpleNamespace(monotonic=lambda: self.now, time=time.time))
        token = issue_access_token(key, client_id=APP_ID, tenant=TENANT, tenant_id=TENANT)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def __aenter__(self) -> EmulatorOnAClock:
        self.client = TestClient(TestServer(build_app(self.ctx), host="127.0.0.1"))
        await self.client.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    async def conversation(self) -> str:
        body = {"members": [{"id": str(uuid.uuid4())}], "tenantId": TENANT, "isGroup": False}
        response = await self.client.post("/teams/v3/conversations", data=json.dumps(body), headers=self.headers)
        assert response.status == 201
        return (await response.json())["id"]

    def already_sent(self, conversation: str, ages: list[float]) -> None:
        """Sends the emulator accepted ``ages`` seconds before now (what a long test would have made)."""
        for age in sorted(ages, reverse=True):
            self.ctx.thread_limiter.record(conversation, self.now - age)

    async def send_at(self, at: float, conversation: str) -> tuple[int, str | None]:
        self.now = at
        body = {"type": "message", "text": "Hello"}
        response = await self.client.post(f"/teams/v3/conversations/{conversation}/activities",
                                          data=json.dumps(body), headers=self.headers)
        return response.status, response.headers.get("Retry-After")


# For each window: earlier sends that fill it to one below its limit while every shorter window stays
# below its own, so the window under test is the only one that can refuse.
EDGES = {
    "7 per 1 s": (7, 1.0, [0.1 + 0.1 * i for i in range(6)]),
    "8 per 2 s": (8, 2.0, [1.1 + 0.1 * i for i in range(7)]),
    "60 per 30 s": (60, 30.0, [3.0 + 0.4 * i for i in range(59)]),
    "1,800 per hour": (1800, 3600.0, [40.0 + 1.9 * i for i in range(1799)]),
}


def run_on_its_own_loop(scenario) -> None:
    """asyncio.run on a thread of its own: the browser tests' Playwright keeps an event loop running in
    the main thread for the rest of the session."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(scenario())
        except BaseException as error:  # handed back to the test's thread
            failure.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the scenario did not end within a minute"
    if failure:
        raise failure[0]


@pytest.mark.parametrize("window", EDGES)
def test_the_emulator_answers_429_to_the_call_past_each_window_and_not_once_it_has_room(tmp_path, monkeypatch, window):
    limit, period, ages = EDGES[window]
    assert len(ages) == limit - 1

    async def scenario() -> None:
        async with EmulatorOnAClock(tmp_path, monkeypatch) as emulator:
            conversation = await emulator.conversation()
            emulator.already_sent(conversation, ages)
            assert (await emulator.send_at(START, conversation))[0] == 201  # the limit-th in the window
            status, retry_after = await emulator.send_at(START + 0.01, conversation)  # one past it
            assert status == 429
            # Room again once the oldest of them leaves the window, and not before.
            room_at = START - max(ages) + period
            assert retry_after == str(max(1, int(-(-(room_at - START - 0.01) // 1))))
            assert (await emulator.send_at(room_at - 0.05, conversation))[0] == 429
            assert (await emulator.send_at(room_at + 0.01, conversation))[0] == 201

    run_on_its_own_loop(scenario)
