//! Webhook subscriptions, the outbox of their events and the deliveries log on SQLite (§8).

use std::collections::HashMap;

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{Connection, params};

use super::{SqliteStore, all_rows, first_row};
use crate::domain::campaign::CampaignStatus;
use crate::domain::webhook::{self, DeliveryStatus, NewEvent, Webhook, WebhookChange};
use crate::store::shared::{
    ATTEMPT_COLUMNS, DELIVERY_COLUMNS, DUE_DELIVERY_COLUMNS, ReportCampaign, SETTINGS_NAME, SETTINGS_TIMEZONE, WEBHOOK_COLUMNS,
    attempt_of_report_from_row, contact_columns, contact_from_row, delivery_from_row, delivery_write, due_delivery_from_row,
    new_deliveries, report_campaign_from_row, status_changed_of_settings, subscription_from_row, webhook_from_row,
    webhook_summary_from_row,
};
use crate::store::{
    AttemptReport, DeliveryPage, DeliveryResult, DeliveryStore, DeliveryTake, DueDelivery, EventSource, OrgId, ResponseRecorder,
    RetryOutcome, StoreResult, WebhookAdmin, WebhookPage, WebhookStore, WebhookSummary, to_micros, to_seconds,
};

/// Records `events` of an organization for the subscriptions that want them (to `only` alone
/// when given), in the caller's transaction: the outbox (§8.2).
pub(super) fn record_events(conn: &Connection, org: OrgId, events: &[NewEvent], only: Option<&str>) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let subscriptions = all_rows(
        conn,
        "SELECT w.id, w.events, w.filters, o.public_id FROM webhooks w JOIN organizations o ON o.id = w.org_id \
         WHERE w.org_id = ? AND w.enabled = 1",
        [org],
        |row| subscription_from_row(row),
    )?;
    if subscriptions.is_empty() {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, attempt_id, attempt_status, previous_status, payload, \
         status, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
    )?;
    for row in new_deliveries(&subscriptions, events, only) {
        insert.execute(params![
            row.webhook_id,
            row.event_id,
            row.event_type,
            row.attempt_id,
            row.attempt_status,
            row.previous_status,
            row.payload,
            row.created_at,
            row.created_at,
        ])?;
    }
    Ok(())
}

/// [`record_events`] of a campaign's organization.
pub(super) fn record_campaign_events(conn: &Connection, campaign_id: i64, events: &[NewEvent]) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let org = first_row(conn, "SELECT org_id FROM campaigns WHERE id = ?", [campaign_id], |row| Ok(row.get::<_, i64>(0)?))?;
    match org {
        Some(org) => record_events(conn, org, events, None),
        None => Ok(()),
    }
}

/// `campaign.status_changed` when adding contacts moved a campaign to `ready`.
pub(super) fn record_status_change(
    conn: &Connection,
    org: OrgId,
    campaign_id: i64,
    status: CampaignStatus,
    previous: CampaignStatus,
    at: Timestamp,
) -> StoreResult<()> {
    if status == previous {
        return Ok(());
    }
    let settings = first_row(conn, "SELECT settings FROM campaigns WHERE id = ?", [campaign_id], |row| Ok(row.get::<_, String>(0)?))?;
    let Some(settings) = settings else { return Ok(()) };
    record_events(conn, org, &status_changed_of_settings(campaign_id, &settings, status, previous, at)?, None)
}

const WEBHOOK_BY_ID: &str = "SELECT w.id, w.url, w.events, w.filters, w.description, w.enabled, w.secret, w.created_at, w.updated_at \
     FROM webhooks w WHERE w.org_id = ? AND w.id = ?";

fn webhook_of(conn: &Connection, org: OrgId, id: &str) -> StoreResult<Option<Webhook>> {
    first_row(conn, WEBHOOK_BY_ID, params![org, id], |row| webhook_from_row(row))
}

fn write_webhook(conn: &Connection, webhook: &Webhook) -> StoreResult<()> {
    conn.prepare_cached("UPDATE webhooks SET url = ?, events = ?, filters = ?, description = ?, enabled = ?, updated_at = ? WHERE id = ?")?
        .execute(params![
            webhook.url,
            serde_json::to_string(&webhook.events)?,
            webhook.filters.as_ref().map(serde_json::to_string).transpose()?,
            webhook.description,
            webhook.enabled,
            to_seconds(webhook.updated_at),
            webhook.id,
        ])?;
    Ok(())
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn create_webhook(&self, org: OrgId, webhook: Webhook, record: Option<ResponseRecorder<Webhook>>) -> StoreResult<Webhook> {
        self.write_recorded(record, move |conn| {
            conn.prepare_cached(
                "INSERT INTO webhooks (id, org_id, url, events, filters, description, enabled, secret, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                webhook.id,
                org,
                webhook.url,
                serde_json::to_string(&webhook.events)?,
                webhook.filters.as_ref().map(serde_json::to_string).transpose()?,
                webhook.description,
                webhook.enabled,
                webhook.secret,
                to_seconds(webhook.created_at),
                to_seconds(webhook.updated_at),
            ])?;
            Ok(webhook)
        })
        .await
    }

    async fn get_webhook(&self, org: OrgId, id: &str) -> StoreResult<Option<Webhook>> {
        let id = id.to_owned();
        self.reads.read(move |conn| webhook_of(conn, org, &id)).await
    }

    async fn list_webhooks(&self, org: OrgId, page_size: u32, page_index: u32) -> StoreResult<WebhookPage> {
        self.reads
            .read(move |conn| {
                let total_count =
                    first_row(conn, "SELECT COUNT(*) FROM webhooks WHERE org_id = ?", [org], |row| Ok(row.get::<_, i64>(0)?))?.unwrap_or(0);
                let sql = format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.org_id = ? ORDER BY w.created_at DESC, w.rowid DESC LIMIT ? OFFSET ?"
                );
                let (limit, offset) = (i64::from(page_size), i64::from(page_size) * i64::from(page_index));
                let webhooks = all_rows(conn, &sql, params![org, limit, offset], |row| webhook_from_row(row))?;
                Ok(WebhookPage { total_count, webhooks })
            })
            .await
    }

    async fn update_webhook(&self, org: OrgId, id: &str, change: WebhookChange, at: Timestamp) -> StoreResult<Option<Webhook>> {
        let id = id.to_owned();
        self.write(move |conn| {
            let Some(mut webhook) = webhook_of(conn, org, &id)? else { return Ok(None) };
            change.apply(&mut webhook, at);
            write_webhook(conn, &webhook)?;
            Ok(Some(webhook))
        })
        .await
    }

    async fn delete_webhook(&self, org: OrgId, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |conn| Ok(conn.prepare_cached("DELETE FROM webhooks WHERE org_id = ? AND id = ?")?.execute(params![org, id])? > 0))
            .await
    }

    async fn rotate_webhook_secret(
        &self,
        org: OrgId,
        id: &str,
        secret: String,
        at: Timestamp,
        record: Option<ResponseRecorder<Option<Webhook>>>,
    ) -> StoreResult<Option<Webhook>> {
        let id = id.to_owned();
        self.write_recorded(record, move |conn| {
            let Some(mut webhook) = webhook_of(conn, org, &id)? else { return Ok(None) };
            conn.prepare_cached("UPDATE webhooks SET previous_secret = secret, secret = ?, rotated_at = ?, updated_at = ? WHERE id = ?")?
                .execute(params![secret, to_micros(at), to_seconds(at), id])?;
            webhook.secret = secret;
            webhook.updated_at = crate::domain::whole_seconds(at);
            Ok(Some(webhook))
        })
        .await
    }

    async fn queue_test_event(
        &self,
        org: OrgId,
        id: &str,
        at: Timestamp,
        record: Option<ResponseRecorder<Option<String>>>,
    ) -> StoreResult<Option<String>> {
        let id = id.to_owned();
        self.write_recorded(record, move |conn| {
            if webhook_of(conn, org, &id)?.is_none() {
                return Ok(None);
            }
            let event = webhook::test_event(&id, at);
            let event_id = event.event_id.clone();
            // Queued for a disabled subscription too (it is asked for by name); it goes out once enabled.
            let project_id =
                first_row(conn, "SELECT public_id FROM organizations WHERE id = ?", [org], |row| Ok(row.get::<_, String>(0)?))?
                    .unwrap_or_default();
            let subscription = webhook::Subscription { id: id.clone(), events: vec![event.event_type], filters: None };
            for row in new_deliveries(&[(subscription, project_id)], std::slice::from_ref(&event), Some(&id)) {
                conn.prepare_cached(
                    "INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, payload, status, created_at, next_attempt_at) \
                     VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                )?
                .execute(params![
                    row.webhook_id,
                    row.event_id,
                    row.event_type,
                    row.payload,
                    row.created_at,
                    row.created_at
                ])?;
            }
            Ok(Some(event_id))
        })
        .await
    }

    async fn list_deliveries(
        &self,
        org: OrgId,
        webhook_id: &str,
        status: Option<DeliveryStatus>,
        page_size: u32,
        page_index: u32,
    ) -> StoreResult<Option<DeliveryPage>> {
        let webhook_id = webhook_id.to_owned();
        self.reads
            .read(move |conn| {
                if webhook_of(conn, org, &webhook_id)?.is_none() {
                    return Ok(None);
                }
                let status = status.map(DeliveryStatus::as_str);
                let total_count = first_row(
                    conn,
                    "SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = ?1 AND (?2 IS NULL OR status = ?2)",
                    params![webhook_id, status],
                    |row| Ok(row.get::<_, i64>(0)?),
                )?
                .unwrap_or(0);
                let sql = format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
                     JOIN organizations o ON o.id = w.org_id WHERE d.webhook_id = ?1 AND (?2 IS NULL OR d.status = ?2) \
                     ORDER BY d.id DESC LIMIT ?3 OFFSET ?4"
                );
                let (limit, offset) = (i64::from(page_size), i64::from(page_size) * i64::from(page_index));
                let mut deliveries = all_rows(conn, &sql, params![webhook_id, status, limit, offset], |row| delivery_from_row(row))?;
                let reports = attempt_reports(conn, &EventSource::subjects(deliveries.iter().map(|d| &d.body)))?;
                deliveries.iter_mut().for_each(|d| d.body.attach(&reports));
                Ok(Some(DeliveryPage { total_count, deliveries }))
            })
            .await
    }

    async fn retry_delivery(
        &self,
        org: OrgId,
        webhook_id: &str,
        delivery_id: i64,
        at: Timestamp,
        record: Option<ResponseRecorder<RetryOutcome>>,
    ) -> StoreResult<RetryOutcome> {
        let webhook_id = webhook_id.to_owned();
        self.write_recorded(record, move |conn| {
            let status = first_row(
                conn,
                "SELECT d.status FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
                 WHERE w.org_id = ? AND d.webhook_id = ? AND d.id = ?",
                params![org, webhook_id, delivery_id],
                |row| Ok(row.get::<_, String>(0)?),
            )?;
            let Some(status) = status.as_deref().and_then(DeliveryStatus::parse) else { return Ok(RetryOutcome::NotFound) };
            if !status.may_retry() {
                return Ok(RetryOutcome::NotFailed(status));
            }
            conn.prepare_cached("UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, lease_until = NULL WHERE id = ?")?
                .execute(params![to_micros(at), delivery_id])?;
            Ok(RetryOutcome::Retried)
        })
        .await
    }
}

/// A subscription with deliveries due, free to take (no live lease of another process).
const DELIVERABLE_WEBHOOKS: &str = "SELECT w.id FROM webhooks w WHERE w.enabled = 1 \
     AND (w.lease_owner IS NULL OR w.lease_owner = ?1 OR w.lease_until < ?2) \
     AND EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.status = 'pending' AND d.next_attempt_at <= ?2 \
     AND (d.lease_until IS NULL OR d.lease_until < ?2))";

static TAKE_DELIVERIES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {DUE_DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
         JOIN organizations o ON o.id = w.org_id \
         WHERE d.webhook_id = ?1 AND d.status = 'pending' AND d.next_attempt_at <= ?2 AND (d.lease_until IS NULL OR d.lease_until < ?2) \
         ORDER BY d.next_attempt_at LIMIT ?3"
    )
});

static ATTEMPT_OF_REPORT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {ATTEMPT_COLUMNS}, a.campaign_id FROM attempts a JOIN contacts ct ON ct.id = a.contact_id WHERE a.id = ?")
});

const CONTACT_OF_REPORT: &str = concat!("SELECT ", contact_columns!(), " FROM contacts WHERE id = ?");

static CAMPAIGN_OF_REPORT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT json_extract(c.settings, '$.{SETTINGS_NAME}') AS name, json_extract(c.settings, '$.{SETTINGS_TIMEZONE}') AS timezone, \
         c.agent_id, ag.name AS agent_name, i.provider, i.config FROM campaigns c JOIN agents ag ON ag.id = c.agent_id \
         JOIN integrations i ON i.id = c.integration_id WHERE c.id = ?"
    )
});

/// The reports of the attempts that exist among `ids`, by id; each campaign is read once.
fn attempt_reports(conn: &Connection, ids: &[String]) -> StoreResult<HashMap<String, AttemptReport>> {
    let mut campaigns: HashMap<i64, Option<ReportCampaign>> = HashMap::new();
    let mut reports = HashMap::with_capacity(ids.len());
    for id in ids {
        let Some((attempt, campaign_id)) = first_row(conn, &ATTEMPT_OF_REPORT, [id], |row| attempt_of_report_from_row(row))? else {
            continue;
        };
        let Some(contact_id) = attempt.contact.as_ref().map(|c| c.id) else { continue };
        if let std::collections::hash_map::Entry::Vacant(entry) = campaigns.entry(campaign_id) {
            entry.insert(first_row(conn, &CAMPAIGN_OF_REPORT, [campaign_id], |row| report_campaign_from_row(row))?);
        }
        let (Some(Some(campaign)), Some(contact)) =
            (campaigns.get(&campaign_id), first_row(conn, CONTACT_OF_REPORT, [contact_id], |row| contact_from_row(row))?)
        else {
            continue;
        };
        reports.insert(id.clone(), campaign.report(attempt, campaign_id, contact));
    }
    Ok(reports)
}

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn take_deliveries(&self, take: DeliveryTake) -> StoreResult<Vec<DueDelivery>> {
        self.write(move |conn| {
            let DeliveryTake { owner, at, subscriptions_until, deliveries_until, limit, busy } = take;
            let (now, held_until, until) = (to_micros(at), to_micros(subscriptions_until), to_micros(deliveries_until));
            let webhooks = all_rows(conn, DELIVERABLE_WEBHOOKS, params![owner, now], |row| Ok(row.get::<_, String>(0)?))?;
            let mut taken = Vec::new();
            for webhook_id in webhooks.into_iter().filter(|id| !busy.contains(id)) {
                conn.prepare_cached("UPDATE webhooks SET lease_owner = ? WHERE id = ?")?.execute(params![owner, webhook_id])?;
                let due = all_rows(conn, &TAKE_DELIVERIES, params![webhook_id, now, i64::from(limit)], |row| due_delivery_from_row(row))?;
                let mut lease = conn.prepare_cached("UPDATE webhook_deliveries SET lease_until = ? WHERE id = ?")?;
                for delivery in &due {
                    lease.execute(params![until, delivery.id])?;
                }
                taken.extend(due);
            }
            // The subscriptions this process delivers stay its own, renewed once half their lease
            // has passed (an idle worker writes nothing in between).
            let renew_below = now + (held_until - now) / 2;
            conn.prepare_cached("UPDATE webhooks SET lease_until = ? WHERE lease_owner = ? AND (lease_until IS NULL OR lease_until < ?)")?
                .execute(params![held_until, owner, renew_below])?;
            Ok(taken)
        })
        .await
    }

    async fn attempt_reports(&self, attempt_ids: Vec<String>) -> StoreResult<HashMap<String, AttemptReport>> {
        self.reads.read(move |conn| attempt_reports(conn, &attempt_ids)).await
    }

    async fn record_deliveries(&self, results: Vec<DeliveryResult>) -> StoreResult<()> {
        self.write(move |conn| {
            let mut update = conn.prepare_cached(
                "UPDATE webhook_deliveries SET status = ?, next_attempt_at = ?, delivered_at = COALESCE(?, delivered_at), \
                 last_status_code = CASE WHEN ? THEN ? ELSE last_status_code END, last_error = CASE WHEN ? THEN ? ELSE last_error END, \
                 attempts = attempts + ?, lease_until = NULL WHERE id = ? AND status = 'pending'",
            )?;
            for result in results {
                let write = delivery_write(&result.outcome);
                update.execute(params![
                    write.status,
                    write.next_attempt_at,
                    write.delivered_at,
                    write.attempted,
                    write.status_code,
                    write.attempted,
                    write.error,
                    i64::from(write.attempted),
                    result.id,
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn release_delivery_leases(&self) -> StoreResult<u64> {
        // One process owns a SQLite file: every lease left is a previous run's.
        self.write(|conn| {
            conn.prepare_cached("UPDATE webhooks SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL")?.execute([])?;
            let released = conn
                .prepare_cached("UPDATE webhook_deliveries SET lease_until = NULL WHERE status = 'pending' AND lease_until IS NOT NULL")?
                .execute([])?;
            Ok(released as u64)
        })
        .await
    }

    async fn purge_deliveries(&self, before: Timestamp) -> StoreResult<u64> {
        self.write(move |conn| {
            let purged = conn
                .prepare_cached("DELETE FROM webhook_deliveries WHERE status <> 'pending' AND created_at < ?")?
                .execute([to_micros(before)])?;
            Ok(purged as u64)
        })
        .await
    }

    async fn delivery_backlog(&self) -> StoreResult<i64> {
        self.reads
            .read(|conn| {
                Ok(first_row(
                    conn,
                    "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'",
                    [],
                    |row| Ok(row.get::<_, i64>(0)?),
                )?
                .unwrap_or(0))
            })
            .await
    }
}

#[async_trait]
impl WebhookAdmin for SqliteStore {
    async fn webhook_overview(&self, organization: Option<&str>) -> StoreResult<Vec<WebhookSummary>> {
        let organization = organization.map(str::to_owned);
        self.reads
            .read(move |conn| {
                let sql = format!(
                    "SELECT {WEBHOOK_COLUMNS}, o.name AS organization, \
                     (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.status = 'pending') AS pending, \
                     (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.status = 'failed') AS failed \
                     FROM webhooks w JOIN organizations o ON o.id = w.org_id WHERE ?1 IS NULL OR o.name = ?1 ORDER BY o.name, w.created_at, w.id"
                );
                all_rows(conn, &sql, [organization], |row| webhook_summary_from_row(row))
            })
            .await
    }

    async fn retry_failed_deliveries(&self, webhook_id: &str, delivery_id: Option<i64>) -> StoreResult<u64> {
        let webhook_id = webhook_id.to_owned();
        self.write(move |conn| {
            let retried = conn
                .prepare_cached(
                    "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = created_at, lease_until = NULL \
                     WHERE webhook_id = ?1 AND status = 'failed' AND (?2 IS NULL OR id = ?2)",
                )?
                .execute(params![webhook_id, delivery_id])?;
            Ok(retried as u64)
        })
        .await
    }
}
