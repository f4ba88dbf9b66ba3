"""node.disk: free space and free inodes on the filesystems where the agent writes.

The agent writes its state to its data directory (DefaultDataStorePath: /var/lib/amazon/ssm,
agent/appconfig/constants_unix.go:32,62; /opt/aws/ssm/data, constants_darwin.go:55;
%ProgramData%\\Amazon\\SSM\\InstanceData, constants_windows.go:206), its logs to DefaultLogDir
(/var/log/amazon/ssm, agent/log/logger/log_unix.go:27 and log_darwin.go:32;
%ProgramData%\\Amazon\\SSM\\Logs, log_windows.go:30), and every session's and command's
state to <data>/<short instance id>/session|document/<Agent.OrchestrationRootDir>
(agent/messageservice/interactor/mgsinteractor/mgsinteractor.go:355, :412). On a full
filesystem it can neither start a session nor log why.
"""

from __future__ import annotations

import ntpath
import posixpath
from dataclasses import dataclass, field
from typing import Any, Optional

from ssmdiag import node_limits
from ssmdiag.checks.base import Check, Context
from ssmdiag.platform.base import DiskUsage
from ssmdiag.report import Finding, Status, error, fail, ok, warn

# What the agent cannot do when the filesystem under each directory is full.
ROLES = {
    "data": "its state (the registration, session and command bookkeeping)",
    "logs": "its logs",
    "orchestration": "session and command state (a session cannot start)",
}
DEFAULT_ORCHESTRATION_ROOT = "orchestration"  # agent/appconfig/constants.go:140
MAX_INSTANCE_ID_LEN = 64  # common/identity/identity/identity.go:25

# What to do, per platform and problem. {mount} is the filesystem's mount point.
FIXES = {
    ("linux", "space"): (
        "Free space on {mount}: find what fills it (`sudo du -xh --max-depth=3 {mount} "
        "2>/dev/null | sort -h | tail -n 20`), shrink the journal (`sudo journalctl "
        "--vacuum-size=200M`) and delete what is not needed, or grow the volume (EBS: modify "
        "the volume, then `sudo growpart` and `sudo xfs_growfs {mount}` or `sudo resize2fs`)."
    ),
    ("linux", "inodes"): (
        "Free inodes on {mount}: find the directory with the most files (`sudo du -x "
        "--inodes --max-depth=3 {mount} 2>/dev/null | sort -n | tail -n 20`) and delete what "
        "is not needed; the agent keeps command and session output under {data} for 14 days "
        "(lower Ssm.RunCommandLogsRetentionDurationHours and "
        "Ssm.SessionLogsRetentionDurationHours in amazon-ssm-agent.json to keep less)."
    ),
    ("linux", "read_only"): (
        "{mount} is read-only: if the kernel remounted it after errors, `sudo dmesg | grep -i "
        "-e remount -e error` says so; repair it (`fsck` from a rescue instance) and reboot, "
        "or `sudo mount -o remount,rw {mount}` if it was mounted read-only on purpose."
    ),
    ("macos", "space"): (
        "Free space on {mount}: find what fills it (`sudo du -xh -d 3 {mount} 2>/dev/null | "
        "sort -h | tail -n 20`) and delete what is not needed, or grow the EBS volume and then "
        "the APFS container (`sudo diskutil apfs resizeContainer <container> 0`)."
    ),
    ("macos", "inodes"): (
        "Free inodes on {mount}: count files per directory (`sudo find {mount} -xdev | cut "
        "-d/ -f1-4 | sort | uniq -c | sort -n | tail -n 20`) and delete what is not needed."
    ),
    ("macos", "read_only"): (
        "{mount} is read-only: `diskutil info {mount}` says why; repair it with "
        "`sudo diskutil repairVolume {mount}` or mount it read-write."
    ),
    ("windows", "space"): (
        "Free space on {mount}: run Disk Cleanup (`cleanmgr /d {drive}`), remove superseded "
        "updates (`Dism /Online /Cleanup-Image /StartComponentCleanup`) and what is not "
        "needed, or grow the volume (EBS: modify the volume, then `Resize-Partition "
        "-DriveLetter {drive} -Size (Get-PartitionSupportedSize -DriveLetter {drive}).SizeMax`)."
    ),
    ("windows", "read_only"): (
        "{mount} is read-only: `Get-Volume -DriveLetter {drive}` and `chkdsk {drive}:` say "
        "why; clear the attribute (`Set-Disk -Number <n> -IsReadOnly $false`) or repair it."
    ),
}
# Below every fix: what the agent needs.
AFTER_FIX = "The agent needs free space there to start sessions and to log."


@dataclass
class _Filesystem:
    usage: DiskUsage
    members: list[tuple[str, str]] = field(default_factory=list)  # (role, path)
    measured: list[str] = field(default_factory=list)  # what was measured for them
    problems: list[tuple[Status, str, str]] = field(default_factory=list)  # status, kind, text

    @property
    def status(self) -> Status:
        statuses = [p[0] for p in self.problems]
        return Status.FAIL if Status.FAIL in statuses else statuses[0] if statuses else Status.OK


def human(size: Optional[int]) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _for_users(usage: DiskUsage) -> str:
    """df's "Avail", when it differs from what root (the agent) may use: blocks reserved
    for root (ext4 keeps 5%) or a quota make the two disagree."""
    free, available, total = usage.free_bytes, usage.available_bytes, usage.total_bytes
    if free is None or available is None or not total or free - available <= total // 100:
        return ""
    return f"; {human(available)} for users other than root"


def _percent(part: Optional[int], whole: Optional[int]) -> Optional[float]:
    if part is None or not whole:
        return None
    return round(100.0 * part / whole, 1)


def short_instance_id(instance_id: str) -> str:
    """ShortInstanceID (common/identity/identity/identity.go:40-66): the last `_` part of an
    id longer than 64 characters."""
    if len(instance_id) > MAX_INSTANCE_ID_LEN:
        return instance_id.rsplit("_", maxsplit=1)[-1]
    return instance_id


def _orchestration_root(ctx: Context) -> str:
    facts = ctx.gathered("agent_config")
    decoded = getattr(facts, "decoded", None) if facts is not None else None
    value = decoded.get("Agent.OrchestrationRootDir") if decoded is not None else None
    # getStringValue: empty is the default (agent/appconfig/appconfig_parser.go:41, :157).
    return value if isinstance(value, str) and value else DEFAULT_ORCHESTRATION_ROOT


def targets(ctx: Context) -> tuple[list[tuple[str, str]], str]:
    """(role, path) for every directory the agent writes, and a note when the orchestration
    directories could not be named (the instance id is not known yet)."""
    paths = ctx.platform.agent_paths()
    flavour: Any = ntpath if ctx.platform.family == "windows" else posixpath
    found = [("data", paths.data_dir)]
    if paths.log_dir:
        found.append(("logs", paths.log_dir))
    # Facts other checks already gathered are used, never gathered for this check: the
    # identity may mean asking IMDS, and the data directory holds these anyway.
    identity = ctx.gathered("identity")
    instance = getattr(identity, "instance_id", None) if identity is not None else None
    if not isinstance(instance, str) or not instance:
        return found, (
            f"orchestration directories are under {paths.data_dir} (<instance id>/session and "
            "<instance id>/document); the instance id is known only when the identity check runs"
        )
    root = _orchestration_root(ctx)
    short = short_instance_id(instance)
    for kind in ("session", "document"):  # DefaultSessionRootDirName, DefaultDocumentRootDirName
        # filepath.Join cleans the result, as normpath does.
        found.append(
            ("orchestration", flavour.normpath(flavour.join(paths.data_dir, short, kind, root)))
        )
    return found, ""


def _judge(fs: _Filesystem) -> None:
    usage = fs.usage
    if usage.read_only:
        fs.problems.append((Status.FAIL, "read_only", "is read-only"))
    total, free = usage.total_bytes, usage.free_bytes
    if total and free is not None:
        breached = _breached(free, total, node_limits.SPACE_FAIL, node_limits.SPACE_WARN)
        if breached:
            status, limit = breached
            fs.problems.append(
                (
                    status,
                    "space",
                    f"has {human(free)} free of {human(total)} "
                    f"({_percent(free, total)}%, below {human(limit)}){_for_users(usage)}",
                )
            )
    inodes, inodes_free = usage.inodes_total, usage.inodes_free
    if inodes and inodes_free is not None:
        breached = _breached(inodes_free, inodes, node_limits.INODES_FAIL, node_limits.INODES_WARN)
        if breached:
            status, limit = breached
            fs.problems.append(
                (
                    status,
                    "inodes",
                    f"has {inodes_free} free inodes of {inodes} (below {limit}): no new "
                    "file can be created",
                )
            )


def _breached(
    free: int, total: int, fail: node_limits.Floor, warn: node_limits.Floor
) -> Optional[tuple[Status, int]]:
    """The worst band `free` falls into (fail before warn) and its limit, or None."""
    for status, floor in ((Status.FAIL, fail), (Status.WARN, warn)):
        limit = floor.of(total)
        if free < limit:
            return status, limit
    return None


def _where(fs: _Filesystem) -> str:
    name = fs.usage.mount_point or fs.usage.measured
    return f"{name} ({fs.usage.filesystem})" if fs.usage.filesystem else name


def _fix(family: str, kind: str, fs: _Filesystem, data_dir: str) -> str:
    template = FIXES.get((family, kind)) or FIXES[("linux", kind)]
    mount = fs.usage.mount_point or fs.usage.measured
    drive = ntpath.splitdrive(mount)[0].rstrip(":") or "C"
    return template.format(mount=mount, drive=drive, data=data_dir)


def _details(
    filesystems: list[_Filesystem], failed: list[DiskUsage], notes: list[str]
) -> dict[str, Any]:
    details: dict[str, Any] = {
        "filesystems": [
            {
                "mount_point": fs.usage.mount_point,
                "filesystem": fs.usage.filesystem or None,
                "paths": [{"role": role, "path": path} for role, path in fs.members],
                "measured": fs.measured,
                "total_bytes": fs.usage.total_bytes,
                "free_bytes": fs.usage.free_bytes,
                "available_bytes": fs.usage.available_bytes,
                "free_percent": _percent(fs.usage.free_bytes, fs.usage.total_bytes),
                "inodes_total": fs.usage.inodes_total,
                "inodes_free": fs.usage.inodes_free,
                "read_only": fs.usage.read_only,
                "status": fs.status.value,
            }
            for fs in filesystems
        ],
        "thresholds": {
            "space_fail": "below the smaller of "
            f"{human(node_limits.SPACE_FAIL.amount)} and {node_limits.SPACE_FAIL.share:.0%}",
            "space_warn": "below the smaller of "
            f"{human(node_limits.SPACE_WARN.amount)} and {node_limits.SPACE_WARN.share:.0%}",
            "inodes_fail": f"below the smaller of {node_limits.INODES_FAIL.amount} and "
            f"{node_limits.INODES_FAIL.share:.0%}",
            "inodes_warn": f"below the smaller of {node_limits.INODES_WARN.amount} and "
            f"{node_limits.INODES_WARN.share:.0%}",
        },
    }
    if failed:
        details["unmeasured"] = [{"path": u.path, "problem": u.message} for u in failed]
    if notes:
        details["notes"] = notes
    return details


def run(ctx: Context) -> Finding:
    wanted, note = targets(ctx)
    notes = [note] if note else []
    filesystems: dict[str, _Filesystem] = {}
    failed: list[DiskUsage] = []
    for role, path in wanted:
        usage = ctx.platform.disk_usage(path)
        if usage.outcome != "ok":
            failed.append(usage)
            continue
        if usage.message and usage.message not in notes:
            notes.append(usage.message)
        key = usage.device or usage.mount_point or usage.measured
        fs = filesystems.setdefault(key, _Filesystem(usage))
        if (role, path) not in fs.members:
            fs.members.append((role, path))
        if usage.measured not in fs.measured:
            fs.measured.append(usage.measured)
    found = list(filesystems.values())
    for fs in found:
        _judge(fs)
    details = _details(found, failed, notes)
    if not found:
        first = failed[0]
        return error(
            f"could not measure the filesystem under {first.path}: {first.message}",
            "Run ssmdiag as root (or as its daemon) so it can look into the agent's directories.",
            details,
        )
    bad = sorted((fs for fs in found if fs.problems), key=lambda f: f.status != Status.FAIL)
    paths = ctx.platform.agent_paths()
    if bad:
        worst = bad[0]
        status, _, text = next(p for p in worst.problems if p[0] == worst.status)
        names = ", ".join(f"{path} ({role})" for role, path in worst.members)
        cannot = "; ".join(ROLES[role] for role in dict.fromkeys(r for r, _ in worst.members))
        summary = f"{_where(worst)} {text}; it holds {names}"
        if status is Status.FAIL:
            summary += f": the agent cannot write {cannot}"
        else:
            summary += ": the agent will soon be unable to write there"
        if len(bad) > 1:
            summary += f" (and {len(bad) - 1} more filesystem(s) with a problem: see details)"
        fixes = [
            _fix(ctx.platform.family, k, fs, paths.data_dir)
            for fs in bad
            for _, k, _ in fs.problems
        ]
        remediation = " ".join(dict.fromkeys(fixes)) + " " + AFTER_FIX
        return (fail if status is Status.FAIL else warn)(summary, remediation, details)
    parts = []
    for fs in found:
        inodes = f", {fs.usage.inodes_free} inodes free" if fs.usage.inodes_free is not None else ""
        parts.append(
            f"{_where(fs)} {human(fs.usage.free_bytes)} free "
            f"({_percent(fs.usage.free_bytes, fs.usage.total_bytes)}%{_for_users(fs.usage)})"
            f"{inodes}"
        )
    summary = f"{len(wanted)} agent directories on {len(found)} filesystem(s): " + "; ".join(parts)
    if failed:
        summary += f" ({len(failed)} path(s) not measured: see details)"
    return ok(summary, details)


CHECK = Check("node.disk", "Disk space where the agent writes", run)
