"""No Docker engine runs where Crier is developed, so the container files are checked statically."""

import importlib.util
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


def test_the_web_service_is_healthy_only_when_ready():
    probe = " ".join(compose()["services"]["web"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/readyz" in probe
