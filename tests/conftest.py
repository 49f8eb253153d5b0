"""Fixtures shared by the whole suite. Tests run against real PostgreSQL and Redis, and the engine's
outbound calls go to the Teams emulator (a real HTTPS server in its own process)."""

from __future__ import annotations

import os

import pytest
import redis
from django.conf import settings

from bots import http
from bots.auth import signing_keys
from bots.tokens import token_provider


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    """One emulator process for the whole run; each test that uses ``teams`` starts it afresh."""
    from bots.emulator.process import start_emulator

    running = start_emulator(
        state_dir=tmp_path_factory.mktemp("emulator"),
        port=0,
        app_id=settings.BOT_APP_ID,
        app_password=settings.BOT_APP_PASSWORD,
        tenant_id=settings.BOT_TENANT_ID,
        limits=False,
    )
    os.environ["REQUESTS_CA_BUNDLE"] = str(running.ca_file)
    yield running
    running.stop()


@pytest.fixture
def teams(emulator, settings, redis_client):
    """Points the bot at the emulator, with a clean emulator state, no cached token or keys and
    no pacing state left in Redis by another test."""
    settings.BOT_AUTHORITY = emulator.authority
    settings.BOT_AUTHORITY_IS_MICROSOFT = False
    settings.TEAMS_SERVICE_URL = emulator.service_url
    settings.BOT_OPENID_METADATA_URL = emulator.openid_metadata_url
    emulator.client.reset()
    emulator.client.config(limits=False, auto_install=True, faults={}, bot_disabled=False)
    http.reset_pool()
    token_provider.invalidate()
    signing_keys.clear()
    yield emulator
    token_provider.invalidate()


@pytest.fixture(autouse=True)
def redis_client():
    """Every test starts with an empty test Redis database (the broker and the engine's counters):
    database ids start again with each test database, so counters from an earlier run would lie."""
    from delivery.pacing import pacer

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    pacer.forget_heard()  # this process's memory of a Retry-After outlives what Redis is told
    yield client
    client.flushdb()
    pacer.forget_heard()
