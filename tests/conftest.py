"""Shared test helpers: real fake-agent binaries, the report schema, root gating, CLI runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import jsonschema
import pytest

from ssmdiag.config import Config
from ssmdiag.platform.linux import LinuxLocations, LinuxPlatform

REPO = Path(__file__).resolve().parent.parent
ROOT_REQUIRED = os.environ.get("SSMDIAG_LAB_REQUIRED") == "1"

# A real ELF executable that behaves like amazon-ssm-agent: `-version` prints the exact
# line the agent prints; without flags it stays up (bounded) like the daemon.
_FAKE_AGENT_C = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "-version") == 0) {
#if defined(HANG)
        sleep(60);
#elif defined(GARBAGE)
        printf("\x01\x02 panic: runtime error: index out of range\n");
        return 2;
#else
        printf("SSM Agent version: %s\n", VERSION);
#endif
        return 0;
    }
    for (int i = 0; i < 120; i++) sleep(1);
    return 0;
}
"""


# The network rule: no test may reach IMDS or AWS. Every test (and every ssmdiag it starts)
# runs with IMDS disabled and without region or proxy variables from the machine; lab tests
# point these at servers inside their own namespace.
_SCRUBBED = (
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
)


def hermetic_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _SCRUBBED and not k.startswith("SSMDIAG_CONFIG")
    }
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env.update(extra or {})
    return env


@pytest.fixture(autouse=True)
def _no_real_network(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SCRUBBED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def require_root(reason: str) -> None:
    """Skip when not root, except in CI (SSMDIAG_LAB_REQUIRED=1), where skipping is a failure."""
    if os.geteuid() == 0:
        return
    if ROOT_REQUIRED:
        pytest.fail(f"needs root ({reason}) but SSMDIAG_LAB_REQUIRED=1 forbids skipping")
    pytest.skip(f"needs root: {reason}")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if ROOT_REQUIRED:
            pytest.fail(f"{name} is missing; scripts/install-test-deps installs it")
        pytest.skip(f"{name} not installed (scripts/install-test-deps installs it)")
    return path


@pytest.fixture(scope="session")
def fake_agent_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Build (once per variant) a real amazon-ssm-agent look-alike and return its path."""
    cc = require_tool("cc")
    base = tmp_path_factory.mktemp("agents")
    source = base / "agent.c"
    source.write_text(_FAKE_AGENT_C)
    built: dict[tuple[str, str], Path] = {}

    def build(version: str = "3.3.987.0", mode: str = "normal", name: str = "") -> Path:
        key = (version, mode)
        if key not in built:
            out_dir = base / f"{mode}-{version}-{len(built)}"
            out_dir.mkdir()
            target = out_dir / "amazon-ssm-agent"
            flags = {"normal": [], "hang": ["-DHANG"], "garbage": ["-DGARBAGE"]}[mode]
            subprocess.run(
                [cc, "-O0", "-o", str(target), f'-DVERSION="{version}"', *flags, str(source)],
                check=True,
                timeout=60,
            )
            built[key] = target
        if name:
            copy = base / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built[key], copy)
            return copy
        return built[key]

    return build


@pytest.fixture
def no_default_agent(tmp_path: Path) -> LinuxLocations:
    """Locations that find no real agent and no real package databases on this machine."""
    empty = tmp_path / "empty-dbs"
    (empty / "rpm").mkdir(parents=True)
    (empty / "dpkg" / "info").mkdir(parents=True)
    (empty / "dpkg" / "updates").mkdir()
    (empty / "dpkg" / "status").write_text("")
    return LinuxLocations(
        rpm_dbpath=str(empty / "rpm"),
        dpkg_admindir=str(empty / "dpkg"),
        default_binaries=(str(tmp_path / "no-such-agent"),),
        systemd_run_dir=str(tmp_path / "no-systemd"),
        initctl=str(tmp_path / "no-initctl"),
        snap=str(tmp_path / "no-snap"),
    )


def make_platform(locations: LinuxLocations, **config: Any) -> LinuxPlatform:
    return LinuxPlatform(Config(**config), locations)


@pytest.fixture(scope="session")
def report_schema() -> dict[str, Any]:
    text = resources.files("ssmdiag").joinpath("schema/report.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


@pytest.fixture
def validate_report(report_schema: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def check(report: dict[str, Any]) -> None:
        jsonschema.Draft202012Validator(report_schema).validate(report)

    return check


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a child process, as a user would."""
    full_env = hermetic_env(env)
    return subprocess.run(
        [*prefix, sys.executable, "-m", "ssmdiag", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=REPO,
    )


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "ssmdiag.toml"
        path.write_text(text)
        return path

    return write


@pytest.fixture
def running_agent(
    fake_agent_factory: Callable[..., Path], tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start fake agent daemons as real child processes; all are killed afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(path: Path) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([str(path)])
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait(timeout=5)


from tests.lab.fixtures import *  # noqa: E402,F403  (lab_ca, lab_intercept_ca, netns, lab_servers)
