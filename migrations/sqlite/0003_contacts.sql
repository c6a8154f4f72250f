CREATE TABLE contacts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    -- E.164.
    phone TEXT NOT NULL,
    name TEXT,
    context TEXT,
    f_id TEXT,
    extracted_data TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL DEFAULT 'queue',
    retries INTEGER NOT NULL DEFAULT 0,
    failed_retries INTEGER NOT NULL DEFAULT 0,
    has_follow_up INTEGER NOT NULL DEFAULT 0,
    call_count INTEGER NOT NULL DEFAULT 0,
    billed_duration INTEGER NOT NULL DEFAULT 0,
    last_call_at INTEGER,
    -- When a `retrying` contact may be attempted again (unix milliseconds).
    next_attempt_at INTEGER,
    created_at INTEGER NOT NULL
);
-- Duplicates are found by number within a campaign.
CREATE UNIQUE INDEX contacts_by_phone ON contacts (campaign_id, phone);
-- Paging in the order contacts were added.
CREATE INDEX contacts_by_campaign ON contacts (campaign_id, id);
-- Paging by status, and the dispatcher finding queued contacts in order.
CREATE INDEX contacts_by_status ON contacts (campaign_id, status, id);

-- Contacts per status, kept in the transaction that changes them: counts never scan contacts.
CREATE TABLE campaign_contact_counts (
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    status TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, status)
) WITHOUT ROWID;

ALTER TABLE campaigns ADD COLUMN contact_count INTEGER NOT NULL DEFAULT 0;
