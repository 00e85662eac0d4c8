"""Agent releases: the TUF repository agents update from (public, verified by the agent
itself), and the admin API over the releases."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta
from starlette.responses import FileResponse, Response

from appliance.api.auth import ADMIN, PUBLIC, VIEWER
from appliance.api.endpoints import API, Call, Document, Done, Failure, Shape, endpoint
from appliance.api.errors import ApiError
from appliance.distribution import installer, sshsig
from appliance.services.releases import ReleaseRefused, UnknownRelease
from kernel.protocol import b64encode

TUF = "/tuf"
# Metadata changes with every publish and renewal; the agent asks for what it needs.
NO_STORE = {"Cache-Control": "no-store"}


@endpoint(
    "GET",
    f"{TUF}/metadata/{{name}}",
    area="Releases",
    summary="TUF metadata",
    requires=PUBLIC,
    answer=Document("application/json", "A signed TUF metadata file, byte for byte."),
    failures=[Failure(404, "no such metadata file or version")],
)
async def metadata(call: Call) -> Response:
    """`timestamp.json`, or `N.root.json`, `N.snapshot.json`, `N.targets.json` (the
    repository uses consistent snapshots). Agents verify every byte against the
    trusted root; nothing here needs credentials."""
    body = await call.appliance.releases.metadata_file(call.path("name"))
    if body is None:
        raise ApiError(404, "no such metadata file")
    return Response(body, media_type="application/json", headers=NO_STORE)


@endpoint(
    "GET",
    f"{TUF}/targets/{{path:path}}",
    area="Releases",
    summary="A release file",
    requires=PUBLIC,
    answer=Document("application/octet-stream", "The release artifact."),
    failures=[Failure(404, "no listed release has that file")],
)
async def target(call: Call) -> FileResponse:
    """A listed release's file by its hash-prefixed name (`<sha256>.<name>`), as
    targets.json describes it; the agent checks its length and hash."""
    file = await call.appliance.releases.target_file(call.path("path"))
    if file is None:
        raise ApiError(404, "no listed release has that file")
    return FileResponse(file, media_type="application/octet-stream")


class Bootstrap(Shape):
    """The first TUF root and the appliance root key's signature over its hash."""

    root: Annotated[str, Meta(description="TUF root metadata version 1, as signed.")]
    attestation: Annotated[
        dict[str, str],
        Meta(
            description="A SignedDocument: {purpose: tuf-root, version: 1, sha256} signed "
            "by the appliance's current root key."
        ),
    ]


@endpoint(
    "GET",
    f"{API}/releases/bootstrap",
    area="Releases",
    summary="The release trust root",
    requires=PUBLIC,
    answer=Bootstrap,
)
async def bootstrap(call: Call) -> Bootstrap:
    """Where an agent's trust in releases starts: it checks the attestation with the
    root key its registration token pinned, then keeps this root read-only."""
    appliance = call.appliance
    first, statement = await appliance.releases.bootstrap_statement()
    attestation = await appliance.keys.attest(statement)
    return Bootstrap(root=first.decode(), attestation=attestation.to_json())


class ChannelQuery(Shape):
    channel: str = "stable"


class InstallManifest(Shape):
    """The newest build of each platform on a channel, signed by the appliance's root
    key; the one-line installer checks the key against the token's fingerprint."""

    root_public_key: Annotated[str, Meta(description="The current root key, base64.")]
    manifest: Annotated[
        dict[str, str],
        Meta(
            description="A SignedDocument over {purpose: agent-install, channel, releases: "
            "{platform: {version, target_path, url_path, sha256, length}}}."
        ),
    ]
    ssh_signature: Annotated[
        str,
        Meta(
            description="The same document signed by the same key as an OpenSSH signature "
            "(namespace redflag-install), for hosts that check it with ssh-keygen -Y verify."
        ),
    ]


@endpoint(
    "GET",
    f"{API}/releases/manifest",
    area="Releases",
    summary="The installer's signed manifest",
    requires=PUBLIC,
    query=ChannelQuery,
    answer=InstallManifest,
    failures=[Failure(422, "not a channel name", when=ReleaseRefused, field="channel")],
)
async def install_manifest(call: Call) -> InstallManifest:
    """What the one-line installer installs: each platform's newest agent build."""
    appliance = call.appliance
    document = await appliance.releases.install_manifest(call.query.channel)
    public_key, sign = await appliance.keys.root_signing()
    signed = await appliance.keys.attest(document)
    return InstallManifest(
        root_public_key=b64encode(public_key),
        manifest=signed.to_json(),
        ssh_signature=sshsig.signature(document, public_key, sign),
    )


@endpoint(
    "GET",
    "/install.sh",
    area="Releases",
    summary="The agent installer",
    requires=PUBLIC,
    answer=Document("text/x-shellscript", "The one-line installer's script."),
)
async def install_script(call: Call) -> Response:
    """The script the one-line install command downloads, checks against the SHA-256
    in that command, then runs: it verifies and installs the agent (docs/agent.md)."""
    return Response(installer.script(), media_type="text/x-shellscript", headers=NO_STORE)


@endpoint(
    "GET",
    "/install.ps1",
    area="Releases",
    summary="The Windows agent installer (a first step)",
    requires=PUBLIC,
    answer=Document("text/plain", "The Windows one-line installer's PowerShell script."),
)
async def install_powershell_script(call: Call) -> Response:
    """The script the Windows one-line command downloads, checks with Get-FileHash, then
    runs. For now it checks the appliance's root key against the token and stops before
    installing anything (docs/design-notes.md, "The Windows installer")."""
    return Response(installer.powershell_script(), media_type="text/plain", headers=NO_STORE)


class ReleaseItem(Shape):
    id: int
    version: str
    channel: str
    platform: str
    target_path: str
    sha256: str
    length: int
    published_at: str
    published_by: str
    withdrawn_at: str | None


class RoleStatus(Shape):
    role: Literal["root", "targets", "snapshot", "timestamp"]
    version: int
    expires_at: str | None
    expired: bool
    expires_soon: Annotated[bool, Meta(description="Within 12 hours; renewal is failing.")]


class ReleaseList(Shape):
    """Every release, newest first, and the state of the repository's metadata."""

    releases: list[ReleaseItem]
    roles: list[RoleStatus]


@endpoint(
    "GET",
    f"{API}/releases",
    area="Releases",
    summary="Agent releases",
    requires=VIEWER,
    answer=ReleaseList,
)
async def list_releases(call: Call) -> ReleaseList:
    """Published agent releases and when each role's signed metadata expires."""
    releases = call.appliance.releases
    status = await releases.status()
    return msgspec.convert(
        {"releases": [vars(r) for r in await releases.releases()], "roles": status["roles"]},
        ReleaseList,
    )


@endpoint(
    "POST",
    f"{API}/releases/{{release_id:int}}/withdraw",
    area="Releases",
    summary="Withdraw a release",
    requires=ADMIN,
    answer=Done,
    failures=[Failure(404, "no listed release has that id", when=UnknownRelease)],
)
async def withdraw(call: Call) -> Done:
    """Stop offering it: agents that have it keep it; none takes it any more."""
    await call.appliance.releases.withdraw(call.actor, call.path("release_id"))
    return Done()
