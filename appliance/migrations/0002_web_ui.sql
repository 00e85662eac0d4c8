-- Web UI: installs scheduled for later, and indexes for the pages' filters and charts.

-- When an approved update is to be installed (UTC); the scheduler requests the install
-- once it is due. NULL: not scheduled.
ALTER TABLE updates ADD COLUMN scheduled_for TEXT;
CREATE INDEX updates_due ON updates (scheduled_for) WHERE scheduled_for IS NOT NULL;

-- "Agents tagged X", "updates on agents tagged X".
CREATE INDEX agent_tags_by_tag ON agent_tags (tag, agent_id);

-- Dashboard charts: updates first seen per day, installs per day.
CREATE INDEX updates_by_first_seen ON updates (first_seen_at);
CREATE INDEX install_history_by_time ON install_history (started_at);

-- Live operations: the newest commands across the fleet.
CREATE INDEX commands_by_created ON commands (created_at);

-- Token pages: which hosts registered with a token.
CREATE INDEX registration_token_uses_by_token ON registration_token_uses (token_id);
