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

# The AWS SDK's own partitions (aws-sdk-go aws/endpoints/defaults.go, vendored in the agent:
# awsPartition :116-124, awscn :35305, awsusgov :37530, awsiso :44268, awsisob :45572,
# awsisoe :46410, awsisof :46444), used only when the agent hands the SDK no endpoint.
# A region no regex matches falls back to the first partition (v3model.go:64-68).
SDK_PARTITIONS: tuple[tuple[str, str], ...] = (
    (r"(us|eu|ap|sa|ca|me|af|il)\-\w+\-\d+", "amazonaws.com"),
    (r"cn\-\w+\-\d+", "amazonaws.com.cn"),
    (r"us\-gov\-\w+\-\d+", "amazonaws.com"),
    (r"us\-iso\-\w+\-\d+", "c2s.ic.gov"),
    (r"us\-isob\-\w+\-\d+", "sc2s.sgov.gov"),
    (r"eu\-isoe\-\w+\-\d+", "cloud.adc-e.uk"),
    (r"us\-isof\-\w+\-\d+", "csp.hci.ic.gov"),
)

_REGION_RE = re.compile(r"[A-Za-z0-9-]+\Z")  # \Z: "us-east-1\n" is not a region
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


def sdk_dns_suffix(region: str) -> str:
    """The DNS suffix the AWS SDK's resolver gives a region (see SDK_PARTITIONS)."""
    for pattern, suffix in SDK_PARTITIONS:
        if re.fullmatch(pattern, region, flags=re.ASCII):
            return suffix
    return SDK_PARTITIONS[0][1]
