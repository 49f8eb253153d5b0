"""No Docker engine runs where Crier is developed, so the container files are checked statically."""

import importlib.util
import re
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def compose():
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_runs_every_part_of_the_product():
    services = compose()["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "emulator", "migrate"} <= set(services)


def test_compose_references_only_defined_services_secrets_and_volumes():
    spec = compose()
    for name, service in spec["services"].items():
        for dependency in service.get("depends_on", {}):
            assert dependency in spec["services"], f"{name} depends on unknown {dependency}"
        for secret in service.get("secrets", []):
            assert secret in spec["secrets"]
            assert (DOCKER / spec["secrets"][secret]["file"]).exists()
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in spec["volumes"]


def test_compose_commands_name_modules_that_exist():
    for module in ("settings.wsgi", "settings.celery", "emulator"):
        assert importlib.util.find_spec(module) is not None, module


def test_the_image_runs_as_a_non_root_user():
    lines = [line.split() for line in (DOCKER / "Dockerfile").read_text().splitlines() if line.strip()]
    users = [words[1] for words in lines if words[0] == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_production_services_need_their_secrets():
    web = compose()["services"]["web"]["environment"]
    assert web["CRIER_ENV"] == "production"
    assert "SECRET_KEY_FILE" in web and "BOT_APP_PASSWORD_FILE" in web


def test_the_web_server_yields_the_cpu_to_the_workers_that_send():
    services = compose()["services"]
    assert services["web"]["cpu_shares"] < services["worker"].get("cpu_shares", 1024)


def test_the_web_service_is_healthy_only_when_ready():
    probe = " ".join(compose()["services"]["web"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/readyz" in probe


# --- Against a real tenant: docker/compose.tenant.yaml over docker/compose.yaml --------------------------

RESET, OVERRIDE = object(), "!override"


class _ComposeLoader(yaml.SafeLoader):
    """Reads Compose's own tags: ``!reset`` (remove the value) and ``!override`` (replace it whole)."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: RESET)
_ComposeLoader.add_constructor(
    "!override", lambda loader, node: {OVERRIDE: loader.construct_mapping(node, deep=True)}
)


def _merged(base, over):
    """Compose's merge of an override file: mappings merge key by key, ``!reset`` removes, ``!override``
    replaces, anything else replaces."""
    if isinstance(over, dict) and OVERRIDE in over:
        return over[OVERRIDE]
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            if value is RESET:
                merged.pop(key, None)
            else:
                merged[key] = _merged(base.get(key), value)
        return merged
    return over


def tenant_compose():
    override = yaml.load((DOCKER / "compose.tenant.yaml").read_text(), Loader=_ComposeLoader)
    return _merged(compose(), override)


def test_against_a_tenant_nothing_points_at_the_emulator_and_it_is_not_started():
    spec = tenant_compose()
    assert spec["services"]["emulator"]["profiles"] == ["emulator"]
    for name in ("migrate", "web", "worker", "beat"):
        service = spec["services"][name]
        assert "emulator" not in service["depends_on"], name
        assert not service.get("volumes"), name
        assert "emulator" not in " ".join(map(str, service["environment"].values())), name
        for setting in ("BOT_AUTHORITY", "BOT_OPENID_METADATA_URL", "TEAMS_SERVICE_URL", "REQUESTS_CA_BUNDLE",
                        "SECURE_SSL_REDIRECT", "SECURE_PROXY_SSL_HEADER", "NUM_PROXIES"):
            assert setting not in service["environment"], (name, setting)


def test_against_a_tenant_its_identity_and_address_must_be_given():
    spec = tenant_compose()
    for name in ("migrate", "web", "worker", "beat"):
        environment = spec["services"][name]["environment"]
        for setting in ("BOT_APP_ID", "BOT_TENANT_ID", "PUBLIC_BASE_URL", "ALLOWED_HOSTS"):
            assert environment[setting].startswith(f"${{{setting}:?"), (name, setting)
        assert environment["CRIER_ENV"] == "production" and "BOT_APP_PASSWORD_FILE" in environment
        # The health check calls the web service at 127.0.0.1: it must be an allowed host.
        assert environment["ALLOWED_HOSTS"].endswith(",127.0.0.1"), name


def test_the_tenant_file_resets_each_service_itself_not_through_an_anchor():
    """Compose versions differ in applying ``!reset`` through a YAML anchor: each service says it itself."""
    text = (DOCKER / "compose.tenant.yaml").read_text()
    assert "<<:" not in text and not re.search(r"^x-", text, re.MULTILINE)


def test_against_a_tenant_each_service_still_waits_for_what_it_needs():
    services = tenant_compose()["services"]
    assert set(services["migrate"]["depends_on"]) == {"postgres", "redis"}
    for name in ("web", "worker", "beat"):
        assert set(services[name]["depends_on"]) == {"postgres", "redis", "migrate"}
    assert services["web"]["healthcheck"] == compose()["services"]["web"]["healthcheck"]
