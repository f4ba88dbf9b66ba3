"""A real systemd-journald of the test's own, in a private mount namespace.

Run as ``unshare --mount --propagation private python -m tests.lab.journal OUT -- CMD...``:
tmpfs goes over /run/systemd, /run/log and /var/log/journal (so the host's
journal, if any, is neither seen nor written), journald starts and creates its
own sockets, CMD runs against it, and afterwards the whole journal is exported
with ``journalctl -D ... -o json`` into OUT/journal.json. Optionally journald
is killed part-way (``--kill-journald-after S``) and CMD is sent SIGTERM after
``--stop-after S``. Everything is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

JOURNALD = next(
    (
        p
        for p in ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald")
        if os.path.exists(p)
    ),
    "systemd-journald",
)
SOCKET = "/run/systemd/journal/socket"


def _mount_tmpfs(path: str) -> None:
    os.makedirs(path, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", path], check=True, timeout=10
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--kill-journald-after", type=float)
    parser.add_argument("--stop-after", type=float)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--no-journald", action="store_true", help="private /run, no journal")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    out = Path(args.out)
    for path in ("/run/systemd", "/run/log", "/var/log/journal"):
        _mount_tmpfs(path)
    journald = None
    if not args.no_journald:
        journald = subprocess.Popen(
            [JOURNALD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not os.path.exists(SOCKET) and time.monotonic() < deadline:
            time.sleep(0.05)
    result: dict[str, object] = {"journal_socket": os.path.exists(SOCKET)}
    try:
        with open(out / "stdout.txt", "w") as stdout, open(out / "stderr.txt", "w") as stderr:
            proc = subprocess.Popen(command, stdout=stdout, stderr=stderr)
            started = time.monotonic()
            killed_journald = False
            while proc.poll() is None and time.monotonic() - started < args.timeout:
                elapsed = time.monotonic() - started
                due = args.kill_journald_after and elapsed >= args.kill_journald_after
                if journald and due and not killed_journald:
                    journald.kill()
                    journald.wait(5)
                    killed_journald = True
                if args.stop_after and elapsed >= args.stop_after:
                    proc.send_signal(signal.SIGTERM)
                    break
                time.sleep(0.05)
            try:
                result["returncode"] = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                result["returncode"] = "killed: did not finish in time"
        time.sleep(0.2)  # let journald write what it received
        exported = subprocess.run(
            ["journalctl", "-D", "/run/log/journal", "-o", "json", "--no-pager"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        (out / "journal.json").write_text(exported.stdout)
        result["journalctl_stderr"] = exported.stderr[-2000:]
    finally:
        if journald and journald.poll() is None:
            journald.kill()
            journald.wait(5)
        (out / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
