//! The dashboard's sessions, an organization's own API keys and its attempts-per-hour chart on
//! PostgreSQL (contract §11).

use async_trait::async_trait;
use jiff::Timestamp;

use super::{PostgresStore, insert_org_key, revoke_key};
use crate::domain::contact::{Contact, ContactSearch};
use crate::domain::ids::NewApiKey;
use crate::store::shared::{
    api_key_info_from_row, contact_columns, contact_from_row, hour_count_from_row, minute_of, select_api_key_infos, session_from_row,
};
use crate::store::{ApiKeyInfo, DashboardStore, NewSession, OrgId, SessionRecord, StoreResult, to_seconds};

#[async_trait]
impl DashboardStore for PostgresStore {
    async fn create_session(&self, session: &NewSession) -> StoreResult<()> {
        sqlx::query("INSERT INTO dashboard_sessions (id_hash, org_id, key_id, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $4)")
            .bind(&session.id_hash)
            .bind(session.org_id)
            .bind(session.key_id)
            .bind(to_seconds(session.created_at))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn find_session(&self, id_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query(
            "SELECT s.org_id, o.name, s.key_id, s.created_at, s.last_seen_at, k.revoked_at IS NOT NULL AS key_revoked \
             FROM dashboard_sessions s JOIN organizations o ON o.id = s.org_id JOIN api_keys k ON k.id = s.key_id \
             WHERE s.id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn touch_session(&self, id_hash: &str, at: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE dashboard_sessions SET last_seen_at = $1 WHERE id_hash = $2")
            .bind(to_seconds(at))
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE id_hash = $1").bind(id_hash).execute(&self.pool).await?;
        Ok(())
    }

    /// Bounds are compared in whole seconds, the precision sessions are stored in.
    async fn purge_sessions(&self, idle_before: Timestamp, created_before: Timestamp) -> StoreResult<u64> {
        let deleted = sqlx::query("DELETE FROM dashboard_sessions WHERE last_seen_at < $1 OR created_at < $2")
            .bind(to_seconds(idle_before))
            .bind(to_seconds(created_before))
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected())
    }

    async fn list_org_api_keys(&self, org: OrgId) -> StoreResult<Vec<ApiKeyInfo>> {
        let rows = sqlx::query(concat!(select_api_key_infos!(), " WHERE k.org_id = $1 ORDER BY k.created_at DESC, k.id DESC"))
            .bind(org)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(api_key_info_from_row).collect()
    }

    async fn create_org_api_key(&self, org: OrgId, key: &NewApiKey, at: Timestamp) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        insert_org_key(&mut tx, org, &key.prefix, &key.hash, at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_org_api_key(&self, org: OrgId, prefix: &str, at: Timestamp) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let exists = revoke_key(&mut tx, Some(org), prefix, at).await?;
        tx.commit().await?;
        Ok(exists)
    }

    async fn attempts_per_hour(&self, org: OrgId, campaign_id: i64, since: Timestamp) -> StoreResult<Vec<(Timestamp, i64)>> {
        let rows = sqlx::query(
            "SELECT s.minute / 60 AS hour, SUM(s.count)::bigint AS count FROM campaign_starts s JOIN campaigns c ON c.id = s.campaign_id \
             WHERE c.org_id = $1 AND s.campaign_id = $2 AND s.minute >= $3 GROUP BY hour ORDER BY hour",
        )
        .bind(org)
        .bind(campaign_id)
        .bind(minute_of(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(hour_count_from_row).collect()
    }

    async fn search_contacts(&self, org: OrgId, campaign_id: i64, search: &ContactSearch, limit: u32) -> StoreResult<Option<Vec<Contact>>> {
        let owned: Option<i64> = sqlx::query_scalar("SELECT id FROM campaigns WHERE org_id = $1 AND id = $2")
            .bind(org)
            .bind(campaign_id)
            .fetch_optional(&self.pool)
            .await?;
        if owned.is_none() {
            return Ok(None);
        }
        let (low, high) = search.range();
        // The indexes `contacts_by_phone` and `contacts_by_name` (lower(name), byte order) answer these.
        let sql = match search {
            ContactSearch::NumberStart(_) => {
                concat!(
                    "SELECT ",
                    contact_columns!(),
                    " FROM contacts WHERE campaign_id = $1 AND phone >= $2 AND phone < $3 ORDER BY phone LIMIT $4"
                )
            }
            ContactSearch::NameStart(_) => concat!(
                "SELECT ",
                contact_columns!(),
                " FROM contacts WHERE campaign_id = $1 AND lower(name) COLLATE \"C\" >= $2 AND lower(name) COLLATE \"C\" < $3 \
                 ORDER BY lower(name) COLLATE \"C\" LIMIT $4"
            ),
        };
        let rows = sqlx::query(sql).bind(campaign_id).bind(low).bind(high).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(contact_from_row).collect::<StoreResult<Vec<_>>>().map(Some)
    }
}
