"""Outbound tokens: fetched from the authority (the emulator) through msal, then reused from memory."""

from unittest import mock

from bots.tokens import RENEW_BEFORE_EXPIRY_SECONDS, TokenProvider


def counting(provider: TokenProvider) -> mock.Mock:
    """Wraps msal's token call on the provider's app, built on first use."""
    provider.get()
    spy = mock.Mock(wraps=provider._app.acquire_token_for_client)
    provider._app.acquire_token_for_client = spy
    return spy


def test_a_token_is_reused_without_asking_msal_until_msal_would_renew_it(teams):
    provider = TokenProvider()
    first = provider.get()
    spy = counting(provider)

    assert [provider.get() for _ in range(3)] == [first] * 3
    assert spy.call_count == 0


def test_after_invalidate_the_authority_is_asked_again(teams):
    provider = TokenProvider()
    provider.get()
    tokens_before = teams.client.stats()["tokens_issued"]

    provider.invalidate()
    provider.get()

    assert teams.client.stats()["tokens_issued"] == tokens_before + 1


def test_a_token_past_its_renewal_time_is_asked_of_msal_again(teams):
    provider = TokenProvider()
    provider.get()
    spy = counting(provider)
    token, _ = provider._ready
    provider._ready = (token, 0.0)  # the moment msal would renew it has passed

    assert provider.get() == token  # msal's own cache still holds it

    assert spy.call_count == 1


def test_the_reuse_lasts_until_msal_would_renew_the_token():
    from bots.tokens import _reuse_seconds

    assert _reuse_seconds({"expires_in": 3599}) == 3599 - RENEW_BEFORE_EXPIRY_SECONDS
    assert _reuse_seconds({"expires_in": 86400, "refresh_in": 43200}) == 43200
    assert _reuse_seconds({"expires_in": 120}) == 0  # already inside msal's renewal window
    assert _reuse_seconds({}) == 0  # msal said nothing: ask it every time


def test_a_token_asked_for_before_an_invalidate_is_not_kept_after_it(monkeypatch):
    from bots import tokens

    provider = TokenProvider()

    class App:
        def acquire_token_for_client(self, scopes):
            return {"access_token": "asked-before", "expires_in": 3600}

    def meanwhile(result, **_):
        provider.invalidate()  # another thread heard a 401 with the token of before, as this one got its own
        return 3000.0

    provider._build_app = lambda: App()
    monkeypatch.setattr(tokens, "_reuse_seconds", meanwhile)

    assert provider.get() == "asked-before"  # this caller uses what it asked for
    assert provider._ready == ("", 0.0)  # but the next one asks again


def test_a_token_that_must_stay_valid_long_is_renewed_sooner_and_never_from_msals_cache(teams):
    from bots.tokens import _reuse_seconds

    assert _reuse_seconds({"expires_in": 3599}, fresh_for=46 * 60) == 3599 - 46 * 60
    assert _reuse_seconds({"expires_in": 1800}, fresh_for=46 * 60) == 0  # never fresh enough: a new one each time
    provider = TokenProvider(authority="GRAPH_AUTHORITY", scope="GRAPH_TOKEN_SCOPE", fresh_for=46 * 60)
    first = provider.get()
    issued = teams.client.stats()["tokens_issued"]
    assert provider.get() == first  # still fresh enough: reused

    provider._ready = (first, 0.0)  # it now has less than 46 minutes left
    second = provider.get()

    assert second != first and teams.client.stats()["tokens_issued"] == issued + 1  # not msal's cached one
