"""Identity from the agent's own files (no network: IMDS is disabled in every test).

The vault is written here in the agent's format, as `agent-register` (the agent's own
code) leaves it: Vault/Manifest maps RegistrationKey to Vault/Store/RegistrationKey, a
plain JSON instanceInfo. tests/test_real_agent_identity.py holds the same rules against
files the real agent wrote.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from tests.conftest import require_root, run_cli

KEY = "-----BEGIN RSA PRIVATE KEY-----PRIVATE-KEY-MATERIAL-----END RSA PRIVATE KEY-----"
MI_VAULT = "mi-0123456789abcdef0"
MI_FILE = "mi-0fedcba98765432100"


def write_vault(
    data: Path, instance_id: str, region: str, private_key: str = KEY, raw: Optional[str] = None
) -> Path:
    store = data / "Vault" / "Store" / "RegistrationKey"
    store.parent.mkdir(parents=True, exist_ok=True)
    (data / "Vault" / "Manifest").write_text(json.dumps({"RegistrationKey": str(store)}))
    info = {
        "instanceID": instance_id,
        "region": region,
        "instanceType": "",
        "availabilityZone": "",
        "privateKey": private_key,
        "publicKey": "",
        "privateKeyType": "Rsa" if private_key else "",
        "privateKeyCreatedDate": "2024-01-01 00:00:00 +0000 UTC",
    }
    store.write_text(raw if raw is not None else json.dumps(info))
    return store


def write_registration_file(data: Path, instance_id: str, region: str) -> Path:
    data.mkdir(parents=True, exist_ok=True)
    path = data / "registration"
    path.write_text(json.dumps({"ManagedInstanceID": instance_id, "Region": region}))
    return path


def identity_report(
    tmp_path: Path,
    write_config: Callable[[str], Path],
    agent: Path,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
) -> dict[str, dict[str, Any]]:
    config = write_config(
        f"[agent]\nbinary = '{agent}'\ndata_dir = '{tmp_path}/data'\n"
        f"config_file = '{tmp_path}/agent.json'\n"
    )
    result = run_cli(
        "check",
        "--format",
        "json",
        "--only",
        "identity",
        "identity.credentials",
        "--config",
        str(config),
        env=env,
        prefix=prefix,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "PRIVATE-KEY-MATERIAL" not in result.stdout + result.stderr
    return {c["id"]: c for c in json.loads(result.stdout)["checks"]}


def test_hybrid_identity_comes_from_the_vault_and_never_shows_the_key(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    write_vault(tmp_path / "data", MI_VAULT, "eu-central-1")
    checks = identity_report(tmp_path, write_config, fake_agent_factory("3.3.987.0"))
    identity = checks["identity"]
    assert identity["status"] == "ok"
    assert f"hybrid node {MI_VAULT} in eu-central-1" in identity["summary"]
    assert "the agent's vault" in identity["summary"]
    assert identity["details"]["region_source"] == "hybrid-vault"
    assert identity["details"]["identity_type"] == "OnPrem"
    assert checks["identity.credentials"]["status"] == "ok"
    assert "vault" in checks["identity.credentials"]["summary"]


def test_registration_file_without_vault_is_stale_and_not_the_identity(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    # The file alone (the agent never reads it): before, ssmdiag called this a hybrid node.
    registration = write_registration_file(tmp_path / "data", MI_FILE, "eu-west-1")
    agent = fake_agent_factory("3.3.987.0")
    checks = identity_report(tmp_path, write_config, agent)
    identity = checks["identity"]
    assert identity["status"] == "fail"  # no identity, so no region for the endpoints
    assert f"{registration} (hybrid node {MI_FILE} in eu-west-1) is stale" in identity["summary"]
    assert "does not start" in identity["summary"]
    assert identity["details"]["hybrid"] is False and identity["details"]["instance_id"] is None
    assert f"sudo rm {registration}" in identity["remediation"]
    assert "-register -code CODE -id ID -region eu-west-1" in identity["remediation"]
    # A region from elsewhere: still stale, a warning, and eu-west-1 is not taken from it.
    checks = identity_report(tmp_path, write_config, agent, env={"AWS_REGION": "ap-south-1"})
    identity = checks["identity"]
    assert identity["status"] == "warn" and "is stale" in identity["summary"]
    assert identity["details"]["region"] == "ap-south-1"


def test_cleared_vault_with_registration_file_left_behind(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    # What `amazon-ssm-agent -register -clear` leaves: empty values in the vault, the file kept.
    write_vault(tmp_path / "data", "", "", private_key="")
    write_registration_file(tmp_path / "data", MI_FILE, "eu-west-1")
    checks = identity_report(
        tmp_path, write_config, fake_agent_factory("3.3.987.0"), env={"AWS_REGION": "eu-west-1"}
    )
    identity = checks["identity"]
    assert identity["status"] == "warn"
    assert "is stale" in identity["summary"] and "-register -clear" in identity["summary"]
    assert identity["details"]["registration_conflict"] == "file-only"
    assert identity["details"]["vault"]["complete"] is False


def test_vault_and_file_disagree_the_vault_wins(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    write_vault(tmp_path / "data", MI_VAULT, "us-west-2")
    registration = write_registration_file(tmp_path / "data", MI_FILE, "eu-west-1")
    checks = identity_report(tmp_path, write_config, fake_agent_factory("3.3.987.0"))
    identity = checks["identity"]
    assert identity["status"] == "warn"
    assert (
        f"the agent uses the hybrid registration in its vault ({MI_VAULT} in us-west-2); "
        f"{registration} ({MI_FILE} in eu-west-1) is stale" in identity["summary"]
    )
    assert identity["details"]["region"] == "us-west-2"
    assert identity["details"]["instance_id"] == MI_VAULT
    assert f"sudo rm {registration}" in identity["remediation"]


def test_same_region_other_instance_is_also_a_disagreement_and_same_both_is_fine(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    agent = fake_agent_factory("3.3.987.0")
    write_vault(tmp_path / "data", MI_VAULT, "us-west-2")
    write_registration_file(tmp_path / "data", MI_FILE, "us-west-2")
    assert identity_report(tmp_path, write_config, agent)["identity"]["status"] == "warn"
    write_registration_file(tmp_path / "data", MI_VAULT, "us-west-2")
    identity = identity_report(tmp_path, write_config, agent)["identity"]
    assert identity["status"] == "ok" and identity["details"]["registration_conflict"] is None


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        ('{"instanceID": "mi-0123456789abcdef0", "region": 5, "privateKey": "k"}', "not a string"),
        ('{"instanceID": "mi-0123456789abcdef0", "region": "us-west-2"', "not valid JSON"),
    ],
)
def test_a_vault_entry_the_agent_cannot_decode_gives_it_no_hybrid_identity(
    tmp_path: Path,
    write_config: Callable[[str], Path],
    fake_agent_factory: Callable[..., Path],
    stored: str,
    why: str,
) -> None:
    write_vault(tmp_path / "data", "", "", raw=stored)
    identity = identity_report(
        tmp_path, write_config, fake_agent_factory("3.3.987.0"), env={"AWS_REGION": "us-west-2"}
    )["identity"]
    assert identity["details"]["hybrid"] is False and identity["details"]["instance_id"] is None
    assert any(why in p for p in identity["details"]["problems"])


def test_vault_field_names_match_case_insensitively_and_the_last_duplicate_wins(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    raw = (
        '{"InstanceId": "mi-0000000000000000a", "INSTANCEID": "mi-0123456789abcdef0", '
        '"Region": "ca-central-1", "PrivateKey": "' + KEY + '"}'
    )
    write_vault(tmp_path / "data", "", "", raw=raw)
    identity = identity_report(tmp_path, write_config, fake_agent_factory("3.3.987.0"))["identity"]
    assert identity["status"] == "ok"
    assert identity["details"]["instance_id"] == MI_VAULT
    assert identity["details"]["region"] == "ca-central-1"


def test_a_vault_registration_without_private_key_is_not_an_identity(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    # HasManagedInstancesCredentials needs the key, the region and the id.
    write_vault(tmp_path / "data", MI_VAULT, "us-west-2", private_key="")
    identity = identity_report(
        tmp_path, write_config, fake_agent_factory("3.3.987.0"), env={"AWS_REGION": "us-west-2"}
    )["identity"]
    assert identity["details"]["hybrid"] is False
    assert "no private key" in identity["details"]["candidates"]["OnPrem"]


def test_agent_region_is_not_an_identity_region(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    # Agent.Region only changes the SigV4 signing region (ssmdiag.endpoints handles it).
    agent = fake_agent_factory("3.3.987.0")
    (tmp_path / "agent.json").write_text(json.dumps({"Agent": {"Region": "sa-east-1"}}))
    checks = identity_report(tmp_path, write_config, agent, env={"AWS_REGION": "ap-south-1"})
    details = checks["identity"]["details"]
    assert details["region"] == "ap-south-1" and details["region_source"] == "environment"
    assert checks["identity"]["status"] == "warn"  # a region, but no instance id anywhere
    assert "does not start" in checks["identity"]["summary"]
    checks = identity_report(tmp_path, write_config, agent)
    assert checks["identity"]["status"] == "fail"  # sa-east-1 is no identity region


def test_consumption_order_custom_identity_first_and_the_vault_unused(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    write_vault(tmp_path / "data", MI_VAULT, "us-west-2")
    (tmp_path / "agent.json").write_text(
        json.dumps(
            {
                "Identity": {
                    "ConsumptionOrder": ["CustomIdentity", "OnPrem"],
                    "CustomIdentities": [
                        {"InstanceID": "", "Region": "eu-west-3"},  # skipped by the agent
                        {"InstanceID": "custom-node-1", "Region": "eu-north-1"},
                    ],
                }
            }
        )
    )
    checks = identity_report(tmp_path, write_config, fake_agent_factory("3.3.987.0"))
    identity = checks["identity"]
    assert identity["status"] == "ok"
    assert identity["details"]["identity_type"] == "CustomIdentity"
    assert identity["details"]["instance_id"] == "custom-node-1"
    assert identity["details"]["region"] == "eu-north-1"
    assert identity["details"]["consumption_order"] == ["CustomIdentity", "OnPrem"]
    assert f"{MI_VAULT} in its vault is not used" in identity["summary"]
    assert checks["identity.credentials"]["status"] == "ok"


def test_unknown_consumption_order_names_leave_the_default(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    write_vault(tmp_path / "data", MI_VAULT, "us-west-2")
    (tmp_path / "agent.json").write_text(
        json.dumps({"Identity": {"ConsumptionOrder": ["onprem", "Ec2"]}})  # case-sensitive
    )
    identity = identity_report(tmp_path, write_config, fake_agent_factory("3.3.987.0"))["identity"]
    assert identity["details"]["consumption_order"] == ["OnPrem", "EC2", "CustomIdentity"]
    assert identity["details"]["identity_type"] == "OnPrem"


def test_agent_not_restarted_since_the_registration_changed(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    write_vault(tmp_path / "data", MI_VAULT, "us-west-2")
    runtime = tmp_path / "data" / "runtimeconfig"
    runtime.mkdir(parents=True)
    (runtime / "identity_config.json").write_text(
        json.dumps({"SchemaVersion": "1.1", "InstanceId": MI_FILE, "IdentityType": "OnPrem"})
    )
    identity = identity_report(tmp_path, write_config, fake_agent_factory("3.3.987.0"))["identity"]
    assert identity["status"] == "warn"
    assert f"recorded identity OnPrem {MI_FILE} at its last start" in identity["summary"]
    assert "systemctl restart amazon-ssm-agent" in identity["remediation"]


def test_malformed_runtime_identity_is_reported_not_crashed(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    runtime = tmp_path / "data" / "runtimeconfig"
    runtime.mkdir(parents=True)
    (runtime / "identity_config.json").write_text("{not json")
    checks = identity_report(tmp_path, write_config, fake_agent_factory("3.3.987.0"))
    assert checks["identity"]["status"] == "fail"  # no region anywhere
    problems = checks["identity"]["details"]["problems"]
    assert any("identity_config.json: not valid JSON" in p for p in problems)


def test_without_the_right_to_read_the_vault_ssmdiag_says_so(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    """A real permission denial: the vault belongs to another user (mode 0700, as the
    agent hardens it) and ssmdiag runs without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH."""
    require_root("changes file owners and drops capabilities")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is missing")
    data = tmp_path / "data"
    write_vault(data, MI_VAULT, "us-west-2")
    registration = write_registration_file(data, MI_VAULT, "us-west-2")
    for path in [data / "Vault", *(data / "Vault").rglob("*")]:
        os.chown(path, 1, 1)
        path.chmod(0o700 if path.is_dir() else 0o600)
    agent = fake_agent_factory("3.3.987.0")
    prefix = (setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--")
    identity = identity_report(tmp_path, write_config, agent, prefix=prefix)["identity"]
    assert identity["status"] == "warn"
    assert "only root can read" in identity["summary"] and str(registration) in identity["summary"]
    assert "sudo ssmdiag check" in identity["remediation"]
    assert identity["details"]["verified"] is False
    assert identity["details"]["instance_id"] == MI_VAULT  # shown from the file, unverified
    assert any("permission denied" in p for p in identity["details"]["problems"])
    # Without the registration file either: a note only, and the next identity is tried.
    registration.unlink()
    identity = identity_report(
        tmp_path, write_config, agent, prefix=prefix, env={"AWS_REGION": "us-west-2"}
    )["identity"]
    assert identity["details"]["candidates"]["OnPrem"].startswith("unknown")
    assert any("only root can read" in p for p in identity["details"]["problems"])


def test_running_on_a_cleared_registration_until_the_next_restart(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    # The agent took OnPrem at its start; the vault was cleared since, and nothing else
    # gives it an identity: it keeps running as before, and will not start again.
    write_vault(tmp_path / "data", "", "", private_key="")
    write_registration_file(tmp_path / "data", MI_VAULT, "us-west-2")
    runtime = tmp_path / "data" / "runtimeconfig"
    runtime.mkdir(parents=True)
    (runtime / "identity_config.json").write_text(
        json.dumps({"SchemaVersion": "1.1", "InstanceId": MI_VAULT, "IdentityType": "OnPrem"})
    )
    identity = identity_report(tmp_path, write_config, fake_agent_factory("3.3.987.0"))["identity"]
    assert identity["status"] == "fail"  # the region is not taken from the stale file
    assert "is stale" in identity["summary"]
    assert "would find no identity now" in identity["summary"]
    assert identity["details"]["instance_id"] == MI_VAULT
    assert identity["details"]["instance_id_source"] == "runtime-identity"
