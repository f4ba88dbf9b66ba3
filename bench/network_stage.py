"""Network stage wall time: concurrent probes against lab endpoints (root; uses tests/lab).

1. Three lab endpoints that each delay their answer by 300 ms: the stage's wall time
   against the slowest single probe (goal: at most 1.2x).
2. All three blackholed: the stage's wall time against the probe's connect timeout
   (goal: timeout + 0.5 s at most).
Everything runs inside a network namespace this script creates; nothing leaves it.
Run: sudo .venv/bin/python bench/network_stage.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.lab import LabCA, NetNS, ssm_endpoints, start_dns  # noqa: E402
from tests.lab.launcher import start_ssm_endpoints  # noqa: E402

MEASURE = """
import json, sys, time
from ssmdiag.endpoints import plan_endpoints
from ssmdiag.probe import ProbeSettings, probe, probe_all
from ssmdiag.proxy import ProxySettings
settings = ProbeSettings(connect_timeout=2.0, probe_timeout=3.0, ca_bundle=sys.argv[1])
plan = plan_endpoints("us-east-1", {})
none = ProxySettings()
singles = []
for endpoint in plan.endpoints:
    started = time.monotonic(); probe(endpoint, none, settings)
    singles.append(time.monotonic() - started)
started = time.monotonic(); results = probe_all(plan.endpoints, none, settings)
stage = time.monotonic() - started
print(json.dumps({"singles": singles, "stage": stage,
                  "failures": [r.failure for r in results.values()]}))
"""


def measure(ns: NetNS, ca: LabCA) -> dict[str, object]:
    result = ns.run([sys.executable, "-c", MEASURE, str(ca.ca_pem)], timeout=60, cwd=str(REPO))
    data: dict[str, object] = json.loads(result.stdout)
    return data


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ca = LabCA(Path(tmp))
        with NetNS() as ns:
            start_ssm_endpoints(ns, ca, address="198.18.0.10", delay=0.3)
            data = measure(ns, ca)
            slowest = max(data["singles"])  # type: ignore[type-var]
            print(
                f"delayed 300 ms: stage {data['stage']:.3f} s, slowest single probe "
                f"{slowest:.3f} s, ratio {data['stage'] / slowest:.2f} (goal <= 1.2); "  # type: ignore[operator]
                f"failures {data['failures']}"
            )
        with NetNS() as ns:
            hole = ns.blackhole("198.18.99.0/24")
            start_dns(ns, {name: [hole] for name in ssm_endpoints("us-east-1")})
            data = measure(ns, ca)
            print(
                f"blackholed: stage {data['stage']:.3f} s against a 2.0 s connect timeout "
                f"(goal <= 2.5 s); failures {data['failures']}"
            )


if __name__ == "__main__":
    main()
