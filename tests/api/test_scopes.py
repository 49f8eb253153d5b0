"""Each API operation's scope is declared where the operation is: a viewset's own writes need its
``write_scope``, every other action names its scope in ``@action(..., scope=...)``."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from rest_framework.permissions import SAFE_METHODS

from campaigns.api.permissions import required_scope
from campaigns.api.urls import router
from campaigns.models import ApiKey


def writing_actions():
    for prefix, viewset, _ in router.registry:
        for extra in viewset.get_extra_actions():
            methods = {method.upper() for method in extra.mapping} - set(SAFE_METHODS)
            if methods:
                yield pytest.param(viewset, extra, id=f"{prefix} {extra.url_path}")


@pytest.mark.parametrize("viewset, extra", list(writing_actions()))
def test_every_action_that_changes_things_declares_a_known_scope(viewset, extra):
    assert extra.kwargs.get("scope") in ApiKey.Scope.values


def test_sending_a_campaign_needs_the_send_scope_and_approving_a_template_the_approve_scope():
    scopes = {param.id: param.values[1].kwargs["scope"] for param in writing_actions()}
    for action in ("launch", "schedule", "pause", "resume", "cancel", "test-send"):
        assert scopes[f"campaigns {action}"] == ApiKey.Scope.CAMPAIGNS_SEND
    assert scopes["templates approve-direct"] == ApiKey.Scope.CAMPAIGNS_APPROVE


class UndeclaredView:
    action = "send_everything"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_an_action_that_declares_no_scope_is_refused_rather_than_given_one(method):
    with pytest.raises(ImproperlyConfigured, match="UndeclaredView.send_everything changes things and declares no scope"):
        required_scope(method=method, view=UndeclaredView())
    assert required_scope(method="GET", view=UndeclaredView()) == ApiKey.Scope.READ


@pytest.mark.parametrize("method, path", [
    ("delete", "/api/v1/campaigns/{id}/"), ("post", "/api/v1/campaigns/{id}/"), ("put", "/api/v1/campaigns/"),
    ("post", "/api/v1/recipients/"), ("delete", "/api/v1/messages/"),
])
@pytest.mark.django_db
def test_a_method_a_route_does_not_take_is_refused_as_not_allowed_or_for_its_scope(method, path):
    from campaigns.api.auth import api_key_create
    from rest_framework.test import APIClient
    from tests import factories

    campaign = factories.campaign()
    answers = []
    for scopes in (list(ApiKey.Scope.values), [ApiKey.Scope.READ]):
        _, secret = api_key_create(name=f"key-{len(answers)}", scopes=scopes)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        answers.append(getattr(client, method)(path.format(id=campaign.pk), {}, format="json").status_code)

    assert answers == [405, 403]
