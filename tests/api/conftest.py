"""An API client that sends a real key, made the way operators make one."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from campaigns.api.auth import api_key_create


@pytest.fixture
def api(db) -> APIClient:
    _, secret = api_key_create(name="hr-sync")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client

