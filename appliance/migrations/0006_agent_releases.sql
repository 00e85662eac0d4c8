-- Agent releases, served as a TUF repository (docs/releases.md). The role keys are
-- not the command-signing keys: a leaked signing key cannot ship code, and a leaked
-- release key cannot sign commands.

-- One row per TUF role key; a rotated key is kept (retired) because the next root
-- must be signed by the old root key as well as the new one.
CREATE TABLE release_keys (
    key_id      TEXT PRIMARY KEY,            -- the TUF key id (sha256 of the key's JSON)
    role        TEXT NOT NULL CHECK (role IN ('root', 'targets', 'snapshot', 'timestamp')),
    public_key  BLOB NOT NULL,
    private_key BLOB NOT NULL,               -- sealed with the key file, like signing_keys
    created_at  TEXT NOT NULL,
    retired_at  TEXT
) STRICT;

-- Every version of every metadata file ever signed: agents may ask for any root
-- version (they walk the chain), and `N.snapshot.json` / `N.targets.json` by version.
CREATE TABLE release_metadata (
    role       TEXT NOT NULL CHECK (role IN ('root', 'targets', 'snapshot', 'timestamp')),
    version    INTEGER NOT NULL,
    body       BLOB NOT NULL,                -- the signed JSON, byte for byte as served
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (role, version)
) STRICT;

-- The releases themselves; the file is DATA/releases/<sha256> (content-addressed).
CREATE TABLE agent_releases (
    id           INTEGER PRIMARY KEY,
    version      TEXT NOT NULL,
    channel      TEXT NOT NULL,
    platform     TEXT NOT NULL,
    target_path  TEXT NOT NULL UNIQUE,       -- its name in targets.json
    sha256       TEXT NOT NULL,
    length       INTEGER NOT NULL,
    published_at TEXT NOT NULL,
    published_by TEXT NOT NULL,
    withdrawn_at TEXT,
    UNIQUE (version, channel, platform)
) STRICT;
