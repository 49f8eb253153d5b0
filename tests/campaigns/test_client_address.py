"""Which address a request came from, behind NUM_PROXIES trusted proxies."""

import pytest
from django.test import RequestFactory

from campaigns.client_address import client_address


def request(remote="10.0.0.2", forwarded=None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def test_without_a_proxy_it_is_the_peer_whatever_the_client_forwards(settings):
    settings.NUM_PROXIES = 0
    assert client_address(request(forwarded="192.0.2.1")) == "10.0.0.2"


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (1, "198.51.100.7", "198.51.100.7"),
        (1, "192.0.2.1, 198.51.100.7", "198.51.100.7"),  # the client's own entry is not trusted
        (2, "192.0.2.1, 198.51.100.7, 10.0.0.9", "198.51.100.7"),
        (1, "198.51.100.7:51234", "198.51.100.7"),
        (1, "[2001:db8::7]:443", "2001:db8::7"),
        (1, "2001:db8::7", "2001:db8::7"),
    ],
)
def test_behind_proxies_it_is_the_entry_the_outermost_one_wrote(settings, proxies, forwarded, expected):
    settings.NUM_PROXIES = proxies
    assert client_address(request(forwarded=forwarded)) == expected


@pytest.mark.parametrize("forwarded", ["", "not-an-address", "<script>", "198.51.100.7, junk"])
def test_what_is_not_an_address_falls_back_to_the_peer(settings, forwarded):
    settings.NUM_PROXIES = 1
    assert client_address(request(forwarded=forwarded)) == "10.0.0.2"
