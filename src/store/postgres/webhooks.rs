//! Webhook subscriptions, the outbox of their events and the deliveries log on PostgreSQL (§8).
//! Several processes deliver: each subscription is delivered by one process at a time, the one
//! holding its lease, taken with `FOR UPDATE SKIP LOCKED`.

use std::collections::HashMap;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgConnection;

use super::{PostgresStore, record_response};
use crate::domain::campaign::CampaignStatus;
use crate::domain::webhook::{self, DeliveryStatus, NewEvent, Webhook, WebhookChange};
use crate::store::shared::{
    ATTEMPT_COLUMNS, DELIVERY_COLUMNS, DUE_DELIVERY_COLUMNS, NewDelivery, ReportCampaign, SETTINGS_NAME, SETTINGS_TIMEZONE,
    WEBHOOK_COLUMNS, attempt_of_report_from_row, contact_columns, contact_from_row, delivery_from_row, delivery_write,
    due_delivery_from_row, new_deliveries, report_campaign_from_row, status_changed_of_settings, subscription_from_row, webhook_from_row,
    webhook_summary_from_row,
};
use crate::store::{
    AttemptReport, DeliveryPage, DeliveryResult, DeliveryStore, DeliveryTake, DueDelivery, EventSource, OrgId, ResponseRecorder,
    RetryOutcome, StoreResult, WebhookAdmin, WebhookPage, WebhookStore, WebhookSummary, to_micros, to_seconds,
};

/// Records `events` of an organization for the subscriptions that want them, in the caller's
/// transaction: the outbox (§8.2).
pub(super) async fn record_events(conn: &mut PgConnection, org: OrgId, events: &[NewEvent], only: Option<&str>) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let rows = sqlx::query(
        "SELECT w.id, w.events, w.filters, o.public_id FROM webhooks w JOIN organizations o ON o.id = w.org_id \
         WHERE w.org_id = $1 AND w.enabled",
    )
    .bind(org)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let subscriptions = rows.iter().map(subscription_from_row).collect::<StoreResult<Vec<_>>>()?;
    insert_deliveries(conn, new_deliveries(&subscriptions, events, only)).await
}

/// Inserts deliveries in one statement.
async fn insert_deliveries(conn: &mut PgConnection, rows: Vec<NewDelivery>) -> StoreResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let count = rows.len();
    let (mut webhook_ids, mut event_ids, mut types) = (Vec::with_capacity(count), Vec::with_capacity(count), Vec::with_capacity(count));
    let (mut attempt_ids, mut statuses, mut previous) = (Vec::with_capacity(count), Vec::with_capacity(count), Vec::with_capacity(count));
    let (mut payloads, mut created) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for row in rows {
        webhook_ids.push(row.webhook_id);
        event_ids.push(row.event_id);
        types.push(row.event_type);
        attempt_ids.push(row.attempt_id);
        statuses.push(row.attempt_status);
        previous.push(row.previous_status);
        payloads.push(row.payload);
        created.push(row.created_at);
    }
    sqlx::query(
        "INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, attempt_id, attempt_status, previous_status, payload, \
         status, created_at, next_attempt_at) \
         SELECT w, e, t, a, s, p, b, 'pending', c, c FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::text[], $8::bigint[]) AS x(w, e, t, a, s, p, b, c)",
    )
    .bind(&webhook_ids)
    .bind(&event_ids)
    .bind(&types)
    .bind(&attempt_ids)
    .bind(&statuses)
    .bind(&previous)
    .bind(&payloads)
    .bind(&created)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// [`record_events`] of a campaign's organization.
pub(super) async fn record_campaign_events(conn: &mut PgConnection, campaign_id: i64, events: &[NewEvent]) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let org: Option<i64> =
        sqlx::query_scalar("SELECT org_id FROM campaigns WHERE id = $1").bind(campaign_id).fetch_optional(&mut *conn).await?;
    match org {
        Some(org) => record_events(conn, org, events, None).await,
        None => Ok(()),
    }
}

/// `campaign.status_changed` when adding contacts moved a campaign to `ready`.
pub(super) async fn record_status_change(
    conn: &mut PgConnection,
    org: OrgId,
    campaign_id: i64,
    status: CampaignStatus,
    previous: CampaignStatus,
    at: Timestamp,
) -> StoreResult<()> {
    if status == previous {
        return Ok(());
    }
    let settings: Option<String> =
        sqlx::query_scalar("SELECT settings FROM campaigns WHERE id = $1").bind(campaign_id).fetch_optional(&mut *conn).await?;
    let Some(settings) = settings else { return Ok(()) };
    record_events(conn, org, &status_changed_of_settings(campaign_id, &settings, status, previous, at)?, None).await
}

async fn webhook_of(conn: &mut PgConnection, org: OrgId, id: &str, lock: bool) -> StoreResult<Option<Webhook>> {
    let sql =
        format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.org_id = $1 AND w.id = $2{}", if lock { " FOR UPDATE" } else { "" });
    let row = sqlx::query(AssertSqlSafe(sql.as_str())).bind(org).bind(id).fetch_optional(&mut *conn).await?;
    row.as_ref().map(webhook_from_row).transpose()
}

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn create_webhook(&self, org: OrgId, webhook: Webhook, record: Option<ResponseRecorder<Webhook>>) -> StoreResult<Webhook> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO webhooks (id, org_id, url, events, filters, description, enabled, secret, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&webhook.id)
        .bind(org)
        .bind(&webhook.url)
        .bind(serde_json::to_string(&webhook.events)?)
        .bind(webhook.filters.as_ref().map(serde_json::to_string).transpose()?)
        .bind(&webhook.description)
        .bind(webhook.enabled)
        .bind(&webhook.secret)
        .bind(to_seconds(webhook.created_at))
        .bind(to_seconds(webhook.updated_at))
        .execute(&mut *tx)
        .await?;
        record_response(&mut tx, record, &webhook).await?;
        tx.commit().await?;
        Ok(webhook)
    }

    async fn get_webhook(&self, org: OrgId, id: &str) -> StoreResult<Option<Webhook>> {
        let mut conn = self.pool.acquire().await?;
        webhook_of(&mut conn, org, id, false).await
    }

    async fn list_webhooks(&self, org: OrgId, page_size: u32, page_index: u32) -> StoreResult<WebhookPage> {
        let total_count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhooks WHERE org_id = $1").bind(org).fetch_one(&self.pool).await?;
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.org_id = $1 ORDER BY w.created_at DESC, w.id DESC LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
            .bind(org)
            .bind(i64::from(page_size))
            .bind(i64::from(page_size) * i64::from(page_index))
            .fetch_all(&self.pool)
            .await?;
        Ok(WebhookPage { total_count, webhooks: rows.iter().map(webhook_from_row).collect::<StoreResult<_>>()? })
    }

    async fn update_webhook(&self, org: OrgId, id: &str, change: WebhookChange, at: Timestamp) -> StoreResult<Option<Webhook>> {
        let mut tx = self.pool.begin().await?;
        let Some(mut webhook) = webhook_of(&mut tx, org, id, true).await? else { return Ok(None) };
        change.apply(&mut webhook, at);
        sqlx::query(
            "UPDATE webhooks SET url = $1, events = $2, filters = $3, description = $4, enabled = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(&webhook.url)
        .bind(serde_json::to_string(&webhook.events)?)
        .bind(webhook.filters.as_ref().map(serde_json::to_string).transpose()?)
        .bind(&webhook.description)
        .bind(webhook.enabled)
        .bind(to_seconds(webhook.updated_at))
        .bind(&webhook.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(webhook))
    }

    async fn delete_webhook(&self, org: OrgId, id: &str) -> StoreResult<bool> {
        let deleted = sqlx::query("DELETE FROM webhooks WHERE org_id = $1 AND id = $2").bind(org).bind(id).execute(&self.pool).await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn rotate_webhook_secret(
        &self,
        org: OrgId,
        id: &str,
        secret: String,
        at: Timestamp,
        record: Option<ResponseRecorder<Option<Webhook>>>,
    ) -> StoreResult<Option<Webhook>> {
        let mut tx = self.pool.begin().await?;
        let mut webhook = webhook_of(&mut tx, org, id, true).await?;
        if let Some(webhook) = webhook.as_mut() {
            sqlx::query("UPDATE webhooks SET previous_secret = secret, secret = $1, rotated_at = $2, updated_at = $3 WHERE id = $4")
                .bind(&secret)
                .bind(to_micros(at))
                .bind(to_seconds(at))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            webhook.secret = secret;
            webhook.updated_at = crate::domain::whole_seconds(at);
        }
        record_response(&mut tx, record, &webhook).await?;
        tx.commit().await?;
        Ok(webhook)
    }

    async fn queue_test_event(
        &self,
        org: OrgId,
        id: &str,
        at: Timestamp,
        record: Option<ResponseRecorder<Option<String>>>,
    ) -> StoreResult<Option<String>> {
        let mut tx = self.pool.begin().await?;
        let mut event_id = None;
        if webhook_of(&mut tx, org, id, false).await?.is_some() {
            let event = webhook::test_event(id, at);
            let project_id: String =
                sqlx::query_scalar("SELECT public_id FROM organizations WHERE id = $1").bind(org).fetch_one(&mut *tx).await?;
            // Queued for a disabled subscription too (it is asked for by name); it goes out once enabled.
            let subscription = webhook::Subscription { id: id.to_owned(), events: vec![event.event_type], filters: None };
            insert_deliveries(&mut tx, new_deliveries(&[(subscription, project_id)], std::slice::from_ref(&event), Some(id))).await?;
            event_id = Some(event.event_id);
        }
        record_response(&mut tx, record, &event_id).await?;
        tx.commit().await?;
        Ok(event_id)
    }

    async fn list_deliveries(
        &self,
        org: OrgId,
        webhook_id: &str,
        status: Option<DeliveryStatus>,
        page_size: u32,
        page_index: u32,
    ) -> StoreResult<Option<DeliveryPage>> {
        let mut conn = self.pool.acquire().await?;
        if webhook_of(&mut conn, org, webhook_id, false).await?.is_none() {
            return Ok(None);
        }
        let status = status.map(DeliveryStatus::as_str);
        let total_count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = $1 AND ($2::text IS NULL OR status = $2)")
                .bind(webhook_id)
                .bind(status)
                .fetch_one(&mut *conn)
                .await?;
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             JOIN organizations o ON o.id = w.org_id WHERE d.webhook_id = $1 AND ($2::text IS NULL OR d.status = $2) \
             ORDER BY d.id DESC LIMIT $3 OFFSET $4"
        );
        let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
            .bind(webhook_id)
            .bind(status)
            .bind(i64::from(page_size))
            .bind(i64::from(page_size) * i64::from(page_index))
            .fetch_all(&mut *conn)
            .await?;
        let mut deliveries = rows.iter().map(delivery_from_row).collect::<StoreResult<Vec<_>>>()?;
        let reports = attempt_reports(&mut conn, &EventSource::subjects(deliveries.iter().map(|d| &d.body))).await?;
        deliveries.iter_mut().for_each(|d| d.body.attach(&reports));
        Ok(Some(DeliveryPage { total_count, deliveries }))
    }

    async fn retry_delivery(
        &self,
        org: OrgId,
        webhook_id: &str,
        delivery_id: i64,
        at: Timestamp,
        record: Option<ResponseRecorder<RetryOutcome>>,
    ) -> StoreResult<RetryOutcome> {
        let mut tx = self.pool.begin().await?;
        let status: Option<String> = sqlx::query_scalar(
            "SELECT d.status FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             WHERE w.org_id = $1 AND d.webhook_id = $2 AND d.id = $3 FOR UPDATE OF d",
        )
        .bind(org)
        .bind(webhook_id)
        .bind(delivery_id)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match status.as_deref().and_then(DeliveryStatus::parse) {
            None => RetryOutcome::NotFound,
            Some(status) if !status.may_retry() => RetryOutcome::NotFailed(status),
            Some(_) => {
                sqlx::query("UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1, lease_until = NULL WHERE id = $2")
                    .bind(to_micros(at))
                    .bind(delivery_id)
                    .execute(&mut *tx)
                    .await?;
                RetryOutcome::Retried
            }
        };
        record_response(&mut tx, record, &outcome).await?;
        tx.commit().await?;
        Ok(outcome)
    }
}

/// The reports of the attempts that exist among `ids`, by id; each campaign is read once.
async fn attempt_reports(conn: &mut PgConnection, ids: &[String]) -> StoreResult<HashMap<String, AttemptReport>> {
    let attempt_sql =
        format!("SELECT {ATTEMPT_COLUMNS}, a.campaign_id FROM attempts a JOIN contacts ct ON ct.id = a.contact_id WHERE a.id = $1");
    let contact_sql = concat!("SELECT ", contact_columns!(), " FROM contacts WHERE id = $1");
    let mut campaigns: HashMap<i64, Option<ReportCampaign>> = HashMap::new();
    let mut reports = HashMap::with_capacity(ids.len());
    for id in ids {
        let Some(row) = sqlx::query(AssertSqlSafe(attempt_sql.as_str())).bind(id).fetch_optional(&mut *conn).await? else { continue };
        let (attempt, campaign_id) = attempt_of_report_from_row(&row)?;
        let Some(contact_id) = attempt.contact.as_ref().map(|c| c.id) else { continue };
        if let std::collections::hash_map::Entry::Vacant(entry) = campaigns.entry(campaign_id) {
            let campaign = sqlx::query(
                "SELECT c.settings::jsonb ->> $2 AS name, c.settings::jsonb ->> $3 AS timezone, c.agent_id, ag.name AS agent_name, \
                 i.provider, i.config FROM campaigns c JOIN agents ag ON ag.id = c.agent_id \
                 JOIN integrations i ON i.id = c.integration_id WHERE c.id = $1",
            )
            .bind(campaign_id)
            .bind(SETTINGS_NAME)
            .bind(SETTINGS_TIMEZONE)
            .fetch_optional(&mut *conn)
            .await?;
            entry.insert(campaign.as_ref().map(report_campaign_from_row).transpose()?);
        }
        let Some(Some(campaign)) = campaigns.get(&campaign_id) else { continue };
        let Some(contact) = sqlx::query(contact_sql).bind(contact_id).fetch_optional(&mut *conn).await? else { continue };
        reports.insert(id.clone(), campaign.report(attempt, campaign_id, contact_from_row(&contact)?));
    }
    Ok(reports)
}

#[async_trait]
impl DeliveryStore for PostgresStore {
    async fn take_deliveries(&self, take: DeliveryTake) -> StoreResult<Vec<DueDelivery>> {
        let DeliveryTake { owner, at, subscriptions_until, deliveries_until, limit, busy } = take;
        let (now, held_until, until) = (to_micros(at), to_micros(subscriptions_until), to_micros(deliveries_until));
        let mut tx = self.pool.begin().await?;
        // Subscriptions free to take: no live lease of another process, and not being taken by one
        // right now (their rows are locked, skipped).
        let webhooks: Vec<String> = sqlx::query_scalar(
            "SELECT w.id FROM webhooks w WHERE w.enabled AND NOT (w.id = ANY($3)) \
             AND (w.lease_owner IS NULL OR w.lease_owner = $1 OR w.lease_until < $2) \
             AND EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.status = 'pending' AND d.next_attempt_at <= $2 \
             AND (d.lease_until IS NULL OR d.lease_until < $2)) \
             FOR UPDATE OF w SKIP LOCKED",
        )
        .bind(&owner)
        .bind(now)
        .bind(&busy)
        .fetch_all(&mut *tx)
        .await?;
        let mut taken = Vec::new();
        for webhook_id in webhooks {
            sqlx::query("UPDATE webhooks SET lease_owner = $1 WHERE id = $2").bind(&owner).bind(&webhook_id).execute(&mut *tx).await?;
            let sql = format!(
                "WITH due AS (SELECT id FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'pending' AND next_attempt_at <= $2 \
                 AND (lease_until IS NULL OR lease_until < $2) ORDER BY next_attempt_at LIMIT $3 FOR UPDATE), \
                 leased AS (UPDATE webhook_deliveries SET lease_until = $4 FROM due WHERE webhook_deliveries.id = due.id \
                 RETURNING webhook_deliveries.id) \
                 SELECT {DUE_DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN leased l ON l.id = d.id \
                 JOIN webhooks w ON w.id = d.webhook_id JOIN organizations o ON o.id = w.org_id ORDER BY d.next_attempt_at, d.id"
            );
            let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(&webhook_id)
                .bind(now)
                .bind(i64::from(limit))
                .bind(until)
                .fetch_all(&mut *tx)
                .await?;
            for row in &rows {
                taken.push(due_delivery_from_row(row)?);
            }
        }
        // The subscriptions this process delivers stay its own, renewed once half their lease has
        // passed (an idle worker writes nothing in between).
        sqlx::query("UPDATE webhooks SET lease_until = $1 WHERE lease_owner = $2 AND (lease_until IS NULL OR lease_until < $3)")
            .bind(held_until)
            .bind(&owner)
            .bind(now + (held_until - now) / 2)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(taken)
    }

    async fn attempt_reports(&self, attempt_ids: Vec<String>) -> StoreResult<HashMap<String, AttemptReport>> {
        let mut conn = self.pool.acquire().await?;
        attempt_reports(&mut conn, &attempt_ids).await
    }

    async fn record_deliveries(&self, results: Vec<DeliveryResult>) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for result in results {
            let write = delivery_write(&result.outcome);
            sqlx::query(
                "UPDATE webhook_deliveries SET status = $1, next_attempt_at = $2, delivered_at = COALESCE($3, delivered_at), \
                 last_status_code = CASE WHEN $4 THEN $5 ELSE last_status_code END, last_error = CASE WHEN $4 THEN $6 ELSE last_error END, \
                 attempts = attempts + $7, lease_until = NULL WHERE id = $8 AND status = 'pending'",
            )
            .bind(write.status)
            .bind(write.next_attempt_at)
            .bind(write.delivered_at)
            .bind(write.attempted)
            .bind(write.status_code)
            .bind(write.error)
            .bind(i64::from(write.attempted))
            .bind(result.id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn purge_deliveries(&self, before: Timestamp) -> StoreResult<u64> {
        let purged = sqlx::query("DELETE FROM webhook_deliveries WHERE status <> 'pending' AND created_at < $1")
            .bind(to_micros(before))
            .execute(&self.pool)
            .await?;
        Ok(purged.rows_affected())
    }

    async fn delivery_backlog(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'").fetch_one(&self.pool).await?)
    }
}

#[async_trait]
impl WebhookAdmin for PostgresStore {
    async fn webhook_overview(&self, organization: Option<&str>) -> StoreResult<Vec<WebhookSummary>> {
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS}, o.name AS organization, \
             (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.status = 'pending') AS pending, \
             (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.status = 'failed') AS failed \
             FROM webhooks w JOIN organizations o ON o.id = w.org_id WHERE $1::text IS NULL OR o.name = $1 ORDER BY o.name, w.created_at, w.id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql.as_str())).bind(organization).fetch_all(&self.pool).await?;
        rows.iter().map(webhook_summary_from_row).collect()
    }

    async fn retry_failed_deliveries(&self, webhook_id: &str, delivery_id: Option<i64>) -> StoreResult<u64> {
        let retried = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = created_at, lease_until = NULL \
             WHERE webhook_id = $1 AND status = 'failed' AND ($2::bigint IS NULL OR id = $2)",
        )
        .bind(webhook_id)
        .bind(delivery_id)
        .execute(&self.pool)
        .await?;
        Ok(retried.rows_affected())
    }
}
