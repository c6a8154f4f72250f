//! The dashboard's sessions, an organization's own API keys and its attempts-per-hour chart on
//! SQLite (contract §11).

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::params;

use super::{SqliteStore, all_rows, insert_org_key, revoke_key};
use crate::domain::contact::{Contact, ContactSearch};
use crate::domain::ids::NewApiKey;
use crate::store::shared::{
    api_key_info_from_row, contact_columns, contact_from_row, hour_count_from_row, minute_of, select_api_key_infos, session_from_row,
};
use crate::store::{ApiKeyInfo, DashboardStore, NewSession, OrgId, SessionRecord, StoreResult, to_seconds};

#[async_trait]
impl DashboardStore for SqliteStore {
    async fn create_session(&self, session: &NewSession) -> StoreResult<()> {
        let session = session.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO dashboard_sessions (id_hash, org_id, key_id, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            )?
            .execute(params![session.id_hash, session.org_id, session.key_id, to_seconds(session.created_at)])?;
            Ok(())
        })
        .await
    }

    /// A primary-key lookup on every dashboard request: on the calling thread, as API keys are.
    async fn find_session(&self, id_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let sql = "SELECT s.org_id, o.name, s.key_id, s.created_at, s.last_seen_at, k.revoked_at IS NOT NULL AS key_revoked \
                   FROM dashboard_sessions s JOIN organizations o ON o.id = s.org_id JOIN api_keys k ON k.id = s.key_id \
                   WHERE s.id_hash = ?";
        self.reads.row(sql, [id_hash], |row| session_from_row(row))
    }

    async fn touch_session(&self, id_hash: &str, at: Timestamp) -> StoreResult<()> {
        let id_hash = id_hash.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("UPDATE dashboard_sessions SET last_seen_at = ? WHERE id_hash = ?")?
                .execute(params![to_seconds(at), id_hash])?;
            Ok(())
        })
        .await
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        let id_hash = id_hash.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM dashboard_sessions WHERE id_hash = ?")?.execute([id_hash])?;
            Ok(())
        })
        .await
    }

    /// Bounds are compared in whole seconds, the precision sessions are stored in.
    async fn purge_sessions(&self, idle_before: Timestamp, created_before: Timestamp) -> StoreResult<u64> {
        self.write(move |conn| {
            let deleted = conn
                .prepare_cached("DELETE FROM dashboard_sessions WHERE last_seen_at < ? OR created_at < ?")?
                .execute(params![to_seconds(idle_before), to_seconds(created_before)])?;
            Ok(deleted as u64)
        })
        .await
    }

    async fn list_org_api_keys(&self, org: OrgId) -> StoreResult<Vec<ApiKeyInfo>> {
        self.reads
            .read(move |conn| {
                all_rows(
                    conn,
                    concat!(select_api_key_infos!(), " WHERE k.org_id = ? ORDER BY k.created_at DESC, k.id DESC"),
                    [org],
                    |row| api_key_info_from_row(row),
                )
            })
            .await
    }

    async fn create_org_api_key(&self, org: OrgId, key: &NewApiKey, at: Timestamp) -> StoreResult<()> {
        let (prefix, hash) = (key.prefix.clone(), key.hash.clone());
        self.write(move |conn| insert_org_key(conn, org, &prefix, &hash, at)).await
    }

    async fn revoke_org_api_key(&self, org: OrgId, prefix: &str, at: Timestamp) -> StoreResult<bool> {
        let prefix = prefix.to_owned();
        self.write(move |conn| revoke_key(conn, Some(org), &prefix, at)).await
    }

    async fn attempts_per_hour(&self, org: OrgId, campaign_id: i64, since: Timestamp) -> StoreResult<Vec<(Timestamp, i64)>> {
        self.reads
            .read(move |conn| {
                all_rows(
                    conn,
                    "SELECT s.minute / 60 AS hour, SUM(s.count) AS count FROM campaign_starts s JOIN campaigns c ON c.id = s.campaign_id \
                     WHERE c.org_id = ? AND s.campaign_id = ? AND s.minute >= ? GROUP BY hour ORDER BY hour",
                    params![org, campaign_id, minute_of(since)],
                    |row| hour_count_from_row(row),
                )
            })
            .await
    }

    async fn search_contacts(&self, org: OrgId, campaign_id: i64, search: &ContactSearch, limit: u32) -> StoreResult<Option<Vec<Contact>>> {
        let search = search.clone();
        self.reads
            .read(move |conn| {
                let owned = conn.prepare_cached("SELECT 1 FROM campaigns WHERE org_id = ? AND id = ?")?.exists([org, campaign_id])?;
                if !owned {
                    return Ok(None);
                }
                let (low, high) = search.range();
                // The indexes `contacts_by_phone` and `contacts_by_name` (NOCASE) answer these.
                let sql = match search {
                    ContactSearch::NumberStart(_) => concat!(
                        "SELECT ",
                        contact_columns!(),
                        " FROM contacts WHERE campaign_id = ? AND phone >= ? AND phone < ? ORDER BY phone LIMIT ?"
                    ),
                    ContactSearch::NameStart(_) => concat!(
                        "SELECT ",
                        contact_columns!(),
                        " FROM contacts WHERE campaign_id = ? AND name >= ? COLLATE NOCASE AND name < ? COLLATE NOCASE \
                         ORDER BY name COLLATE NOCASE LIMIT ?"
                    ),
                };
                all_rows(conn, sql, params![campaign_id, low, high, limit], |row| contact_from_row(row)).map(Some)
            })
            .await
    }
}
