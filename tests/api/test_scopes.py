"""Each API operation's scope is declared where the operation is: a viewset's own writes need its
``write_scope``, every other action names its scope in ``@action(..., scope=...)``."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from rest_framework import viewsets
from rest_framework.decorators import action
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


class UndeclaredViewSet(viewsets.GenericViewSet):
    @action(detail=True, methods=["post", "put", "patch", "delete"])
    def send_everything(self, request, pk=None):
        raise AssertionError("never reached")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_an_action_that_declares_no_scope_is_refused_rather_than_given_one(method):
    view = UndeclaredViewSet(action="send_everything")
    with pytest.raises(ImproperlyConfigured, match="UndeclaredViewSet.send_everything changes things and declares no scope"):
        required_scope(method=method, view=view)
    assert required_scope(method="GET", view=view) == ApiKey.Scope.READ


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


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/templates/", "/api/v1/audiences/0/", "/api/v1/campaigns/0/launch/"])
def test_options_answers_what_a_route_takes_to_a_key_that_may_read(path):
    from campaigns.api.auth import api_key_create
    from rest_framework.test import APIClient

    for scopes in (list(ApiKey.Scope.values), [ApiKey.Scope.READ]):
        _, secret = api_key_create(name=f"key-{len(scopes)}", scopes=scopes)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        assert client.options(path).status_code == 200
