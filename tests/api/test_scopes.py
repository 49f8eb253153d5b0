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
