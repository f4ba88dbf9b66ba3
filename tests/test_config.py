from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from ssmdiag.config import Config, ConfigError, load_config
from tests.conftest import run_cli


def test_no_file_means_every_default(tmp_path: Path) -> None:
    # The default path is only used when nothing names a file; a missing one is fine.
    config = load_config(None, environ={})
    assert config.subprocess_timeout == Config().subprocess_timeout == 5.0
    assert config.disabled_checks == () and config.required_features == ()


def test_reads_every_documented_key(write_config: Callable[[str], Path]) -> None:
    path = write_config(
        "[agent]\nbinary = '/opt/ssm/amazon-ssm-agent'\nconfig_file = '/opt/ssm/a.json'\n"
        "data_dir = '/opt/ssm/data'\n[checks]\ndisable = ['ssm_user']\nsubprocess_timeout = 2\n"
        "[features]\nrequired = ['kms_encryption']\n[log]\nformat = 'json'\nlevel = 'debug'\n"
    )
    config = load_config(str(path), environ={})
    assert config.agent_binary == "/opt/ssm/amazon-ssm-agent"
    assert config.agent_config_file == "/opt/ssm/a.json"
    assert config.agent_data_dir == "/opt/ssm/data"
    assert config.disabled_checks == ("ssm_user",)
    assert config.subprocess_timeout == 2.0
    assert config.required_features == ("kms_encryption",)
    assert (config.log_format, config.log_level) == ("json", "debug")


def test_env_var_names_the_file(write_config: Callable[[str], Path]) -> None:
    path = write_config("[checks]\nsubprocess_timeout = 9\n")
    assert load_config(None, environ={"SSMDIAG_CONFIG": str(path)}).subprocess_timeout == 9.0


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[checks]\ntimeout = 3\n", "checks.timeout", "unknown key"),
        ("[nope]\nx = 1\n", "[nope]", "unknown section"),
        (
            "[checks]\nsubprocess_timeout = 'slow'\n",
            "checks.subprocess_timeout",
            "number of seconds",
        ),
        ("[checks]\nsubprocess_timeout = -1\n", "checks.subprocess_timeout", "more than 0"),
        ("[checks]\nsubprocess_timeout = true\n", "checks.subprocess_timeout", "number of seconds"),
        ("[checks]\ndisable = ['agent.bogus']\n", "checks.disable", "unknown name(s) agent.bogus"),
        ("[features]\nrequired = ['sessions']\n", "features.required", "unknown name(s) sessions"),
        ("[agent]\nbinary = 'relative/path'\n", "agent.binary", "absolute path"),
        ("[log]\nformat = 'xml'\n", "log.format", "one of console, json"),
    ],
)
def test_bad_values_exit_78_naming_file_key_and_problem(
    write_config: Callable[[str], Path], text: str, key: str, problem: str
) -> None:
    path = write_config(text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), environ={})
    assert caught.value.key == key
    result = run_cli("check", "--config", str(path))
    assert result.returncode == 78
    assert str(path) in result.stderr and key in result.stderr and problem in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_broken_toml_reports_line_and_column(write_config: Callable[[str], Path]) -> None:
    path = write_config("[checks]\nsubprocess_timeout = = 3\n")
    result = run_cli("check", "--config", str(path))
    assert result.returncode == 78
    assert "not valid TOML" in result.stderr and "line 2" in result.stderr


def test_named_file_that_does_not_exist_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = run_cli("check", env={"SSMDIAG_CONFIG": str(missing)})
    assert result.returncode == 78
    assert str(missing) in result.stderr and "does not exist" in result.stderr


def test_unreadable_or_non_utf8_config_is_a_config_error(tmp_path: Path) -> None:
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe[checks]\n")
    result = run_cli("features", "3.3.987.0", "--config", str(binary))
    assert result.returncode == 78 and "not UTF-8" in result.stderr
    result = run_cli("features", "3.3.987.0", "--config", str(tmp_path))
    assert result.returncode == 78 and "is a directory" in result.stderr
