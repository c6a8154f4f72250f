//! The engine's storage on SQLite: claims, attempts, events and iterations. Statements that touch
//! many contacts are multi-row statements, so that a tick of thousands of attempts costs a
//! handful of statements inside the writer's shared transaction.

use std::collections::HashMap;

use jiff::Timestamp;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::super::shared::{
    AttemptState, CampaignDelta, ContactData, ContactState, MINUTES_PER_DAY, apply_to_states, claim_template, minute_of, parse_channel,
    parse_contact_status, provider_config, stored_statuses,
};
use super::super::{
    Attempt, AttemptContact, AttemptPage, AttemptQuery, ClaimRequest, Dispatch, DispatchContact, EventOutcome, HandoffResult, OrgId,
    RunningCampaign, StoreError, StoreResult, from_millis, to_millis, to_seconds,
};
use super::{campaign_from_row, select_campaigns, update_campaign};
use crate::domain::attempt::{AnsweredBy, AttemptEvent, AttemptStatus, ContactProgress, RetrySettings, new_attempt_id};
use crate::domain::campaign::{Campaign, CampaignSettings, CampaignStatus, Channel, ContactStatus};

/// Rows per multi-row statement (at most 16 bound values each, well under SQLite's limit).
const ROWS_PER_STATEMENT: usize = 500;

macro_rules! select_running {
    () => {
        concat!(
            select_campaigns!(
                "i.provider, i.config, i.secret, c.in_flight, \
                 (SELECT COALESCE(SUM(count), 0) FROM campaign_contact_counts \
                    WHERE campaign_id = c.id AND status IN ('queue', 'sending', 'retrying')) AS unfinished, \
                 (SELECT COALESCE(SUM(count), 0) FROM campaign_contact_counts WHERE campaign_id = c.id AND status = 'queue') AS queued, \
                 (SELECT MIN(next_attempt_at) FROM contacts WHERE campaign_id = c.id AND status = 'retrying') AS next_retry_at"
            ),
            " JOIN integrations i ON i.id = c.integration_id"
        )
    };
}

fn running_from_row(row: &SqliteRow) -> StoreResult<RunningCampaign> {
    let (_, provider) = provider_config(row.try_get("provider")?, row.try_get("config")?)?;
    Ok(RunningCampaign {
        campaign: campaign_from_row(row)?,
        provider,
        secret: row.try_get("secret")?,
        in_flight: row.try_get("in_flight")?,
        unfinished: row.try_get("unfinished")?,
        queued: row.try_get("queued")?,
        next_retry_at: row.try_get::<Option<i64>, _>("next_retry_at")?.map(from_millis).transpose()?,
    })
}

pub(super) async fn running_campaigns(conn: &mut SqliteConnection) -> StoreResult<Vec<RunningCampaign>> {
    let query = concat!(select_running!(), " WHERE c.status IN ('active', 'cooldown') AND c.archived = 0 ORDER BY c.id");
    sqlx::query(query).fetch_all(&mut *conn).await?.iter().map(running_from_row).collect()
}

pub(super) async fn running_campaign(conn: &mut SqliteConnection, campaign_id: i64) -> StoreResult<Option<RunningCampaign>> {
    let row = sqlx::query(concat!(select_running!(), " WHERE c.id = ?")).bind(campaign_id).fetch_optional(&mut *conn).await?;
    row.as_ref().map(running_from_row).transpose()
}

/// Attempts started in the rolling 24 hours before `at`. The oldest minute is counted whole, so
/// the limit is never exceeded (an attempt may wait up to a minute longer than strictly needed).
async fn started_last_day(conn: &mut SqliteConnection, campaign_id: i64, at: Timestamp) -> StoreResult<i64> {
    Ok(sqlx::query_scalar("SELECT COALESCE(SUM(count), 0) FROM campaign_starts WHERE campaign_id = ? AND minute >= ?")
        .bind(campaign_id)
        .bind(minute_of(at) - MINUTES_PER_DAY)
        .fetch_one(&mut *conn)
        .await?)
}

const DISPATCH_CONTACT_COLUMNS: &str = "ct.id AS contact_id, ct.f_id, ct.name, ct.phone, ct.context, ct.extracted_data, ct.tags";

fn dispatch_contact(row: &SqliteRow) -> StoreResult<DispatchContact> {
    Ok(DispatchContact {
        id: row.try_get("contact_id")?,
        f_id: row.try_get("f_id")?,
        name: row.try_get("name")?,
        contact: row.try_get("phone")?,
        context: row.try_get("context")?,
        extracted_data: serde_json::from_str(row.try_get("extracted_data")?)?,
        tags: serde_json::from_str(row.try_get("tags")?)?,
    })
}

pub(super) async fn claim_attempts(conn: &mut SqliteConnection, claim: ClaimRequest) -> StoreResult<Vec<Dispatch>> {
    let row = sqlx::query("SELECT status, archived, channel, settings, current_iteration, in_flight FROM campaigns WHERE id = ?")
        .bind(claim.campaign_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(Vec::new()) };
    let archived: bool = row.try_get("archived")?;
    if archived || row.try_get::<String, _>("status")? != CampaignStatus::Active.as_str() {
        return Ok(Vec::new());
    }
    let settings: CampaignSettings = serde_json::from_str(row.try_get("settings")?)?;
    let channel = parse_channel(row.try_get("channel")?)?;
    let iteration: i64 = row.try_get("current_iteration")?;
    // The budgets, checked in the transaction that claims (§5.1, §5.2); the window is checked by
    // the engine with the same instant just before.
    let mut room = i64::from(claim.limit).min(settings.message_limit - started_last_day(conn, claim.campaign_id, claim.at).await?);
    if let Some(concurrency) = settings.concurrency_limit {
        room = room.min(concurrency - row.try_get::<i64, _>("in_flight")?);
    }
    if room <= 0 {
        return Ok(Vec::new());
    }
    // Queued and due retrying contacts, in the order they were added.
    // With what providers receive of each contact, so that the claim needs no second read.
    let candidates = sqlx::query(
        "SELECT ct.status, ct.failed_retries, ct.id AS contact_id, ct.f_id, ct.name, ct.phone, ct.context, ct.extracted_data, ct.tags \
         FROM (\
           SELECT id FROM (SELECT id FROM contacts WHERE campaign_id = ?1 AND status = 'queue' ORDER BY id LIMIT ?3) \
           UNION ALL SELECT id FROM (SELECT id FROM contacts WHERE campaign_id = ?1 AND status = 'retrying' AND next_attempt_at <= ?2 \
             ORDER BY id LIMIT ?3) \
           ORDER BY id LIMIT ?3) AS picked JOIN contacts ct ON ct.id = picked.id ORDER BY ct.id",
    )
    .bind(claim.campaign_id)
    .bind(to_millis(claim.at))
    .bind(room)
    .fetch_all(&mut *conn)
    .await?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let mut claimed = Vec::with_capacity(candidates.len());
    let (mut from_queue, mut from_retrying) = (0_i64, 0_i64);
    for row in &candidates {
        let failed_retries: i64 = row.try_get("failed_retries")?;
        if row.try_get::<String, _>("status")? == ContactStatus::Queue.as_str() {
            from_queue += 1;
        } else {
            from_retrying += 1;
        }
        claimed.push(Dispatch {
            attempt_id: new_attempt_id(channel),
            campaign_id: claim.campaign_id,
            iteration,
            tries: 0,
            template: claim_template(channel, &settings, failed_retries),
            contact: dispatch_contact(row)?,
        });
    }
    for chunk in claimed.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO attempts (id, campaign_id, contact_id, iteration, due_at, deadline, template, created_at) ",
        );
        insert.push_values(chunk, |mut row, dispatch| {
            row.push_bind(dispatch.attempt_id.as_str())
                .push_bind(claim.campaign_id)
                .push_bind(dispatch.contact.id)
                .push_bind(iteration)
                .push_bind(to_millis(claim.lease_until))
                .push_bind(to_millis(claim.deadline))
                .push_bind(dispatch.template.as_deref())
                .push_bind(to_millis(claim.at));
        });
        insert.build().execute(&mut *conn).await?;
        let mut update =
            QueryBuilder::<Sqlite>::new("UPDATE contacts SET status = 'sending', call_count = call_count + 1, last_call_at = ");
        update.push_bind(to_seconds(claim.at)).push(", next_attempt_at = NULL, last_attempt_id = v.column2 FROM (");
        update.push_values(chunk, |mut row, dispatch| {
            row.push_bind(dispatch.contact.id).push_bind(dispatch.attempt_id.as_str());
        });
        update.push(") AS v WHERE contacts.id = v.column1");
        update.build().execute(&mut *conn).await?;
    }
    let taken = from_queue + from_retrying;
    add_counts(
        conn,
        claim.campaign_id,
        &[(ContactStatus::Queue, -from_queue), (ContactStatus::Retrying, -from_retrying), (ContactStatus::Sending, taken)],
    )
    .await?;
    sqlx::query("UPDATE campaigns SET in_flight = in_flight + ? WHERE id = ?")
        .bind(taken)
        .bind(claim.campaign_id)
        .execute(&mut *conn)
        .await?;
    let minute = minute_of(claim.at);
    sqlx::query(
        "INSERT INTO campaign_starts (campaign_id, minute, count) VALUES (?, ?, ?) \
         ON CONFLICT (campaign_id, minute) DO UPDATE SET count = count + excluded.count",
    )
    .bind(claim.campaign_id)
    .bind(minute)
    .bind(taken)
    .execute(&mut *conn)
    .await?;
    // Minutes older than a day no longer count; clear them out now and then.
    if minute % 10 == 0 {
        sqlx::query("DELETE FROM campaign_starts WHERE campaign_id = ? AND minute < ?")
            .bind(claim.campaign_id)
            .bind(minute - MINUTES_PER_DAY)
            .execute(&mut *conn)
            .await?;
    }
    Ok(claimed)
}

/// The attempts named, with their contacts, as providers receive them.
async fn dispatches(conn: &mut SqliteConnection, attempt_ids: &[&str]) -> StoreResult<Vec<Dispatch>> {
    let mut out = Vec::with_capacity(attempt_ids.len());
    for chunk in attempt_ids.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT a.id AS attempt_id, a.campaign_id, a.iteration, a.handoff_tries, a.template, ");
        query.push(DISPATCH_CONTACT_COLUMNS).push(" FROM attempts a JOIN contacts ct ON ct.id = a.contact_id WHERE a.id IN (");
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        query.push(") ORDER BY ct.id");
        for row in query.build().fetch_all(&mut *conn).await? {
            out.push(Dispatch {
                attempt_id: row.try_get("attempt_id")?,
                campaign_id: row.try_get("campaign_id")?,
                iteration: row.try_get("iteration")?,
                tries: row.try_get("handoff_tries")?,
                template: row.try_get("template")?,
                contact: dispatch_contact(&row)?,
            });
        }
    }
    Ok(out)
}

pub(super) async fn take_due_handoffs(
    conn: &mut SqliteConnection,
    at: Timestamp,
    lease_until: Timestamp,
    limit: u32,
) -> StoreResult<Vec<Dispatch>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "UPDATE attempts SET due_at = ?1 WHERE id IN (\
           SELECT id FROM attempts WHERE open = 1 AND due_at <= ?2 AND handed_off = 0 AND deadline > ?2 ORDER BY due_at LIMIT ?3) \
         RETURNING id",
    )
    .bind(to_millis(lease_until))
    .bind(to_millis(at))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    dispatches(conn, &ids).await
}

pub(super) async fn record_handoffs(conn: &mut SqliteConnection, results: Vec<HandoffResult>) -> StoreResult<()> {
    for result in results {
        match result {
            HandoffResult::Accepted(id) => {
                sqlx::query("UPDATE attempts SET handed_off = 1, due_at = deadline WHERE id = ?").bind(id).execute(&mut *conn).await?;
            }
            HandoffResult::RetryAt { attempt_id, at } => {
                sqlx::query("UPDATE attempts SET handoff_tries = handoff_tries + 1, due_at = ? WHERE id = ? AND handed_off = 0")
                    .bind(to_millis(at))
                    .bind(attempt_id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}

pub(super) async fn expired_attempts(conn: &mut SqliteConnection, at: Timestamp, limit: u32) -> StoreResult<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT id FROM attempts WHERE open = 1 AND due_at <= ?1 AND deadline <= ?1 ORDER BY due_at LIMIT ?2")
        .bind(to_millis(at))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?)
}

pub(super) async fn release_leases(conn: &mut SqliteConnection, at: Timestamp) -> StoreResult<u64> {
    let done = sqlx::query("UPDATE attempts SET due_at = ?1 WHERE open = 1 AND handed_off = 0 AND due_at > ?1")
        .bind(to_millis(at))
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

async fn load_attempts(conn: &mut SqliteConnection, ids: &[&str]) -> StoreResult<HashMap<String, AttemptState>> {
    let mut attempts = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT a.id, a.campaign_id, a.contact_id, a.status, a.open, a.answered_by, a.converted, a.started_at, a.ended_at, \
             a.sent_at, a.delivered_at, a.read_at, a.duration, a.billed_duration, a.ended_by, a.ended_reason, a.extracted_data, a.tags, \
             c.channel, c.integration_id, c.status AS campaign_status, json_extract(c.settings, '$.retries') AS voicemail_retries \
             FROM attempts a JOIN campaigns c ON c.id = a.campaign_id WHERE a.id IN (",
        );
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        query.push(")");
        for row in query.build().fetch_all(&mut *conn).await? {
            let status: String = row.try_get("status")?;
            let answered_by: Option<String> = row.try_get("answered_by")?;
            let json = |column: &str| -> StoreResult<Option<String>> { Ok(row.try_get(column)?) };
            attempts.insert(
                row.try_get("id")?,
                AttemptState {
                    campaign_id: row.try_get("campaign_id")?,
                    contact_id: row.try_get("contact_id")?,
                    channel: parse_channel(row.try_get("channel")?)?,
                    integration_id: row.try_get("integration_id")?,
                    campaign_finished: row.try_get::<String, _>("campaign_status")? == CampaignStatus::Finished.as_str(),
                    voicemail_retries: row.try_get("voicemail_retries")?,
                    status: AttemptStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("bad attempt status {status:?}")))?,
                    open: row.try_get("open")?,
                    changed: false,
                    answered_by: answered_by.as_deref().and_then(AnsweredBy::parse),
                    converted: row.try_get("converted")?,
                    started_at: row.try_get("started_at")?,
                    ended_at: row.try_get("ended_at")?,
                    sent_at: row.try_get("sent_at")?,
                    delivered_at: row.try_get("delivered_at")?,
                    read_at: row.try_get("read_at")?,
                    duration: row.try_get("duration")?,
                    billed_duration: row.try_get("billed_duration")?,
                    ended_by: row.try_get("ended_by")?,
                    ended_reason: row.try_get("ended_reason")?,
                    extracted_data: json("extracted_data")?.map(|j| serde_json::from_str(&j)).transpose()?,
                    tags: json("tags")?.map(|j| serde_json::from_str(&j)).transpose()?,
                },
            );
        }
    }
    Ok(attempts)
}

async fn load_contacts(conn: &mut SqliteConnection, ids: &[i64], with_data: bool) -> StoreResult<HashMap<i64, ContactState>> {
    let mut contacts = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT id, status, retries, failed_retries, next_attempt_at, last_attempt_id, processed, answered, billed_duration",
        );
        query.push(if with_data { ", extracted_data, tags FROM contacts WHERE id IN (" } else { " FROM contacts WHERE id IN (" });
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        query.push(")");
        for row in query.build().fetch_all(&mut *conn).await? {
            contacts.insert(
                row.try_get("id")?,
                ContactState {
                    progress: ContactProgress {
                        status: parse_contact_status(row.try_get("status")?)?,
                        retries: row.try_get("retries")?,
                        failed_retries: row.try_get("failed_retries")?,
                        next_attempt_at: row.try_get::<Option<i64>, _>("next_attempt_at")?.map(from_millis).transpose()?,
                    },
                    last_attempt_id: row.try_get("last_attempt_id")?,
                    processed: row.try_get("processed")?,
                    answered: row.try_get("answered")?,
                    billed_duration: row.try_get("billed_duration")?,
                    data: match with_data {
                        true => Some(ContactData {
                            extracted_data: serde_json::from_str(row.try_get("extracted_data")?)?,
                            tags: serde_json::from_str(row.try_get("tags")?)?,
                        }),
                        false => None,
                    },
                    changed: false,
                },
            );
        }
    }
    Ok(contacts)
}

pub(super) async fn apply_events(
    conn: &mut SqliteConnection,
    integration_id: Option<&str>,
    events: &[AttemptEvent],
    at: Timestamp,
    retry: RetrySettings,
) -> StoreResult<Vec<EventOutcome>> {
    let ids: Vec<&str> = events.iter().map(|e| e.attempt_id.as_str()).collect();
    let mut attempts = load_attempts(conn, &ids).await?;
    let contact_ids: Vec<i64> = attempts.values().map(|a| a.contact_id).collect();
    let with_data = events.iter().any(|e| e.extracted_data.is_some() || e.tags.is_some());
    let mut contacts = load_contacts(conn, &contact_ids, with_data).await?;
    let (outcomes, deltas) = apply_to_states(&mut attempts, &mut contacts, integration_id, events, at, retry);
    write_attempts(conn, &attempts).await?;
    write_contacts(conn, &contacts).await?;
    for (campaign_id, delta) in deltas {
        write_delta(conn, campaign_id, delta).await?;
    }
    Ok(outcomes)
}

async fn write_attempts(conn: &mut SqliteConnection, attempts: &HashMap<String, AttemptState>) -> StoreResult<()> {
    let changed: Vec<(&String, &AttemptState)> = attempts.iter().filter(|(_, a)| a.changed).collect();
    for chunk in changed.chunks(ROWS_PER_STATEMENT) {
        let mut update = QueryBuilder::<Sqlite>::new(
            "UPDATE attempts SET status = v.column2, open = v.column3, handed_off = 1, due_at = deadline, answered_by = v.column4, converted = v.column5, \
             started_at = v.column6, ended_at = v.column7, sent_at = v.column8, delivered_at = v.column9, read_at = v.column10, \
             duration = v.column11, billed_duration = v.column12, ended_by = v.column13, ended_reason = v.column14, \
             extracted_data = v.column15, tags = v.column16 FROM (",
        );
        let mut rows = Vec::with_capacity(chunk.len());
        for (id, a) in chunk {
            let data = a.extracted_data.as_ref().map(serde_json::to_string).transpose()?;
            let tags = a.tags.as_ref().map(serde_json::to_string).transpose()?;
            rows.push((*id, *a, data, tags));
        }
        update.push_values(rows, |mut row, (id, a, data, tags)| {
            row.push_bind(id.as_str())
                .push_bind(a.status.as_str())
                .push_bind(a.open)
                .push_bind(a.answered_by.map(AnsweredBy::as_str))
                .push_bind(a.converted)
                .push_bind(a.started_at)
                .push_bind(a.ended_at)
                .push_bind(a.sent_at)
                .push_bind(a.delivered_at)
                .push_bind(a.read_at)
                .push_bind(a.duration)
                .push_bind(a.billed_duration)
                .push_bind(a.ended_by.as_deref())
                .push_bind(a.ended_reason.as_deref())
                .push_bind(data)
                .push_bind(tags);
        });
        update.push(") AS v WHERE attempts.id = v.column1");
        update.build().execute(&mut *conn).await?;
    }
    Ok(())
}

async fn write_contacts(conn: &mut SqliteConnection, contacts: &HashMap<i64, ContactState>) -> StoreResult<()> {
    let changed: Vec<(&i64, &ContactState)> = contacts.iter().filter(|(_, c)| c.changed).collect();
    for chunk in changed.chunks(ROWS_PER_STATEMENT) {
        let with_data = chunk.iter().any(|(_, c)| c.data.is_some());
        let mut update = QueryBuilder::<Sqlite>::new(
            "UPDATE contacts SET status = v.column2, retries = v.column3, failed_retries = v.column4, next_attempt_at = v.column5, \
             processed = v.column6, answered = v.column7, billed_duration = v.column8",
        );
        update.push(if with_data { ", extracted_data = v.column9, tags = v.column10 FROM (" } else { " FROM (" });
        let mut rows = Vec::with_capacity(chunk.len());
        for (id, c) in chunk {
            let data = c
                .data
                .as_ref()
                .map(|d| Ok::<_, serde_json::Error>((serde_json::to_string(&d.extracted_data)?, serde_json::to_string(&d.tags)?)));
            rows.push((**id, *c, data.transpose()?));
        }
        update.push_values(rows, |mut row, (id, c, data)| {
            row.push_bind(id)
                .push_bind(c.progress.status.as_str())
                .push_bind(c.progress.retries)
                .push_bind(c.progress.failed_retries)
                .push_bind(c.progress.next_attempt_at.map(to_millis))
                .push_bind(c.processed)
                .push_bind(c.answered)
                .push_bind(c.billed_duration);
            if let Some((extracted, tags)) = data {
                row.push_bind(extracted).push_bind(tags);
            }
        });
        update.push(") AS v WHERE contacts.id = v.column1");
        update.build().execute(&mut *conn).await?;
    }
    Ok(())
}

async fn write_delta(conn: &mut SqliteConnection, campaign_id: i64, delta: CampaignDelta) -> StoreResult<()> {
    sqlx::query(
        "UPDATE campaigns SET in_flight = in_flight + ?, calls = calls + ?, calls_human = calls_human + ?, \
         calls_machine = calls_machine + ?, calls_unknown = calls_unknown + ?, messages = messages + ?, \
         contacts_processed = contacts_processed + ?, contacts_answered = contacts_answered + ? WHERE id = ?",
    )
    .bind(delta.in_flight)
    .bind(delta.calls)
    .bind(delta.calls_human)
    .bind(delta.calls_machine)
    .bind(delta.calls_unknown)
    .bind(delta.messages)
    .bind(delta.contacts_processed)
    .bind(delta.contacts_answered)
    .bind(campaign_id)
    .execute(&mut *conn)
    .await?;
    let statuses: Vec<(ContactStatus, i64)> = delta.statuses.into_iter().filter(|(_, d)| *d != 0).collect();
    add_counts(conn, campaign_id, &statuses).await
}

/// Adds to the per-status contact counts of a campaign (one statement).
pub(super) async fn add_counts(conn: &mut SqliteConnection, campaign_id: i64, deltas: &[(ContactStatus, i64)]) -> StoreResult<()> {
    let deltas: Vec<&(ContactStatus, i64)> = deltas.iter().filter(|(_, d)| *d != 0).collect();
    if deltas.is_empty() {
        return Ok(());
    }
    let mut upsert = QueryBuilder::<Sqlite>::new("INSERT INTO campaign_contact_counts (campaign_id, status, count) ");
    upsert.push_values(deltas, |mut row, (status, delta)| {
        row.push_bind(campaign_id).push_bind(status.as_str()).push_bind(*delta);
    });
    upsert.push(" ON CONFLICT (campaign_id, status) DO UPDATE SET count = count + excluded.count");
    upsert.build().execute(&mut *conn).await?;
    Ok(())
}

/// `WHERE` condition of the contacts a new iteration takes (§5.5): not converted, not in flight,
/// status not in `filter_statuses`, no tag in `filter_tags`.
fn push_eligible(query: &mut QueryBuilder<Sqlite>, campaign: &Campaign) {
    let cycles = &campaign.settings.cycles;
    query.push(" WHERE campaign_id = ").push_bind(campaign.id).push(" AND status NOT IN ('converted', 'sending'");
    for status in &cycles.filter_statuses {
        query.push(", ").push_bind(status.as_str());
    }
    query.push(")");
    if !cycles.filter_tags.is_empty() {
        query.push(" AND NOT EXISTS (SELECT 1 FROM json_each(contacts.tags) WHERE value IN (");
        let mut list = query.separated(", ");
        for tag in &cycles.filter_tags {
            list.push_bind(tag.clone());
        }
        query.push("))");
    }
}

/// Starts an iteration's contacts: every eligible one back to `queue` with its retry counters
/// reset. Once per iteration, so it may scan the campaign's contacts; the counts are rebuilt.
pub(super) async fn queue_eligible_contacts(conn: &mut SqliteConnection, campaign: &Campaign) -> StoreResult<()> {
    let mut update =
        QueryBuilder::<Sqlite>::new("UPDATE contacts SET status = 'queue', retries = 0, failed_retries = 0, next_attempt_at = NULL");
    push_eligible(&mut update, campaign);
    update.build().execute(&mut *conn).await?;
    sqlx::query("DELETE FROM campaign_contact_counts WHERE campaign_id = ?").bind(campaign.id).execute(&mut *conn).await?;
    sqlx::query(
        "INSERT INTO campaign_contact_counts (campaign_id, status, count) \
         SELECT campaign_id, status, COUNT(*) FROM contacts WHERE campaign_id = ? GROUP BY status",
    )
    .bind(campaign.id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn any_eligible(conn: &mut SqliteConnection, campaign: &Campaign) -> StoreResult<bool> {
    let mut query = QueryBuilder::<Sqlite>::new("SELECT EXISTS (SELECT 1 FROM contacts");
    push_eligible(&mut query, campaign);
    query.push(")");
    Ok(query.build_query_scalar::<bool>().fetch_one(&mut *conn).await?)
}

pub(super) async fn advance_iteration(conn: &mut SqliteConnection, campaign_id: i64, at: Timestamp) -> StoreResult<Option<CampaignStatus>> {
    let row = sqlx::query(concat!(select_campaigns!(), " WHERE c.id = ?")).bind(campaign_id).fetch_optional(&mut *conn).await?;
    let Some(row) = row else { return Ok(None) };
    let mut campaign = campaign_from_row(&row)?;
    if campaign.begin_due_iteration(at) {
        queue_eligible_contacts(conn, &campaign).await?;
        update_campaign(conn, &campaign).await?;
        return Ok(Some(campaign.status));
    }
    if campaign.status != CampaignStatus::Active || campaign.archived || campaign.counters.contacts == 0 {
        return Ok(None);
    }
    let unfinished: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(count), 0) FROM campaign_contact_counts WHERE campaign_id = ? AND status IN ('queue', 'sending', 'retrying')",
    )
    .bind(campaign_id)
    .fetch_one(&mut *conn)
    .await?;
    if unfinished > 0 {
        return Ok(None);
    }
    let eligible = any_eligible(conn, &campaign).await?;
    campaign.end_iteration(at, eligible);
    update_campaign(conn, &campaign).await?;
    Ok(Some(campaign.status))
}

pub(super) async fn integration_secret(conn: &mut SqliteConnection, integration_id: &str) -> StoreResult<Option<(Channel, String)>> {
    let row = sqlx::query("SELECT channel, secret FROM integrations WHERE id = ?").bind(integration_id).fetch_optional(&mut *conn).await?;
    row.map(|row| Ok((parse_channel(row.try_get("channel")?)?, row.try_get("secret")?))).transpose()
}

fn push_attempt_filters(query: &mut QueryBuilder<Sqlite>, campaign_id: i64, filter: &AttemptQuery) {
    query.push(" WHERE a.campaign_id = ").push_bind(campaign_id);
    if let Some(status) = filter.status {
        query.push(" AND a.status IN (");
        let mut list = query.separated(", ");
        for stored in stored_statuses(status) {
            list.push_bind(*stored);
        }
        query.push(")");
    }
    if let Some(answered_by) = filter.answered_by {
        query.push(" AND a.answered_by = ").push_bind(answered_by.as_str());
    }
    if let Some(start) = filter.start {
        query.push(" AND a.created_at >= ").push_bind(to_millis(start));
    }
    if let Some(end) = filter.end {
        query.push(" AND a.created_at <= ").push_bind(to_millis(end));
    }
}

pub(super) async fn list_attempts(
    conn: &mut SqliteConnection,
    org: OrgId,
    campaign_id: i64,
    filter: &AttemptQuery,
) -> StoreResult<Option<AttemptPage>> {
    let channel: Option<String> = sqlx::query_scalar("SELECT channel FROM campaigns WHERE org_id = ? AND id = ?")
        .bind(org)
        .bind(campaign_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(channel) = channel else { return Ok(None) };
    if filter.channel.is_some_and(|wanted| wanted != parse_channel(&channel).unwrap_or(wanted)) {
        return Ok(Some(AttemptPage { total_count: 0, attempts: Vec::new() }));
    }
    let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM attempts a");
    push_attempt_filters(&mut count, campaign_id, filter);
    let total_count: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;
    let mut page = QueryBuilder::<Sqlite>::new(
        "SELECT a.id, a.status, a.answered_by, a.template, a.created_at, a.started_at, a.ended_at, a.sent_at, a.delivered_at, \
         a.read_at, a.ended_by, a.ended_reason, a.duration, a.billed_duration, a.extracted_data, a.tags, \
         ct.id AS contact_id, ct.f_id, ct.name, ct.phone, ct.status AS contact_status \
         FROM attempts a LEFT JOIN contacts ct ON ct.id = a.contact_id WHERE a.rowid IN (SELECT a.rowid FROM attempts a",
    );
    push_attempt_filters(&mut page, campaign_id, filter);
    let offset = i64::from(filter.page_size) * i64::from(filter.page_index);
    page.push(" ORDER BY a.created_at, a.rowid LIMIT ").push_bind(i64::from(filter.page_size)).push(" OFFSET ").push_bind(offset);
    page.push(") ORDER BY a.created_at, a.rowid");
    let rows = page.build().fetch_all(&mut *conn).await?;
    let attempts = rows.iter().map(attempt_from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(Some(AttemptPage { total_count, attempts }))
}

fn attempt_from_row(row: &SqliteRow) -> StoreResult<Attempt> {
    let millis = |column: &str| -> StoreResult<Option<Timestamp>> { row.try_get::<Option<i64>, _>(column)?.map(from_millis).transpose() };
    let status: String = row.try_get("status")?;
    let answered_by: Option<String> = row.try_get("answered_by")?;
    let extracted: Option<String> = row.try_get("extracted_data")?;
    let tags: Option<String> = row.try_get("tags")?;
    let contact = match row.try_get::<Option<i64>, _>("contact_id")? {
        Some(id) => Some(AttemptContact {
            id,
            f_id: row.try_get("f_id")?,
            name: row.try_get("name")?,
            phone: row.try_get("phone")?,
            status: parse_contact_status(row.try_get("contact_status")?)?,
        }),
        None => None,
    };
    Ok(Attempt {
        id: row.try_get("id")?,
        status: AttemptStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("bad attempt status {status:?}")))?,
        answered_by: answered_by.as_deref().and_then(AnsweredBy::parse),
        template: row.try_get("template")?,
        created_at: from_millis(row.try_get("created_at")?)?,
        started_at: millis("started_at")?,
        ended_at: millis("ended_at")?,
        sent_at: millis("sent_at")?,
        delivered_at: millis("delivered_at")?,
        read_at: millis("read_at")?,
        ended_by: row.try_get("ended_by")?,
        ended_reason: row.try_get("ended_reason")?,
        duration: row.try_get("duration")?,
        billed_duration: row.try_get("billed_duration")?,
        extracted_data: extracted.map(|j| serde_json::from_str(&j)).transpose()?.unwrap_or_default(),
        tags: tags.map(|j| serde_json::from_str(&j)).transpose()?.unwrap_or_default(),
        contact,
    })
}
