-- Real providers (PROVIDERS.md §1).
-- An integration is `failing` while health_reason is set (since health_since, unix seconds).
ALTER TABLE integrations ADD COLUMN health_reason TEXT;
ALTER TABLE integrations ADD COLUMN health_since INTEGER;
-- Pacing (max_per_second): the GCRA's theoretical arrival time of the next hand-off, unix µs.
ALTER TABLE integrations ADD COLUMN pace_tat INTEGER;
-- The provider's own id of an attempt (Twilio sid, wamid): callbacks find attempts by it.
ALTER TABLE attempts ADD COLUMN provider_id TEXT;
CREATE INDEX attempts_by_provider_id ON attempts (provider_id) WHERE provider_id IS NOT NULL;
-- 1 while a hand-off may be on its way to the provider (from its claim or take until the provider
-- answers); 0 once a re-send is known to be safe (the provider throttled it, or never got it).
-- A lease that runs out with this set leaves the hand-off in doubt (PROVIDERS.md §1).
ALTER TABLE attempts ADD COLUMN handing_off INTEGER NOT NULL DEFAULT 1;
-- Why a contact failed for good (`invalid_number`), NULL otherwise.
ALTER TABLE contacts ADD COLUMN failed_reason TEXT;
-- Texts contacts sent back (WhatsApp), kept for the opt-out rule (contract §12.1).
CREATE TABLE inbound_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    integration_id TEXT NOT NULL REFERENCES integrations (id),
    sender TEXT NOT NULL,
    body TEXT NOT NULL,
    -- The attempt it answers, when the contact quoted one of ours.
    attempt_id TEXT,
    received_at INTEGER NOT NULL
);
CREATE INDEX inbound_messages_by_sender ON inbound_messages (integration_id, sender);
