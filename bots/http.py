"""The one seam through which Crier makes outbound HTTP calls (Bot Connector, key discovery).

A single pooled urllib3 client per process: the synchronous client that measured fastest here.
TLS trust follows the same environment variables as requests and OpenSSL (``REQUESTS_CA_BUNDLE``,
then ``SSL_CERT_FILE``), so a private cloud or the local emulator needs nothing else.
"""

from __future__ import annotations

import json
import os
import threading
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
