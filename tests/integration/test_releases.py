"""Agent releases through the appliance's TUF repository, verified by the agent with
python-tuf's ngclient; and each attack of python-tuf's own ngclient test catalogue,
played by a man in the middle on loopback, refused with a clear reason and nothing
replaced."""

from __future__ import annotations

import hashlib
import json
import stat
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from nacl.signing import SigningKey
from tuf.api.metadata import Metadata

from agent.releases import ReleaseCheckFailed, Releases
from agent.state import TRUST_FILE, read_json
from agent.trust import TrustState
from appliance.services.keys import open_key_service
from appliance.services.releases import ReleaseRepository, RoleSigner
from appliance.signers import FileSigner, KeyEncryptionKey
from appliance.store.database import Database
from kernel.clock import utc_now
from tests.integration.conftest import Fleet
from tests.man_in_the_middle import Middle
from tests.support import key_file_for, run_async, run_cli

ARTIFACT = b"redflag-agent release payload " * 40


# --- helpers --------------------------------------------------------------------------


def publish(fleet: Fleet, tmp_path: Path, version: str, content: bytes = ARTIFACT) -> str:
    artifact = tmp_path / f"agent-{version}.tar.gz"
    artifact.write_bytes(content)
    result = run_cli(
        "release",
        "publish",
        str(artifact),
        "--version",
        version,
        "--platform",
        "linux-x86_64",
        "--json",
        "--data-dir",
        str(fleet.appliance.data_dir),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["target_path"]


def enrolled_releases(fleet: Fleet, server: str, **options: Any) -> Releases:
    """A registered agent's release checks, its trusted root adopted from the appliance."""
    state_dir = fleet.enrol()
    trust = TrustState.from_json(read_json(state_dir, TRUST_FILE) or {})
    releases = Releases(state_dir, server, **options)
    bootstrap = httpx.get(f"{fleet.appliance.url}/api/v1/releases/bootstrap").json()
    releases.adopt_root(bootstrap, trust)
    return releases


def with_repository(fleet: Fleet, work: Callable[[ReleaseRepository], Any], **options: Any) -> Any:
    """Our own release service on the appliance's database, e.g. with a clock of the
    past: what a frozen appliance would have signed."""

    async def run() -> Any:
        db = await Database.open(fleet.appliance.data_dir / "redflag.db")
        try:
            keys = await open_key_service(
                db, key_file_for(fleet.appliance.data_dir), initialise=False
            )
            repository = ReleaseRepository(
                db, keys.kek, fleet.appliance.data_dir / "releases", **options
            )
            return await work(repository)
        finally:
            await db.close()

    return run_async(run())


def resigned(body: bytes, bump: int = 1) -> bytes:
    """The same metadata with a higher version, signed by a key the root does not list."""
    metadata = Metadata.from_bytes(body)
    metadata.signed.version += bump
    metadata.signatures.clear()
    metadata.sign(RoleSigner(FileSigner(SigningKey.generate())))
    return metadata.to_bytes()


def downloads(releases: Releases) -> list[Path]:
    directory = releases.dir / "downloads"
    return sorted(directory.iterdir()) if directory.exists() else []


# --- what works -----------------------------------------------------------------------


def test_a_published_release_reaches_the_agent_verified(fleet: Fleet, tmp_path: Path) -> None:
    path = publish(fleet, tmp_path, "1.4.0")
    releases = enrolled_releases(fleet, fleet.appliance.url)

    release = releases.fetch(path)

    assert release.file.read_bytes() == ARTIFACT
    assert release.sha256 == hashlib.sha256(ARTIFACT).hexdigest()
    assert (release.version, release.channel, release.platform) == (
        "1.4.0",
        "stable",
        "linux-x86_64",
    )
    # The trusted root is kept read-only, apart from ngclient's writable cache.
    mode = stat.S_IMODE(releases.trusted_root_path.stat().st_mode)
    assert mode == 0o444


def test_release_metadata_and_files_are_public_but_unknown_names_are_404(
    fleet: Fleet, tmp_path: Path
) -> None:
    publish(fleet, tmp_path, "1.4.0")
    with httpx.Client(base_url=fleet.appliance.url) as client:
        assert client.get("/tuf/metadata/timestamp.json").status_code == 200
        assert client.get("/tuf/metadata/1.root.json").status_code == 200
        for name in ("root.json", "0.root.json", "9.root.json", "x.json", "..%2Fredflag.db"):
            answer = client.get(f"/tuf/metadata/{name}")
            assert answer.status_code == 404, name
            assert answer.json()["ok"] is False
        assert client.get("/tuf/targets/agent/stable/linux-x86_64/nothing").status_code == 404


def test_withdrawn_release_is_no_longer_offered(fleet: Fleet, tmp_path: Path) -> None:
    path = publish(fleet, tmp_path, "1.4.0")
    release_id = fleet.api("GET", "/releases").json()["releases"][0]["id"]
    assert fleet.api("POST", f"/releases/{release_id}/withdraw").status_code == 200
    releases = enrolled_releases(fleet, fleet.appliance.url)

    with pytest.raises(ReleaseCheckFailed) as refused:
        releases.fetch(path)
    assert refused.value.reason == "not_listed"


def test_a_version_is_published_once_per_channel_and_platform(fleet: Fleet, tmp_path: Path) -> None:
    publish(fleet, tmp_path, "1.4.0")
    again = tmp_path / "again.tar.gz"
    again.write_bytes(b"other bytes")
    data_dir = str(fleet.appliance.data_dir)
    result = run_cli(
        "release", "publish", str(again), "--version", "1.4.0",
        "--platform", "linux-x86_64", "--data-dir", data_dir,
    )  # fmt: skip
    assert result.returncode != 0
    assert "already published" in result.stderr
    bad = run_cli("release", "publish", str(again), "--version", "x", "--data-dir", data_dir)
    assert bad.returncode != 0
    assert "version 'x' is not valid" in bad.stderr


def test_key_rotation_moves_agents_to_the_new_keys(fleet: Fleet, tmp_path: Path) -> None:
    releases = enrolled_releases(fleet, fleet.appliance.url)
    path = publish(fleet, tmp_path, "1.4.0")
    releases.fetch(path)
    for role in ("timestamp", "root"):
        result = run_cli("release", "rotate-key", role, "--data-dir", str(fleet.appliance.data_dir))
        assert result.returncode == 0, result.stderr
    newer = publish(fleet, tmp_path, "1.5.0", b"newer release")

    assert releases.fetch(newer).file.read_bytes() == b"newer release"
    assert (releases.dir / "metadata" / "root_history" / "3.root.json").exists()


def test_the_scheduler_renews_metadata_before_it_expires(fleet: Fleet) -> None:
    before = fleet.api("GET", "/releases").json()["roles"]
    # Lifetimes so short that everything is due: what a long-running appliance sees.
    renewed = with_repository(
        fleet,
        lambda repo: repo.renew_expiring(),
        lifetimes={"timestamp": timedelta(days=400), "root": timedelta(days=900)},
    )
    after = {r["role"]: r for r in fleet.api("GET", "/releases").json()["roles"]}

    assert set(renewed) == {"timestamp", "root"}
    assert after["root"]["version"] == 2
    assert all(after[r["role"]]["version"] > r["version"] for r in before)


# --- attacks: each refused, nothing replaced --------------------------------------------


def test_tampered_artifact_of_the_same_length_is_refused(
    fleet: Fleet, middle: Middle, tmp_path: Path
) -> None:
    path = publish(fleet, tmp_path, "1.4.0")
    middle.rewrite["redflag-agent-1.4.0.tar.gz"] = lambda body: body[::-1]
    releases = enrolled_releases(fleet, middle.url)

    with pytest.raises(ReleaseCheckFailed) as refused:
        releases.fetch(path)

    assert refused.value.reason == "tampered"
    assert "nothing was changed" in str(refused.value)
    assert downloads(releases) == []


def test_tampered_metadata_is_refused(fleet: Fleet, middle: Middle, tmp_path: Path) -> None:
    path = publish(fleet, tmp_path, "1.4.0")

    def claim_other_version(body: bytes) -> bytes:
        return body.replace(b'"version":"1.4.0"', b'"version":"9.9.9"')

    middle.rewrite["targets.json"] = claim_other_version
    releases = enrolled_releases(fleet, middle.url)

    with pytest.raises(ReleaseCheckFailed) as refused:
        releases.fetch(path)
    assert refused.value.reason in {"bad_signature", "tampered"}
    assert downloads(releases) == []


def test_metadata_signed_by_the_wrong_key_is_refused(
    fleet: Fleet, middle: Middle, tmp_path: Path
) -> None:
    path = publish(fleet, tmp_path, "1.4.0")
    middle.rewrite["timestamp.json"] = resigned
    releases = enrolled_releases(fleet, middle.url)

    with pytest.raises(ReleaseCheckFailed) as refused:
        releases.fetch(path)
    assert refused.value.reason == "bad_signature"


def test_a_replayed_older_release_list_is_refused(
    fleet: Fleet, middle: Middle, tmp_path: Path
) -> None:
    old_path = publish(fleet, tmp_path, "1.4.0")
    old_timestamp = httpx.get(f"{fleet.appliance.url}/tuf/metadata/timestamp.json").content
    time.sleep(1.1)  # versions follow the clock: the next one is higher
    new_path = publish(fleet, tmp_path, "1.5.0", b"newer release")
    releases = enrolled_releases(fleet, middle.url)
    releases.fetch(new_path)  # the agent has seen the newer list

    middle.rewrite["timestamp.json"] = lambda _body: old_timestamp
    with pytest.raises(ReleaseCheckFailed) as refused:
        releases.fetch(old_path)
    assert refused.value.reason == "rollback"


def test_expired_metadata_from_a_frozen_appliance_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    path = publish(fleet, tmp_path, "1.4.0")
    releases = enrolled_releases(fleet, fleet.appliance.url)
    releases.fetch(path)
    # The newest metadata was signed two days ago and never renewed since.
    two_days_ago = utc_now() - timedelta(days=2)
    with_repository(
        fleet,
        lambda repo: repo.renew_expiring(),
        clock=lambda: two_days_ago,
        lifetimes={"timestamp": timedelta(days=1), "snapshot": timedelta(days=900)},
    )

    with pytest.raises(ReleaseCheckFailed) as refused:
        releases.fetch(path)
    assert refused.value.reason == "expired"


def test_an_endless_download_is_cut_at_the_signed_length(
    fleet: Fleet, middle: Middle, tmp_path: Path
) -> None:
    path = publish(fleet, tmp_path, "1.4.0")

    def endless(handler: Any) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.end_headers()
        try:
            for _ in range(100_000):  # bounded: 6 GB would take far longer than the test
                handler.wfile.write(b"x" * 65536)
        except OSError:
            pass  # the agent hung up, as it should

    middle.stream = endless
    releases = enrolled_releases(fleet, middle.url)
    with pytest.raises(ReleaseCheckFailed) as refused:
        releases.fetch(path)
    assert refused.value.reason == "too_large"
    assert downloads(releases) == []


def test_a_server_sending_a_byte_a_second_is_given_up_on(
    fleet: Fleet, middle: Middle, tmp_path: Path
) -> None:
    path = publish(fleet, tmp_path, "1.4.0")

    def drip(handler: Any) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(ARTIFACT)))
        handler.end_headers()
        try:
            for byte in ARTIFACT[:20]:  # bounded
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(1)
        except OSError:
            pass

    middle.stream = drip
    releases = enrolled_releases(fleet, middle.url, deadline_s=3)
    started = time.monotonic()
    with pytest.raises(ReleaseCheckFailed) as refused:
        releases.fetch(path)
    assert refused.value.reason == "too_slow"
    assert time.monotonic() - started < 10
    assert downloads(releases) == []


def test_a_writable_cached_root_cannot_replace_the_trusted_root(
    fleet: Fleet, middle: Middle, tmp_path: Path
) -> None:
    """Whoever can write the agent's metadata cache and answer in the appliance's place
    still cannot make it trust their keys."""
    path = publish(fleet, tmp_path, "1.4.0")
    releases = enrolled_releases(fleet, middle.url)
    releases.fetch(path)
    trusted = releases.trusted_root_path.read_bytes()
    # The attacker's own root (version 1 and 2, their key for every role) in the cache...
    attacker = RoleSigner(FileSigner(SigningKey.generate()))
    real_root = Metadata.from_bytes(trusted)
    cache = releases.dir / "metadata"
    for version in (1, 2):
        forged = Metadata.from_bytes(trusted)
        forged.signed.version = version
        forged.signed.keys = {attacker.public_key.keyid: attacker.public_key}
        for role in forged.signed.roles.values():
            role.keyids = [attacker.public_key.keyid]
        forged.signatures.clear()
        forged.sign(attacker)
        name = "root.json" if version == 1 else f"root_history/{version}.root.json"
        (cache / name).unlink(missing_ok=True)
        (cache / name).write_bytes(forged.to_bytes())
    # ... and their metadata on the wire.
    middle.rewrite["timestamp.json"] = lambda body: _signed_by(body, attacker)

    with pytest.raises(ReleaseCheckFailed) as refused:
        releases.fetch(path)

    assert refused.value.reason == "bad_signature"
    assert releases.trusted_root_path.read_bytes() == trusted
    assert Metadata.from_bytes(trusted).signed.keys == real_root.signed.keys


def _signed_by(body: bytes, signer: RoleSigner) -> bytes:
    metadata = Metadata.from_bytes(body)
    metadata.signed.version += 1
    metadata.signatures.clear()
    metadata.sign(signer)
    return metadata.to_bytes()


def test_registering_adopts_the_appliances_release_trust_root(fleet: Fleet) -> None:
    state_dir = fleet.enrol()
    bootstrap = httpx.get(f"{fleet.appliance.url}/api/v1/releases/bootstrap").json()
    releases = Releases(state_dir, fleet.appliance.url)
    assert releases.trusted_root_path.read_bytes() == bootstrap["root"].encode()


def test_a_trust_root_not_signed_by_the_appliance_root_key_is_not_adopted(
    fleet: Fleet,
) -> None:
    state_dir = fleet.enrol()
    trust = TrustState.from_json(read_json(state_dir, TRUST_FILE) or {})
    bootstrap = httpx.get(f"{fleet.appliance.url}/api/v1/releases/bootstrap").json()
    releases = Releases(state_dir, fleet.appliance.url)
    releases.trusted_root_path.unlink()  # registering adopted the real one

    other_root = dict(bootstrap, root=bootstrap["root"].replace('"version":1', '"version":1 '))
    with pytest.raises(ReleaseCheckFailed) as refused:
        releases.adopt_root(other_root, trust)
    assert refused.value.reason == "bootstrap_untrusted"

    foreign = FileSigner(SigningKey.generate())
    forged = dict(bootstrap, attestation=dict(bootstrap["attestation"], signer=foreign.key_id))
    with pytest.raises(ReleaseCheckFailed) as refused:
        releases.adopt_root(forged, trust)
    assert refused.value.reason == "bootstrap_untrusted"
    assert not releases.has_trusted_root()

    releases.adopt_root(bootstrap, trust)
    assert releases.has_trusted_root()


def test_release_keys_are_not_the_command_signing_keys(fleet: Fleet) -> None:
    release_keys = {row[0] for row in fleet.db_rows("SELECT public_key FROM release_keys")}
    signing_keys = {row[0] for row in fleet.db_rows("SELECT public_key FROM signing_keys")}
    assert len(release_keys) == 4
    assert not release_keys & signing_keys
    sealed = fleet.db_rows("SELECT private_key FROM release_keys")
    kek = KeyEncryptionKey.load(key_file_for(fleet.appliance.data_dir))
    for (blob,) in sealed:
        assert len(kek.unseal(bytes(blob))) == 32  # sealed, not stored in the clear
        assert bytes(blob)[:32] not in release_keys
