"""ssm_user: the account sessions run as, judged by what the installed agent version does."""

from __future__ import annotations

from typing import Any

from ssmdiag.checks.base import Check, Context
from ssmdiag.features import SSM_USER_CREATED_AT_FIRST_SESSION_FROM, SSM_USER_CREATED_FROM
from ssmdiag.report import Finding, error, ok, skip, warn

USER = "ssm-user"
RULE = "ssm-user ALL=(ALL) NOPASSWD:ALL"


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
    if version < SSM_USER_CREATED_FROM:
        return skip(
            f"agent {version} predates ssm-user (created from {SSM_USER_CREATED_FROM})", details
        )
    account = ctx.platform.lookup_user(USER)
    if account is None:
        details["exists"] = False
        if version >= SSM_USER_CREATED_AT_FIRST_SESSION_FROM:
            return ok(
                f"ssm-user does not exist yet; agent {version} creates it at the first session",
                details,
            )
        return warn(
            f"ssm-user is missing, but agent {version} (< {SSM_USER_CREATED_AT_FIRST_SESSION_FROM})"
            " creates it when it starts",
            "Restart the agent (`sudo systemctl restart amazon-ssm-agent`) and read its log if "
            "ssm-user still does not appear; or create it: `sudo useradd -m ssm-user`.",
            details,
        )
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
