-- Idempotency-Key records (contract §7). A row is claimed (status NULL, locked_until set) before
-- the request runs, and completed with the response in the same transaction as the request's
-- own writes.
CREATE TABLE idempotency_keys (
    org_id INTEGER NOT NULL REFERENCES organizations (id),
    key TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    -- While in progress: who holds the key, and until when (unix milliseconds).
    claim TEXT,
    locked_until INTEGER,
    -- Once complete: the response to replay.
    status INTEGER,
    body BLOB,
    PRIMARY KEY (org_id, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
