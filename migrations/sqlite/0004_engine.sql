-- The engine (contract §5): attempts as first-class rows, and the counters analytics read.

-- One call or message. Written in the transaction that claims the contact, before the provider
-- sees it; its id is the provider's idempotency key on every re-send. Times are unix milliseconds.
CREATE TABLE attempts (
    id TEXT PRIMARY KEY,
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    -- No foreign key: a failed contact may be deleted, its attempts stay in the campaign's history.
    contact_id INTEGER NOT NULL,
    iteration INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    -- 1 while the contact is `sending` on this attempt (it counts against concurrency_limit).
    open INTEGER NOT NULL DEFAULT 1,
    -- 1 once the provider has the attempt; until then it is (re-)sent when due_at is reached.
    handed_off INTEGER NOT NULL DEFAULT 0,
    handoff_tries INTEGER NOT NULL DEFAULT 0,
    -- When the engine next looks at this open attempt: before the handoff is confirmed, the end
    -- of the sender's lease (or of a provider's back-off), when it may be re-sent; after, deadline.
    due_at INTEGER NOT NULL,
    -- Closed as failed when no final event came by then (OUTBOUND_ATTEMPT_TIMEOUT).
    deadline INTEGER NOT NULL,
    template TEXT,
    answered_by TEXT,
    converted INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER,
    sent_at INTEGER,
    delivered_at INTEGER,
    read_at INTEGER,
    duration INTEGER,
    billed_duration INTEGER,
    ended_by TEXT,
    ended_reason TEXT,
    extracted_data TEXT,
    tags TEXT
);
-- /calls and /messages in creation order.
CREATE INDEX attempts_by_campaign ON attempts (campaign_id, created_at);
-- Re-sends and timeouts: only open attempts are indexed.
CREATE INDEX attempts_due ON attempts (due_at) WHERE open = 1;

-- Attempts started per campaign and minute: message_limit's rolling 24 hours sums at most 1,440
-- rows, whatever the campaign's size.
CREATE TABLE campaign_starts (
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    minute INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, minute)
) WITHOUT ROWID;

ALTER TABLE contacts ADD COLUMN last_attempt_id TEXT;
-- Set once, never cleared: contactsProcessed (a finished call) and contactsAnswered (by a human).
ALTER TABLE contacts ADD COLUMN processed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE contacts ADD COLUMN answered INTEGER NOT NULL DEFAULT 0;
-- Retrying contacts that are due, per campaign.
CREATE INDEX contacts_retry_due ON contacts (campaign_id, next_attempt_at) WHERE status = 'retrying';

-- Counters kept in the transactions that change them (analytics never scan).
ALTER TABLE campaigns ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN calls INTEGER NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN calls_human INTEGER NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN calls_machine INTEGER NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN calls_unknown INTEGER NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN messages INTEGER NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN contacts_processed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN contacts_answered INTEGER NOT NULL DEFAULT 0;
-- Campaigns the engine looks at.
CREATE INDEX campaigns_running ON campaigns (status) WHERE status IN ('active', 'cooldown', 'inactive');
