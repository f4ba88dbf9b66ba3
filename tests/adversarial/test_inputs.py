"""Hostile input, as a user or a broken node would give it: every case ends with an exit
code and a message, within bounded time and memory, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from ssmdiag.state import StateStore
from tests.conftest import REPO, hermetic_env, run_cli

SSMDIAG = [sys.executable, "-m", "ssmdiag"]


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "Exception ignored" not in result.stderr, result.stderr


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- ssmdiag's own config -------------------------------------------------------------


def test_a_fifo_as_config_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    result = run_cli("check", "--config", str(fifo), timeout=20)
    assert time.monotonic() - started < 10
    no_traceback(result)
    assert result.returncode == 78 and "FIFO" in result.stderr


def test_dev_zero_as_config_is_refused_without_reading_it(tmp_path: Path) -> None:
    result = run_cli("check", "--config", "/dev/zero", timeout=20)
    no_traceback(result)
    assert result.returncode == 78 and "a device" in result.stderr


def test_a_config_larger_than_a_megabyte_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "big.toml", "# padding\n" * 120_000)
    result = run_cli("check", "--config", str(path))
    no_traceback(result)
    assert result.returncode == 78 and "larger than" in result.stderr


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 5000 + "]" * 5000 + "\n",
        "a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n",
        "[" + ".".join(["x"] * 3000) + "]\n",
    ],
    ids=["arrays", "inline-tables", "dotted-keys"],
)
def test_deeply_nested_toml_is_a_config_error(tmp_path: Path, text: str) -> None:
    result = run_cli("check", "--config", str(write(tmp_path, "deep.toml", text)))
    no_traceback(result)
    assert result.returncode == 78 and "deep" in result.stderr


def test_a_nul_byte_in_a_configured_path_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "nul.toml", '[agent]\nbinary = "/usr/bin/amazon\\u0000-ssm-agent"\n')
    result = run_cli("check", "--config", str(path))
    no_traceback(result)
    assert result.returncode == 78
    assert "agent.binary" in result.stderr and "NUL" in result.stderr


@pytest.mark.parametrize("region", ["us-east-1\n", "us-east-1.evil.com#", "../../etc"])
def test_bad_regions_are_usage_errors(region: str) -> None:
    result = run_cli("endpoints", "--region", region)
    no_traceback(result)
    assert result.returncode == 64 and "invalid region" in result.stderr


@pytest.mark.parametrize("version", ["\uff13.3.1142.0", "3.3.\u0661.0", "3.3.1142.0\n\n5"])
def test_non_ascii_digits_are_not_versions(version: str) -> None:
    result = run_cli("features", version)
    no_traceback(result)
    assert result.returncode == 64 and "unparseable" in result.stderr


# --- the agent's files ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ('{"Agent": {"Region": 42}}', "Agent.Region must be a string"),
        ('{"Agent": ' * 3000 + "{}" + "}" * 3000, "nested 3001 levels deep"),
        ('{"Mgs": {"Endpoint": "https://h\\ud800.example"}}', "agent.config"),
    ],
    ids=["wrong-type", "deep", "lone-surrogate"],
)
def test_hostile_agent_configs_end_in_findings(
    tmp_path: Path, document: str, expected: str
) -> None:
    agent = write(tmp_path, "agent.json", document)
    env = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    for args in (
        ("endpoints", "--region", "us-east-1", "--agent-config", str(agent)),
        ("endpoints", "--format", "json", "--region", "us-east-1", "--agent-config", str(agent)),
        ("check", "--only", "agent.config", "--agent-config", str(agent)),
        ("check", "--format", "json", "--only", "agent.config", "--agent-config", str(agent)),
    ):
        result = run_cli(*args, env=env)
        no_traceback(result)
        assert result.returncode in (0, 1, 2), (args, result.stderr)
    report = json.loads(result.stdout)
    assert expected in json.dumps(report)


def test_a_corrupt_or_deep_state_file_is_set_aside(tmp_path: Path) -> None:
    bodies = ("[" * 100_000, '{"format": 1, "checks": [1]}', '{"format": 1, "checks": {"a": 1}}')
    for body in bodies:
        (tmp_path / "last-status.json").write_text(body)
        state, problem = StateStore(str(tmp_path)).load()
        assert state.checks == {} and problem and "kept as" in problem
    fifo = tmp_path / "last-status.json"
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    state, problem = StateStore(str(tmp_path)).load()
    assert problem and "FIFO" in problem


def test_an_agent_binary_that_floods_stdout_is_cut_while_reading(
    tmp_path: Path, write_config: Callable[[str], Path]
) -> None:
    flood = tmp_path / "amazon-ssm-agent"
    flood.write_text("#!/bin/sh\nexec yes 'SSM Agent version: 9.9.9.9 padding padding'\n")
    flood.chmod(0o755)
    config = write_config(f"[agent]\nbinary = '{flood}'\n")
    # ssmdiag in a process of its own that reports its own peak RSS, under an address-space
    # limit (as the unit's MemoryMax would be): reading the flood whole would break it.
    wrapper = (
        "import resource, runpy, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1024 * 2**20, 1024 * 2**20))\n"
        "sys.argv = ['ssmdiag', *sys.argv[1:]]\n"
        "try:\n"
        "    runpy.run_module('ssmdiag', run_name='__main__')\n"
        "finally:\n"
        "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "    print('PEAK_KIB', peak, file=sys.stderr)\n"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", wrapper, "check", "--format", "json", "--only",
         "agent.installed", "--config", str(config)],
        capture_output=True, text=True, timeout=60, env=hermetic_env(), cwd=REPO,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    no_traceback(result)
    peak_kib = int(result.stderr.rsplit("PEAK_KIB", 1)[1].split()[0])
    assert elapsed < 15
    # The ssmdiag process stayed small: the output was bounded while it was read.
    assert peak_kib < 200 * 1024, peak_kib
    check = json.loads(result.stdout)["checks"][0]
    assert "more than 64 KiB" in json.dumps(check)


# --- where the output goes ------------------------------------------------------------


def test_closed_stdout_is_not_a_traceback() -> None:
    for command in ("version", "check --only os.supported", "endpoints --region us-east-1"):
        result = subprocess.run(
            ["bash", "-c", f"{sys.executable} -m ssmdiag {command} >&-; echo rc=$?"],
            capture_output=True,
            text=True,
            timeout=60,
            env=hermetic_env(),
            cwd=REPO,
        )
        no_traceback(result)
        assert "rc=" in result.stdout


def test_a_reader_that_leaves_keeps_the_health_code() -> None:
    script = (
        f"{sys.executable} -m ssmdiag check --format json --only os.supported ssm_user "
        "| head -c 10 >/dev/null; echo rc=${PIPESTATUS[0]}"
    )
    direct = run_cli("check", "--format", "json", "--only", "os.supported", "ssm_user")
    result = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=hermetic_env(),
        cwd=REPO,
    )
    no_traceback(result)
    assert result.stdout.strip() == f"rc={direct.returncode}"


def test_version_flag_and_help_texts() -> None:
    for flag in ("--version", "-V"):
        result = run_cli(flag)
        assert result.returncode == 0 and result.stdout.startswith("ssmdiag ")
    top = run_cli("--help").stdout
    assert "service" not in top  # Windows only: hidden elsewhere
    endpoints = run_cli("endpoints", "--help").stdout
    assert "signing region" in endpoints
