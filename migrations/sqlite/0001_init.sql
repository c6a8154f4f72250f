CREATE TABLE organizations (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES organizations (id),
    prefix TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at INTEGER
);

CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES organizations (id),
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX agents_by_org ON agents (org_id, created_at);

CREATE TABLE integrations (
    id TEXT PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES organizations (id),
    agent_id TEXT NOT NULL REFERENCES agents (id),
    channel TEXT NOT NULL,
    provider TEXT NOT NULL,
    config TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX integrations_by_org ON integrations (org_id, created_at);

CREATE TABLE campaigns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES organizations (id),
    agent_id TEXT NOT NULL REFERENCES agents (id),
    integration_id TEXT NOT NULL REFERENCES integrations (id),
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER,
    -- Client-settable configuration (CampaignSettings) as JSON.
    settings TEXT NOT NULL,
    current_iteration INTEGER NOT NULL DEFAULT 0,
    last_iteration_at INTEGER,
    next_cycle_at INTEGER,
    paused_in_cooldown INTEGER NOT NULL DEFAULT 0
);
-- Serves the newest-first list and its cursor.
CREATE INDEX campaigns_by_org ON campaigns (org_id, created_at DESC, id DESC);
