"""Builds the aiohttp application and runs it: TLS material, listening socket, ``emulator.json``, the
ready line on stdout, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from .config import WILDCARD_HOSTS, RuntimeConfig, Settings
from .connector import Connector
from .context import Context
from .control import Control
from .entra import Entra
from .graph import Graph, GraphControl
from .groups import GraphGroups, GroupsControl
from .activity import ActivityControl, GraphActivity
from .installs import GraphInstalls, InstallsControl
from .pages import Pages
from .signin import SignIn
from .teams import TeamsControl
from .tls import ensure_certificates, server_context, write_private
from .tokens import SigningKey

logger = logging.getLogger("emulator")

CLIENT_MAX_SIZE = 16 * 1024 * 1024  # bigger bodies than Teams' limit still get Teams' own 413
BACKLOG = 1024
SHUTDOWN_SECONDS = 1.0


def url_host(host: str, hostnames: tuple[str, ...] = ()) -> str:
    """The host to put in URLs: the bound address, or for a wildcard bind the first extra hostname
    (a Docker service name) or else 127.0.0.1. IPv6 goes in brackets."""
    if host in WILDCARD_HOSTS:
        host = hostnames[0] if hostnames else "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def certificate_names(settings: Settings) -> tuple[str, ...]:
    """Names the server certificate must carry beyond localhost and the loopback addresses."""
    names = list(settings.hostnames)
    if settings.host not in WILDCARD_HOSTS:
        names.append(settings.host)
    return tuple(names)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on exactly ``host`` (port 0: a free port the system picks)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.setblocking(False)
    return sock


def build_app(ctx: Context) -> web.Application:
    app = web.Application(client_max_size=CLIENT_MAX_SIZE)
    parts = (Control(ctx), GraphControl(ctx), GroupsControl(ctx), InstallsControl(ctx), ActivityControl(ctx),
             TeamsControl(ctx), Entra(ctx), SignIn(ctx), Graph(ctx), GraphGroups(ctx), GraphInstalls(ctx),
             GraphActivity(ctx), Pages(ctx), Connector(ctx))
    for part in parts:
        app.add_routes(part.routes())

    async def close_bot_client(_: web.Application) -> None:
        await ctx.bot.close()

    app.on_cleanup.append(close_bot_client)
    return app


def describe(ctx: Context, ca_file: Path, port: int) -> dict[str, Any]:
    """The content of ``emulator.json``: how clients reach this emulator."""
    return {
        "url": ctx.base_url,
        "port": port,
        "ca_file": str(ca_file.resolve()),
        "pid": os.getpid(),
        "service_url": ctx.service_url,
        "authority": f"{ctx.base_url}/{ctx.settings.tenant_id}",
        "openid_metadata_url": ctx.openid_metadata_url,
        "graph_url": f"{ctx.base_url}/graph/v1.0",
        "app_id": ctx.settings.app_id,
        "tenant_id": ctx.settings.tenant_id,
    }


async def serve(settings: Settings) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    tls_files = ensure_certificates(settings.state_dir, certificate_names(settings))
    key = SigningKey.load_or_create(settings.state_dir)
    sock = bind_socket(settings.host, settings.port)
    port = sock.getsockname()[1]
    ctx = Context(
        settings=settings,
        base_url=f"https://{url_host(settings.host, settings.hostnames)}:{port}",
        key=key,
        config=RuntimeConfig.from_settings(settings),
    )
    runner = web.AppRunner(build_app(ctx), access_log=None, shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    site = web.SockSite(runner, sock, ssl_context=server_context(tls_files), backlog=BACKLOG)
    await site.start()

    info_file = settings.state_dir / "emulator.json"
    info = describe(ctx, tls_files.ca_file, port)
    write_private(info_file, json.dumps(info, indent=2).encode(), 0o644)
    logger.info(
        "listening on %s (bot endpoint %s, limits %s, auto-install %s)",
        ctx.base_url, settings.bot_endpoint, "on" if settings.limits else "off",
        "on" if settings.auto_install else "off",
    )
    print(f"emulator ready {ctx.base_url} ca={info['ca_file']}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        logger.info("stopping")
        await runner.cleanup()
        _remove_if_ours(info_file)


def _remove_if_ours(info_file: Path) -> None:
    """Deletes ``emulator.json`` unless another emulator has written its own since."""
    try:
        if json.loads(info_file.read_text()).get("pid") == os.getpid():
            info_file.unlink()
    except (OSError, ValueError):
        pass


def run(settings: Settings) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(serve(settings))
    except OSError as exc:
        print(f"emulator: cannot start: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
