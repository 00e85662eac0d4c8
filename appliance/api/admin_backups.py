"""Admin JSON API: database backups (list, make one now, download)."""

from __future__ import annotations

from typing import Any, Literal

from starlette.responses import FileResponse

from appliance.api.auth import ADMIN
from appliance.api.endpoints import API, Call, Document, Failure, Reply, Shape, endpoint
from appliance.services import backups
from appliance.store.snapshot import SnapshotFailed


class Backup(Shape):
    """A backup file in the data dir's backups folder."""

    name: str
    kind: Literal["scheduled", "manual", "pre-migrate", "pre-restore"]
    size_bytes: int
    modified_at: str


def _described(backup: backups.BackupFile) -> dict[str, Any]:
    return {
        "name": backup.path.name,
        "kind": backup.kind,
        "size_bytes": backup.size_bytes,
        "modified_at": backup.modified_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


class Backups(Shape):
    """Every backup, newest first."""

    backups: list[Backup]


@endpoint(
    "GET",
    f"{API}/backups",
    area="Backups",
    summary="List backups",
    requires=ADMIN,
    answer=Backups,
)
async def list_backups(call: Call) -> Backups:
    """Scheduled, manual, pre-migrate and pre-restore snapshots on the appliance."""
    found = backups.list_backups(call.appliance.settings)
    return Backups(backups=[Backup(**_described(b)) for b in found])


class BackupMade(Backup, kw_only=True):
    """The new backup."""

    ok: Literal[True] = True


@endpoint(
    "POST",
    f"{API}/backups",
    area="Backups",
    summary="Make a backup now",
    requires=ADMIN,
    answer=BackupMade,
    status=201,
    failures=[
        Failure(
            500,
            "the snapshot could not be written (e.g. a full disk)",
            when=(SnapshotFailed, OSError),
            message="the backup failed: {exc}",
        ),
    ],
)
async def create_backup(call: Call) -> Reply:
    """A consistent online snapshot, checked with `PRAGMA integrity_check`, while the
    appliance keeps serving."""
    backup = await backups.create_backup_now(call.db, call.appliance.settings, call.actor)
    return Reply(BackupMade(**_described(backup)), status=201)


@endpoint(
    "GET",
    f"{API}/backups/{{name}}",
    area="Backups",
    summary="Download a backup",
    requires=ADMIN,
    answer=Document("application/vnd.sqlite3", "The SQLite database file."),
    failures=[Failure(404, "no backup has that name", when=backups.BackupNotFound)],
)
async def download_backup(call: Call) -> FileResponse:
    """The backup file itself. It holds every record and the sealed keys: each
    download is in the audit log."""
    backup = backups.find_backup(call.appliance.settings, call.path("name"))
    await backups.record_download(call.db, call.actor, backup)
    return FileResponse(
        backup.path,
        media_type="application/vnd.sqlite3",
        filename=backup.path.name,
        headers={"Cache-Control": "no-store"},
    )
