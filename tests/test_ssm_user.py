"""ssm_user against a real NSS lookup: ssmdiag runs in a private mount namespace whose /etc
holds the account (or not), so glibc's getpwnam answers from files this test wrote."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from tests.conftest import REPO, require_root, require_tool, run_cli

SSM_USER_PASSWD = "ssm-user:x:1001:1001::/home/ssm-user:/bin/bash\n"
SSM_USER_GROUP = "ssm-user:x:1001:\n"
SUDO_RULE = "ssm-user ALL=(ALL) NOPASSWD:ALL\n"

# Keep the real /etc reachable under $T/orig, cover /etc with a tmpfs of symlinks to it,
# then swap in this test's passwd, group and sudoers.d. Nothing outside the namespace changes.
PRIVATE_ETC = r"""
set -eu
mkdir -p "$T/orig"
mount --bind /etc "$T/orig"
mount -t tmpfs tmpfs /etc
for f in "$T"/orig/* "$T"/orig/.[!.]*; do [ -e "$f" ] && ln -s "$f" /etc/; done
rm -f /etc/passwd /etc/group /etc/sudoers.d
cp "$T/passwd" /etc/passwd
cp "$T/group" /etc/group
mkdir /etc/sudoers.d
if [ -f "$T/rule" ]; then cp "$T/rule" /etc/sudoers.d/ssm-agent-users; fi
shift
exec "$@"
"""


def ssm_user_check(
    tmp_path: Path,
    write_config: Callable[[str], Path],
    agent: Path,
    *,
    with_user: bool,
    rule: Optional[str] = None,
) -> dict[str, Any]:
    require_root("mounts a private /etc in a mount namespace")
    require_tool("unshare")
    passwd = Path("/etc/passwd").read_text()
    group = Path("/etc/group").read_text()
    (tmp_path / "passwd").write_text(passwd + (SSM_USER_PASSWD if with_user else ""))
    (tmp_path / "group").write_text(group + (SSM_USER_GROUP if with_user else ""))
    if rule is not None:
        (tmp_path / "rule").write_text(rule)
    config = write_config(f"[agent]\nbinary = '{agent}'\n")
    result = run_cli(
        "check",
        "--only",
        "ssm_user",
        "--format",
        "json",
        "--config",
        str(config),
        env={"T": str(tmp_path), "PYTHONPATH": str(REPO)},
        prefix=(
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            PRIVATE_ETC,
            "sh",
            "--",
        ),
    )
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    check: dict[str, Any] = report["checks"][0]
    return check


def test_absent_with_agent_creating_it_at_first_session_is_ok(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    check = ssm_user_check(tmp_path, write_config, fake_agent_factory("3.3.987.0"), with_user=False)
    assert check["status"] == "ok"
    assert "first session" in check["summary"] and check["details"]["exists"] is False


def test_absent_with_agent_that_creates_it_at_start_warns(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    check = ssm_user_check(tmp_path, write_config, fake_agent_factory("2.3.500.0"), with_user=False)
    assert check["status"] == "warn"
    assert "2.3.612.0" in check["summary"] and "restart" in check["remediation"].lower()


def test_agent_older_than_ssm_user_skips(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    check = ssm_user_check(tmp_path, write_config, fake_agent_factory("2.3.40.0"), with_user=False)
    assert check["status"] == "skip" and "2.3.50.0" in check["summary"]


def test_present_account_is_read_through_nss_with_its_sudo_rule(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    check = ssm_user_check(
        tmp_path, write_config, fake_agent_factory("3.3.987.0"), with_user=True, rule=SUDO_RULE
    )
    assert check["status"] == "ok"
    details = check["details"]
    assert details["uid"] == 1001 and "ssm-user" in details["groups"]
    assert details["sudo_rule"] is True and "with its sudo rule" in check["summary"]
    assert "ssm-user" not in Path("/etc/passwd").read_text()  # the host was never touched


def test_present_account_without_sudo_rule_says_sessions_are_unprivileged(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    check = ssm_user_check(tmp_path, write_config, fake_agent_factory("3.3.987.0"), with_user=True)
    assert check["status"] == "ok"
    assert check["details"]["sudo_rule"] is False and "unprivileged" in check["summary"]


@pytest.mark.skipif(sys.platform != "linux", reason="Linux NSS")
def test_lookup_of_a_real_account_returns_its_groups() -> None:
    from ssmdiag.config import Config
    from ssmdiag.platform.linux import LinuxPlatform

    root = LinuxPlatform(Config()).lookup_user("root")
    assert root is not None and root.uid == 0 and "root" in root.groups
    assert LinuxPlatform(Config()).lookup_user("no-such-user-ssmdiag") is None


def test_agent_between_documented_and_release_notes_versions_says_so(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    """Documented from 2.3.50.0, but the agent's release notes first create ssm-user in
    2.3.68.0: the verdict follows the documentation, details and the fix say the rest."""
    check = ssm_user_check(tmp_path, write_config, fake_agent_factory("2.3.50.0"), with_user=False)
    assert check["status"] == "warn"
    details = check["details"]
    assert details["created_from"] == "2.3.50.0"
    assert details["release_notes_version"] == "2.3.68.0"
    assert "release notes first ship it in 2.3.68.0" in details["release_notes"]
    assert "Beginning this agent version" in details["release_notes"]
    assert "2.3.68.0" in check["remediation"] and "update the agent" in check["remediation"]


def test_release_notes_remark_is_only_for_the_disputed_versions(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    check = ssm_user_check(tmp_path, write_config, fake_agent_factory("2.3.500.0"), with_user=False)
    assert check["details"]["release_notes_version"] == "2.3.68.0"
    assert "release_notes" not in check["details"]
    assert "update the agent" not in check["remediation"]
