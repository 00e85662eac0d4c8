-- Enrolment at scale: a registration token may give every host that registers with it
-- a set of tags, and may forbid hosts to ask for tags of their own
-- (`redflag-agent register --tag`).

CREATE TABLE registration_token_tags (
    token_id INTEGER NOT NULL REFERENCES registration_tokens (id) ON DELETE CASCADE,
    tag      TEXT NOT NULL,
    PRIMARY KEY (token_id, tag)
) STRICT;

-- 1: hosts may add tags of their own when they register; 0: only the token's tags.
-- Tokens made before this migration allowed nothing of the kind, but no agent could
-- ask either: 1 keeps their meaning for the agents that can now.
ALTER TABLE registration_tokens
    ADD COLUMN allow_host_tags INTEGER NOT NULL DEFAULT 1 CHECK (allow_host_tags IN (0, 1));
