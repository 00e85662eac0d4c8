-- RedFlag initial schema.
-- Timestamps are UTC ISO-8601 text ('2026-11-29T02:24:03Z'); JSON columns hold text.
-- Released migrations are never edited: later changes go in new numbered files.

-- Runtime settings that an admin can change while the appliance runs.
CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,            -- JSON
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
) STRICT;

-- Dashboard users and their sessions / API tokens.
CREATE TABLE users (
    id              INTEGER PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash   TEXT NOT NULL,       -- argon2id
    role            TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    disabled        INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    failed_logins   INTEGER NOT NULL DEFAULT 0,
    locked_until    TEXT,
    created_at      TEXT NOT NULL,
    last_login_at   TEXT
) STRICT;

CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,       -- sha256 of the cookie value
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    ip           TEXT,
    user_agent   TEXT
) STRICT;
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT,
    revoked_at   TEXT
) STRICT;

-- Appliance keys: a root key certifies versioned sets of command-signing keys.
CREATE TABLE signing_keys (
    key_id         TEXT PRIMARY KEY,     -- derived from the public key
    purpose        TEXT NOT NULL CHECK (purpose IN ('root', 'signing')),
    public_key     BLOB NOT NULL,
    signer         TEXT NOT NULL,        -- 'file' (encrypted below) or e.g. 'pkcs11'
    private_key    BLOB,                 -- encrypted at rest; NULL when held by an HSM
    signer_ref     TEXT,                 -- e.g. the PKCS#11 object label
    not_before     TEXT NOT NULL,
    not_after      TEXT,
    created_at     TEXT NOT NULL,
    retired_at     TEXT,
    revoked_at     TEXT,
    certified_by   TEXT REFERENCES signing_keys (key_id),
    certification  BLOB                  -- signature by `certified_by` over this key
) STRICT;

CREATE TABLE key_sets (
    version     INTEGER PRIMARY KEY,
    document    TEXT NOT NULL,           -- canonical JSON of the signing keys
    signature   BLOB NOT NULL,           -- by the root key named in the document
    root_key_id TEXT NOT NULL REFERENCES signing_keys (key_id),
    created_at  TEXT NOT NULL
) STRICT;

-- Registration tokens are stored only as hashes.
CREATE TABLE registration_tokens (
    id          INTEGER PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    note        TEXT NOT NULL DEFAULT '',
    seats_total INTEGER CHECK (seats_total IS NULL OR seats_total >= 0),
    seats_used  INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT
) STRICT;

-- Agents: identity is the agent id and its public key, never the hardware.
CREATE TABLE agents (
    id                   TEXT PRIMARY KEY,   -- UUID
    hostname             TEXT NOT NULL,
    display_name         TEXT,
    os_family            TEXT NOT NULL DEFAULT '',
    os_name              TEXT NOT NULL DEFAULT '',
    os_version           TEXT NOT NULL DEFAULT '',
    kernel               TEXT NOT NULL DEFAULT '',
    arch                 TEXT NOT NULL DEFAULT '',
    agent_version        TEXT NOT NULL DEFAULT '',
    machine_fingerprint  TEXT NOT NULL DEFAULT '',
    reported_fingerprint TEXT,               -- set when it differs from the bound one
    hardware_changed     INTEGER NOT NULL DEFAULT 0 CHECK (hardware_changed IN (0, 1)),
    status               TEXT NOT NULL DEFAULT 'online'
                         CHECK (status IN ('online', 'offline')),
    disabled             INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    registered_at        TEXT NOT NULL,
    last_seen_at         TEXT,
    last_ip              TEXT,
    poll_interval_s      INTEGER,            -- NULL: the fleet default
    rapid_until          TEXT,
    command_seq          INTEGER NOT NULL DEFAULT 0,  -- last sequence number issued
    key_set_version      INTEGER NOT NULL DEFAULT 0,  -- last one the agent confirmed
    system_info          TEXT,               -- JSON
    breaker_states       TEXT,               -- JSON
    reboot_required      INTEGER NOT NULL DEFAULT 0 CHECK (reboot_required IN (0, 1)),
    boot_time            TEXT,
    registration_token_id INTEGER REFERENCES registration_tokens (id) ON DELETE SET NULL
) STRICT;
CREATE INDEX agents_by_hostname ON agents (hostname);
CREATE INDEX agents_by_last_seen ON agents (last_seen_at);

CREATE TABLE agent_keys (
    id          INTEGER PRIMARY KEY,
    agent_id    TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    public_key  BLOB NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
) STRICT;
CREATE INDEX agent_keys_by_agent ON agent_keys (agent_id);

CREATE TABLE agent_tags (
    agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    tag      TEXT NOT NULL,
    PRIMARY KEY (agent_id, tag)
) STRICT;

CREATE TABLE registration_token_uses (
    id        INTEGER PRIMARY KEY,
    token_id  INTEGER NOT NULL REFERENCES registration_tokens (id) ON DELETE CASCADE,
    agent_id  TEXT REFERENCES agents (id) ON DELETE SET NULL,
    used_at   TEXT NOT NULL,
    ip        TEXT
) STRICT;

-- Updates reported by agents, one row per (agent, source, package, arch).
CREATE TABLE updates (
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
                      CHECK (status IN ('pending', 'approved', 'rejected', 'scheduled',
                                        'installing', 'installed', 'failed', 'ignored',
                                        'resolved')),
    status_changed_at TEXT NOT NULL,
    status_changed_by TEXT NOT NULL DEFAULT 'agent',
    first_seen_at     TEXT NOT NULL,
    last_seen_at      TEXT NOT NULL,
    UNIQUE (agent_id, source, package, arch)
) STRICT;
CREATE INDEX updates_by_status ON updates (status, severity);
CREATE INDEX updates_by_source ON updates (source, status);

-- Commands sent to agents, with their lifecycle.
CREATE TABLE commands (
    id              INTEGER PRIMARY KEY,
    agent_id        TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    params          TEXT NOT NULL DEFAULT '{}',     -- JSON
    status          TEXT NOT NULL DEFAULT 'created'
                    CHECK (status IN ('created', 'sent', 'acknowledged', 'running',
                                      'succeeded', 'failed', 'timed_out', 'cancelled')),
    idempotency_key TEXT UNIQUE,
    created_by      TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    sent_at         TEXT,
    acknowledged_at TEXT,
    started_at      TEXT,
    finished_at     TEXT,
    expires_at      TEXT NOT NULL,
    timeout_s       INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL DEFAULT 1,
    result          TEXT,                            -- JSON
    error           TEXT,
    UNIQUE (agent_id, seq)
) STRICT;
CREATE INDEX commands_by_agent_status ON commands (agent_id, status);
CREATE INDEX commands_by_status ON commands (status, created_at);

-- Streamed output of running commands (sanitised and size-capped on ingest).
CREATE TABLE command_output (
    command_id INTEGER NOT NULL REFERENCES commands (id) ON DELETE CASCADE,
    chunk_no   INTEGER NOT NULL,
    text       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (command_id, chunk_no)
) STRICT;

-- Install history: one row per package per install attempt.
CREATE TABLE install_history (
    id           INTEGER PRIMARY KEY,
    agent_id     TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    command_id   INTEGER REFERENCES commands (id) ON DELETE SET NULL,
    update_id    INTEGER REFERENCES updates (id) ON DELETE SET NULL,
    source       TEXT NOT NULL,
    package      TEXT NOT NULL,
    from_version TEXT NOT NULL DEFAULT '',
    to_version   TEXT NOT NULL DEFAULT '',
    outcome      TEXT NOT NULL CHECK (outcome IN ('installed', 'failed', 'dry_run')),
    output       TEXT NOT NULL DEFAULT '',
    started_at   TEXT NOT NULL,
    finished_at  TEXT
) STRICT;
CREATE INDEX install_history_by_agent ON install_history (agent_id, started_at);

-- Agent outbox events as received: the UUID makes ingest idempotent.
CREATE TABLE events (
    uuid        TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    occurred_at TEXT NOT NULL,                       -- agent clock
    received_at TEXT NOT NULL,
    payload     TEXT NOT NULL                        -- JSON, sanitised
) STRICT;
CREATE INDEX events_by_agent ON events (agent_id, received_at);

-- Append-only audit log; each row carries the hash of the previous one.
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL DEFAULT '',
    source_ip TEXT NOT NULL DEFAULT '',
    details   TEXT NOT NULL DEFAULT '{}',            -- JSON
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
) STRICT;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
-- The newest row's id and hash, so that removing rows from the end is detected too.
CREATE TABLE audit_head (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    last_id   INTEGER NOT NULL,
    last_hash TEXT NOT NULL
) STRICT;

-- Scheduler jobs: last run and outcome survive restarts.
CREATE TABLE scheduler_jobs (
    name             TEXT PRIMARY KEY,
    next_run_at      TEXT NOT NULL,
    last_started_at  TEXT,
    last_finished_at TEXT,
    last_duration_s  REAL,
    last_error       TEXT,
    runs             INTEGER NOT NULL DEFAULT 0,
    failures         INTEGER NOT NULL DEFAULT 0
) STRICT;

-- A single row rewritten by readiness checks to prove the database takes writes.
CREATE TABLE health_probe (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    checked_at TEXT NOT NULL
) STRICT;
