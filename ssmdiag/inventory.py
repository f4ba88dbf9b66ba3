"""Custom:SSMDiag, a Systems Manager Inventory type: the fleet table through Systems
Manager's own pipeline (Inventory, Resource Data Sync to S3, Athena).

The agent's inventory plugin uploads the `*.json` files (at most 20, non-recursive) of
`<data dir>/<instance id>/inventory/custom` when the inventory association runs
(shared/reference/cloudwatch-and-inventory-formats.md). Format:
`{"SchemaVersion": "1.0", "TypeName": "Custom:SSMDiag", "Content": [{...}, ...]}` with
string values only (at most 4096 characters), at most 50 attributes per entry.

Schema of Custom:SSMDiag (one entry per check, plus one entry `CheckId` = "node"):
CheckId, Status (ok|skip|warn|fail|error), Summary, Remediation, NodeStatus,
AgentVersion, ToolVersion, CheckedAt (ISO 8601 UTC).
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from ssmdiag import __version__
from ssmdiag.config import Config
from ssmdiag.report import Report
from ssmdiag.safeio import write_atomic

TYPE_NAME = "Custom:SSMDiag"
FILE_NAME = "SSMDiag.json"
MAX_VALUE = 4096


def _text(value: Optional[str]) -> str:
    text = " ".join((value or "").split())
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def inventory_document(report: Report, agent_version: Optional[str]) -> dict[str, Any]:
    common = {
        "NodeStatus": report.status.value,
        "AgentVersion": agent_version or "",
        "ToolVersion": __version__,
        "CheckedAt": report.started_at,
    }
    entries = [
        {
            "CheckId": "node",
            "Status": report.status.value,
            "Summary": "",
            "Remediation": "",
            **common,
        }
    ]
    for check in report.checks:
        entries.append(
            {
                "CheckId": check.id,
                "Status": check.status.value,
                "Summary": _text(check.summary),
                "Remediation": _text(check.remediation),
                **common,
            }
        )
    return {"SchemaVersion": "1.0", "TypeName": TYPE_NAME, "Content": entries}


def inventory_dir(
    data_dir: str, instance_id: Optional[str], configured: Optional[str]
) -> Optional[str]:
    """Where the agent collects custom inventory for this node; None when it cannot be known."""
    if configured:
        return configured
    if not instance_id:
        return None
    return os.path.join(data_dir, instance_id, "inventory", "custom")


def write_inventory(directory: str, document: dict[str, Any]) -> None:
    """Atomically (write, fsync, rename): the agent never uploads half a file. Raises
    OSError (permission, full disk) for the caller to report."""
    os.makedirs(directory, mode=0o750, exist_ok=True)
    body = json.dumps(document, ensure_ascii=False, sort_keys=True).encode("utf-8")
    # The temporary file starts with "." and ends in ".tmp": the agent uploads *.json only.
    write_atomic(os.path.join(directory, FILE_NAME), body, 0o644)


def inventory_location(config: Config, report: Report) -> Optional[str]:
    """Where Custom:SSMDiag goes for this node; None: nowhere (turned off, no platform
    support, or no instance id yet for the agent to upload it under)."""
    from ssmdiag.platform import UnsupportedPlatform, detect

    if not config.inventory:
        return None
    try:
        data_dir = detect(config).agent_paths(None).data_dir
    except UnsupportedPlatform:
        return None
    return inventory_dir(data_dir, report.host.instance_id, config.inventory_dir)


def publish_at(directory: Optional[str], report: Report) -> Optional[str]:
    """Write Custom:SSMDiag into `directory` (None: nothing to do); a problem or None."""
    from ssmdiag.health import Identity

    if directory is None:
        return None
    try:
        write_inventory(
            directory, inventory_document(report, Identity.from_report(report).agent_version)
        )
    except OSError as exc:
        return (
            f"cannot write {directory}: {exc.strerror or exc}; Custom:SSMDiag inventory is "
            "not updated. Give the daemon write access there (Linux: `setfacl -m "
            f"u:ssmdiag:rwx {directory}`) or set [fleet] inventory = false."
        )
    return None
