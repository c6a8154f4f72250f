-- Webhooks out (contract §8). Times of deliveries are unix microseconds (`occurred_at` shows them).

-- The organization's public id, `project_id` in events; existing organizations get one here.
ALTER TABLE organizations ADD COLUMN public_id TEXT;
UPDATE organizations SET public_id = 'prj_' || lower(hex(randomblob(10))) WHERE public_id IS NULL;
CREATE UNIQUE INDEX organizations_by_public_id ON organizations (public_id);

CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES organizations (id),
    url TEXT NOT NULL,
    events TEXT NOT NULL,            -- JSON array of event types
    filters TEXT,                    -- JSON object, or NULL
    description TEXT,
    enabled INTEGER NOT NULL,
    secret TEXT NOT NULL,
    -- Events created before `rotated_at` are still signed with the secret they were created under.
    previous_secret TEXT,
    rotated_at INTEGER,
    created_at INTEGER NOT NULL,     -- seconds
    updated_at INTEGER NOT NULL,
    -- The process delivering this subscription's events, until when (one at a time, §8.2).
    lease_owner TEXT,
    lease_until INTEGER
);
CREATE INDEX webhooks_by_org ON webhooks (org_id, created_at, id);

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    -- An attempt's event is rendered from the attempt each time it is sent: which one, its new status and the one before.
    attempt_id TEXT,
    attempt_status TEXT,
    previous_status TEXT,
    payload TEXT,                    -- the event as sent; NULL for an attempt's (rendered from it when sent)
    status TEXT NOT NULL,            -- pending | delivered | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,     -- when the event occurred; the retry schedule counts from it
    next_attempt_at INTEGER,
    -- Taken by a process until then (its attempt in flight); another may take it afterwards.
    lease_until INTEGER,
    delivered_at INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook_id, next_attempt_at) WHERE status = 'pending';
-- The log, newest first. Not by status: a delivery's answer then changes no index but the due one
-- (the purge, hourly, scans instead).
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, id);
