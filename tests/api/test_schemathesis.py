"""Property-based requests generated from the live OpenAPI schema (schemathesis 4), with every
check it has: no server error; every answer documented (status, content type, headers, body);
invalid data refused and valid data accepted; auth not ignored; unsupported methods refused;
a deleted resource gone. Over the examples, coverage and fuzzing phases, and the stateful phase
(sequences of calls linked by the ids they return). Derandomised and bounded, so CI runs the same
requests every time in about two minutes."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from campaigns.api.auth import KEY_PREFIX, hash_key
from campaigns.api.schema import BUSINESS_RULES
from campaigns.models import (
    ApiKey,
    Audience,
    Campaign,
    Category,
    IdempotencyRecord,
    MessageTemplate,
    OptOut,
    Recipient,
    RecipientSync,
)
from delivery.models import Delivery
from settings.wsgi import application
from tests import factories

# A fixed secret, so schemathesis knows the key (and tells its own invalid ones apart); the test
# database gets the key itself.
SECRET = KEY_PREFIX + "schemathesis-0000000000000000000000000000000"
CONFIG = SchemathesisConfig.from_dict(
    {
        "auth": {"openapi": {"ApiKey": {"bearer": SECRET}}},
        "seed": 11,
        # NUL characters are refused (PostgreSQL cannot store them): a rule the 400 documents.
        "generation": {"deterministic": True, "max-examples": 100, "allow-x00": False},
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": True, "max-steps": 12},
        },
        "checks": {
            "enabled": True,
            # A request the schema allows may still break a rule the schema cannot express (an id that
            # names nothing, a slug already taken): a 400 the schema documents, narrowed to those rules
            # by ``only_business_rules_refuse_valid_data``.
            "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "409", "422", "429"]},
        },
    }
)
schema = schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG)


@schemathesis.check
def only_business_rules_refuse_valid_data(ctx, response, case):
    """A 400 to a request the schema allows names only fields whose rules the schema cannot express
    (``BUSINESS_RULES``, documented in each operation's 400); a 422 is only a reused Idempotency-Key
    (generated keys repeat)."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code == 422:
        assert response.json()["error"]["code"] == "idempotency_key_reused", response.text
    if response.status_code != 400:
        return None
    fields = set(response.json()["error"]["fields"])
    outside = fields - set(BUSINESS_RULES.get(case.operation.path, {}))
    if not fields or outside:
        raise AssertionError(f"A schema-valid request was refused for {sorted(outside) or 'no field'}: {response.text}")
    return None


@pytest.fixture
def api_key(db):
    # As Django's test client does: the WSGI handler must not close the test's database connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    ApiKey.objects.create(
        name="schemathesis", prefix=SECRET[: len(KEY_PREFIX) + 6], key_hash=hash_key(SECRET),
        scopes=list(ApiKey.DEFAULT_SCOPES),
    )
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_generated_requests_pass_every_check(case, api_key):
    case.call_and_validate()


class Sequences(schema.as_state_machine()):
    def setup(self):
        # Each sequence starts from an empty API and fresh rate counters, so a sequence replays the
        # same when Hypothesis shrinks it (the key stays).
        cache.clear()
        for model in (Campaign, OptOut, Audience, MessageTemplate, Category, Recipient, RecipientSync,
                      IdempotencyRecord):
            model.objects.all().delete()


def test_sequences_of_calls_pass_every_check(api_key):
    Sequences.run(
        settings=settings(
            max_examples=150, stateful_step_count=12, deadline=None, derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )


def test_answers_with_empty_values_match_the_schema(api_key):
    campaign = factories.campaign()
    person = factories.recipient(email="", aad_object_id=None, start_date=None)
    Delivery.objects.create(campaign=campaign, recipient=person, status="sent")
    Delivery.objects.create(campaign=campaign, recipient=factories.recipient(), status="skipped", skip_reason="opted_out")
    headers = {"Authorization": f"Bearer {SECRET}"}

    for path, parameters in [
        ("/api/v1/campaigns/{campaign_id}/deliveries/", {"campaign_id": campaign.pk}),
        ("/api/v1/recipients/{id}/", {"id": person.pk}),
    ]:
        case = schema[path]["GET"].Case(path_parameters=parameters, headers=headers)
        response = case.call()

        assert response.status_code == 200
        schema[path]["GET"].validate_response(response)
