"""The whole engine with the Windows platform selected, the OS replaced by a fake fed with
captured registry values, SCM states and `netsh` output."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from ssmdiag.config import Config
from ssmdiag.engine import run_checks
from ssmdiag.platform import detect
from ssmdiag.platform.windows import (
    CURRENT_VERSION_KEY,
    LOCAL_SYSTEM_INET_KEY,
    MACHINE_ENV_KEY,
    SERVICE_KEY,
    WindowsPlatform,
)
from ssmdiag.report import Report
from tests.fakes.windows import DATA, FakeWindowsApi

SSM_USER_SID = "S-1-5-21-3623811015-3361044348-30300820-1104"
MEMBER = "server2022-dc.json"


def member_server() -> FakeWindowsApi:
    api = FakeWindowsApi(MEMBER)
    api.data["domain_role"] = 3
    api.data["services"]["NTDS"] = {"state": "stopped", "start_type": "disabled"}
    return api


def report(api: FakeWindowsApi, *ids: str, config: Config | None = None) -> dict[str, Any]:
    platform = WindowsPlatform(config or Config(), api)
    result: Report = run_checks(platform, platform.config, list(ids) or None)
    return {c.id: c.to_dict() for c in result.checks} | {"_report": result.to_dict()}


def test_detect_selects_the_windows_module_on_win32() -> None:
    with pytest.raises(RuntimeError, match="needs Windows"):
        detect(Config(), system="win32")  # the real pywin32 API exists only on Windows


def test_domain_controller_without_ssm_user_fails_with_the_powershell_fix(
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    checks = report(FakeWindowsApi(MEMBER), "agent.installed", "ssm_user", "os.supported")
    validate_report(checks["_report"])
    assert checks["agent.installed"]["status"] == "ok"
    assert checks["agent.installed"]["details"]["version_source"].startswith("running process")
    user = checks["ssm_user"]
    assert user["status"] == "fail"
    assert "domain controller" in user["summary"]
    assert "New-ADUser -Name 'ssm-user'" in user["remediation"]
    assert "Domain Admins" in user["remediation"] and "no password" in user["remediation"]
    assert user["details"]["domain_role"] == "primary_domain_controller"
    assert checks["_report"]["host"]["os"] == {
        "family": "windows",
        "name": "Windows Server 2022 Datacenter",
        "version": "20348",
    }


def test_domain_controller_with_ssm_user_outside_domain_admins_warns() -> None:
    api = FakeWindowsApi(MEMBER)
    api.add_user("ssm-user", SSM_USER_SID, enabled=False)
    user = report(api, "ssm_user")["ssm_user"]
    assert user["status"] == "warn" and "not in Domain Admins" in user["summary"]
    assert "Add-ADGroupMember" in user["remediation"]
    api.add_user("ssm-user", SSM_USER_SID, enabled=False, domain_admin=True)
    assert report(api, "ssm_user")["ssm_user"]["status"] == "ok"


def test_domain_controller_with_an_older_agent_says_it_creates_the_account_at_start() -> None:
    api = FakeWindowsApi(MEMBER)
    api.set_value(SERVICE_KEY, "Version", "2.3.500.0")
    api.data["commands"]["C:\\Program Files\\Amazon\\SSM\\amazon-ssm-agent.exe -version"] = (
        "SSM Agent version: 2.3.500.0\r\n"
    )
    user = report(api, "ssm_user")["ssm_user"]
    assert user["status"] == "warn" and "creates it when it starts" in user["summary"]


def test_member_server_with_disabled_ssm_user_is_not_flagged() -> None:
    api = member_server()
    api.add_user("ssm-user", SSM_USER_SID, enabled=False, admin=True)
    user = report(api, "ssm_user")["ssm_user"]
    assert user["status"] == "ok"
    assert "disabled between sessions" in user["summary"] and "in Administrators" in user["summary"]
    assert user["details"]["domain_role"] == "member_server"


def test_administrators_membership_is_checked_by_sid_not_localized_name() -> None:
    api = member_server()
    api.add_user("ssm-user", SSM_USER_SID, enabled=True)  # not in S-1-5-32-544
    user = report(api, "ssm_user")["ssm_user"]
    assert user["details"]["administrators"] is False and "unprivileged" in user["summary"]


def test_nano_server_is_not_supported() -> None:
    api = member_server()
    api.set_value(CURRENT_VERSION_KEY, "InstallationType", "Nano Server")
    api.set_value(CURRENT_VERSION_KEY, "CurrentBuild", "14393")
    api.set_value(CURRENT_VERSION_KEY, "ProductName", "Windows Server 2016 Datacenter")
    check = report(api, "os.supported")["os.supported"]
    assert check["status"] == "fail" and "Nano Server" in check["summary"]


@pytest.mark.parametrize(
    ("build", "installation", "status", "words"),
    [
        ("26100", "Server", "ok", "Windows Server 2025"),
        ("20348", "Server Core", "ok", "Windows Server 2022"),
        ("9600", "Server", "ok", "past Microsoft's end of support"),
        ("22631", "Client", "warn", "client edition"),
        ("7601", "Server", "fail", "older than Windows Server 2012"),
    ],
)
def test_windows_releases(build: str, installation: str, status: str, words: str) -> None:
    api = member_server()
    api.set_value(CURRENT_VERSION_KEY, "CurrentBuild", build)
    api.set_value(CURRENT_VERSION_KEY, "InstallationType", installation)
    check = report(api, "os.supported")["os.supported"]
    assert check["status"] == status and words in check["summary"]


def test_agent_service_stopped_and_manual_fails_with_the_powershell_fix() -> None:
    api = member_server()
    api.data["services"]["AmazonSSMAgent"] = {
        "state": "stopped",
        "start_type": "demand",
        "account": "LocalSystem",
        "pid": 0,
    }
    check = report(api, "agent.service")["agent.service"]
    assert check["status"] == "fail"
    assert "Set-Service AmazonSSMAgent -StartupType Automatic" in check["remediation"]


def test_registry_and_binary_disagreeing_warns() -> None:
    api = member_server()
    api.data["services"]["AmazonSSMAgent"]["state"] = "stopped"
    api.set_value(SERVICE_KEY, "Version", "3.2.582.0")
    check = report(api, "agent.installed")["agent.installed"]
    assert check["status"] == "warn" and "registry says 3.2.582.0" in check["summary"]


def test_proxy_in_the_service_environment_with_no_proxy() -> None:
    api = member_server()
    api.set_value(
        SERVICE_KEY,
        "Environment",
        [
            "https_proxy=http://proxy.corp.example:3128",
            "no_proxy=169.254.169.254,ssmmessages.us-east-1.amazonaws.com",
            "SOMETHING_ELSE=secret-value",
        ],
    )
    checks = report(api, "network.proxy", config=Config(region="us-east-1"))
    check = checks["network.proxy"]
    assert check["status"] == "ok"
    assert check["details"]["source"].endswith("AmazonSSMAgent\\Environment")
    assert check["details"]["per_endpoint"] == {
        "ec2messages": "http://proxy.corp.example:3128",
        "ssm": "http://proxy.corp.example:3128",
        "ssmmessages": "direct",
    }
    assert "secret-value" not in str(checks)


def test_local_system_internet_settings_with_per_scheme_proxy_and_local() -> None:
    api = member_server()
    api.data["registry"][LOCAL_SYSTEM_INET_KEY] = {
        "ProxyEnable": 1,
        "ProxyServer": "http=old.corp:80;https=secure.corp:8443",
        "ProxyOverride": "<local>;*.internal.example",
    }
    check = report(api, "network.proxy", config=Config(region="us-east-1"))["network.proxy"]
    assert check["details"]["source"] == "LocalSystem Internet Settings"
    assert check["details"]["https_proxy"] == "http://secure.corp:8443"
    assert check["details"]["http_proxy"] == "http://old.corp:80"
    # The agent keeps the URL host of each bypass entry (proxy_windows.go:176-193); Go's
    # no_proxy reads "*.x" as ".x".
    assert check["details"]["no_proxy"] == "*.internal.example"
    assert "<local>" in check["details"]["problem"]
    assert check["status"] == "warn" and "169.254.169.254" in check["summary"]


def test_winhttp_default_proxy_is_the_last_resort() -> None:
    api = member_server()
    api.data["commands"]["netsh winhttp show proxy"] = (
        DATA / "netsh-winhttp-proxy.txt"
    ).read_text()
    check = report(api, "network.proxy", config=Config(region="us-east-1"))["network.proxy"]
    assert check["details"]["source"] == "WinHTTP default proxy"
    # A bare host:port is an http proxy only for the agent (proxy_windows.go:318-326): its
    # HTTPS traffic goes direct, which a user of a proxy-only network must be told.
    assert check["details"]["http_proxy"] == "http://proxy.corp.example:8080"
    assert check["details"]["https_proxy"] is None
    assert set(check["details"]["per_endpoint"].values()) == {"direct"}
    assert check["details"]["imds"] == "direct"  # its bypass list has 169.254.169.254
    assert check["status"] == "warn" and "HTTPS direct" in check["summary"]
    assert 'proxy-server="http=HOST:PORT;https=HOST:PORT"' in check["remediation"]


def test_winhttp_per_scheme_proxy_sends_https_through_it() -> None:
    api = member_server()
    api.data["commands"]["netsh winhttp show proxy"] = (
        (DATA / "netsh-winhttp-proxy.txt")
        .read_text()
        .replace(
            "proxy.corp.example:8080", "http=proxy.corp.example:8080;https=proxy.corp.example:8443"
        )
    )
    check = report(api, "network.proxy", config=Config(region="us-east-1"))["network.proxy"]
    assert check["details"]["https_proxy"] == "http://proxy.corp.example:8443"
    assert check["status"] == "ok"


def test_the_environment_proxy_wins_over_internet_settings() -> None:
    api = member_server()
    api.data["registry"][LOCAL_SYSTEM_INET_KEY] = {
        "ProxyEnable": 1,
        "ProxyServer": "https=ie.corp:8443",
        "ProxyOverride": "169.254.169.254",
    }
    api.data["registry"][MACHINE_ENV_KEY] = {"https_proxy": "http://env.corp:3128"}
    check = report(api, "network.proxy", config=Config(region="us-east-1"))["network.proxy"]
    assert check["details"]["https_proxy"] == "http://env.corp:3128"
    assert check["details"]["no_proxy"] == "169.254.169.254"  # no no_proxy in the environment


def test_every_check_runs_on_windows_without_crashing(tmp_path: Path) -> None:
    api = member_server()
    checks = report(api)  # region unknown: no probe is attempted
    statuses = {k: v["status"] for k, v in checks.items() if k != "_report"}
    assert "crashed" not in str(checks)
    assert statuses["endpoint.ssm"] == "skip" and statuses["clock.skew"] == "skip"


# -- agent.process_user: the service must run as LocalSystem ----------------------------------
@pytest.mark.parametrize("account", ["LocalSystem", "NT AUTHORITY\\SYSTEM", ".\\LocalSystem"])
def test_agent_service_as_local_system_is_ok(
    account: str, validate_report: Callable[[dict[str, Any]], None]
) -> None:
    api = member_server()
    api.data["services"]["AmazonSSMAgent"]["account"] = account
    checks = report(api, "agent.process_user")
    validate_report(checks["_report"])
    check = checks["agent.process_user"]
    assert check["status"] == "ok"
    assert check["summary"] == f"SSM Agent (pid 2932) runs as {account}, as it must"
    assert check["details"]["expected_user"] == "LocalSystem"


@pytest.mark.parametrize(
    "account", ["NT AUTHORITY\\LocalService", "NT AUTHORITY\\NetworkService", "CORP\\svc-ssm"]
)
def test_agent_service_as_another_account_fails_with_the_sc_fix(account: str) -> None:
    api = member_server()
    api.data["services"]["AmazonSSMAgent"]["account"] = account
    check = report(api, "agent.process_user")["agent.process_user"]
    assert check["status"] == "fail"
    assert f"runs as {account}, not LocalSystem" in check["summary"]
    assert "sc.exe config AmazonSSMAgent obj= LocalSystem" in check["remediation"]
    assert "Restart-Service AmazonSSMAgent" in check["remediation"]


def test_stopped_agent_service_has_no_process_user_to_judge() -> None:
    api = member_server()
    api.data["services"]["AmazonSSMAgent"]["state"] = "stopped"
    assert report(api, "agent.process_user")["agent.process_user"]["status"] == "skip"


# -- which amazon-ssm-agent.json the agent reads (agent/appconfig/constants_windows.go) ------
RELATIVE_CONFIG = "C:\\Program Files\\Amazon\\SSM\\configuration\\amazon-ssm-agent.json"


def test_agent_config_is_the_program_folder_one_by_default() -> None:
    paths = WindowsPlatform(Config(), member_server()).agent_paths()
    assert (paths.config_file, paths.config_file_source) == (
        "C:\\Program Files\\Amazon\\SSM\\amazon-ssm-agent.json",
        "default",
    )
    assert "no configuration\\amazon-ssm-agent.json beside" in paths.config_file_note


def test_configuration_folder_beside_the_binary_wins_as_the_agent_decides() -> None:
    # The Windows agent only tests that the file exists (no ownership rule as on Linux).
    api = member_server()
    api.data["file_texts"] = {RELATIVE_CONFIG: '{"Agent": {"Region": "eu-west-1"}}'}
    paths = WindowsPlatform(Config(), api).agent_paths()
    assert (paths.config_file, paths.config_file_source) == (RELATIVE_CONFIG, "relocated")
    assert "instead of C:\\Program Files\\Amazon\\SSM\\amazon-ssm-agent.json" in (
        paths.config_file_note
    )
    check = report(api, "agent.config")["agent.config"]
    assert check["details"]["path"] == RELATIVE_CONFIG


def test_configured_config_file_says_what_the_windows_agent_reads() -> None:
    api = member_server()
    api.data["file_texts"] = {RELATIVE_CONFIG: "{}"}
    config = Config(agent_config_file="D:\\ssm\\agent.json")
    paths = WindowsPlatform(config, api).agent_paths()
    assert paths.config_file_source == "ssmdiag-config"
    assert f"the agent itself reads {RELATIVE_CONFIG}" in paths.config_file_note
