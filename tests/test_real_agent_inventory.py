"""Custom:SSMDiag lands where the real agent's inventory plugin collects it: on a
throwaway node with a hybrid registration stored by the agent's own code, `ssmdiag run
--once` (as root, like the daemon with write access) writes
<data dir>/<instance id>/inventory/custom/SSMDiag.json in the documented format."""

from __future__ import annotations

import json
import sys

from tests.lab.real_agent import node_run, require_real_agent

MI = "mi-0123456789abcdef0"


def test_inventory_lands_in_the_agents_custom_inventory_directory() -> None:
    require_real_agent()
    script = (
        "set -e; printf '[sinks]\\nenabled = [\"file\"]\\nfile_path = \"/var/log/h.json\"\\n"
        "[daemon]\\nstate_dir = \"/var/lib/ssmdiag\"\\n"
        "[checks]\\ndisable = [\"endpoint.ec2messages\", \"endpoint.ssm\", "
        "\"endpoint.ssmmessages\", \"clock.skew\", \"agent.log\"]\\n' > /root/s.toml; "
        f"{sys.executable} -m ssmdiag run --once --config /root/s.toml >/dev/null 2>&1 || true; "
        f"cat /var/lib/amazon/ssm/{MI}/inventory/custom/SSMDiag.json; echo; "
        f"stat -c '%a %U' /var/lib/amazon/ssm/{MI}/inventory/custom/SSMDiag.json; "
        f"ls -a /var/lib/amazon/ssm/{MI}/inventory/custom"
    )
    result = node_run(["bash", "-c", script], register=f"{MI} us-west-2")
    assert result.returncode == 0, result.stderr
    document_line, mode_line, *listing = result.stdout.strip().splitlines()
    document = json.loads(document_line)
    assert document["SchemaVersion"] == "1.0" and document["TypeName"] == "Custom:SSMDiag"
    node = document["Content"][0]
    assert node["CheckId"] == "node" and node["NodeStatus"] in ("ok", "warn", "fail")
    ids = {entry["CheckId"] for entry in document["Content"]}
    assert {"identity", "agent.installed", "agent.config"} <= ids
    assert mode_line == "644 root"
    # Nothing else for the agent to upload (the temporary file is gone, *.json only).
    assert [name for name in listing if name not in (".", "..")] == ["SSMDiag.json"]
