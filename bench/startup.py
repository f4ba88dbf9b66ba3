"""Start-up cost of the commands that run on every boot and from cron.

Prints the median wall time of `ssmdiag version`, `ssmdiag features VERSION` and
`ssmdiag check` (on this machine, as it is) over a few runs, next to a bare
`python -c pass`, so the share that is ssmdiag's own is visible.
Run: .venv/bin/python bench/startup.py [runs]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

# Never reach out from a benchmark: no IMDS, and with no region no endpoint is probed.
ENV = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
    ENV.pop(name, None)

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "ssmdiag version": [sys.executable, "-m", "ssmdiag", "version"],
    "ssmdiag features 3.3.987.0": [sys.executable, "-m", "ssmdiag", "features", "3.3.987.0"],
    "ssmdiag check --format json": [sys.executable, "-m", "ssmdiag", "check", "--format", "json"],
}

print(f"{'command':32} {'median ms':>10} {'min ms':>8}  ({RUNS} runs)")
for name, argv in COMMANDS.items():
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, timeout=60, check=False, env=ENV)
        times.append((time.perf_counter() - started) * 1000)
    print(f"{name:32} {statistics.median(times):10.1f} {min(times):8.1f}")
