//! The do-not-contact list and opt-out keywords on PostgreSQL (contract §12.1): a batch's entries
//! inserted by one array-valued statement (`UNNEST`), every change kept in `dnc_history`.

use std::collections::HashSet;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::postgres::PgConnection;
use sqlx::{Postgres, QueryBuilder, Row};

use super::{PostgresStore, record_response};
use crate::domain::contact::PhoneNumber;
use crate::domain::dnc::{DncChannel, DncItem, DncResult, distinct_entries, resolve_batch};
use crate::store::shared::{SETTINGS_TIMEZONE, dnc_change_from_row, dnc_entry_from_row, keywords_from};
use crate::store::{DncChange, DncEntry, DncFilter, DncOrigin, DncPage, DncStore, OrgId, ResponseRecorder, StoreResult, to_seconds};

/// Adds the batch's entries new to the list, each with its `added` history row; the items' results.
pub(super) async fn add_entries(
    conn: &mut PgConnection,
    org: OrgId,
    items: &[DncItem],
    origin: &DncOrigin,
    at: Timestamp,
) -> StoreResult<Vec<DncResult>> {
    let entries = distinct_entries(items);
    let mut inserted: HashSet<(String, DncChannel)> = HashSet::new();
    if !entries.is_empty() {
        let contacts: Vec<&str> = entries.iter().map(|e| e.contact.as_str()).collect();
        let channels: Vec<&str> = entries.iter().map(|e| e.channel.as_str()).collect();
        let reasons: Vec<Option<&str>> = entries.iter().map(|e| e.reason.as_deref()).collect();
        // The entries new to the list come back; their history rows go in with them.
        let rows = sqlx::query(
            "WITH added AS ( \
               INSERT INTO dnc_entries (org_id, contact, channel, reason, source, created_at) \
               SELECT $1, v.contact, v.channel, v.reason, $2, $3 \
               FROM UNNEST($4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS v(contact, channel, reason, n) ORDER BY v.n \
               ON CONFLICT DO NOTHING RETURNING id, contact, channel, reason), \
             logged AS ( \
               INSERT INTO dnc_history (org_id, contact, action, channel, reason, source, key_prefix, at) \
               SELECT $1, contact, 'added', channel, reason, $2, $7, $3 FROM added ORDER BY id) \
             SELECT contact, channel FROM added",
        )
        .bind(org)
        .bind(origin.source.as_str())
        .bind(to_seconds(at))
        .bind(&contacts)
        .bind(&channels)
        .bind(&reasons)
        .bind(origin.key_prefix.as_deref())
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let channel: String = row.try_get("channel")?;
            if let Some(channel) = DncChannel::parse(&channel) {
                inserted.insert((row.try_get("contact")?, channel));
            }
        }
    }
    Ok(resolve_batch(items, |contact, channel| inserted.contains(&(contact.to_owned(), channel))))
}

/// Appends the list's conditions: the organization, then the number and the channel when filtered on.
fn push_conditions(query: &mut QueryBuilder<Postgres>, org: OrgId, filter: &DncFilter) {
    query.push(" WHERE org_id = ").push_bind(org);
    if let Some(contact) = &filter.contact {
        query.push(" AND contact = ").push_bind(contact.as_str().to_owned());
    }
    if let Some(channel) = filter.channel {
        query.push(" AND channel = ").push_bind(channel.as_str());
    }
}

/// The organization's keywords (`None`: the defaults).
pub(super) async fn keywords(conn: &mut PgConnection, org: OrgId) -> StoreResult<Option<Vec<String>>> {
    let stored: Option<Option<String>> =
        sqlx::query_scalar("SELECT opt_out_keywords FROM organizations WHERE id = $1").bind(org).fetch_optional(&mut *conn).await?;
    keywords_from(stored.flatten())
}

#[async_trait]
impl DncStore for PostgresStore {
    async fn add_dnc_entries(
        &self,
        org: OrgId,
        items: Vec<DncItem>,
        origin: DncOrigin,
        at: Timestamp,
        record: Option<ResponseRecorder<Vec<DncResult>>>,
    ) -> StoreResult<Vec<DncResult>> {
        let mut tx = self.pool.begin().await?;
        let results = add_entries(&mut tx, org, &items, &origin, at).await?;
        record_response(&mut tx, record, &results).await?;
        tx.commit().await?;
        Ok(results)
    }

    async fn list_dnc_entries(&self, org: OrgId, filter: &DncFilter, page_size: u32, page_index: u32) -> StoreResult<DncPage> {
        // One snapshot for the count and the page.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        let mut count = QueryBuilder::<Postgres>::new("SELECT COUNT(*) FROM dnc_entries");
        push_conditions(&mut count, org, filter);
        let total_count: i64 = count.build_query_scalar().fetch_one(&mut *tx).await?;
        let mut page = QueryBuilder::<Postgres>::new("SELECT contact, channel, reason, source, created_at FROM dnc_entries");
        push_conditions(&mut page, org, filter);
        page.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(page_size));
        page.push(" OFFSET ").push_bind(i64::from(page_size) * i64::from(page_index));
        let rows = page.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let entries = rows.iter().map(dnc_entry_from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(DncPage { total_count, entries })
    }

    async fn remove_dnc_entries(
        &self,
        org: OrgId,
        contact: &PhoneNumber,
        channel: DncChannel,
        origin: DncOrigin,
        at: Timestamp,
    ) -> StoreResult<Vec<DncEntry>> {
        // `all` removes every entry of the number; another channel only its own entry.
        let only = (channel != DncChannel::All).then_some(channel.as_str());
        let rows = sqlx::query(
            "WITH removed AS ( \
               DELETE FROM dnc_entries WHERE org_id = $1 AND contact = $2 AND ($3::text IS NULL OR channel = $3) \
               RETURNING id, contact, channel, reason, source, created_at), \
             logged AS ( \
               INSERT INTO dnc_history (org_id, contact, action, channel, reason, source, key_prefix, at) \
               SELECT $1, contact, 'removed', channel, reason, $4, $5, $6 FROM removed ORDER BY id) \
             SELECT contact, channel, reason, source, created_at FROM removed ORDER BY id",
        )
        .bind(org)
        .bind(contact.as_str())
        .bind(only)
        .bind(origin.source.as_str())
        .bind(origin.key_prefix.as_deref())
        .bind(to_seconds(at))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(dnc_entry_from_row).collect()
    }

    async fn dnc_history(&self, org: OrgId, contact: &PhoneNumber) -> StoreResult<Vec<DncChange>> {
        let rows = sqlx::query(
            "SELECT at, action, channel, reason, source, key_prefix FROM dnc_history WHERE org_id = $1 AND contact = $2 ORDER BY id",
        )
        .bind(org)
        .bind(contact.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(dnc_change_from_row).collect()
    }

    async fn opt_out_keywords(&self, org: OrgId) -> StoreResult<Option<Vec<String>>> {
        let mut conn = self.pool.acquire().await?;
        keywords(&mut conn, org).await
    }

    async fn set_opt_out_keywords(&self, org: OrgId, keywords: Vec<String>) -> StoreResult<()> {
        sqlx::query("UPDATE organizations SET opt_out_keywords = $1 WHERE id = $2")
            .bind(serde_json::to_string(&keywords)?)
            .bind(org)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn first_campaign_timezone(&self, org: OrgId) -> StoreResult<Option<String>> {
        let sql = format!("SELECT settings::jsonb ->> '{SETTINGS_TIMEZONE}' FROM campaigns WHERE org_id = $1 ORDER BY id LIMIT 1");
        let timezone: Option<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(org).fetch_optional(&self.pool).await?;
        Ok(timezone.flatten())
    }

    async fn organization_named(&self, name: &str) -> StoreResult<Option<OrgId>> {
        Ok(sqlx::query_scalar("SELECT id FROM organizations WHERE name = $1").bind(name).fetch_optional(&self.pool).await?)
    }
}
