"""Fixtures shared by the whole suite. Tests run against real PostgreSQL and Redis, and the engine's
outbound calls go to the Teams emulator (a real HTTPS server in its own process)."""

from __future__ import annotations

import os
import tempfile
import zlib
from pathlib import Path

import pytest
import redis
from django.conf import settings

from core import http
from bots.auth import checked_tokens, signing_keys
from bots.tokens import graph_token_provider, notice_token_provider, token_provider
from tests.slots import NO_SLOT_STATUS, WAIT_SECONDS, take_slot, use_slot


@pytest.fixture(scope="session", autouse=True)
def test_slot():
    """With CRIER_TEST_SLOTS=N (`make mutation`), this run takes a free slot of N and, for slot k > 0,
    a test database and a Redis database of its own (tests/slots.py). Without it nothing changes."""
    slots = int(os.environ.get("CRIER_TEST_SLOTS") or "1")
    if slots <= 1:
        yield 0
        return
    database = settings.DATABASES["default"]
    tag = zlib.crc32(f"{database['NAME']} {settings.REDIS_URL}".encode())  # runs on other databases apart
    taken = take_slot(slots, f"{tag:08x}", Path(tempfile.gettempdir()), wait=WAIT_SECONDS)
    if taken is None:
        pytest.exit(f"all {slots} test slots stayed taken for {WAIT_SECONDS:.0f} s (CRIER_TEST_SLOTS)",
                    returncode=NO_SLOT_STATUS)
    slot, lock = taken
    restore = use_slot(slot)
    try:
        yield slot
    finally:  # another session in this process starts from the settings as they were
        restore()
        lock.close()  # closing the file frees the slot


@pytest.fixture(scope="session")
def django_db_modify_db_settings(test_slot, django_db_modify_db_settings_parallel_suffix):
    """The test database's name follows the slot (``test_slot``) before the database is set up."""


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    """One emulator process for the whole run; each test that uses ``teams`` starts it afresh."""
    from emulator.process import start_emulator

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
    settings.GRAPH_AUTHORITY = emulator.authority
    settings.GRAPH_BASE_URL = emulator.graph_url
    settings.TEAMS_SERVICE_URL = emulator.service_url
    settings.BOT_OPENID_METADATA_URL = emulator.openid_metadata_url
    emulator.client.reset()
    emulator.client.config(limits=False, auto_install=True, faults={}, bot_disabled=False)
    http.reset_pool()
    token_provider.invalidate()
    graph_token_provider.invalidate()
    notice_token_provider.invalidate()
    signing_keys.clear()
    checked_tokens.clear()
    yield emulator
    token_provider.invalidate()
    graph_token_provider.invalidate()
    notice_token_provider.invalidate()


@pytest.fixture(autouse=True)
def redis_client():
    """Every test starts with an empty test Redis database (the broker and the engine's counters):
    database ids start again with each test database, so counters from an earlier run would lie."""
    from bots.pacing import pacer

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    pacer.forget_heard()  # this process's memory of a Retry-After outlives what Redis is told
    yield client
    client.flushdb()
    pacer.forget_heard()


@pytest.fixture
def latest_schema_afterwards():
    """For a test that migrates back: going back a migration takes back every later one, of every app, and
    the tests after it need the schema as the latest migrations leave it, not as the one the test stops at."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
