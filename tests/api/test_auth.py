import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.api.auth import api_key_create
from campaigns.models import ApiKey
from tests.api.helpers import error_of

pytestmark = pytest.mark.django_db


def test_a_request_without_a_key_is_refused():
    response = APIClient().get("/api/v1/recipients/")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert error_of(response)["code"] == "not_authenticated"


def test_a_request_with_an_unknown_key_is_refused():
    api_key_create(name="real")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer crier_not-a-real-key")

    response = client.get("/api/v1/campaigns/")

    assert response.status_code == 401
    assert error_of(response)["message"] == "Unknown or revoked API key."


def test_a_revoked_key_is_refused():
    api_key, secret = api_key_create(name="old")
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    assert client.get("/api/v1/templates/").status_code == 401


def test_create_api_key_prints_a_secret_that_authenticates():
    out, err = io.StringIO(), io.StringIO()

    call_command("create_api_key", "workday", stdout=out, stderr=err)

    secret = out.getvalue().strip()
    assert secret.startswith("crier_") and "\n" not in secret
    assert "Authorization: Bearer" in err.getvalue()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/v1/categories/").status_code == 200
    assert ApiKey.objects.get(name="workday").key_hash != secret


def test_create_api_key_refuses_a_duplicate_name_readably():
    call_command("create_api_key", "workday", stdout=io.StringIO(), stderr=io.StringIO())

    with pytest.raises(CommandError, match="already exists"):
        call_command("create_api_key", "workday", stdout=io.StringIO(), stderr=io.StringIO())
    assert ApiKey.objects.filter(name="workday").count() == 1
