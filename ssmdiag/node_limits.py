"""The node's limits, as data: free space and inodes where the agent writes, what counts as
a crash loop, and how far the clock may drift. The checks (node.disk, agent.restarts,
node.time_sync) read these; nothing else decides the thresholds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class Floor:
    """A minimum of free units (bytes or inodes) on one filesystem.

    The floor is the *smaller* of an absolute amount and a share of the filesystem, so a
    large volume is judged by the absolute amount (1% of 2 TB is 20 GB, far more than the
    agent ever needs) and a small one by its share (50 MB is half of a 100 MB /var/log).
    A completely full filesystem is always below its floor.
    """

    amount: int
    share: float

    def of(self, total: int) -> int:
        return max(1, min(self.amount, math.ceil(total * self.share)))


# Space: the agent writes each session's and command's state (its orchestration
# directories), its logs, downloads and updates; on a full filesystem it can neither
# start a session nor log why.
SPACE_FAIL = Floor(50 * MIB, 0.01)
SPACE_WARN = Floor(200 * MIB, 0.05)

# Inodes: every session and command creates files and directories; a filesystem out of
# inodes fails those writes with "No space left on device" however much space is free.
INODES_FAIL = Floor(500, 0.01)
INODES_WARN = Floor(5000, 0.05)

# A crash loop: the service manager restarted the agent at least this many times and the
# last start is this recent (or the manager is waiting to start it again right now).
# The agent's own unit restarts it 90 s after every exit (Restart=always, RestartSec=90,
# packaging/linux/amazon-ssm-agent.service:16-18), so a loop shows about 6 starts in
# 10 minutes.
CRASH_LOOP_RESTARTS = 3
CRASH_LOOP_WINDOW_S = 600

# SigV4 refuses requests signed more than 5 minutes away from AWS's clock (clock.skew
# measures the offset itself; node.time_sync says whether anything keeps it small).
SIGV4_CLOCK_LIMIT_S = 300
