"""Property-based requests generated from the live OpenAPI schema (schemathesis 4), with every
check it has: no server error; every answer documented (status, content type, headers, body);
invalid data refused and valid data accepted; auth not ignored; unsupported methods refused;
a deleted resource gone. Over the examples, coverage and fuzzing phases, and the stateful phase
(sequences of calls linked by the ids they return). Derandomised and bounded, so CI runs the same
requests every time in about two minutes.

Each generated call meets the same world: a key with every scope, fresh rate counters and
idempotency records, and seeded objects that its path's ids name (each call runs in a savepoint
rolled back after it). Every operation must give at least one 2xx, so an API that refuses
everything, or a schema with no operations, fails."""

from collections import Counter
from dataclasses import dataclass

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction

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
        "generation": {"deterministic": True, "max-examples": 80, "allow-x00": False},
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
        scopes=[scope.value for scope in ApiKey.Scope],  # every scope: no call is a 403 for want of one
    )
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@dataclass
class World:
    """What the generated calls' path ids name, one object per state an operation needs."""

    campaign: Campaign
    running: Campaign
    paused: Campaign
    template: MessageTemplate
    spare_template: MessageTemplate
    audience: Audience
    spare_audience: Audience
    spare_category: Category
    recipient: Recipient
    sync: RecipientSync
    opt_out: OptOut

    def path_id(self, path: str, method: str) -> int | str:
        """The seeded object an operation's path names: one it can act on, so a 2xx is possible."""
        resource = path.split("/")[3]
        if resource == "campaigns":
            action = path.rstrip("/").rsplit("/", 1)[-1]
            return {"pause": self.running, "resume": self.paused}.get(action, self.campaign).pk
        if resource == "categories":
            return self.spare_category.slug
        if resource == "recipients":
            return (self.sync if "/syncs/" in path else self.recipient).pk
        deletable = method == "DELETE"
        return {
            "templates": self.spare_template if deletable else self.template,
            "audiences": self.spare_audience if deletable else self.audience,
            "opt-outs": self.opt_out,
        }[resource].pk


    def bind(self, case) -> None:
        """A schema-valid call names seeded objects where its ids must name something: its path's
        ids, and the template, audience, category and people its body or query names."""
        if case.path_parameters:
            seeded = self.path_id(case.operation.path, case.method.upper())
            case.path_parameters = {name: seeded for name in case.path_parameters}
        body = case.body if isinstance(case.body, dict) else {}
        if isinstance(body.get("template"), int):
            body["template"] = self.template.pk
        if isinstance(body.get("audience"), int):
            body["audience"] = self.audience.pk
        if isinstance(body.get("category"), str) and body["category"]:
            body["category"] = "news"
        if isinstance(body.get("recipient"), str):
            body["recipient"] = self.recipient.external_id
        people = body.get("recipients")
        if isinstance(people, list) and people and all(isinstance(person, str) for person in people):
            body["recipients"] = [self.recipient.external_id]
        if case.query and isinstance(case.query.get("recipient"), str) and case.operation.path.endswith("/preview/"):
            case.query["recipient"] = self.recipient.external_id


@pytest.fixture(autouse=True)
def graph_groups(monkeypatch):
    """Group search asks Microsoft Graph, which these calls do not reach: one group stands in for its answer
    (the search against the emulator's Graph is tested in tests/api/test_audience_sources.py)."""
    from bots.members import Group
    from campaigns.api.views import content

    found = [Group(id="0d5c1a7e-2f4b-4c9a-9e2d-6b1f3a8c7d10", name="Leeds office", description="", dynamic=False)]
    monkeypatch.setattr(content, "groups_search", lambda term: found)


@pytest.fixture
def world(api_key) -> World:
    people = [
        factories.recipient(external_id=external_id)  # the external ids the schema's examples use
        for external_id in ("E1001", "E1002")
    ]
    news = factories.category(slug="news", name="News")
    audience = factories.audience(kind=Audience.Kind.EVERYONE)
    template, sending = factories.template(), factories.template()
    sync = RecipientSync.objects.create()
    Recipient.objects.filter(pk=people[0].pk).update(last_sync=sync)  # so the sync can finish
    return World(
        campaign=factories.campaign(template=template, audience=audience, category=news),
        # Campaigns that are sending have a template of their own: theirs cannot be edited (template_in_use).
        running=factories.campaign(template=sending, audience=audience, category=news, status=Campaign.Status.RUNNING),
        paused=factories.campaign(template=sending, audience=audience, category=news, status=Campaign.Status.PAUSED),
        template=template,
        spare_template=factories.template(),
        audience=audience,
        spare_audience=factories.audience(),
        spare_category=factories.category(),
        recipient=people[0],
        sync=sync,
        opt_out=OptOut.objects.create(recipient=people[1], category=news, source=OptOut.Source.API),
    )


@pytest.fixture
def statuses(world):
    """The statuses the operation's generated calls got: at least one must be a 2xx."""
    seen: list[int] = []
    yield seen
    assert seen, "no call was generated"
    assert any(200 <= status < 300 for status in seen), f"no 2xx: {sorted(Counter(seen).items())}"


def test_the_schema_holds_every_operation():
    assert len(list(schema.get_all_operations())) >= 45


def _fresh_limits() -> None:
    """No call is refused for what an earlier one did: rate counters and idempotency records."""
    cache.clear()
    IdempotencyRecord.objects.all().delete()


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_generated_requests_pass_every_check(case, world, statuses):
    if case.meta is not None and case.meta.generation.mode.is_positive:
        world.bind(case)
    _fresh_limits()
    with transaction.atomic():  # each call meets the seeded world as it was
        try:
            response = case.call()
            statuses.append(response.status_code)
            case.validate_response(response)
        finally:
            transaction.set_rollback(True)


class Sequences(schema.as_state_machine()):
    def before_call(self, case):
        _fresh_limits()

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
