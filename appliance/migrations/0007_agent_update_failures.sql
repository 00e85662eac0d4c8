-- Agent self-update (docs/releases.md): the releases an agent reported it could not
-- switch to. The check-in never offers such a version to that agent again.
CREATE TABLE agent_update_failures (
    agent_id    TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    version     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    reported_at TEXT NOT NULL,
    PRIMARY KEY (agent_id, version)
) STRICT;
