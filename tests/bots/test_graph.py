"""The Microsoft Graph client: where its token may go, a token renewed after a 401, and what it tells people."""

from __future__ import annotations

import json

import pytest

from bots import graph as graph_module
from bots.graph import GraphClient, GraphError
from core.http import HttpResponse


class Tokens:
    def __init__(self) -> None:
        self.given, self.invalidated = 0, 0

    def get(self) -> str:
        self.given += 1
        return f"token-{self.given}"

    def invalidate(self) -> None:
        self.invalidated += 1


def answers(monkeypatch, *responses):
    calls = []

    def request(method, url, *, headers=None, timeout=None, body=None):
        calls.append((url, headers["Authorization"]))
        status, payload, extra = responses[len(calls) - 1]
        return HttpResponse(status, extra, json.dumps(payload).encode())

    monkeypatch.setattr(graph_module.http, "request", request)
    return calls


@pytest.fixture(autouse=True)
def graph_url(settings):
    settings.GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"


def test_it_never_sends_its_token_to_a_host_that_is_not_graphs(monkeypatch):
    calls = answers(monkeypatch)
    client = GraphClient(tokens=Tokens(), sleep=lambda _: None)

    for url in ("https://evil.example/v1.0/users/delta", "http://graph.microsoft.com/v1.0/users",
                "https://graph.microsoft.com.evil.example/v1.0/users"):
        with pytest.raises(GraphError) as refused:
            client.get(url)
        assert refused.value.code == "ForeignLink"
    assert calls == []


def test_it_renews_its_token_once_after_a_401(monkeypatch):
    tokens = Tokens()
    calls = answers(monkeypatch, (401, {"error": {"code": "InvalidAuthenticationToken"}}, {}), (200, {"value": []}, {}))

    assert GraphClient(tokens=tokens, sleep=lambda _: None).get(f"https://graph.microsoft.com/v1.0/users") == {"value": []}
    assert [auth for _, auth in calls] == ["Bearer token-1", "Bearer token-2"]
    assert tokens.invalidated == 1


def test_a_second_401_is_a_refusal_in_plain_words(monkeypatch):
    answers(monkeypatch, *[(401, {"error": {"code": "InvalidAuthenticationToken", "message": "expired"}}, {})] * 2)

    with pytest.raises(GraphError) as refused:
        GraphClient(tokens=Tokens(), sleep=lambda _: None).get("https://graph.microsoft.com/v1.0/users")

    assert refused.value.status == 401
    assert "BOT_APP_PASSWORD" in refused.value.plain()


def test_it_waits_out_503_then_gives_up_after_its_attempts(monkeypatch):
    waits = []
    answers(monkeypatch, *[(503, {"error": {"code": "serviceNotAvailable"}}, {"Retry-After": "2"})] * 6)

    with pytest.raises(GraphError) as refused:
        GraphClient(tokens=Tokens(), sleep=waits.append).get("https://graph.microsoft.com/v1.0/users")

    assert waits == [2.0] * 5
    assert (refused.value.status, refused.value.code) == (503, "serviceNotAvailable")


def test_a_post_tried_again_after_a_429_sends_the_same_body_and_a_get_sends_none(monkeypatch):
    sent = []

    def request(method, url, *, headers=None, timeout=None, body=None):
        sent.append((method, body))
        if len(sent) == 1:
            return HttpResponse(429, {"Retry-After": "0"}, json.dumps({"error": {"code": "TooManyRequests"}}).encode())
        return HttpResponse(201, {}, b"")  # Graph answers an install with no body

    monkeypatch.setattr(graph_module.http, "request", request)
    client = GraphClient(tokens=Tokens(), sleep=lambda _: None)

    assert client.post("https://graph.microsoft.com/v1.0/users/u/teamwork/installedApps", {"a": 1}) == {}
    assert sent == [("POST", b'{"a": 1}'), ("POST", b'{"a": 1}')]
    sent.clear()
    sent.append(("placeholder", None))  # the next answer is the empty 201
    assert client.get("https://graph.microsoft.com/v1.0/users") == {}
    assert sent[1] == ("GET", None)
