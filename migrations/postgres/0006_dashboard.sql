-- Dashboard sign-in sessions (contract §11), kept by the hash of their id only. Times are unix
-- seconds, as for API keys.
CREATE TABLE dashboard_sessions (
    id_hash TEXT PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES organizations (id),
    -- The key the session was opened with: revoking it ends the session.
    key_id BIGINT NOT NULL REFERENCES api_keys (id),
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
-- Idle sessions are purged by last_seen_at.
CREATE INDEX dashboard_sessions_by_last_seen ON dashboard_sessions (last_seen_at);
