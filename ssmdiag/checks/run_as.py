"""session.run_as: with Run As enabled, sessions start as the default Run As user (or the
SSMSessionRunAs tag of the IAM identity): that OS user must exist on the node, as
ssm_user checks for ssm-user. Run As applies to Linux and macOS nodes only."""

from __future__ import annotations

from ssmdiag.checks.base import Check, Context
from ssmdiag.report import Finding, fail, ok, skip, warn

CREATE = {
    "linux": "`sudo useradd -m {user}` (or create it in your directory: LDAP, SSSD)",
    "macos": "`sudo sysadminctl -addUser {user}`",
}


def run(ctx: Context) -> Finding:
    prefs = ctx.config.session
    if not prefs.run_as_enabled:
        return skip(
            "Run As is not enabled in the session preferences: sessions run as ssm-user "
            "(set [session] run_as_enabled or --session-preferences to check it)"
        )
    family = ctx.platform.family
    if family == "windows":
        return warn(
            "Run As is enabled, but it applies to Linux and macOS nodes only: sessions on "
            "this Windows node run as ssm-user",
            "Nothing to change on the node; expect ssm-user here (see ssm_user).",
        )
    user = prefs.run_as_user
    if not user:
        return ok(
            "Run As is enabled without a default user: each session runs as the OS user named "
            "by the SSMSessionRunAs tag of its IAM user or role, which must exist on this node"
        )
    account = ctx.platform.lookup_user(user)
    details: dict[str, object] = {"user": user, "preferences": prefs.source}
    if account is None:
        return fail(
            f"the Run As default user {user!r} does not exist on this node: sessions that run "
            "as it fail to start",
            f"Create the user: {CREATE.get(family, CREATE['linux']).format(user=user)}; or "
            "change runAsDefaultUser in the Session Manager preferences.",
            details,
        )
    details["uid"] = account.uid
    return ok(f"the Run As default user {user} exists (uid {account.uid})", details)


CHECK = Check("session.run_as", "Run As user for sessions", run, needs=("agent",))
