"""Domain events: what happened, in the appliance's words, written in the same
transaction as the change. Their kinds and payloads are a public interface for
integrations (docs/events.md is checked against this table by a test)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DomainEvent:
    id: int
    kind: str
    subject: str  # what it is about, e.g. an update id, a command id, an agent id
    payload: dict[str, Any]
    at: str  # UTC, ISO-8601


@dataclass(frozen=True)
class EventKind:
    name: str
    subject: str  # what `subject` holds
    payload: tuple[str, ...]  # the payload's keys
    meaning: str


KINDS = {
    kind.name: kind
    for kind in (
        EventKind(
            "update.discovered",
            "update id",
            ("agent_id", "source", "package", "version", "severity", "security"),
            "a scan reported an update that was not known, or a newer version of one",
        ),
        EventKind(
            "update.approved",
            "update id",
            ("agent_id", "source", "package", "version", "by"),
            "someone (or a rule) approved it, by itself or as part of an install",
        ),
        EventKind(
            "update.installed",
            "update id",
            ("agent_id", "source", "package", "version", "command_id"),
            "the agent installed it",
        ),
        EventKind(
            "update.failed",
            "update id",
            ("agent_id", "source", "package", "version", "command_id", "error"),
            "its install failed (or could not be requested)",
        ),
        EventKind(
            "command.created",
            "command id",
            ("agent_id", "kind", "by"),
            "a command for an agent was created; an online agent gets it in seconds",
        ),
        EventKind(
            "command.acknowledged",
            "command id",
            ("agent_id", "kind"),
            "the agent verified the command and started it",
        ),
        EventKind(
            "command.finished",
            "command id",
            ("agent_id", "kind", "status", "error"),
            "succeeded, failed, timed out, cancelled, or refused by the agent",
        ),
        EventKind(
            "agent.registered",
            "agent id",
            ("hostname", "token_id", "created", "tags"),
            "an agent enrolled (created: a new record, or an existing one again), with its "
            "tags (the token's and the host's)",
        ),
        EventKind(
            "agent.offline",
            "agent id",
            ("hostname", "last_seen_at"),
            "not seen for longer than offline_after_s",
        ),
        EventKind("agent.online", "agent id", ("hostname",), "back after being offline"),
        EventKind(
            "agent.disabled",
            "agent id",
            ("hostname", "by"),
            "an admin disabled it: its requests are refused from the next one on",
        ),
        EventKind("agent.enabled", "agent id", ("hostname", "by"), "an admin enabled it again"),
        EventKind(
            "agent.deleted",
            "agent id",
            ("hostname", "by"),
            "an admin deleted it and what it reported; the host must register again",
        ),
        EventKind(
            "agent.rebound",
            "agent id",
            ("hostname", "fingerprint", "by"),
            "an admin accepted its new machine fingerprint after a hardware change",
        ),
        EventKind(
            "agent.took_over",
            "agent id (the new record)",
            ("old_agent", "hostname", "by"),
            "a reinstalled host's new record took the history of its old one, which is gone",
        ),
        EventKind(
            "agent.hardware_changed",
            "agent id",
            ("hostname", "bound", "reported"),
            "its machine fingerprint no longer matches; an admin may re-bind it",
        ),
        EventKind(
            "agent.breaker_open",
            "agent id",
            ("hostname", "breaker", "last_error"),
            "one of its scanners or installers failed repeatedly and is paused",
        ),
        EventKind(
            "agent.update_failed",
            "agent id",
            ("hostname", "version", "reason"),
            "it could not switch to an offered release (it rolled back, or could not "
            "stage it); that release is not offered to it again",
        ),
        EventKind(
            "release.published",
            "release id",
            ("version", "channel", "platform", "by"),
            "an agent release was published to a channel; agents on it take it per policy",
        ),
        EventKind(
            "reboot.required",
            "agent id",
            ("hostname",),
            "the host says it needs a reboot (it did not before)",
        ),
        EventKind(
            "disk.failing",
            "agent id",
            ("hostname", "device", "reason", "severity"),
            "SMART says a disk of the host is failing",
        ),
        EventKind("backup.done", "backup file name", ("kind", "size_bytes"), "a backup was made"),
        EventKind("backup.failed", "backup kind", ("error",), "a backup could not be made"),
        EventKind(
            "key.rotated",
            "key id",
            ("purpose", "key_set_version", "by"),
            "a new signing or root key is in use",
        ),
        EventKind(
            "key.revoked",
            "key id",
            ("key_set_version", "by"),
            "a signing key was withdrawn",
        ),
        EventKind(
            "login.locked",
            "username",
            ("until", "source_ip"),
            "too many wrong passwords: the account is locked for a while",
        ),
    )
}
