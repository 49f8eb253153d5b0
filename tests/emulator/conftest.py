from __future__ import annotations

from typing import Any

import pytest

from emulator.process import start_emulator

from .identity import APP_ID, PASSWORD, TENANT


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An emulator process of the test module's own, with no bot behind it."""
    running = start_emulator(
        tmp_path_factory.mktemp("emulator"), port=0, app_id=APP_ID, app_password=PASSWORD, tenant_id=TENANT,
        limits=False, bot_endpoint="http://127.0.0.1:9/api/messages",
    )
    yield running
    running.stop()
