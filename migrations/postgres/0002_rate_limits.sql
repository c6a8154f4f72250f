-- The per-API-key rate limit shared by every process on this database (contract §6): one row per
-- key that is not full, holding its GCRA theoretical arrival time in unix nanoseconds. Rows whose
-- time is in the past mean "full" and are deleted periodically.
CREATE TABLE rate_limits (
    key TEXT PRIMARY KEY,
    tat BIGINT NOT NULL
);
