"""Test certificate authorities (trustme) written to PEM files.

The probe under test is pointed at ``LabCA.ca_pem`` as an extra CA bundle; a
second, untrusted CA ("Corp Intercept CA") plays a TLS-intercepting middlebox.
``bundle()`` writes several CAs into one PEM file (a node that trusts the lab CA and a
corporate inspection CA).
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import trustme

INTERCEPT_NAME = "Corp Intercept CA"
# Names the lab https server answers for by default: the SSM endpoints of two regions.
DEFAULT_HOSTNAMES = (
    *(
        f"{svc}.{region}.amazonaws.com"
        for region in ("us-east-1", "eu-west-1")
        for svc in ("ssm", "ec2messages", "ssmmessages")
    ),
    "localhost",
    "127.0.0.1",
    "::1",
)


class LabCA:
    """A trustme CA whose PEM lives in ``directory`` (a new temp dir by default)."""

    def __init__(self, directory: str | Path | None = None, name: str | None = None) -> None:
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="ssmdlab-ca-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name or "ssmdiag Lab Test CA"
        self.ca = trustme.CA(organization_name=self.name, organization_unit_name=self.name)
        self.ca_pem = self.dir / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        self._count = 0

    @classmethod
    def intercept(cls, directory: str | Path | None = None) -> LabCA:
        """An untrusted CA with the recognisable issuer name "Corp Intercept CA"."""
        return cls(directory, INTERCEPT_NAME)

    def issue(
        self,
        hostnames: Sequence[str] = DEFAULT_HOSTNAMES,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> tuple[Path, Path]:
        """Issue a leaf for ``hostnames`` (DNS names or IPs); return (chain_pem, key_pem).
        ``not_before``/``not_after`` (aware datetimes) make it not yet valid or expired."""
        self._count += 1
        leaf = self.ca.issue_cert(
            *hostnames, common_name=hostnames[0], not_before=not_before, not_after=not_after
        )
        chain, key = self.dir / f"leaf{self._count}.pem", self.dir / f"leaf{self._count}.key"
        chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        return chain, key

    def close(self) -> None:
        """Remove the temp dir if this CA created it."""
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LabCA:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LabCA({self.name!r}, {str(self.ca_pem)!r})"


def bundle(path: str | Path, *cas: LabCA) -> Path:
    """One PEM file trusting every CA in ``cas`` (for ``[network] ca_bundle``)."""
    target = Path(path)
    target.write_bytes(b"".join(ca.ca_pem.read_bytes() for ca in cas))
    return target
