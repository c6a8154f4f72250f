-- The schema of migrations/sqlite/0001..0004 on PostgreSQL. Times are the same integers as on
-- SQLite (unix seconds for resources, unix milliseconds for attempts and retries), JSON documents
-- the same text, so that both stores share their conversions to the domain.

CREATE TABLE organizations (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id BIGSERIAL PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES organizations (id),
    prefix TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);

-- `seq` keeps the order of creation (SQLite's rowid) for lists ordered by creation time.
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    org_id BIGINT NOT NULL REFERENCES organizations (id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX agents_by_org ON agents (org_id, created_at, seq);

CREATE TABLE integrations (
    id TEXT PRIMARY KEY,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    org_id BIGINT NOT NULL REFERENCES organizations (id),
    agent_id TEXT NOT NULL REFERENCES agents (id),
    channel TEXT NOT NULL,
    provider TEXT NOT NULL,
    config TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX integrations_by_org ON integrations (org_id, created_at, seq);

CREATE TABLE campaigns (
    id BIGSERIAL PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES organizations (id),
    agent_id TEXT NOT NULL REFERENCES agents (id),
    integration_id TEXT NOT NULL REFERENCES integrations (id),
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    archived BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    ended_at BIGINT,
    -- Client-settable configuration (CampaignSettings) as JSON.
    settings TEXT NOT NULL,
    current_iteration BIGINT NOT NULL DEFAULT 0,
    last_iteration_at BIGINT,
    next_cycle_at BIGINT,
    paused_in_cooldown BOOLEAN NOT NULL DEFAULT FALSE,
    contact_count BIGINT NOT NULL DEFAULT 0,
    -- Counters kept in the transactions that change them (analytics never scan).
    in_flight BIGINT NOT NULL DEFAULT 0,
    calls BIGINT NOT NULL DEFAULT 0,
    calls_human BIGINT NOT NULL DEFAULT 0,
    calls_machine BIGINT NOT NULL DEFAULT 0,
    calls_unknown BIGINT NOT NULL DEFAULT 0,
    messages BIGINT NOT NULL DEFAULT 0,
    contacts_processed BIGINT NOT NULL DEFAULT 0,
    contacts_answered BIGINT NOT NULL DEFAULT 0
);
-- Serves the newest-first list and its cursor.
CREATE INDEX campaigns_by_org ON campaigns (org_id, created_at DESC, id DESC);
-- Campaigns the engine looks at.
CREATE INDEX campaigns_running ON campaigns (status) WHERE status IN ('active', 'cooldown', 'inactive');

-- Idempotency-Key records (contract §7): the response of a completed request, written in the
-- same transaction as the request's own writes.
CREATE TABLE idempotency_keys (
    org_id BIGINT NOT NULL REFERENCES organizations (id),
    key TEXT NOT NULL,
    fingerprint BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    status BIGINT NOT NULL,
    body BYTEA NOT NULL,
    PRIMARY KEY (org_id, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE TABLE contacts (
    id BIGSERIAL PRIMARY KEY,
    campaign_id BIGINT NOT NULL REFERENCES campaigns (id),
    -- E.164.
    phone TEXT NOT NULL,
    name TEXT,
    context TEXT,
    f_id TEXT,
    extracted_data TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL DEFAULT 'queue',
    retries BIGINT NOT NULL DEFAULT 0,
    failed_retries BIGINT NOT NULL DEFAULT 0,
    has_follow_up BOOLEAN NOT NULL DEFAULT FALSE,
    call_count BIGINT NOT NULL DEFAULT 0,
    billed_duration BIGINT NOT NULL DEFAULT 0,
    last_call_at BIGINT,
    -- When a `retrying` contact may be attempted again (unix milliseconds).
    next_attempt_at BIGINT,
    created_at BIGINT NOT NULL,
    last_attempt_id TEXT,
    -- Set once, never cleared: contactsProcessed (a finished call) and contactsAnswered (by a human).
    processed BOOLEAN NOT NULL DEFAULT FALSE,
    answered BOOLEAN NOT NULL DEFAULT FALSE
);
-- Duplicates are found by number within a campaign.
CREATE UNIQUE INDEX contacts_by_phone ON contacts (campaign_id, phone);
-- Paging in the order contacts were added.
CREATE INDEX contacts_by_campaign ON contacts (campaign_id, id);
-- Paging by status, and the dispatcher finding queued contacts in order.
CREATE INDEX contacts_by_status ON contacts (campaign_id, status, id);
-- Retrying contacts that are due, per campaign.
CREATE INDEX contacts_retry_due ON contacts (campaign_id, next_attempt_at) WHERE status = 'retrying';

-- Contacts per status, kept in the transaction that changes them: counts never scan contacts.
CREATE TABLE campaign_contact_counts (
    campaign_id BIGINT NOT NULL REFERENCES campaigns (id),
    status TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, status)
);

-- One call or message, written in the transaction that claims the contact (see the SQLite
-- migration 0004 for the meaning of each column).
CREATE TABLE attempts (
    id TEXT PRIMARY KEY,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    campaign_id BIGINT NOT NULL REFERENCES campaigns (id),
    contact_id BIGINT NOT NULL,
    iteration BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    open BOOLEAN NOT NULL DEFAULT TRUE,
    handed_off BOOLEAN NOT NULL DEFAULT FALSE,
    handoff_tries BIGINT NOT NULL DEFAULT 0,
    due_at BIGINT NOT NULL,
    deadline BIGINT NOT NULL,
    template TEXT,
    answered_by TEXT,
    converted BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    ended_at BIGINT,
    sent_at BIGINT,
    delivered_at BIGINT,
    read_at BIGINT,
    duration BIGINT,
    billed_duration BIGINT,
    ended_by TEXT,
    ended_reason TEXT,
    extracted_data TEXT,
    tags TEXT
);
-- /calls and /messages in creation order.
CREATE INDEX attempts_by_campaign ON attempts (campaign_id, created_at, seq);
-- Re-sends and timeouts: only open attempts are indexed.
CREATE INDEX attempts_due ON attempts (due_at) WHERE open;

-- Attempts started per campaign and minute (message_limit's rolling 24 hours).
CREATE TABLE campaign_starts (
    campaign_id BIGINT NOT NULL REFERENCES campaigns (id),
    minute BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, minute)
);
