"""Fixtures shared by the adversarial tests: `peers` starts hostile servers on loopback."""

from tests.adversarial.test_hostile_peers import peers  # noqa: F401
