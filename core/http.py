"""The one seam through which Crier makes outbound HTTP calls (Bot Connector, key discovery, webhooks).

A single pooled urllib3 client per process: the synchronous client that measured fastest here.
TLS trust follows the same environment variables as requests and OpenSSL (``REQUESTS_CA_BUNDLE``,
then ``SSL_CERT_FILE``), so a private cloud or the local emulator needs nothing else.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import certifi
import urllib3
from django.conf import settings


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class HttpTimeout(Exception):
    """No answer in time, or the connection broke: the request may or may not have been handled."""


class TargetRefused(Exception):
    """The URL's host is, or resolves to, an address the caller refuses: nothing was sent."""


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_PINNED_BODY_BYTES = 64 * 1024  # what is read of an answer to a pinned request

_pool: urllib3.PoolManager | None = None
_pool_pid: int | None = None
_lock = threading.Lock()


def ca_bundle() -> str:
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or certifi.where()


def _get_pool() -> urllib3.PoolManager:
    """One pool per process; rebuilt after a fork so children never share sockets."""
    global _pool, _pool_pid
    pid = os.getpid()
    if _pool is None or _pool_pid != pid:
        with _lock:
            if _pool is None or _pool_pid != pid:
                _pool = urllib3.PoolManager(
                    num_pools=16, maxsize=32, cert_reqs="CERT_REQUIRED", ca_certs=ca_bundle(), retries=False
                )
                _pool_pid = pid
    return _pool


def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
) -> HttpResponse:
    limit = settings.BOT_HTTP_TIMEOUT_SECONDS if timeout is None else timeout
    try:
        response = _get_pool().request(
            method,
            url,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(connect=min(limit, 5.0), read=limit),
            redirect=False,
            preload_content=True,
        )
    except (urllib3.exceptions.TimeoutError, urllib3.exceptions.ProtocolError) as exc:
        raise HttpTimeout(f"{method} {_without_query(url)}: {type(exc).__name__}") from exc
    except urllib3.exceptions.HTTPError as exc:
        raise HttpTimeout(f"{method} {_without_query(url)}: {exc.__class__.__name__}") from exc
    return HttpResponse(status=response.status, headers=dict(response.headers), body=response.data)


def _without_query(url: str) -> str:
    return url.split("?", 1)[0]


def reset_pool() -> None:
    """Drops the pool so the next request builds one with the current CA bundle."""
    global _pool, _pool_pid
    with _lock:
        _pool, _pool_pid = None, None


def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to, looked up once (an IP literal is itself). HttpTimeout if
    it resolves to nothing."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise HttpTimeout(f"cannot resolve {host}: {type(exc).__name__}") from exc
    addresses: list[Address] = []
    for *_, sockaddr in found:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise HttpTimeout(f"cannot resolve {host}")
    return addresses


def parse_url(url: str) -> urllib3.util.Url:
    """``url`` as urllib3 reads it; TargetRefused (nothing sent) if it cannot be read (a host with an
    invisible or control character, a broken IPv6 literal...)."""
    try:
        return urllib3.util.parse_url(url)
    except urllib3.exceptions.LocationValueError as exc:
        raise TargetRefused(f"not a URL one can call ({type(exc).__name__})") from exc


class _Deadline:
    """Ends a call's connection when ``seconds`` have passed, whatever it is doing then (a server that
    sends a byte now and then would otherwise keep it going: read timeouts count per receive)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.expired, self.done = seconds, False, False
        self._fds: dict[int, int] = {}  # each connection's socket descriptor, by the connection's id
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, connection: object, sock: socket.socket) -> None:
        with self._lock:
            self._fds[id(connection)] = sock.fileno()
            if self.expired:
                self._shut(sock.fileno())

    def forget(self, connection: object) -> None:
        """Called before ``connection`` closes its socket: the descriptor may then be reused by anything else."""
        with self._lock:
            self._fds.pop(id(connection), None)

    def _expire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            for fd in self._fds.values():
                self._shut(fd)

    @staticmethod
    def _shut(fd: int) -> None:
        try:
            sock = socket.socket(fileno=fd)  # the same socket, under TLS or not: its reads end at once
        except OSError:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            sock.detach()  # not closed here: its owner closes it

    def finish(self) -> None:
        """Called before the connection is closed, so a late timer never touches a reused descriptor."""
        with self._lock:
            self.done = True
        self._timer.cancel()


def _with_deadline(pool_class: type[urllib3.HTTPConnectionPool], deadline: _Deadline, **options: Any) -> urllib3.HTTPConnectionPool:
    base = pool_class.ConnectionCls

    class Connection(base):  # type: ignore[valid-type, misc]
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            deadline.watch(self, sock)
            return sock

        def close(self) -> None:
            deadline.forget(self)
            super().close()

    pool = pool_class(**options)
    pool.ConnectionCls = Connection
    return pool


def request_pinned(
    method: str,
    url: str,
    *,
    check: Callable[[Address], str | None],
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float,
) -> HttpResponse:
    """A request to a URL someone chose: its host resolved once, every address it resolves to given
    to ``check`` (which says why one is refused, or None), and the connection made to the first
    address, not to the name again, so the name cannot resolve elsewhere in between (DNS
    rebinding). The Host header, TLS SNI and the certificate check stay on the name. No redirects are
    followed and at most MAX_PINNED_BODY_BYTES of the answer are read. Raises TargetRefused (nothing
    sent) or HttpTimeout."""
    parts = parse_url(url)
    if parts.scheme not in ("http", "https") or not parts.host:
        raise TargetRefused(f"not an http(s) URL ({parts.scheme})")
    host = parts.host.strip("[]")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolve(host, port)
    for address in addresses:
        reason = check(address)
        if reason is not None:
            raise TargetRefused(f"{address} {reason}" if str(address) == host else f"{host} resolves to {address}, which {reason}")
    options: dict[str, Any] = {
        "host": str(addresses[0]), "port": port, "retries": False, "maxsize": 1,
        "timeout": urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
    }
    deadline = _Deadline(timeout)  # the whole call, answer included, not each receive
    if parts.scheme == "https":
        options.update(cert_reqs="CERT_REQUIRED", ca_certs=ca_bundle(), server_hostname=host, assert_hostname=host)
        pool = _with_deadline(urllib3.HTTPSConnectionPool, deadline, **options)
    else:
        pool = _with_deadline(urllib3.HTTPConnectionPool, deadline, **options)
    where = f"{method} {parts.scheme}://{parts.netloc}"  # not the path: it may hold a secret token
    try:
        response = pool.urlopen(
            method, parts.request_uri, body=body, headers={**(headers or {}), "Host": parts.netloc},
            redirect=False, assert_same_host=False, preload_content=False,
        )
        data = response.read(MAX_PINNED_BODY_BYTES)
        response.release_conn()
    except (urllib3.exceptions.HTTPError, OSError) as exc:  # timeouts, broken connections, TLS failures
        if deadline.expired:
            raise HttpTimeout(f"{where}: no complete answer within {timeout} s") from exc
        raise HttpTimeout(f"{where}: {type(exc).__name__}") from exc
    finally:
        deadline.finish()
        pool.close()
    if deadline.expired:  # cut off: what was read is not the whole answer
        raise HttpTimeout(f"{where}: no complete answer within {timeout} s")
    return HttpResponse(status=response.status, headers=dict(response.headers), body=data)
