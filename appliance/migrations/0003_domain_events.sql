-- Domain events, and an update state of its own for "install requested, waiting for
-- the agent" (it was 'scheduled' without a time).

-- What happened, appended in the same transaction as the change itself, for whoever
-- reacts to it (live pages, held check-ins, policies, notifications, MQTT).
-- docs/events.md lists the kinds and their payloads: a public interface.
CREATE TABLE domain_events (
    id      INTEGER PRIMARY KEY,
    kind    TEXT NOT NULL,
    subject TEXT NOT NULL,          -- what it is about: an agent, update or command id
    payload TEXT NOT NULL,          -- JSON
    at      TEXT NOT NULL
) STRICT;
CREATE INDEX domain_events_by_time ON domain_events (at);

-- How far each consumer has read: the id of the last event it dealt with, moved in
-- the same transaction as what it did about them, so a restart neither repeats nor
-- skips one.
CREATE TABLE event_cursors (
    consumer      TEXT PRIMARY KEY,
    last_event_id INTEGER NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;

-- updates.status gains 'queued'; SQLite changes a CHECK only by rebuilding the table
-- (foreign keys are off during migrations and checked before the commit).
CREATE TABLE updates_new (
    id                INTEGER PRIMARY KEY,
    agent_id          TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    source            TEXT NOT NULL,
    package           TEXT NOT NULL,
    arch              TEXT NOT NULL DEFAULT '',
    current_version   TEXT NOT NULL DEFAULT '',
    available_version TEXT NOT NULL,
    origin            TEXT NOT NULL DEFAULT '',
    severity          TEXT NOT NULL DEFAULT 'unknown'
                      CHECK (severity IN ('critical', 'important', 'moderate', 'low', 'unknown')),
    security          INTEGER NOT NULL DEFAULT 0 CHECK (security IN (0, 1)),
    advisories        TEXT NOT NULL DEFAULT '[]',   -- JSON list of CVE/advisory ids
    size_bytes        INTEGER,
    reboot_required   INTEGER NOT NULL DEFAULT 0 CHECK (reboot_required IN (0, 1)),
    details           TEXT,                          -- JSON, source specific
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'approved', 'rejected', 'ignored',
                                        'scheduled', 'queued', 'installing', 'installed',
                                        'failed', 'resolved')),
    status_changed_at TEXT NOT NULL,
    status_changed_by TEXT NOT NULL DEFAULT 'agent',
    first_seen_at     TEXT NOT NULL,
    last_seen_at      TEXT NOT NULL,
    scheduled_for     TEXT,
    UNIQUE (agent_id, source, package, arch)
) STRICT;
INSERT INTO updates_new
    SELECT id, agent_id, source, package, arch, current_version, available_version, origin,
           severity, security, advisories, size_bytes, reboot_required, details,
           CASE WHEN status = 'scheduled' AND scheduled_for IS NULL THEN 'queued'
                ELSE status END,
           status_changed_at, status_changed_by, first_seen_at, last_seen_at, scheduled_for
    FROM updates;
DROP TABLE updates;
ALTER TABLE updates_new RENAME TO updates;
CREATE INDEX updates_by_status ON updates (status, severity);
CREATE INDEX updates_by_source ON updates (source, status);
CREATE INDEX updates_due ON updates (scheduled_for) WHERE scheduled_for IS NOT NULL;
CREATE INDEX updates_by_first_seen ON updates (first_seen_at);
