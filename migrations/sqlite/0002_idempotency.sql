-- Idempotency-Key records (contract §7): the response of a completed request, written in the
-- same transaction as the request's own writes. Requests still running are tracked in memory by
-- the one process that owns this database file.
CREATE TABLE idempotency_keys (
    org_id INTEGER NOT NULL REFERENCES organizations (id),
    key TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    status INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (org_id, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
