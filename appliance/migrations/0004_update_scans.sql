-- Scan reports are recorded by difference: a report that changes nothing writes the
-- time it arrived once, here, instead of a last-seen time on every update it lists.

-- When each agent's latest report of each source arrived.
CREATE TABLE source_scans (
    agent_id    TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    source      TEXT NOT NULL,
    reported_at TEXT NOT NULL,
    PRIMARY KEY (agent_id, source)
) STRICT;

-- 1: the latest report of its source listed it, so it was last seen when that report
-- arrived (source_scans.reported_at); 0: last_seen_at says when it was last listed.
ALTER TABLE updates ADD COLUMN listed INTEGER NOT NULL DEFAULT 0 CHECK (listed IN (0, 1));

-- Until now each report wrote its time into every update it listed: the newest
-- last_seen_at of an agent's source is its latest report that listed anything, and
-- the updates carrying that time are the ones it listed.
INSERT INTO source_scans (agent_id, source, reported_at)
    SELECT agent_id, source, max(last_seen_at) FROM updates GROUP BY agent_id, source;
UPDATE updates SET listed = 1
    WHERE last_seen_at = (SELECT s.reported_at FROM source_scans s
                          WHERE s.agent_id = updates.agent_id AND s.source = updates.source);
