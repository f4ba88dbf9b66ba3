"""`ssm-cli get-diagnostics` beside `ssmdiag check`, measured on the same throwaway nodes.

The README compares ssmdiag with AWS's own `ssm-cli get-diagnostics`; this table is the
measurement behind that comparison. Each row is one situation a user may be in; on one
throwaway node (`../shared/real-agent/harness/node.sh`: the real agent 3.3.1142.0 and its
`ssm-cli`, built from the public source, an EC2 identity from a fake IMDS with an instance
profile, loopback only so every AWS endpoint fails DNS) both tools run one after the other,
and the row says what each of them reports and how each exits.

Where a row relies on how ssm-cli works, the comment cites the agent's source (tag
3.3.1142.0, github.com/aws/amazon-ssm-agent). Rows that share a node share one run: each
node costs one ssm-cli run (about 5 s of its own timeouts), so the module takes ~50 s.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from tests.lab.real_agent import AGENT_VERSION, SSMDIAG, node_run, require_real_agent

pytestmark = pytest.mark.root

REGION = "us-east-1"
INSTANCE_ID = "i-0123456789abcdef0"  # node_run's default fake IMDS instance
VPCE_SSM = "vpce-0abc.ssm.us-east-1.vpce.amazonaws.com"
PROXY = "http://127.0.0.1:3128"  # nothing listens there: a proxy that is down

# Every check ssm-cli 3.3.1142.0 runs on Linux, by name (agent/cli/diagnostics/*.go, each
# registered in its init(); the sysprep check is Windows-only). Asserting the exact set on
# every row is what proves "ssm-cli has no ssm-user / clock / ... check".
SSM_CLI_CHECKS = frozenset(
    {
        "EC2 IMDS",  # metadata_check.go:39
        "Hybrid instance registration",  # onprem_check.go
        *(
            f"Connectivity to {s} endpoint"  # connectivity_check.go:44, 269-284
            for s in ("ssm", "ec2messages", "ssmmessages", "s3", "kms", "logs", "monitoring")
        ),
        "AWS Credentials",  # credentials_check.go:29
        "Agent service",  # service_check.go:26
        "Proxy configuration",  # proxy_check.go:25
        "SSM Agent version",  # version_check.go:35
    }
)

# ssmdiag's documented exit codes (README "Exit codes"): the worst status decides.
EXIT_FOR_STATUS = {"ok": 0, "warn": 1, "fail": 2, "unknown": 3}
SEVERITY = {"ok": 0, "skip": 0, "error": 1, "warn": 2, "fail": 3}


def _dns_failure(host: str) -> str:
    """ssm-cli's Note when a plain dial cannot resolve HOST (connectivity_check.go:216-224)."""
    return rf"^{re.escape(host)} is not reachable: dial tcp: lookup {re.escape(host)}"


@dataclass(frozen=True)
class Node:
    """One throwaway node; both tools run on it, ssm-cli once and ssmdiag once per --only set."""

    config: Optional[dict[str, Any]] = None  # /etc/amazon/ssm/amazon-ssm-agent.json
    start_agent: bool = False
    agent_env: str = ""  # the running agent's environment (LAB_AGENT_ENV)
    prep: str = ""  # shell run as root on the node before either tool


OLD_AGENT = """
cat > /usr/bin/amazon-ssm-agent <<'EOF'
#!/bin/sh
[ "$1" = -version ] && { echo "SSM Agent version: 2.3.0.0"; exit 0; }
exit 1
EOF
chmod 0755 /usr/bin/amazon-ssm-agent
"""
# -M: no home directory (/home is not an overlay on the node); the rule is the agent's own.
SSM_USER = """
useradd -M -s /bin/bash ssm-user
mkdir -p /etc/sudoers.d
echo 'ssm-user ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/ssm-agent-users
"""

NODES = {
    "ec2": Node(),
    "ssm-override": Node(config={"Ssm": {"Endpoint": f"https://{VPCE_SSM}"}}),
    "mgs-no-scheme": Node(config={"Mgs": {"Endpoint": "ssmmessages.example.internal:8443"}}),
    "agent-proxy": Node(
        start_agent=True, agent_env=f"https_proxy={PROXY} no_proxy=169.254.169.254,.amazonaws.com"
    ),
    "agent-proxy-upper": Node(
        start_agent=True, agent_env=f"HTTPS_PROXY={PROXY} NO_PROXY=169.254.169.254"
    ),
    "ssm-user": Node(prep=SSM_USER),
    "old-agent": Node(prep=OLD_AGENT),
    "agent-running": Node(start_agent=True),
}


@dataclass(frozen=True)
class Row:
    node: str
    # ssm-cli: Check name -> (Status, regex searched in its Note)
    ssm_cli: dict[str, tuple[str, str]]
    # ssmdiag: check id -> (status, regex searched in summary [+ remediation])
    ssmdiag: dict[str, tuple[str, str]]
    ssmdiag_rc: int
    ssmdiag_details: dict[str, dict[str, Any]] = field(default_factory=dict)
    # regexes that no ssm-cli Check or Note may match (what ssm-cli never looks at)
    ssm_cli_never: tuple[str, ...] = ()
    # `ssmdiag check --only ...`; () is the full check
    only: tuple[str, ...] = ()
    # does ssm-cli's `--output json` stdout parse as JSON as it is?
    ssm_cli_pure_json: bool = True


ROWS = [
    # 1. An EC2 node with an instance profile, but no network. Both see IMDS; ssm-cli
    # fails every endpoint and still exits 0; ssmdiag fails them naming DNS and exits 2.
    pytest.param(
        Row(
            node="ec2",
            ssm_cli={
                "EC2 IMDS": ("Success", rf"instance id {INSTANCE_ID} in region {REGION}"),
                "Connectivity to ssm endpoint": (
                    "Failed",
                    _dns_failure(f"ssm.{REGION}.amazonaws.com"),
                ),
                "Connectivity to ec2messages endpoint": (
                    "Failed",
                    _dns_failure(f"ec2messages.{REGION}.amazonaws.com"),
                ),
                "Connectivity to ssmmessages endpoint": (
                    "Failed",
                    _dns_failure(f"ssmmessages.{REGION}.amazonaws.com"),
                ),
                # It calls STS to prove the credentials (credentials_check.go:69-94).
                "AWS Credentials": ("Failed", r"^(STS call timed out|Failed call sts endpoint)"),
                # It asks systemctl; no "running" is a failure (service_check_unix.go:81-105).
                "Agent service": ("Failed", r"systemctl"),
                "SSM Agent version": (
                    "Success",
                    rf"^SSM Agent version is {re.escape(AGENT_VERSION)}$",
                ),
            },
            ssmdiag={
                "identity": ("ok", rf"EC2 instance {INSTANCE_ID} in {REGION} \(region from imds\)"),
                "identity.credentials": ("ok", r"instance profile arn:aws:iam::123456789012:"),
                "agent.service": ("fail", r"not running"),
                "endpoint.ssm": ("fail", rf"DNS lookup of ssm\.{REGION}\.amazonaws\.com"),
                "endpoint.ec2messages": ("fail", rf"DNS lookup of ec2messages\.{REGION}\."),
                "endpoint.ssmmessages": ("fail", rf"DNS lookup of ssmmessages\.{REGION}\."),
            },
            ssmdiag_details={
                "identity": {"region_source": "imds", "region": REGION},
                "endpoint.ssm": {"failure": re.compile(r"^dns_"), "source": "default"},
            },
            ssmdiag_rc=2,
        ),
        id="1-ec2-no-network",
    ),
    # 2. An interface VPC endpoint set in the agent's config. The agent talks to it;
    # ssm-cli builds "service.region.domain" from the identity only (endpoint.go:93-121
    # never reads Ssm.Endpoint; cliutil.go:119 even starts from appconfig.DefaultConfig()),
    # and prints the config loader's line (appconfig.go:50) on stdout before its JSON.
    pytest.param(
        Row(
            node="ssm-override",
            ssm_cli={
                "Connectivity to ssm endpoint": (
                    "Failed",
                    _dns_failure(f"ssm.{REGION}.amazonaws.com"),
                ),
            },
            ssm_cli_never=(re.escape(VPCE_SSM),),
            ssm_cli_pure_json=False,
            ssmdiag={
                "agent.config": ("ok", r"Ssm\.Endpoint"),
                "endpoint.ssm": ("fail", rf"DNS lookup of {re.escape(VPCE_SSM)}"),
            },
            ssmdiag_details={
                "endpoint.ssm": {
                    "host": VPCE_SSM,
                    "url": f"https://{VPCE_SSM}/",
                    "source": "agent-config",
                }
            },
            ssmdiag_rc=2,
        ),
        id="2-ssm-endpoint-override",
    ),
    # 3. Mgs.Endpoint without a scheme: Go's url.Parse gives no host, so the agent has no
    # ssmmessages endpoint at all (shared/real-agent README). ssm-cli does not read it and
    # probes the default host; ssmdiag must fail saying so and show the right spelling.
    pytest.param(
        Row(
            node="mgs-no-scheme",
            ssm_cli={
                "Connectivity to ssmmessages endpoint": (
                    "Failed",
                    _dns_failure(f"ssmmessages.{REGION}.amazonaws.com"),
                ),
            },
            ssm_cli_never=(r"example\.internal",),
            ssm_cli_pure_json=False,
            ssmdiag={
                # says so, names the value, and shows a spelling with a scheme
                "endpoint.ssmmessages": (
                    "fail",
                    r"(?s)^(?=.*no ssmmessages endpoint)"
                    r"(?=.*ssmmessages\.example\.internal:8443)(?=.*https://)",
                ),
            },
            ssmdiag_rc=2,
        ),
        id="3-mgs-endpoint-without-scheme",
    ),
    # 4. The agent runs with https_proxy and a no_proxy that exempts .amazonaws.com.
    # ssm-cli does read the agent's environment (/proc/PID/environ of /usr/bin/amazon-ssm-agent,
    # lowercase names only: diagnosticsutil_unix.go:42-80, proxyconfig/proxy.go:5-16; its own
    # environment has no proxy here), then dials every endpoint through the proxy whatever
    # no_proxy says (connectivity_check.go:248-263). The agent goes direct; so does ssmdiag.
    pytest.param(
        Row(
            node="agent-proxy",
            ssm_cli={
                "Proxy configuration": (
                    "Success",
                    # ssm-cli prints the variables in Go map order (random): both, any order.
                    rf"(?=.*https_proxy: {re.escape(PROXY)} )"
                    r"(?=.*no_proxy: 169\.254\.169\.254,\.amazonaws\.com)",
                ),
                "Connectivity to ssm endpoint": (
                    "Failed",
                    r"^ssm\.us-east-1\.amazonaws\.com is not reachable: "
                    r"dial tcp 127\.0\.0\.1:3128: connect: connection refused",
                ),
                "Connectivity to ssmmessages endpoint": ("Failed", r"dial tcp 127\.0\.0\.1:3128"),
            },
            ssmdiag={
                "network.proxy": ("ok", r"ssm via direct"),
                "endpoint.ssm": ("fail", r"DNS lookup of ssm\.us-east-1\.amazonaws\.com"),
            },
            ssmdiag_details={
                "network.proxy": {
                    "https_proxy": PROXY,
                    "no_proxy": "169.254.169.254,.amazonaws.com",
                    "per_endpoint": {
                        "ec2messages": "direct",
                        "ssm": "direct",
                        "ssmmessages": "direct",
                    },
                },
                "endpoint.ssm": {"proxy": None},
            },
            ssmdiag_rc=2,
        ),
        id="4-agent-proxy-with-no-proxy",
    ),
    # 4b. The agent runs with HTTPS_PROXY (upper case): the agent's Go HTTP clients use it
    # (http.ProxyFromEnvironment: session/controlchannel/controlchannel.go:204,
    # runcommand/mds/service.go:105). ssm-cli copies only lowercase names, so it sees no
    # proxy and dials direct; ssmdiag goes through the proxy and finds it refusing.
    pytest.param(
        Row(
            node="agent-proxy-upper",
            ssm_cli={
                "Proxy configuration": ("Skipped", r"^No proxy configuration detected$"),
                "Connectivity to ssm endpoint": (
                    "Failed",
                    _dns_failure(f"ssm.{REGION}.amazonaws.com"),
                ),
            },
            ssmdiag={
                "network.proxy": ("ok", rf"ssm via {re.escape(PROXY)}"),
                "endpoint.ssm": ("fail", r"proxy .*refused"),
            },
            ssmdiag_details={
                "network.proxy": {
                    "per_endpoint": {"ec2messages": PROXY, "ssm": PROXY, "ssmmessages": PROXY}
                },
                "endpoint.ssm": {"proxy": PROXY},
            },
            ssmdiag_rc=2,
        ),
        id="4b-agent-proxy-upper-case",
    ),
    # 5. ssm-user: ssm-cli has no such check (SSM_CLI_CHECKS); ssmdiag judges it by agent version.
    pytest.param(
        Row(
            node="ec2",
            ssm_cli={},
            ssm_cli_never=(r"ssm-user",),
            ssmdiag={"ssm_user": ("ok", r"does not exist yet; agent 3\.3\.1142\.0 creates it")},
            ssmdiag_details={"ssm_user": {"exists": False}},
            ssmdiag_rc=2,
        ),
        id="5a-no-ssm-user",
    ),
    pytest.param(
        Row(
            node="ssm-user",
            ssm_cli={},
            ssm_cli_never=(r"ssm-user",),
            ssmdiag={"ssm_user": ("ok", r"ssm-user exists \(uid \d+\)")},
            ssmdiag_details={"ssm_user": {"exists": True}},
            ssmdiag_rc=2,
        ),
        id="5b-ssm-user-exists",
    ),
    # 6. Clock: ssm-cli has no clock check. ssmdiag's clock.skew needs an endpoint's Date
    # header, and none answers on this node, so it skips (saying why).
    pytest.param(
        Row(
            node="ec2",
            ssm_cli={},
            ssm_cli_never=(r"\b(clock|skew|ntp|chrony|timesync)\b",),
            ssmdiag={"clock.skew": ("skip", r"no endpoint answered")},
            ssmdiag_rc=2,
        ),
        id="6-clock",
    ),
    # 7. An agent too old for Session Manager. ssm-cli runs `amazon-ssm-agent -version` and
    # reports whatever it prints, always Success (diagnosticsutil.go:83-101,
    # version_check.go:133-182: "latest version is only informative"). ssmdiag fails it,
    # and that failure alone makes it exit 2.
    pytest.param(
        Row(
            node="old-agent",
            ssm_cli={"SSM Agent version": ("Success", r"^SSM Agent version is 2\.3\.0\.0$")},
            ssmdiag={
                "agent.installed": ("ok", r"SSM Agent 2\.3\.0\.0 installed"),
                "feature.sessions": ("fail", r"need agent 2\.3\.68\.0; this node has 2\.3\.0\.0"),
                "ssm_user": ("skip", r"agent 2\.3\.0\.0 predates ssm-user"),
            },
            ssmdiag_rc=2,
        ),
        id="7a-outdated-agent",
    ),
    pytest.param(
        Row(
            node="old-agent",
            ssm_cli={"SSM Agent version": ("Success", r"^SSM Agent version is 2\.3\.0\.0$")},
            ssmdiag={"feature.sessions": ("fail", r"need agent 2\.3\.68\.0")},
            ssmdiag_rc=2,
            only=("feature.sessions",),
        ),
        id="7b-outdated-agent-alone-fails",
    ),
    # 8. Exit codes. ssm-cli exits 0 on every row (cli.go:30-68 returns non-zero only when a
    # command returns an error, and get-diagnostics never does for a failed check:
    # getdiagnostics.go:318-321). ssmdiag exits with its worst status on every row; these
    # show 0 and 1 (the full check is 2 on every node here: no endpoint is reachable).
    pytest.param(
        Row(
            node="agent-running",
            ssm_cli={"Agent service": ("Failed", r"systemctl")},
            ssmdiag={
                "identity": ("ok", rf"{INSTANCE_ID} in {REGION}"),
                "feature.sessions": ("ok", r"supported by agent 3\.3\.1142\.0"),
                "os.supported": ("ok", r"Linux is supported"),
            },
            ssmdiag_rc=0,
            only=("identity", "feature.sessions", "os.supported"),
        ),
        id="8a-exit-ok",
    ),
    pytest.param(
        Row(
            node="agent-running",
            ssm_cli={"Agent service": ("Failed", r"systemctl")},
            ssmdiag={
                # running, but nothing would restart it (no systemd in the throwaway node)
                "agent.service": ("warn", r"runs \(pid \d+\) but no service manager"),
                "feature.sessions": ("ok", r"supported"),
            },
            ssmdiag_rc=1,
            only=("agent.service", "feature.sessions"),
        ),
        id="8b-exit-warn",
    ),
]


@dataclass
class Measured:
    ssm_cli_stdout: str
    ssm_cli_rc: int
    ssm_cli: dict[str, tuple[str, str]]  # Check -> (Status, Note)
    ssmdiag: dict[tuple[str, ...], tuple[str, int]]  # --only ids -> (stdout, exit code)
    stderr: str


def _script(ssmdiag_runs: list[tuple[str, ...]]) -> str:
    """Both tools on one node, each output between markers, with its exit code."""
    lines = [
        # ssm-cli's own environment holds no proxy: whatever proxy it reports, it read
        # from the running agent.
        "unset https_proxy http_proxy no_proxy HTTPS_PROXY HTTP_PROXY NO_PROXY",
        "echo '@@BEGIN ssm-cli'",
        "ssm-cli get-diagnostics --output json",
        'rc=$?; echo; echo "@@END ssm-cli rc=$rc"',
    ]
    for i, only in enumerate(ssmdiag_runs):
        argv = [*SSMDIAG, "check", "--format", "json"]
        if only:
            argv += ["--only", *only]
        lines += [
            f"echo '@@BEGIN ssmdiag{i}'",
            shlex.join(argv),
            f'rc=$?; echo; echo "@@END ssmdiag{i} rc=$rc"',
        ]
    return "\n".join(lines)


def _section(stdout: str, name: str) -> tuple[str, int]:
    match = re.search(
        rf"^@@BEGIN {name}\n(.*?)\n?^@@END {name} rc=(\d+)$", stdout, re.DOTALL | re.MULTILINE
    )
    assert match, f"no {name} output on the node: {stdout[-2000:]!r}"
    return match.group(1), int(match.group(2))


def _ssm_cli_json(stdout: str) -> dict[str, Any]:
    """ssm-cli's JSON, after any log lines it printed first (appconfig.go:50)."""
    start = 0 if stdout.startswith("{") else stdout.index("\n{") + 1
    data: dict[str, Any] = json.loads(stdout[start:])
    return data


def _measure(node: Node, ssmdiag_runs: list[tuple[str, ...]], tmp_dir: Path) -> Measured:
    config = None
    if node.config is not None:
        config = tmp_dir / "amazon-ssm-agent.json"
        config.write_text(json.dumps(node.config))
    script = node.prep + "\n" + _script(ssmdiag_runs)
    proc = node_run(
        ["bash", "-c", script],
        config=config,
        fake_imds=True,
        imds_profile="role",
        start_agent=node.start_agent,
        agent_env=node.agent_env,
        agent_wait=1.5,
        timeout=60,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    cli_out, cli_rc = _section(proc.stdout, "ssm-cli")
    checks = _ssm_cli_json(cli_out)["DiagnosticsOutput"]
    return Measured(
        ssm_cli_stdout=cli_out,
        ssm_cli_rc=cli_rc,
        ssm_cli={c["Check"]: (c["Status"], c["Note"]) for c in checks},
        ssmdiag={only: _section(proc.stdout, f"ssmdiag{i}") for i, only in enumerate(ssmdiag_runs)},
        stderr=proc.stderr,
    )


@pytest.fixture(scope="module")
def measure(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Measured]:
    """One node run per node name, shared by the rows that use it."""
    require_real_agent()
    cache: dict[str, Measured] = {}

    def get(name: str) -> Measured:
        if name not in cache:
            extra = {p.values[0].only for p in ROWS if p.values[0].node == name} - {()}
            runs: list[tuple[str, ...]] = [(), *sorted(extra)]
            cache[name] = _measure(NODES[name], runs, tmp_path_factory.mktemp(name))
        return cache[name]

    return get


def _matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, re.Pattern):
        return isinstance(actual, str) and bool(expected.search(actual))
    return bool(expected == actual)


def _check_ssmdiag(
    check: dict[str, Any], status: str, pattern: str, details: dict[str, Any]
) -> None:
    text = check["summary"] + "\n" + (check.get("remediation") or "")
    assert check["status"] == status, check
    assert re.search(pattern, text, re.IGNORECASE), (pattern, check)
    for key, want in details.items():
        assert _matches(want, check["details"].get(key)), (key, want, check["details"])


@pytest.mark.parametrize("row", ROWS)
def test_ssm_cli_beside_ssmdiag(
    row: Row, measure: Callable[[str], Measured], validate_report: Callable[[dict[str, Any]], None]
) -> None:
    got = measure(row.node)
    where = f"\nssm-cli: {got.ssm_cli}\nstderr: {got.stderr[-1500:]}"

    # ssm-cli: exit 0 whatever it found, the same fixed set of checks, and the notes above.
    assert got.ssm_cli_rc == 0, where
    assert set(got.ssm_cli) == SSM_CLI_CHECKS, where
    for name, (status, pattern) in row.ssm_cli.items():
        assert got.ssm_cli[name][0] == status, (name, got.ssm_cli[name])
        assert re.search(pattern, got.ssm_cli[name][1]), (name, pattern, got.ssm_cli[name])
    for pattern in row.ssm_cli_never:
        for name, (_, note) in got.ssm_cli.items():
            assert not re.search(pattern, f"{name}\n{note}", re.IGNORECASE), (pattern, name, note)
    if row.ssm_cli_pure_json:
        json.loads(got.ssm_cli_stdout)
    else:
        with pytest.raises(json.JSONDecodeError):
            json.loads(got.ssm_cli_stdout)
        assert got.ssm_cli_stdout.startswith("Applying config override from "), got.ssm_cli_stdout

    # ssmdiag: stdout is only the report; the exit code is its worst status.
    stdout, rc = got.ssmdiag[row.only]
    report = json.loads(stdout)
    validate_report(report)
    worst = max((c["status"] for c in report["checks"]), key=SEVERITY.__getitem__)
    overall = {"skip": "ok", "error": "unknown"}.get(worst, worst)
    assert report["status"] == overall, report["status"]
    assert rc == EXIT_FOR_STATUS[report["status"]], (rc, report["status"])
    assert rc == row.ssmdiag_rc, (rc, [(c["id"], c["status"]) for c in report["checks"]])
    checks = {c["id"]: c for c in report["checks"]}
    if row.only:
        assert set(checks) == set(row.only), sorted(checks)
    for check_id, (status, pattern) in row.ssmdiag.items():
        assert check_id in checks, (check_id, sorted(checks))
        _check_ssmdiag(checks[check_id], status, pattern, row.ssmdiag_details.get(check_id, {}))
