"""The deploy folder, checked without a container engine: every compose service runs a real sleepd
subcommand, sets only variables sleepd reads, and its ports, volumes, health checks and
dependencies are consistent; the team config and the systemd units load with the same settings."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from sleepd import settings as settings_module
from sleepd.cli import cli
from sleepd.settings import load_settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
#: variables sleepd reads besides one per setting (SLEEPD_<KEY>)
OTHER_VARS = {"SLEEPD_HOME", "SLEEPD_CONFIG"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())  # type: ignore[no-any-return]


def _sleepd_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if svc.get("image", "").startswith("sleepd")}


def _defaults(value: str) -> str:
    """``value`` with each ``${VAR:-default}`` replaced by its default, as compose does when unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def known_vars() -> set[str]:
    return OTHER_VARS | {f"SLEEPD_{key.upper()}" for key in settings_module._SCALARS}


def test_every_sleepd_service_runs_a_real_subcommand(compose: dict[str, Any]) -> None:
    services = _sleepd_services(compose)
    assert {"sleepd", "worker"} <= set(services)
    for name, svc in services.items():
        program, command, *_ = svc["command"]
        assert program == "sleepd" and command in cli.commands, f"{name}: {svc['command']}"
    assert services["worker"]["deploy"]["replicas"] >= 2


def test_every_variable_is_one_sleepd_reads(compose: dict[str, Any]) -> None:
    for name, svc in _sleepd_services(compose).items():
        env = svc["environment"]
        unknown = {k for k in env if k.startswith("SLEEPD_")} - known_vars()
        assert not unknown, f"{name} sets variables sleepd does not read: {unknown}"
        # the values parse as sleepd's settings would (a bool, an int, a URL it can use)
        values = {k: _defaults(str(v)) for k, v in env.items()}
        config = DEPLOY / "sleepd-team.toml"
        loaded = load_settings({**values, "SLEEPD_CONFIG": str(config)})
        assert loaded.embedded_worker is False, f"{name}: the daemon must not start its own worker"
        assert loaded.database_url.startswith("postgresql") and loaded.broker_url.startswith("redis://")
        assert loaded.qdrant_url == "http://qdrant:6333"
        # every service it talks to exists in the file
        for host in ("postgres", "redis", "qdrant"):
            assert host in compose["services"] and host in set(svc["depends_on"])


def test_ports_volumes_and_health_checks_are_consistent(compose: dict[str, Any]) -> None:
    services = compose["services"]
    daemon = services["sleepd"]
    port = daemon["environment"]["SLEEPD_API_PORT"]
    assert daemon["ports"] == [f"{port}:{port}"] and daemon["environment"]["SLEEPD_API_HOST"] == "0.0.0.0"
    assert daemon["healthcheck"]["test"][1:] == ["sleepd", "check"]
    declared = set(compose["volumes"])
    mounts: dict[str, set[str]] = {}
    for name, svc in services.items():
        assert "healthcheck" in svc or name == "worker", f"{name} has no health check"
        for volume in svc.get("volumes", []):
            host, target = _defaults(volume).split(":")[:2]
            mounts.setdefault(name, set()).add(target)
            if not host.startswith((".", "/", "$")):
                assert host in declared, f"{name} mounts undeclared volume {host}"
        for dep, condition in svc.get("depends_on", {}).items():
            assert condition["condition"] == "service_healthy" and "healthcheck" in services[dep]
    # the daemon keeps its home; the workers read the watched folders at the daemon's paths
    assert daemon["environment"]["SLEEPD_HOME"] in mounts["sleepd"]
    assert "/srv/context" in mounts["sleepd"] & mounts["worker"]
    sources = tomllib.loads((DEPLOY / "sleepd-team.toml").read_text())["sources"]
    assert all(s["path"].startswith("/srv/context/") for s in sources)


def test_systemd_units_use_real_commands_and_variables() -> None:
    for unit in ("sleepd.service", "sleepd-worker@.service"):
        text = (DEPLOY / unit).read_text()
        command = re.search(r"^ExecStart=\S*/sleepd (\w+)", text, re.M)
        assert command and command.group(1) in cli.commands, unit
        for var in re.findall(r"^Environment=(\w+)=", text, re.M):
            assert var in known_vars(), f"{unit}: {var}"
