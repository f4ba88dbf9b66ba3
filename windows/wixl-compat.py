"""Put into a wixl-built MSI what Debian 12's wixl (msitools 0.101) reads but drops.

    python3 windows/wixl-compat.py MSI PREPROCESSED.wxs [MORE.wxs ...]

The .wxs files are `wixl -E` output (preprocessed), so this sees exactly what wixl built.
wixl 0.101 accepts, but does not write into the tables:
  - Component/@Permanent="yes"       -> Component.Attributes bit 16 (Permanent)
  - Component/@NeverOverwrite="yes"  -> Component.Attributes bit 128 (NeverOverwrite)
  - Component/@Win64="yes"           -> Component.Attributes bit 256 (64bit; 0.101 sets it)
  - RegistryValue/@Type="expandable" -> the Registry.Value prefix "#%" (REG_EXPAND_SZ)
  - ServiceInstall/@Vital="yes"      -> ServiceInstall.ErrorControl bit 0x8000 (Vital: a
                                        failure to install the service fails the install)
WiX v3 (candle/light) writes all of these itself, and newer wixl releases write most of
them, so every fix is computed from the current tables and applied only where missing:
with a complete MSI this script changes nothing. Every RegistryValue of type expandable
needs an explicit Id (wixl otherwise invents one this script cannot match).
Changes go through msibuild's SQL (UPDATE), then the tables are read back and checked.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

WIX_NS = "{http://schemas.microsoft.com/wix/2006/wi}"
COMPONENT_BITS = {"Permanent": 16, "NeverOverwrite": 128, "Win64": 256}
SERVICE_VITAL = 0x8000
TIMEOUT = 60


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        sys.exit(f"wixl-compat: {name} not found (apt-get install msitools)")
    return path


def export(msi: Path, table: str) -> list[list[str]]:
    """Rows of `msiinfo export MSI TABLE` (IDT: three header lines, tab-separated rows)."""
    out = subprocess.run(
        [tool("msiinfo"), "export", str(msi), table],
        check=True,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    ).stdout
    return [line.split("\t") for line in out.splitlines()[3:] if line]


def sql_literal(value: str) -> str:
    if "'" in value:
        sys.exit(f"wixl-compat: cannot quote {value!r} for msibuild SQL")
    return f"'{value}'"


def update(table: str, column: str, value: str, ident: str) -> str:
    """UPDATE of one row by its key (the first column, named like the table)."""
    # Values come from our own .wxs and MSI; sql_literal refuses quotes in them.
    return f"UPDATE `{table}` SET `{column}` = {value} WHERE `{table}` = {sql_literal(ident)}"  # noqa: S608


class Wanted:
    """What the .wxs asks for: component id -> attribute bits, expandable registry value
    ids, vital ServiceInstall ids."""

    def __init__(self) -> None:
        self.bits: dict[str, int] = {}
        self.expandable: set[str] = set()
        self.vital: set[str] = set()


def wanted(sources: list[Path]) -> Wanted:
    want = Wanted()
    for source in sources:
        root = ET.parse(source).getroot()  # noqa: S314 (our own .wxs, via wixl -E)
        for comp in root.iter(f"{WIX_NS}Component"):
            need = 0
            for attr, bit in COMPONENT_BITS.items():
                if comp.get(attr, "no").lower() == "yes":
                    need |= bit
            if need:
                want.bits[comp.get("Id", "")] = need
        for value in root.iter(f"{WIX_NS}RegistryValue"):
            if value.get("Type") == "expandable":
                ident = value.get("Id")
                if not ident:
                    sys.exit("wixl-compat: a RegistryValue of Type expandable needs an Id")
                want.expandable.add(ident)
        for service in root.iter(f"{WIX_NS}ServiceInstall"):
            if service.get("Vital", "no").lower() == "yes":
                ident = service.get("Id")
                if not ident:
                    sys.exit("wixl-compat: a vital ServiceInstall needs an Id")
                want.vital.add(ident)
    return want


def queries(msi: Path, want: Wanted) -> list[str]:
    found: list[str] = []
    components = {row[0]: int(row[3]) for row in export(msi, "Component")}
    for comp, need in sorted(want.bits.items()):
        if comp not in components:
            sys.exit(f"wixl-compat: component {comp} is not in the MSI")
        have = components[comp]
        if have & need != need:
            found.append(update("Component", "Attributes", str(have | need), comp))
    registry = {row[0]: row[4] for row in export(msi, "Registry")}
    for ident in sorted(want.expandable):
        if ident not in registry:
            sys.exit(f"wixl-compat: registry value {ident} is not in the MSI")
        value = registry[ident]
        if not value.startswith("#%"):
            found.append(update("Registry", "Value", sql_literal("#%" + value), ident))
    services = {row[0]: int(row[5]) for row in export(msi, "ServiceInstall")}
    for ident in sorted(want.vital):
        if ident not in services:
            sys.exit(f"wixl-compat: service {ident} is not in the MSI")
        have = services[ident]
        if not have & SERVICE_VITAL:
            found.append(update("ServiceInstall", "ErrorControl", str(have | SERVICE_VITAL), ident))
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.exit(__doc__)
    msi = Path(argv[0])
    want = wanted([Path(p) for p in argv[1:]])
    for query in queries(msi, want):
        print(f"wixl-compat: {query}", file=sys.stderr)
        subprocess.run([tool("msibuild"), str(msi), "-q", query], check=True, timeout=TIMEOUT)
    left = queries(msi, want)
    if left:
        sys.exit(f"wixl-compat: still missing after the update: {left}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
