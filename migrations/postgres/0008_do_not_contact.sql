-- The organization's do-not-contact list (contract §12.1).
CREATE TABLE dnc_entries (
    id BIGSERIAL PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES organizations (id),
    -- E.164.
    contact TEXT NOT NULL,
    -- phone_call | whatsapp | all
    channel TEXT NOT NULL,
    reason TEXT,
    -- api | dashboard | csv | opt_out_reply | provider
    source TEXT NOT NULL,
    -- Unix seconds.
    created_at BIGINT NOT NULL
);
-- One entry per number and channel; also the lookup of the suppression checks (contact add, claim).
CREATE UNIQUE INDEX dnc_by_contact ON dnc_entries (org_id, contact, channel);
-- The newest-first list, and the entries added since a campaign was created (plan preview).
CREATE INDEX dnc_by_age ON dnc_entries (org_id, created_at);
-- Every change to the list, kept after the entry is removed.
CREATE TABLE dnc_history (
    id BIGSERIAL PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES organizations (id),
    contact TEXT NOT NULL,
    -- added | removed
    action TEXT NOT NULL,
    channel TEXT NOT NULL,
    reason TEXT,
    source TEXT NOT NULL,
    -- The 8 characters of the API key used (source api), NULL otherwise.
    key_prefix TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX dnc_history_by_contact ON dnc_history (org_id, contact, id);
-- Opt-out keywords (JSON array of strings); NULL = the defaults of §12.1.
ALTER TABLE organizations ADD COLUMN opt_out_keywords TEXT;
