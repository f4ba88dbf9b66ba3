"""The macOS platform, driven through the real engine and checks.

This machine is not a Mac: `MacPlatform` gets a fake runner that replays output captured
from the real tools (`tests/data/macos/`: sw_vers, pkgutil, launchctl, scutil, dscl, id)
and fake file adapters. Every check here runs for real on those facts; none of them
touches the network (no endpoint.* or clock.skew, no region, IMDS disabled by conftest).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssmdiag.config import Config
from ssmdiag.engine import run_checks
from ssmdiag.platform.base import FileRead
from ssmdiag.platform.macos import (
    AGENT_BINARY,
    LAUNCHD_PLIST,
    MacPlatform,
    parse_dscl_read,
    parse_launchctl_print,
    parse_pkgutil_info,
    parse_scutil_proxy,
    parse_sw_vers,
)
from ssmdiag.platform.process import ProcResult

DATA = Path(__file__).parent / "data" / "macos"

SW_VERS = ("/usr/bin/sw_vers",)
UNAME = ("/usr/bin/uname", "-r", "-m")
AGENT_VERSION = (AGENT_BINARY, "-version")
PKGUTIL = ("/usr/sbin/pkgutil", "--pkg-info", "com.amazon.aws.ssm")
LAUNCHCTL = ("/bin/launchctl", "print", "system/com.amazon.aws.ssm")
SCUTIL = ("/usr/sbin/scutil", "--proxy")
DSCL = (
    "/usr/bin/dscl",
    ".",
    "-read",
    "/Users/ssm-user",
    "UniqueID",
    "PrimaryGroupID",
    "NFSHomeDirectory",
    "UserShell",
)
ID = ("/usr/bin/id", "-Gn", "ssm-user")
SUDO_RULE = "/etc/sudoers.d/ssm-agent-users"
RUNTIME_IDENTITY = "/opt/aws/ssm/runtimeconfig/identity_config.json"


def captured(argv: tuple[str, ...], name: str, code: int = 0, stream: str = "stdout") -> ProcResult:
    """A finished run that printed a captured fixture on stdout (or stderr) and exited `code`."""
    text = (DATA / name).read_text()
    out, err = (text, "") if stream == "stdout" else ("", text)
    return ProcResult(argv, "ok" if code == 0 else "nonzero", code, out, err, 0.01)


def printed(argv: tuple[str, ...], stdout: str, code: int = 0) -> ProcResult:
    return ProcResult(argv, "ok" if code == 0 else "nonzero", code, stdout, "", 0.01)


def failed(argv: tuple[str, ...], outcome: str, message: str) -> ProcResult:
    return ProcResult(argv, outcome, message=message)


@dataclass
class FakeMac:
    """The OS as MacPlatform sees it: commands by argv, files by path; every call recorded."""

    commands: dict[tuple[str, ...], ProcResult]
    files: dict[str, str]
    present: set[str] = field(default_factory=set)  # exist, but must never be read
    ran: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    read: list[str] = field(default_factory=list)

    def run(self, argv: list[str], timeout: float) -> ProcResult:
        assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
        key = tuple(argv)
        self.ran.append((key, timeout))
        return self.commands.get(key, ProcResult(key, "not_found", message="not found"))

    def read_file(self, path: str) -> FileRead:
        self.read.append(path)
        if path in self.files:
            return FileRead(path, "ok", self.files[path])
        return FileRead(path, "missing", message="does not exist")

    def exists(self, path: str) -> bool:
        return path in self.files or path in self.present

    def platform(self, config: Optional[Config] = None) -> MacPlatform:
        return MacPlatform(
            config or Config(),
            self.run,
            read_file_fn=self.read_file,
            exists_fn=self.exists,
        )


def healthy_mac(sw_vers: str = "sw_vers-14.txt") -> FakeMac:
    """An EC2 Mac with agent 3.3.987.0 installed from its pkg, running, ssm-user created."""
    return FakeMac(
        commands={
            SW_VERS: captured(SW_VERS, sw_vers),
            UNAME: printed(UNAME, "23.4.0 arm64\n"),
            AGENT_VERSION: captured(AGENT_VERSION, "amazon-ssm-agent-version.txt"),
            PKGUTIL: captured(PKGUTIL, "pkgutil-pkg-info.txt"),
            LAUNCHCTL: captured(LAUNCHCTL, "launchctl-print-running.txt"),
            SCUTIL: captured(SCUTIL, "scutil-proxy-none.txt"),
            DSCL: captured(DSCL, "dscl-read-ssm-user.txt"),
            ID: captured(ID, "id-Gn-ssm-user.txt"),
        },
        files={SUDO_RULE: "ssm-user ALL=(ALL) NOPASSWD:ALL\n"},
        present={AGENT_BINARY, LAUNCHD_PLIST},
    )


def check(
    fake: FakeMac,
    check_id: str,
    validate: Optional[Callable[[dict[str, Any]], None]] = None,
    config: Optional[Config] = None,
) -> dict[str, Any]:
    platform = fake.platform(config)
    report = run_checks(platform, platform.config, [check_id])
    as_dict = report.to_dict()
    if validate is not None:
        validate(as_dict)
    assert [c["id"] for c in as_dict["checks"]] == [check_id]
    result: dict[str, Any] = as_dict["checks"][0]
    return result


# -- agent.installed ------------------------------------------------------------------------
def test_installed_agent_is_ok_with_its_version_and_launchd_pid(
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    fake = healthy_mac()
    result = check(fake, "agent.installed", validate_report)
    assert result["status"] == "ok"
    assert "SSM Agent 3.3.987.0 installed" in result["summary"]
    assert "running as pid 412" in result["summary"]
    sources = {s["source"]: s for s in result["details"]["sources"]}
    assert sources["binary"]["version"] == "3.3.987.0"
    assert sources["pkgutil"] == {
        "source": "pkgutil",
        "state": "found",
        "version": "3.3.987.0",
        "note": None,
    }
    [proc] = result["details"]["processes"]
    assert proc["pid"] == 412
    assert proc["exe"] == AGENT_BINARY
    assert proc["user"] == "root"
    assert proc["binary_replaced"] is False
    assert result["details"]["binary"] == AGENT_BINARY


def test_version_comes_from_pkgutil_when_the_binary_is_gone() -> None:
    fake = healthy_mac()
    fake.present.discard(AGENT_BINARY)
    result = check(fake, "agent.installed")
    assert result["status"] == "ok"
    assert "3.3.987.0 installed (pkgutil)" in result["summary"]
    assert AGENT_VERSION not in [argv for argv, _ in fake.ran]  # a missing binary is not run


def test_pkgutil_and_binary_disagreeing_is_a_warning_naming_both() -> None:
    fake = healthy_mac()
    fake.commands[AGENT_VERSION] = printed(AGENT_VERSION, "SSM Agent version: 3.3.1142.0\n")
    result = check(fake, "agent.installed")
    assert result["status"] == "warn"
    assert "disagree" in result["summary"]
    assert "3.3.1142.0" in result["summary"] and "3.3.987.0" in result["summary"]
    assert "pkgutil" in result["summary"]
    assert result["remediation"]


def test_no_binary_no_receipt_no_job_is_not_installed() -> None:
    fake = healthy_mac()
    fake.present.discard(AGENT_BINARY)
    fake.commands[PKGUTIL] = captured(PKGUTIL, "pkgutil-no-receipt.txt", 1, "stderr")
    fake.commands[LAUNCHCTL] = captured(LAUNCHCTL, "launchctl-print-not-found.txt", 113, "stderr")
    result = check(fake, "agent.installed")
    assert result["status"] == "fail"
    assert "not installed" in result["summary"]
    sources = {s["source"]: s["state"] for s in result["details"]["sources"]}
    assert sources == {"binary": "absent", "pkgutil": "absent"}


def test_a_garbage_printing_binary_falls_back_to_pkgutil() -> None:
    fake = healthy_mac()
    fake.commands[AGENT_VERSION] = printed(AGENT_VERSION, "\x01\x02 panic: runtime error\n", 2)
    result = check(fake, "agent.installed")
    assert result["status"] == "ok"
    assert "(pkgutil)" in result["summary"]
    binary = next(s for s in result["details"]["sources"] if s["source"] == "binary")
    assert binary["state"] == "broken"


def test_a_hanging_pkgutil_is_a_broken_reading_not_a_crash() -> None:
    fake = healthy_mac()
    fake.commands[PKGUTIL] = failed(PKGUTIL, "timeout", "no answer within 5 s (killed)")
    result = check(fake, "agent.installed")
    assert result["status"] == "ok"  # the binary still answers
    pkgutil = next(s for s in result["details"]["sources"] if s["source"] == "pkgutil")
    assert pkgutil["state"] == "broken" and "no answer" in pkgutil["note"]


# -- agent.service --------------------------------------------------------------------------
def test_running_launchd_job_is_ok(validate_report: Callable[[dict[str, Any]], None]) -> None:
    result = check(healthy_mac(), "agent.service", validate_report)
    assert result["status"] == "ok"
    assert result["summary"] == "com.amazon.aws.ssm is running"
    details = result["details"]
    assert details["manager"] == "launchd"
    assert details["main_pid"] == 412
    assert details["enabled"] is True
    assert details["agent_pids"] == [412]


@pytest.mark.parametrize(
    ("fixture", "said"),
    [
        ("launchctl-print-not-running.txt", "not running (last exit: 1)"),
        ("launchctl-print-spawn-scheduled.txt", "spawn scheduled (last exit: 2)"),
    ],
)
def test_loaded_but_stopped_job_fails_with_the_launchctl_fix(fixture: str, said: str) -> None:
    fake = healthy_mac()
    fake.commands[LAUNCHCTL] = captured(LAUNCHCTL, fixture)
    result = check(fake, "agent.service")
    assert result["status"] == "fail"
    assert said in result["summary"]
    load = "launchctl load -w /Library/LaunchDaemons/com.amazon.aws.ssm.plist"
    assert load in result["remediation"]
    assert result["details"]["agent_pids"] == []


def test_job_unknown_to_launchd_fails_as_missing_service() -> None:
    fake = healthy_mac()
    fake.commands[LAUNCHCTL] = captured(LAUNCHCTL, "launchctl-print-not-found.txt", 113, "stderr")
    result = check(fake, "agent.service")
    assert result["status"] == "fail"
    assert "no launchd service" in result["summary"]
    assert "not loaded" in result["details"]["state"]


def test_enabled_is_unknown_without_the_plist() -> None:
    fake = healthy_mac()
    fake.present.discard(LAUNCHD_PLIST)
    service = fake.platform().agent_service()
    assert service.enabled is None and service.active
    assert LAUNCHD_PLIST in service.note


def test_garbage_from_launchctl_is_a_note_not_a_crash() -> None:
    fake = healthy_mac()
    fake.commands[LAUNCHCTL] = printed(LAUNCHCTL, "\x00\xff garbage }}} {\n")
    platform = fake.platform()
    service = platform.agent_service()
    assert service.exists and not service.active and service.state_text == "unknown"
    assert "no 'state = ' line" in service.note
    assert platform.discover_agent().processes == ()


# -- agent.process_user ---------------------------------------------------------------------
def test_launchd_job_running_as_root_is_ok(
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    result = check(healthy_mac(), "agent.process_user", validate_report)
    assert result["status"] == "ok"
    assert result["summary"] == "SSM Agent (pid 412) runs as root, as it must"


def test_launchd_job_with_a_user_name_fails_with_the_plist_fix(
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    # The captured `launchctl print` with the plist's UserName set to another account.
    fake = healthy_mac()
    fake.commands[LAUNCHCTL] = captured(LAUNCHCTL, "launchctl-print-running-as-user.txt")
    result = check(fake, "agent.process_user", validate_report)
    assert result["status"] == "fail"
    assert result["summary"].startswith("SSM Agent (pid 412) runs as _ssmagent, not root")
    assert "remove the UserName key" in result["remediation"]
    assert "launchctl bootstrap system" in result["remediation"]


def test_stopped_launchd_job_has_no_process_user_to_judge() -> None:
    fake = healthy_mac()
    fake.commands[LAUNCHCTL] = captured(LAUNCHCTL, "launchctl-print-not-running.txt")
    assert check(fake, "agent.process_user")["status"] == "skip"


# -- ssm_user -------------------------------------------------------------------------------
def test_ssm_user_with_false_shell_and_sudo_rule_is_ok(
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    fake = healthy_mac()
    result = check(fake, "ssm_user", validate_report)
    assert result["status"] == "ok"
    assert result["summary"] == "ssm-user exists (uid 502) with its sudo rule"
    details = result["details"]
    # sysadminctl -addUser ssm-user -shell /usr/bin/false: by design, not a finding.
    assert details["shell"] == "/usr/bin/false"
    assert details["home"] == "/Users/ssm-user"
    assert details["uid"] == 502
    assert details["groups"] == ["staff", "everyone", "localaccounts"]
    assert details["sudo_rule_file"] == SUDO_RULE
    assert details["sudo_rule"] is True
    assert result["remediation"] is None


def test_ssm_user_without_the_sudo_rule_says_so() -> None:
    fake = healthy_mac()
    del fake.files[SUDO_RULE]
    result = check(fake, "ssm_user")
    assert result["status"] == "ok"
    assert "without the agent's sudo rule" in result["summary"]
    assert result["details"]["sudo_rule"] is False


def test_missing_ssm_user_is_normal_for_a_recent_agent() -> None:
    fake = healthy_mac()
    fake.commands[DSCL] = captured(DSCL, "dscl-read-not-found.txt", 56, "stderr")
    result = check(fake, "ssm_user")
    assert result["status"] == "ok"
    assert "does not exist yet" in result["summary"]
    assert result["details"]["exists"] is False


def test_a_hanging_dscl_is_an_error_never_a_missing_user() -> None:
    fake = healthy_mac()
    fake.commands[DSCL] = failed(DSCL, "timeout", "no answer within 5 s (killed)")
    result = check(fake, "ssm_user")
    assert result["status"] == "error"
    assert "cannot tell whether ssm-user exists" in result["summary"]


# -- os.supported ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fixture", "version", "build", "codename"),
    [
        ("sw_vers-14.txt", "14.4.1", "23E224", "Sonoma"),
        ("sw_vers-15.txt", "15.1", "24B83", "Sequoia"),
    ],
)
def test_os_supported_reports_the_macos_release(
    validate_report: Callable[[dict[str, Any]], None],
    fixture: str,
    version: str,
    build: str,
    codename: str,
) -> None:
    fake = healthy_mac(fixture)
    platform = fake.platform()
    report = run_checks(platform, platform.config, ["os.supported"])
    as_dict = report.to_dict()
    validate_report(as_dict)
    assert as_dict["host"]["os"] == {"family": "macos", "name": "macOS", "version": version}
    [result] = as_dict["checks"]
    assert result["status"] == "ok"
    assert f"macOS {version}" in result["summary"]
    assert result["details"]["build"] == build
    assert result["details"]["codename"] == codename
    assert result["details"]["kernel"] == "23.4.0"
    assert result["details"]["machine"] == "arm64"


def test_sw_vers_failing_leaves_the_version_unknown_with_the_reason() -> None:
    fake = healthy_mac()
    fake.commands[SW_VERS] = failed(SW_VERS, "not_found", "not found")
    info = fake.platform().os_info()
    assert (info.family, info.name, info.version) == ("macos", "macOS", "unknown")
    assert "not found" in info.details["sw_vers_problem"]


# -- network.proxy --------------------------------------------------------------------------
def proxy_check(fixture: str, validate: Optional[Callable[[dict[str, Any]], None]] = None) -> Any:
    fake = healthy_mac()
    fake.commands[SCUTIL] = captured(SCUTIL, fixture)
    return check(fake, "network.proxy", validate), fake


def test_scutil_https_proxy_without_imds_exception_warns(
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    result, fake = proxy_check("scutil-proxy-https.txt", validate_report)
    assert result["status"] == "warn"
    assert "no_proxy lacks 169.254.169.254" in result["summary"]
    details = result["details"]
    assert details["source"] == "scutil --proxy"
    assert details["https_proxy"] == "http://proxy.corp.example.com:3128"
    assert details["http_proxy"] == "http://proxy.corp.example.com:3128"
    # macOS's 169.254/16 is not a CIDR to Go: the agent would still proxy IMDS calls.
    assert details["no_proxy"] == ".local,169.254/16"
    # The identity fact behind the plan read the agent's files through the fake only.
    assert RUNTIME_IDENTITY in fake.read


def test_scutil_https_proxy_with_imds_exception_is_ok() -> None:
    result, _ = proxy_check("scutil-proxy-https-imds-excepted.txt")
    assert result["status"] == "ok"
    assert "from scutil --proxy" in result["summary"]
    assert result["details"]["no_proxy"] == (
        ".local,169.254/16,169.254.169.254,.internal.corp.example.com"
    )


def test_no_system_proxy_is_ok() -> None:
    result, _ = proxy_check("scutil-proxy-none.txt")
    assert result["status"] == "ok"
    assert result["summary"] == "the agent uses no proxy (scutil --proxy)"


def test_http_only_proxy_warns_that_https_goes_direct() -> None:
    result, _ = proxy_check("scutil-proxy-http-only.txt")
    assert result["status"] == "warn"
    assert "no https_proxy" in result["summary"]
    assert result["details"]["http_proxy"] == "http://10.20.0.5:8080"


def test_scutil_failing_is_reported_as_a_problem() -> None:
    fake = healthy_mac()
    fake.commands[SCUTIL] = failed(SCUTIL, "timeout", "no answer within 5 s (killed)")
    result = check(fake, "network.proxy")
    assert result["status"] == "warn"
    assert "scutil --proxy" in result["summary"]


# -- the adapters ---------------------------------------------------------------------------
def test_every_command_runs_through_the_runner_with_the_configured_timeout() -> None:
    fake = healthy_mac()
    config = Config(subprocess_timeout=7.5)
    platform = fake.platform(config)
    run_checks(
        platform,
        config,
        ["agent.installed", "agent.service", "ssm_user", "os.supported", "network.proxy"],
    )
    commands = {argv for argv, _ in fake.ran}
    assert {SW_VERS, AGENT_VERSION, PKGUTIL, LAUNCHCTL, SCUTIL, DSCL, ID} <= commands
    assert {timeout for _, timeout in fake.ran} == {7.5}


def test_agent_paths_are_the_macos_ones() -> None:
    paths = healthy_mac().platform().agent_paths()
    assert paths.binary_candidates == ("/opt/aws/ssm/bin/amazon-ssm-agent",)
    assert (paths.config_file, paths.config_file_source) == (
        "/opt/aws/ssm/amazon-ssm-agent.json",
        "default",
    )
    assert paths.data_dir == "/opt/aws/ssm/data"
    assert paths.runtime_identity_file == RUNTIME_IDENTITY
    assert paths.registration_file == "/opt/aws/ssm/data/registration"
    assert paths.dhmc_credentials_file == "/opt/aws/ssm/data/credentials"
    assert "always reads /opt/aws/ssm/amazon-ssm-agent.json" in paths.config_file_note


def test_macos_agent_is_not_relocated_by_its_binary_path() -> None:
    # constants_darwin.go has no relocation rule: a binary elsewhere, even beside a
    # configuration/ folder, still reads /opt/aws/ssm/amazon-ssm-agent.json.
    fake = healthy_mac()
    fake.present |= {"/usr/local/ssm/ssm-agent-worker", "/usr/local/ssm/ssm-session-worker"}
    fake.files["/usr/local/ssm/configuration/amazon-ssm-agent.json"] = "{}"
    paths = fake.platform().agent_paths("/usr/local/ssm/amazon-ssm-agent")
    assert (paths.config_file, paths.config_file_source) == (
        "/opt/aws/ssm/amazon-ssm-agent.json",
        "default",
    )


def test_configured_paths_win() -> None:
    config = Config(
        agent_binary="/usr/local/bin/amazon-ssm-agent",
        agent_config_file="/etc/ssm.json",
        agent_data_dir="/var/ssm",
    )
    fake = healthy_mac()
    paths = fake.platform(config).agent_paths()
    assert paths.binary_candidates == ("/usr/local/bin/amazon-ssm-agent",)
    assert paths.config_file_source == "ssmdiag-config"
    assert "the macOS agent itself always reads /opt/aws/ssm/amazon-ssm-agent.json" in (
        paths.config_file_note
    )
    assert paths.registration_file == "/var/ssm/registration"
    reading = fake.platform(config).discover_agent().readings[0]
    assert (reading.source, reading.state) == ("binary", "absent")
    assert "configured path" in reading.note


def test_default_adapters_are_real(tmp_path: Path) -> None:
    platform = MacPlatform(Config())
    target = tmp_path / "file.txt"
    target.write_text("hello")
    assert platform.read_file(str(target)).text == "hello"
    assert platform.read_file(str(tmp_path / "nope")).outcome == "missing"
    assert platform.file_exists(str(target))
    assert platform.sudo_rule_path() == SUDO_RULE


def test_detect_darwin_gives_the_macos_platform() -> None:
    from ssmdiag.platform import detect

    platform = detect(Config(), system="darwin")
    assert isinstance(platform, MacPlatform)
    assert platform.family == "macos"


# -- the parsers ----------------------------------------------------------------------------
def test_parse_sw_vers() -> None:
    assert parse_sw_vers((DATA / "sw_vers-15.txt").read_text()) == {
        "ProductName": "macOS",
        "ProductVersion": "15.1",
        "BuildVersion": "24B83",
    }
    rsr = "ProductName:\tmacOS\nProductVersion:\t13.4.1\nProductVersionExtra:\t(c)\n"
    assert parse_sw_vers(rsr)["ProductVersionExtra"] == "(c)"


def test_parse_pkgutil_info() -> None:
    info = parse_pkgutil_info((DATA / "pkgutil-pkg-info.txt").read_text())
    assert info["package-id"] == "com.amazon.aws.ssm"
    assert info["version"] == "3.3.987.0"
    assert info["location"] == "/"
    assert info["install-time"] == "1716393600"


def test_parse_launchctl_print_keeps_the_outer_block_only() -> None:
    job = parse_launchctl_print((DATA / "launchctl-print-running.txt").read_text())
    assert job["state"] == "running"
    assert job["pid"] == "412"
    assert job["program"] == AGENT_BINARY
    assert job["path"] == LAUNCHD_PLIST
    assert "activation rate" not in job  # nested block
    assert "PATH" not in job and "PATH =>" not in str(job)
    stopped = parse_launchctl_print((DATA / "launchctl-print-not-running.txt").read_text())
    assert stopped["state"] == "not running" and "pid" not in stopped


def test_parse_scutil_proxy_uses_global_settings_not_scoped() -> None:
    scoped = "      HTTPSProxy : proxy.corp.example.com"
    text = (DATA / "scutil-proxy-https.txt").read_text()
    assert scoped in text
    text = text.replace(scoped, "      HTTPSProxy : scoped.example.com")
    assert parse_scutil_proxy(text) == {
        "https_proxy": "proxy.corp.example.com:3128",
        "http_proxy": "proxy.corp.example.com:3128",
        "no_proxy": ".local,169.254/16",
    }
    assert parse_scutil_proxy((DATA / "scutil-proxy-none.txt").read_text()) == {
        "no_proxy": ".local,169.254/16"
    }
    assert parse_scutil_proxy("scutil: not a dictionary") is None


def test_parse_dscl_read_handles_continuation_lines_and_native_keys() -> None:
    text = (
        "dsAttrTypeNative:_writers_passwd: ssm-user\n"
        "NFSHomeDirectory:\n /Users/ssm user\n"
        "RealName:\n ssm-user\n"
        "UniqueID: 502\n"
    )
    values = parse_dscl_read(text)
    assert values["dsAttrTypeNative:_writers_passwd"] == ["ssm-user"]
    assert values["NFSHomeDirectory"] == ["/Users/ssm user"]
    assert values["UniqueID"] == ["502"]
    assert parse_dscl_read((DATA / "dscl-read-ssm-user.txt").read_text())["UserShell"] == [
        "/usr/bin/false"
    ]


@given(st.text())
def test_parsers_never_raise_on_garbage(text: str) -> None:
    parse_sw_vers(text)
    parse_pkgutil_info(text)
    parse_launchctl_print(text)
    parse_scutil_proxy(text)
    parse_dscl_read(text)
    parse_scutil_proxy("<dictionary> {\n" + text)
