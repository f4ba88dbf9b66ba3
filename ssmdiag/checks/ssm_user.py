"""ssm_user: the account sessions run as, judged by what the installed agent version does."""

from __future__ import annotations

from typing import Any

from ssmdiag.checks.base import Check, Context
from ssmdiag.features import (
    SSM_USER_CREATED_AT_FIRST_SESSION_FROM,
    SSM_USER_CREATED_FROM,
    SSM_USER_RELEASE_NOTES,
    release_notes_remark,
)
from ssmdiag.platform.base import DomainInfo, UserAccount
from ssmdiag.report import Finding, error, fail, ok, skip, warn
from ssmdiag.versions import AgentVersion

USER = "ssm-user"
RULE = "ssm-user ALL=(ALL) NOPASSWD:ALL"
DC_FIX = (
    "On this domain controller the agent will not create ssm-user: create it in the "
    "domain and add it to Domain Admins (no password needed, the agent sets one at every "
    "session start). PowerShell: `New-ADUser -Name 'ssm-user' -SamAccountName 'ssm-user'; "
    "Add-ADGroupMember -Identity 'Domain Admins' -Members 'ssm-user'`"
)


def _domain_controller(
    ctx: Context,
    version: AgentVersion,
    account: UserAccount | None,
    domain: DomainInfo,
    details: dict[str, Any],
) -> Finding:
    details["domain_role"] = domain.role
    details["domain_controller"] = True
    if version < SSM_USER_CREATED_AT_FIRST_SESSION_FROM:
        if account is None:
            return warn(
                f"ssm-user is missing on this domain controller; agent {version} "
                "creates it when it starts",
                "Restart the agent: "
                "`Restart-Service AmazonSSMAgent`; from agent 2.3.612.0 on you must "
                "create it yourself.",
                details,
            )
        return ok(
            f"ssm-user exists on this domain controller (agent {version} creates it at start)",
            details,
        )
    if account is None:
        details["exists"] = False
        return fail(
            f"no ssm-user on this domain controller: agent {version} does not create "
            "it here, so sessions cannot start",
            DC_FIX,
            details,
        )
    details.update(
        {
            "exists": True,
            "sid": account.sid,
            "enabled": account.enabled,
            "in_domain_admins": account.in_domain_admins,
        }
    )
    if account.in_domain_admins is False:
        return warn(
            "ssm-user exists on this domain controller but is not in Domain Admins",
            "`Add-ADGroupMember -Identity 'Domain Admins' -Members 'ssm-user'`",
            details,
        )
    return ok(
        "ssm-user exists on this domain controller"
        + (" and is in Domain Admins" if account.in_domain_admins else ""),
        details,
    )


def _sudo_rule(ctx: Context, details: dict[str, Any]) -> None:
    path = ctx.platform.sudo_rule_path()
    if path is None:
        return
    read = ctx.platform.read_file(path)
    details["sudo_rule_file"] = path
    if read.outcome == "ok":
        lines = [line.strip() for line in read.text.splitlines()]
        details["sudo_rule"] = any(" ".join(line.split()) == RULE for line in lines)
    elif read.outcome == "missing":
        details["sudo_rule"] = False
    else:
        details["sudo_rule"] = None
        details["sudo_rule_problem"] = f"{read.message} (reading it needs root)"


def run(ctx: Context) -> Finding:
    facts = ctx.agent
    version = facts.version
    details: dict[str, Any] = {"agent_version": str(version) if version else None}
    if not facts.installed:
        return skip("SSM Agent is not installed, so it has not created ssm-user", details)
    if version is None:
        return error(
            f"agent version unknown, cannot judge ssm-user: {facts.version_error}", None, details
        )
    details["created_from"] = str(SSM_USER_CREATED_FROM)
    details["release_notes_version"] = str(SSM_USER_RELEASE_NOTES.version)
    remark = release_notes_remark(
        "ssm-user creation", SSM_USER_CREATED_FROM, SSM_USER_RELEASE_NOTES, version
    )
    if remark:
        details["release_notes"] = remark
    if version < SSM_USER_CREATED_FROM:
        return skip(
            f"agent {version} predates ssm-user (created from {SSM_USER_CREATED_FROM})", details
        )
    account = ctx.platform.lookup_user(USER)
    domain = ctx.platform.domain_info()
    if domain is not None:
        details["domain_role"] = domain.role
        if domain.is_domain_controller:
            return _domain_controller(ctx, version, account, domain, details)
    if account is None:
        details["exists"] = False
        if version >= SSM_USER_CREATED_AT_FIRST_SESSION_FROM:
            return ok(
                f"ssm-user does not exist yet; agent {version} creates it at the first session",
                details,
            )
        fix = (
            "Restart the agent (`sudo systemctl restart amazon-ssm-agent`; Windows: "
            "`Restart-Service AmazonSSMAgent`) and read its log if ssm-user still does not "
            "appear; on Linux you may create it: `sudo useradd -m ssm-user`."
        )
        if remark:
            fix += (
                f" The agent's release notes first create it in {SSM_USER_RELEASE_NOTES.version}"
                ", which Session Manager needs anyway: update the agent."
            )
        return warn(
            f"ssm-user is missing, but agent {version} (< {SSM_USER_CREATED_AT_FIRST_SESSION_FROM})"
            " creates it when it starts",
            fix,
            details,
        )
    if ctx.platform.family == "windows":
        details.update(
            {
                "exists": True,
                "sid": account.sid,
                "enabled": account.enabled,
                "administrators": account.is_admin,
            }
        )
        # The agent enables ssm-user for a session and disables it afterwards: not a fault.
        state = (
            "disabled between sessions, as the agent leaves it"
            if account.enabled is False
            else "enabled"
        )
        rights = (
            "in Administrators"
            if account.is_admin
            else "not in Administrators (sessions run unprivileged)"
        )
        return ok(f"ssm-user exists ({state}), {rights}", details)
    details.update(
        {
            "exists": True,
            "uid": account.uid,
            "groups": list(account.groups),
            "home": account.home,
            "shell": account.shell,
        }
    )
    _sudo_rule(ctx, details)
    rule = details.get("sudo_rule")
    if rule is False:
        text = "without the agent's sudo rule (sessions run unprivileged)"
    elif rule is None and "sudo_rule_file" in details:
        text = "sudo rule not readable here"
    else:
        text = "with its sudo rule" if rule else ""
    return ok(f"ssm-user exists (uid {account.uid}) {text}".strip(), details)


CHECK = Check("ssm_user", "ssm-user account", run, needs=("agent",))
