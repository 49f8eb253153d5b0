"""The emulator's settings: the fixed ones from the command line and environment (``Settings``), and the
ones the control API may change while it runs (``RuntimeConfig``)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

DEFAULT_APP_ID = "00000000-0000-0000-0000-00000000b07a"
DEFAULT_APP_PASSWORD = "emulator-secret"
DEFAULT_TENANT_ID = "11111111-1111-1111-1111-111111111111"
DEFAULT_BOT_ENDPOINT = "http://127.0.0.1:8000/api/messages"
DEFAULT_PORT = 9443

# The faults the control API can inject, in the order a random draw is matched against them.
FAULT_KINDS: tuple[str, ...] = (
    "status_503",
    "status_502",
    "status_504",
    "status_500",
    "status_412",
    "status_429",
    "timeout",
)


class ConfigError(ValueError):
    """A bad setting; the message names it."""


@dataclass(frozen=True)
class Settings:
    """What the process was started with; fixed for its lifetime."""

    host: str
    port: int
    state_dir: Path
    app_id: str
    app_password: str
    tenant_id: str
    bot_endpoint: str
    limits: bool
    auto_install: bool
    # Extra names for the server certificate (e.g. a Docker service name). With a wildcard bind
    # (0.0.0.0), the first one is also the host in every URL the emulator hands out.
    hostnames: tuple[str, ...] = ()


WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
_DNS_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def parse_hostnames(value: str, name: str) -> tuple[str, ...]:
    """Comma-separated DNS names or IP addresses."""
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    for host in names:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if len(host) > 253 or not all(_DNS_LABEL.match(label) for label in host.split(".")):
                raise ConfigError(f"{name}: {host!r} is not a host name or IP address") from None
    return names


def parse_switch(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"on", "true", "1", "yes"}:
        return True
    if lowered in {"off", "false", "0", "no"}:
        return False
    raise ConfigError(f"{name} must be 'on' or 'off', not {value!r}")


def check_url(value: str, name: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL, not {value!r}")
    return value


def parse_port(value: str, name: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number from 0 to 65535, not {value!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name} must be a number from 0 to 65535, not {value!r}")
    return port


def _non_empty(value: str, name: str) -> str:
    if not value.strip():
        raise ConfigError(f"{name} must not be empty")
    return value.strip()


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as a single line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def parse_settings(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Command-line flags win over the environment, which wins over the defaults. Raises ConfigError."""
    env = os.environ if environ is None else environ
    parser = _OneLineParser(prog="python -m emulator", add_help=True)
    parser.add_argument("--host", help="address to bind (EMULATOR_HOST, default 127.0.0.1)")
    parser.add_argument("--port", help=f"port, 0 for a free one (EMULATOR_PORT, default {DEFAULT_PORT})")
    parser.add_argument(
        "--state-dir", help="certificates, keys, emulator.json (EMULATOR_STATE_DIR, default var/emulator)"
    )
    parser.add_argument("--app-id", help="the bot's app id (BOT_APP_ID)")
    parser.add_argument("--app-password", help="the bot's client secret (BOT_APP_PASSWORD)")
    parser.add_argument("--tenant-id", help="the emulated organisation's tenant (BOT_TENANT_ID)")
    parser.add_argument("--bot-endpoint", help="where activities for the bot go (EMULATOR_BOT_ENDPOINT)")
    parser.add_argument(
        "--hostnames", metavar="NAMES", help="extra certificate names, comma-separated (EMULATOR_HOSTNAMES)"
    )
    parser.add_argument("--limits", metavar="on|off", help="Teams' rate limits (EMULATOR_LIMITS, default on)")
    parser.add_argument(
        "--auto-install", metavar="on|off", help="unknown users get the app on first contact (EMULATOR_AUTO_INSTALL)"
    )
    args = parser.parse_args(list(argv))

    def pick(dest: str, env_name: str, default: str) -> tuple[str, str]:
        """The value and the name to quote in an error message (the flag, or the variable)."""
        flag = getattr(args, dest)
        if flag is not None:
            return flag, "--" + dest.replace("_", "-")
        if env.get(env_name, "") != "":
            return env[env_name], env_name
        file_name = env.get(f"{env_name}_FILE", "")
        if file_name:  # Docker and Kubernetes secrets: NAME_FILE holds a path to the value
            try:
                return Path(file_name).read_text().strip(), f"{env_name}_FILE"
            except OSError as exc:
                raise ConfigError(f"{env_name}_FILE={file_name!r} cannot be read: {exc.strerror}") from None
        return default, env_name

    host, host_name = pick("host", "EMULATOR_HOST", "127.0.0.1")
    port_text, port_name = pick("port", "EMULATOR_PORT", str(DEFAULT_PORT))
    state_text, _ = pick("state_dir", "EMULATOR_STATE_DIR", "var/emulator")
    app_id, app_id_name = pick("app_id", "BOT_APP_ID", DEFAULT_APP_ID)
    password, password_name = pick("app_password", "BOT_APP_PASSWORD", DEFAULT_APP_PASSWORD)
    tenant, tenant_name = pick("tenant_id", "BOT_TENANT_ID", DEFAULT_TENANT_ID)
    endpoint, endpoint_name = pick("bot_endpoint", "EMULATOR_BOT_ENDPOINT", DEFAULT_BOT_ENDPOINT)
    limits_text, limits_name = pick("limits", "EMULATOR_LIMITS", "on")
    install_text, install_name = pick("auto_install", "EMULATOR_AUTO_INSTALL", "on")
    hostnames_text, hostnames_name = pick("hostnames", "EMULATOR_HOSTNAMES", "")
    return Settings(
        host=_non_empty(host, host_name),
        port=parse_port(port_text, port_name),
        state_dir=Path(state_text).expanduser().resolve(),
        app_id=_non_empty(app_id, app_id_name),
        app_password=_non_empty(password, password_name),
        tenant_id=_non_empty(tenant, tenant_name).lower(),
        bot_endpoint=check_url(endpoint, endpoint_name),
        limits=parse_switch(limits_text, limits_name),
        auto_install=parse_switch(install_text, install_name),
        hostnames=parse_hostnames(hostnames_text, hostnames_name),
    )


@dataclass
class FaultConfig:
    """Probabilities of injected failures on create-conversation and send calls."""

    probabilities: dict[str, float] = field(default_factory=lambda: {kind: 0.0 for kind in FAULT_KINDS})
    retry_after_seconds: float = 1.0  # the Retry-After of an injected 429
    retry_after_http_date: bool = False  # that Retry-After as an HTTP-date rather than in seconds
    timeout_seconds: float = 30.0  # how long an injected timeout waits before its 504

    @property
    def any(self) -> bool:
        return any(p > 0 for p in self.probabilities.values())

    def as_dict(self) -> dict[str, float | bool]:
        data: dict[str, float | bool] = dict(self.probabilities)
        data["retry_after_seconds"] = self.retry_after_seconds
        data["retry_after_http_date"] = self.retry_after_http_date
        data["timeout_seconds"] = self.timeout_seconds
        return data

    @classmethod
    def from_dict(cls, data: Any) -> FaultConfig:
        """A complete fault configuration: kinds not named are 0, timings not named keep their defaults."""
        if not isinstance(data, dict):
            raise ConfigError("faults must be an object")
        faults = cls()
        for key, value in data.items():
            if key == "retry_after_http_date":
                if not isinstance(value, bool):
                    raise ConfigError(f"faults.{key} must be true or false")
                faults.retry_after_http_date = value
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"faults.{key} must be a number")
            if key in faults.probabilities:
                if not 0.0 <= value <= 1.0:
                    raise ConfigError(f"faults.{key} must be a probability from 0 to 1")
                faults.probabilities[key] = float(value)
            elif key in {"retry_after_seconds", "timeout_seconds"}:
                if not 0.0 <= value <= 3600.0:
                    raise ConfigError(f"faults.{key} must be from 0 to 3600 seconds")
                setattr(faults, key, float(value))
            else:
                raise ConfigError(f"faults.{key} is not a known fault")
        if sum(faults.probabilities.values()) > 1.0 + 1e-9:
            raise ConfigError("faults: the probabilities add up to more than 1")
        return faults


@dataclass
class RuntimeConfig:
    """The settings ``/_emulator/config`` reads and changes."""

    limits: bool
    auto_install: bool
    bot_endpoint: str
    keep_bodies: bool = True
    bot_disabled: bool = False  # the tenant admin disabled the bot: every connector call answers 403
    faults: FaultConfig = field(default_factory=FaultConfig)
    seed: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RuntimeConfig:
        return cls(limits=settings.limits, auto_install=settings.auto_install, bot_endpoint=settings.bot_endpoint)

    def as_dict(self) -> dict[str, Any]:
        return {
            "limits": self.limits,
            "auto_install": self.auto_install,
            "keep_bodies": self.keep_bodies,
            "bot_disabled": self.bot_disabled,
            "bot_endpoint": self.bot_endpoint,
            "faults": self.faults.as_dict(),
            "seed": self.seed,
        }

    def merge(self, data: Any) -> set[str]:
        """Applies the given fields (all validated before any is applied) and returns their names.

        ``faults`` is replaced as a whole: ``{"faults": {}}`` switches every fault off."""
        if not isinstance(data, dict):
            raise ConfigError("the body must be a JSON object")
        changes: dict[str, Any] = {}
        for key, value in data.items():
            if key in {"limits", "auto_install", "keep_bodies", "bot_disabled"}:
                if not isinstance(value, bool):
                    raise ConfigError(f"{key} must be true or false")
                changes[key] = value
            elif key == "bot_endpoint":
                if not isinstance(value, str):
                    raise ConfigError("bot_endpoint must be a string")
                changes[key] = check_url(value, "bot_endpoint")
            elif key == "faults":
                changes[key] = FaultConfig.from_dict(value)
            elif key == "seed":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise ConfigError("seed must be an integer or null")
                changes[key] = value
            else:
                raise ConfigError(f"{key} is not a known setting")
        for key, value in changes.items():
            setattr(self, key, value)
        return set(changes)
