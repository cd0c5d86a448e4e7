"""docker-compose.yml, the Dockerfile and .env.example, checked without a Docker engine.

``docker compose config`` validates the file against the Compose specification (the compose
plugin when the machine has it, else Debian's ``docker-compose``, which validates the same
file format offline; .ci/run installs it when neither is there). Then every command our image
runs must exist: each service built from the Dockerfile runs ``walletflow <command>`` (the
image's entry point) or ``python -m <module>``, and the CLI must accept exactly those arguments.
Also: healthchecks and start order, and every variable documented in .env.example. A missing
compose tool is a failure, never a skip."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from walletflow.cli import app as cli
from walletflow.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
#: Services that run once and exit; every other one runs until stopped and has a healthcheck.
ONE_SHOT = {"migrate", "schedules"}
REQUIRED = {"postgres", "temporal", "temporal-ui", "migrate", "api", "worker", "schedules"}


def compose_command() -> list[str]:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise AssertionError("neither `docker compose` nor `docker-compose` is installed (.ci/run installs the latter)")


def config(*extra: str) -> dict[str, Any]:
    done = subprocess.run(
        [*compose_command(), "-f", str(COMPOSE), *extra, "config"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The file as compose resolves it with .env.example's values (all profiles)."""
    return config("--env-file", str(ENV_EXAMPLE), "--profile", "fake-stripe")


def dockerfile_instruction(name: str) -> str:
    lines = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith(name + " ")]
    assert len(lines) == 1, f"one {name} in the Dockerfile"
    return lines[0][len(name) + 1:].strip()


def test_compose_config_validates_with_and_without_an_env_file() -> None:
    services = config()["services"]
    assert REQUIRED <= set(services)


def test_the_services_and_their_start_order(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on a missing service {dependency}"
            condition = rule["condition"]
            if dependency in ONE_SHOT:
                assert condition == "service_completed_successfully", (name, dependency)
            else:
                assert condition == "service_healthy", (name, dependency)
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck to wait for"
        if name in ONE_SHOT:
            assert service.get("restart", "no") == "no", f"{name} runs once"
        else:
            assert service["healthcheck"]["test"], f"{name} has no healthcheck"
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # Temporal keeps its state in the same PostgreSQL.
    assert services["temporal"]["environment"]["DB"].startswith("postgres")
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgres"
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_every_command_of_our_image_exists(resolved: dict[str, Any]) -> None:
    """``walletflow`` is the image's entry point and a console script; each service's arguments
    must parse (an unknown command or option makes ``--help`` fail with exit code 2)."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert dockerfile_instruction("ENTRYPOINT") == '["walletflow"]'
    assert scripts["walletflow"] == "walletflow.cli:app"
    runner = CliRunner()
    ours = {name: s for name, s in resolved["services"].items() if "build" in s}
    assert {"migrate", "api", "worker", "schedules"} <= set(ours)
    for name, service in ours.items():
        entrypoint = service.get("entrypoint")
        command = [str(part) for part in service.get("command", [])]
        if entrypoint is None:  # walletflow <command>
            result = runner.invoke(cli, [*command, "--help"])
            assert result.exit_code == 0, f"{name}: `walletflow {' '.join(command)}` does not exist: {result.output}"
        else:
            assert entrypoint[:2] == ["python", "-m"], f"{name}: unexpected entry point {entrypoint}"
            assert importlib.util.find_spec(entrypoint[2]) is not None, f"{name}: no module {entrypoint[2]}"
    default = json_list(dockerfile_instruction("CMD"))
    assert runner.invoke(cli, [*default, "--help"]).exit_code == 0
    # The check itself can fail: a command the CLI does not have is refused.
    assert runner.invoke(cli, ["api", "--no-such-option", "1", "--help"]).exit_code == 2
    assert runner.invoke(cli, ["no-such-command", "--help"]).exit_code == 2


def json_list(text: str) -> list[str]:
    import json

    value = json.loads(text)
    assert isinstance(value, list)
    return [str(v) for v in value]


def test_the_image_copies_every_package_it_installs() -> None:
    copied = {line.split()[1] for line in DOCKERFILE.read_text().splitlines() if line.startswith("COPY ")}
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    needed = {pattern.rstrip("*") for pattern in packages} - {"bench"}  # benchmarks stay out of the image
    assert needed <= copied, f"the Dockerfile does not copy {needed - copied}"
    for source in copied:
        assert (ROOT / source).exists(), f"the Dockerfile copies a missing {source}"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".venv" in ignored  # secrets and local state stay out of the image


def test_every_variable_is_documented_in_env_example(resolved: dict[str, Any]) -> None:
    documented = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
    )
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    assert used == set(documented), f"undocumented: {used - set(documented)}, unused: {set(documented) - used}"
    # Every WALLETFLOW_* setting the stack is given is one walletflow reads (no typo goes unnoticed).
    fields = {f"WALLETFLOW_{name.upper()}" for name in Settings.model_fields}
    not_settings = {"WALLETFLOW_IMAGE_TAG", "WALLETFLOW_API_PORT"}  # used by compose itself
    given = {v for s in resolved["services"].values() for v in (s.get("environment") or {}) if v.startswith("WALLETFLOW_")}
    ours = given | {name for name in documented if name.startswith("WALLETFLOW_")}
    assert ours - not_settings <= fields, f"not walletflow settings: {ours - not_settings - fields}"
    assert "WALLETFLOW_DATABASE_URL" in given and "WALLETFLOW_TEMPORAL_ADDRESS" in given
