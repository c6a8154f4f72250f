-- Calling hours in the contact's own time (contract §12.2).

-- The contact's own zone (IANA name) and where it came from: `given` (the item's `timezone`) or
-- `number` (the one zone its number maps to). Both NULL: the campaign's zone, whatever it is now.
ALTER TABLE contacts ADD COLUMN timezone TEXT;
ALTER TABLE contacts ADD COLUMN timezone_source TEXT;

-- The zones of a campaign's contacts ('' for "the campaign's own zone"), each with the number of
-- its contacts in `queue`; kept in the transactions that move contacts in or out of `queue`, so
-- that the claim and the plan preview learn a campaign's zones without scanning its contacts. A
-- row stays (at 0) once its zone has no queued contact: the claim also needs the zones of
-- `retrying` contacts, which are always among these.
CREATE TABLE campaign_zones (
    campaign_id BIGINT NOT NULL REFERENCES campaigns (id),
    timezone TEXT NOT NULL,
    queued BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, timezone)
);

-- Contacts stored before this step all use their campaign's zone.
INSERT INTO campaign_zones (campaign_id, timezone, queued)
SELECT campaign_id, '', COUNT(*) FILTER (WHERE status = 'queue') FROM contacts GROUP BY campaign_id;
