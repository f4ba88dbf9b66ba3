"""node.time_sync: does a time-sync service keep the clock right, and (systemd) does the agent
start after it?

AWS refuses requests signed more than 5 minutes off its clock (SigV4); clock.skew measures
the offset now, this check says whether anything keeps it small. Linux: chronyd,
systemd-timesyncd or ntpd (systemd units, else processes) and whether the kernel says the
clock is synchronized (timedatectl; chronyc tracking). Windows: the W32Time service and
`w32tm /query /status`. macOS: "Set time and date automatically" (systemsetup).

The agent's own unit is ordered only After=network-online.target
(packaging/linux/amazon-ssm-agent.service:3), so a stock node is not ordered after
time-sync.target: that is reported with its drop-in, and is a warning only when the clock
is not synchronized (then the agent may start, and sign, with a wrong clock).
"""

from __future__ import annotations

from typing import Any

from ssmdiag import node_limits
from ssmdiag.checks.base import Check, Context
from ssmdiag.platform.base import TimeSync
from ssmdiag.report import Finding, error, ok, skip, warn

AMAZON_TIME_SYNC = "169.254.169.123"  # the Amazon Time Sync Service, on every EC2 instance

WHY = (
    f"AWS refuses the agent's requests when the clock is {node_limits.SIGV4_CLOCK_LIMIT_S // 60} "
    "minutes off (SigV4); clock.skew measures the offset now"
)

# How to make each Linux time-sync service follow a reachable server, by unit name prefix.
LINUX_SYNC_FIXES = {
    "chrony": (
        "`chronyc sources -v` lists its servers and whether they answer (`^?` = no answer); "
        "make one reachable on UDP 123 (on EC2 add `server 169.254.169.123 prefer iburst` to "
        "/etc/chrony.conf, /etc/chrony/chrony.conf on Debian and Ubuntu: it needs no network "
        "path), then `sudo systemctl restart {unit}`"
    ),
    "systemd-timesyncd": (
        "`timedatectl timesync-status` shows its server; set `NTP=169.254.169.123` (EC2) or a "
        "reachable server in /etc/systemd/timesyncd.conf, then `sudo systemctl restart {unit}`"
    ),
    "ntp": (
        "`ntpq -p` lists its servers; add `server 169.254.169.123 prefer iburst` (EC2) or a "
        "reachable server to /etc/ntp.conf, then `sudo systemctl restart {unit}`"
    ),
}
LINUX_INSTALL = (
    "install chrony and start it: `sudo dnf install -y chrony && sudo systemctl enable --now "
    "chronyd` (Amazon Linux, RHEL) or `sudo apt-get install -y chrony` (Debian, Ubuntu: it "
    "starts chrony.service); on EC2 point it at the Amazon Time Sync Service, "
    "169.254.169.123 (Amazon Linux's chrony.conf already does)"
)
WINDOWS_START = (
    "`Set-Service W32Time -StartupType Automatic; Start-Service W32Time; w32tm /resync` "
    "(when the service is missing, `w32tm /register` first)"
)
WINDOWS_SYNC = (
    "`w32tm /config /manualpeerlist:169.254.169.123 /syncfromflags:manual /update; "
    "w32tm /resync` (EC2: the Amazon Time Sync Service); a domain member follows its domain: "
    "`w32tm /config /syncfromflags:domhier /update; w32tm /resync`"
)
MACOS_ON = "`sudo systemsetup -setusingnetworktime on`"
ORDERING_DROP_IN = (
    "`sudo mkdir -p /etc/systemd/system/{unit}.d && printf '[Unit]\\nAfter=time-sync.target\\n"
    "Wants=time-sync.target\\n' | sudo tee /etc/systemd/system/{unit}.d/time-sync.conf && "
    "sudo systemctl daemon-reload`; time-sync.target waits for synchronization only with "
    "`sudo systemctl enable chrony-wait.service` (chrony) or `sudo systemctl enable "
    "systemd-time-wait-sync.service` (systemd-timesyncd)"
)


def _details(sync: TimeSync) -> dict[str, Any]:
    details: dict[str, Any] = {
        "manager": sync.manager,
        "services": [
            {"name": s.name, "active": s.active, "enabled": s.enabled, "state": s.state_text}
            for s in sync.services
        ],
        "synchronized": sync.synchronized,
        "synchronized_source": sync.source or None,
        "reference": sync.reference or None,
        "offset_seconds": sync.offset_s,
        "note": sync.note or None,
    }
    if sync.manager == "systemd":
        details["agent_unit"] = sync.agent_unit or None
        details["agent_ordered_after_time_sync"] = sync.agent_ordered
        details["agent_after"] = list(sync.agent_after)
        if sync.agent_ordered is False:
            details["ordering_fix"] = ORDERING_DROP_IN.format(unit=sync.agent_unit)
    return details


def _start_fix(ctx: Context, sync: TimeSync) -> str:
    if ctx.platform.family == "windows":
        return WINDOWS_START
    if ctx.platform.family == "macos":
        return MACOS_ON
    names = [s.name for s in sync.services]
    chosen = next((n for n in names if n.startswith("chrony")), None) or next(
        (n for n in names if "timesyncd" in n), names[0] if names else None
    )
    if chosen is None:
        return LINUX_INSTALL[0].upper() + LINUX_INSTALL[1:]
    return f"`sudo systemctl enable --now {chosen}`"


def _sync_fix(ctx: Context, sync: TimeSync) -> str:
    if ctx.platform.family == "windows":
        return WINDOWS_SYNC
    if ctx.platform.family == "macos":
        return "`sudo sntp -sS time.apple.com`, then check the network path to the time server"
    active = [s.name for s in sync.services if s.active]
    for name in active:
        for prefix, fix in LINUX_SYNC_FIXES.items():
            if name.startswith(prefix):
                return fix.format(unit=name)
    return "check that its servers are reachable on UDP 123 (on EC2 use 169.254.169.123)"


def _extra(sync: TimeSync) -> str:
    parts = []
    if sync.reference:
        parts.append(f"following {sync.reference}")
    if sync.offset_s is not None:
        parts.append(f"offset {sync.offset_s:+.6f} s")
    return f" ({', '.join(parts)})" if parts else ""


def run(ctx: Context) -> Finding:
    sync = ctx.platform.time_sync()
    details = _details(sync)
    if sync.outcome != "ok":
        root = " (it needs root: run ssmdiag as root)" if ctx.platform.family == "macos" else ""
        return error(
            f"could not ask {sync.manager} about the time-sync service: {sync.note}{root}",
            "Run ssmdiag as root; clock.skew still measures the offset.",
            details,
        )
    active = [s for s in sync.services if s.active]
    if sync.manager is None and not active and sync.synchronized is None:
        return skip(
            "no service manager and no time-sync daemon run here (a container keeps its "
            "host's clock); clock.skew measures the offset",
            details,
        )
    ordering = ""
    if sync.agent_ordered is False:
        ordering = (
            f"; {sync.agent_unit} is not ordered after time-sync.target (its packaged unit "
            "is not): at boot it may start before the clock is set"
        )
    if not active:
        installed = ", ".join(f"{s.name}: {s.state_text}" for s in sync.services)
        what = f" ({installed})" if installed else " (none is installed)"
        return warn(
            f"no time-sync service runs{what}: the clock drifts unchecked; {WHY}",
            f"{_start_fix(ctx, sync)}.",
            details,
        )
    names = ", ".join(s.name for s in active)
    if len(active) > 1 and sync.manager == "systemd":
        keep = active[0].name
        others = " ".join(s.name for s in active[1:])
        return warn(
            f"{len(active)} time-sync services run at once ({names}): they fight over the clock",
            f"Keep one: `sudo systemctl disable --now {others}` (keeps {keep}).",
            details,
        )
    if sync.synchronized is False:
        fix = _sync_fix(ctx, sync)
        if sync.agent_ordered is False:
            fix += f"; and start the agent after it: {details['ordering_fix']}"
        return warn(
            f"{names} runs but the clock is not synchronized ({sync.source}){_extra(sync)}"
            f"{ordering}; {WHY}",
            fix[0].upper() + fix[1:] + ".",
            details,
        )
    state = (
        f"the clock is synchronized ({sync.source})"
        if sync.synchronized
        else "whether the clock is synchronized is not known here"
        + (f" ({sync.note})" if sync.note else "")
    )
    note = ordering.replace("; ", "; note: ", 1) + " (see details)" if ordering else ""
    return ok(f"{names} runs; {state}{_extra(sync)}{note}", details)


CHECK = Check("node.time_sync", "Time synchronization", run)
