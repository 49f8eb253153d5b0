"""Property-based requests generated from the live OpenAPI schema (schemathesis): whatever they
send, no answer is a server error and every answer matches the schema."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from campaigns.api.auth import api_key_create
from settings.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
# No server error, and every answer as documented: status code, content type, headers and body.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def api_headers(db):
    # As Django's test client does: the WSGI handler must not close the test's database connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    _, secret = api_key_create(name="schemathesis")
    yield {"Authorization": f"Bearer {secret}"}
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
# Derandomized: the same generated requests on every run, so CI is reproducible.
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_generated_requests_get_no_server_error_and_answers_match_the_schema(case, api_headers):
    case.call_and_validate(headers=api_headers, checks=CHECKS)
