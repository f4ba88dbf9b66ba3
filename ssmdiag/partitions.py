"""AWS partitions as the agent sees them: a region's DNS suffix, and what a region may look like.

Data, in one place (ssm-agent-on-the-node.md, checked against botocore's endpoint data
by the tests).
"""

from __future__ import annotations

import re

# Longest prefix first, so us-isob- is not taken for us-iso-.
DNS_SUFFIX_BY_REGION_PREFIX: tuple[tuple[str, str], ...] = (
    ("us-isob-", "sc2s.sgov.gov"),
    ("us-isof-", "csp.hci.ic.gov"),
    ("us-iso-", "c2s.ic.gov"),
    ("eu-isoe-", "cloud.adc-e.uk"),
    ("eusc-de-", "amazonaws.eu"),
    ("cn-", "amazonaws.com.cn"),
)
DEFAULT_DNS_SUFFIX = "amazonaws.com"  # aws partition and GovCloud (us-gov-)

SERVICES = ("ec2messages", "ssm", "ssmmessages")

_REGION_RE = re.compile(r"^[A-Za-z0-9-]+$")
MAX_REGION_LENGTH = 100


class RegionError(ValueError):
    pass


def validate_region(region: str) -> str:
    if not isinstance(region, str) or not _REGION_RE.match(region):
        raise RegionError(
            f"invalid region {region!r}: only letters, digits and '-' are allowed "
            "(for example us-east-1)"
        )
    if len(region) > MAX_REGION_LENGTH:
        raise RegionError(f"invalid region: longer than {MAX_REGION_LENGTH} characters")
    return region


def dns_suffix(region: str) -> str:
    for prefix, suffix in DNS_SUFFIX_BY_REGION_PREFIX:
        if region.startswith(prefix):
            return suffix
    return DEFAULT_DNS_SUFFIX
