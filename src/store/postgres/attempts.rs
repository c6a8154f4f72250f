//! The engine's storage on PostgreSQL: claims, attempts, events and iterations. Statements that
//! touch many rows take arrays (`UNNEST`, `= ANY`), so a tick of thousands of attempts costs a
//! handful of statements. Claims lock the campaign's row to check its budgets and take contacts
//! with `FOR UPDATE SKIP LOCKED`, and due handoffs are taken the same way, so that several
//! processes could share one campaign.

use crate::store::shared::expired_attempt_from_row;
use crate::store::{DncOrigin, ExpiredAttempt, HeldEvent};
use std::collections::HashMap;
use std::sync::LazyLock;

use jiff::Timestamp;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};

use super::super::shared::{
    ATTEMPT_COLUMNS, MINUTES_PER_DAY, SETTINGS_RETRIES, START_COUNTS_KEPT_MINUTES, attempt_from_row, attempt_state_from_row,
    contact_state_from_row, dispatch_contact_columns, dispatch_from_row, minute_of, parse_campaign_status, parse_channel, running_from_row,
    sql_list, waiting_from_row, zone_deltas,
};
use super::super::{
    AttemptPage, AttemptQuery, ClaimRequest, Dispatch, EventOutcome, HandoffResult, OrgId, RunningCampaign, StoreResult, to_millis,
    to_seconds,
};
use super::contacts::suppressed_numbers;
use super::{campaign_columns, campaign_from_row, select_campaigns, update_campaign, webhooks};
use crate::domain::attempt::{AnsweredBy, AttemptEvent, FailedReason, RetrySettings, new_attempt_id};
use crate::domain::campaign::{Campaign, CampaignSettings, CampaignStatus, ContactStatus};
use crate::domain::contact_hours::ZoneGate;
use crate::domain::dnc::{DncSource, provider_opt_out};
use crate::domain::outcome::{AttemptState, CampaignDelta, ContactState, EventsApplied, FinishedAttempt, apply_events as apply_outcomes};
use crate::domain::pacing;
use crate::domain::webhook::{self, by_organization};

/// A campaign with what the engine needs to dispatch for it (see [`running_from_row`]).
static SELECT_RUNNING: LazyLock<String> = LazyLock::new(|| {
    let unfinished = sql_list(ContactStatus::UNFINISHED.map(ContactStatus::as_str));
    format!(
        "SELECT {}, i.provider, i.config, i.secret, i.health_reason, c.in_flight, \
         (SELECT COALESCE(SUM(count), 0)::bigint FROM campaign_contact_counts WHERE campaign_id = c.id AND status IN ({unfinished})) AS unfinished, \
         (SELECT COALESCE(SUM(count), 0)::bigint FROM campaign_contact_counts WHERE campaign_id = c.id AND status = 'queue') AS queued, \
         (SELECT MIN(next_attempt_at) FROM contacts WHERE campaign_id = c.id AND status = 'retrying') AS next_retry_at \
         FROM campaigns c JOIN agents a ON a.id = c.agent_id JOIN integrations i ON i.id = c.integration_id",
        campaign_columns!()
    )
});
static RUNNING_CAMPAIGNS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} WHERE c.status IN ({}) AND NOT c.archived ORDER BY c.id",
        *SELECT_RUNNING,
        sql_list(CampaignStatus::RUNNING.map(CampaignStatus::as_str))
    )
});
static RUNNING_CAMPAIGN: LazyLock<String> = LazyLock::new(|| format!("{} WHERE c.id = $1", *SELECT_RUNNING));

pub(super) async fn running_campaigns(conn: &mut PgConnection) -> StoreResult<Vec<RunningCampaign>> {
    sqlx::query(AssertSqlSafe(RUNNING_CAMPAIGNS.as_str())).fetch_all(&mut *conn).await?.iter().map(running_from_row).collect()
}

pub(super) async fn running_campaign(conn: &mut PgConnection, campaign_id: i64) -> StoreResult<Option<RunningCampaign>> {
    let row = sqlx::query(AssertSqlSafe(RUNNING_CAMPAIGN.as_str())).bind(campaign_id).fetch_optional(&mut *conn).await?;
    row.as_ref().map(running_from_row).transpose()
}

pub(super) async fn waiting_contacts(conn: &mut PgConnection) -> StoreResult<Vec<(CampaignStatus, i64)>> {
    sqlx::query(
        "SELECT c.status, SUM(n.count)::bigint AS waiting FROM campaign_contact_counts n JOIN campaigns c ON c.id = n.campaign_id \
         WHERE n.status = ANY($1) AND NOT c.archived GROUP BY c.status",
    )
    .bind(ContactStatus::WAITING.map(ContactStatus::as_str))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(waiting_from_row)
    .collect()
}

/// Locks the campaigns' rows (ids ascending) until the transaction ends.
pub(super) async fn lock_campaigns(conn: &mut PgConnection, ids: &[i64]) -> StoreResult<()> {
    if !ids.is_empty() {
        sqlx::query("SELECT id FROM campaigns WHERE id = ANY($1) ORDER BY id FOR UPDATE").bind(ids).fetch_all(&mut *conn).await?;
    }
    Ok(())
}

/// Attempts started in the rolling 24 hours before `at`. The oldest minute is counted whole, so
/// the limit is never exceeded (an attempt may wait up to a minute longer than strictly needed).
pub(super) async fn started_last_day(conn: &mut PgConnection, campaign_id: i64, at: Timestamp) -> StoreResult<i64> {
    Ok(sqlx::query_scalar("SELECT COALESCE(SUM(count), 0)::bigint FROM campaign_starts WHERE campaign_id = $1 AND minute >= $2")
        .bind(campaign_id)
        .bind(minute_of(at) - MINUTES_PER_DAY)
        .fetch_one(&mut *conn)
        .await?)
}

/// The candidates of a claim: queued and due retrying contacts, in the order they were added, with
/// the zone key that `campaign_zones` counts them under; contacts another transaction holds are
/// left to it. `$zones` narrows both kinds of contact alike.
macro_rules! claim_candidates {
    ($zones:literal, $queued_limit:literal) => {
        concat!(
            "WITH queued AS (\
               SELECT id, status, failed_retries, phone, COALESCE(timezone, '') AS zone FROM contacts WHERE campaign_id = $1 AND status = 'queue'",
            $zones,
            " ORDER BY id LIMIT ",
            $queued_limit,
            " FOR UPDATE SKIP LOCKED), \
             retrying AS (\
               SELECT id, status, failed_retries, phone, COALESCE(timezone, '') AS zone FROM contacts \
               WHERE campaign_id = $1 AND status = 'retrying' AND next_attempt_at <= $2",
            $zones,
            " ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             SELECT id, status, failed_retries, phone, zone FROM (SELECT * FROM queued UNION ALL SELECT * FROM retrying) AS candidates \
             ORDER BY id LIMIT $3"
        )
    };
}
const CANDIDATES: &str = claim_candidates!("", "$3");
/// The candidates outside the zones whose contact hours are closed (`$4`, zone keys), at most `$5`
/// of them queued (0 when no open zone has any: see [`ZoneGate::Closed`]).
const CANDIDATES_IN_OPEN_ZONES: &str = claim_candidates!(" AND COALESCE(timezone, '') <> ALL($4::text[])", "$5");

/// Which of the campaign's zones its contact hours close at `at`; the zones are read only when
/// the campaign has hours.
async fn zone_gate(conn: &mut PgConnection, campaign_id: i64, settings: &CampaignSettings, at: Timestamp) -> StoreResult<ZoneGate> {
    let Some(hours) = &settings.contact_hours else { return Ok(ZoneGate::Open) };
    let zones: Vec<(String, i64)> = sqlx::query_as("SELECT timezone, queued::bigint FROM campaign_zones WHERE campaign_id = $1")
        .bind(campaign_id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(ZoneGate::at(Some(hours), &settings.timezone, zones.iter().map(|(key, queued)| (key.as_str(), *queued)), at))
}

/// Adds to the queued contacts of a campaign's zones (by zone key, each once), making a zone's
/// row when it has none (also for a delta of 0: see `campaign_zones`).
pub(super) async fn add_zone_counts(conn: &mut PgConnection, campaign_id: i64, deltas: &[(&str, i64)]) -> StoreResult<()> {
    if deltas.is_empty() {
        return Ok(());
    }
    let (keys, counts): (Vec<&str>, Vec<i64>) = deltas.iter().copied().unzip();
    sqlx::query(
        "INSERT INTO campaign_zones (campaign_id, timezone, queued) \
         SELECT $1, v.timezone, v.queued FROM UNNEST($2::text[], $3::bigint[]) AS v(timezone, queued) \
         ON CONFLICT (campaign_id, timezone) DO UPDATE SET queued = campaign_zones.queued + excluded.queued",
    )
    .bind(campaign_id)
    .bind(&keys)
    .bind(&counts)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Claims for one campaign, whose row the caller has locked.
pub(super) async fn claim_attempts(conn: &mut PgConnection, claim: ClaimRequest) -> StoreResult<Vec<Dispatch>> {
    let row = sqlx::query(
        "SELECT org_id, status, archived, channel, settings, current_iteration, in_flight FROM campaigns WHERE id = $1 FOR UPDATE",
    )
    .bind(claim.campaign_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(Vec::new()) };
    if !parse_campaign_status(row.try_get("status")?)?.dispatches(row.try_get("archived")?) {
        return Ok(Vec::new());
    }
    let settings: CampaignSettings = serde_json::from_str(row.try_get("settings")?)?;
    let channel = parse_channel(row.try_get("channel")?)?;
    let iteration: i64 = row.try_get("current_iteration")?;
    // The budgets, checked under the campaign's lock (§5.1, §5.2); the window is checked by the
    // engine with the same instant just before.
    let started = started_last_day(conn, claim.campaign_id, claim.at).await?;
    let room = settings.claim_room(i64::from(claim.limit), started, row.try_get("in_flight")?);
    // The integration's pace, under its row's lock: every process's claims share it.
    let pace = match &claim.pace {
        Some(pace) => {
            let tat: Option<i64> = sqlx::query_scalar("SELECT pace_tat FROM integrations WHERE id = $1 FOR UPDATE")
                .bind(&pace.integration_id)
                .fetch_optional(&mut *conn)
                .await?
                .flatten();
            Some((pace, tat))
        }
        None => None,
    };
    let room = match pace {
        Some((pace, tat)) => room.min(pacing::allowed(tat, claim.at, pace.per_second, room)),
        None => room,
    };
    if room == 0 {
        return Ok(Vec::new());
    }
    // Contacts whose own hours are closed wait (§12.2); without hours, or with every zone open,
    // the candidates are read exactly as without them.
    let candidates = match zone_gate(conn, claim.campaign_id, &settings, claim.at).await? {
        ZoneGate::Open => sqlx::query(CANDIDATES).bind(claim.campaign_id).bind(to_millis(claim.at)).bind(room),
        ZoneGate::Closed { closed, queued_open } => sqlx::query(CANDIDATES_IN_OPEN_ZONES)
            .bind(claim.campaign_id)
            .bind(to_millis(claim.at))
            .bind(room)
            .bind(closed)
            .bind(if queued_open { room } else { 0 }),
        ZoneGate::Shut => return Ok(Vec::new()),
    }
    .fetch_all(&mut *conn)
    .await?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // A number suppressed since its contact was added is never attempted: the contact fails now.
    let phones: Vec<&str> = candidates.iter().map(|row| row.try_get("phone")).collect::<Result<_, _>>()?;
    let org: i64 = row.try_get("org_id")?;
    let suppressed = suppressed_numbers(conn, org, channel, &phones).await?;
    let mut contact_ids = Vec::with_capacity(candidates.len());
    let mut attempt_ids = Vec::with_capacity(candidates.len());
    let mut templates = Vec::with_capacity(candidates.len());
    let mut withheld = Vec::new();
    let (mut from_queue, mut from_retrying, mut withheld_queued) = (0_i64, 0_i64, 0_i64);
    // Every candidate leaves `queue` now, attempted or not.
    let mut queued_zones = Vec::new();
    for (row, phone) in candidates.iter().zip(&phones) {
        let failed_retries: i64 = row.try_get("failed_retries")?;
        let queued = row.try_get::<String, _>("status")? == ContactStatus::Queue.as_str();
        if queued {
            queued_zones.push(row.try_get::<String, _>("zone")?);
        }
        if suppressed.contains(*phone) {
            withheld.push(row.try_get::<i64, _>("id")?);
            withheld_queued += i64::from(queued);
            continue;
        }
        if queued {
            from_queue += 1;
        } else {
            from_retrying += 1;
        }
        contact_ids.push(row.try_get::<i64, _>("id")?);
        attempt_ids.push(new_attempt_id(channel));
        templates.push(settings.template_for(channel, failed_retries));
    }
    add_zone_counts(conn, claim.campaign_id, &zone_deltas(queued_zones.iter().map(|key| (key.as_str(), -1)))).await?;
    if !withheld.is_empty() {
        sqlx::query("UPDATE contacts SET status = 'failed', failed_reason = $1, next_attempt_at = NULL WHERE id = ANY($2)")
            .bind(FailedReason::Suppressed.as_str())
            .bind(&withheld)
            .execute(&mut *conn)
            .await?;
        let total = i64::try_from(withheld.len()).unwrap_or(i64::MAX);
        let deltas =
            [(ContactStatus::Queue, -withheld_queued), (ContactStatus::Retrying, withheld_queued - total), (ContactStatus::Failed, total)];
        add_counts(conn, claim.campaign_id, &deltas).await?;
    }
    if contact_ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query(
        "INSERT INTO attempts (id, campaign_id, contact_id, iteration, due_at, deadline, template, created_at) \
         SELECT v.id, $1, v.contact_id, $2, $3, $4, v.template, $5 \
         FROM UNNEST($6::text[], $7::bigint[], $8::text[]) WITH ORDINALITY AS v(id, contact_id, template, n) ORDER BY v.n",
    )
    .bind(claim.campaign_id)
    .bind(iteration)
    .bind(to_millis(claim.lease_until))
    .bind(to_millis(claim.deadline))
    .bind(to_millis(claim.at))
    .bind(&attempt_ids)
    .bind(&contact_ids)
    .bind(&templates)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE contacts SET status = 'sending', call_count = call_count + 1, last_call_at = $1, next_attempt_at = NULL, \
         last_attempt_id = v.attempt_id FROM UNNEST($2::bigint[], $3::text[]) AS v(id, attempt_id) WHERE contacts.id = v.id",
    )
    .bind(to_seconds(claim.at))
    .bind(&contact_ids)
    .bind(&attempt_ids)
    .execute(&mut *conn)
    .await?;
    let taken = from_queue + from_retrying;
    if let Some((pace, tat)) = pace {
        let tat = pacing::after_taking(tat, claim.at, pace.per_second, taken);
        sqlx::query("UPDATE integrations SET pace_tat = $1 WHERE id = $2").bind(tat).bind(&pace.integration_id).execute(&mut *conn).await?;
    }
    add_counts(
        conn,
        claim.campaign_id,
        &[(ContactStatus::Queue, -from_queue), (ContactStatus::Retrying, -from_retrying), (ContactStatus::Sending, taken)],
    )
    .await?;
    sqlx::query("UPDATE campaigns SET in_flight = in_flight + $1 WHERE id = $2")
        .bind(taken)
        .bind(claim.campaign_id)
        .execute(&mut *conn)
        .await?;
    let minute = minute_of(claim.at);
    sqlx::query(
        "INSERT INTO campaign_starts (campaign_id, minute, count) VALUES ($1, $2, $3) \
         ON CONFLICT (campaign_id, minute) DO UPDATE SET count = campaign_starts.count + excluded.count",
    )
    .bind(claim.campaign_id)
    .bind(minute)
    .bind(taken)
    .execute(&mut *conn)
    .await?;
    // Minutes are kept a week, for the dashboard's attempts-per-hour chart (the daily cap reads
    // only the last day of them); older ones are cleared out now and then.
    if minute % 10 == 0 {
        sqlx::query("DELETE FROM campaign_starts WHERE campaign_id = $1 AND minute < $2")
            .bind(claim.campaign_id)
            .bind(minute - START_COUNTS_KEPT_MINUTES)
            .execute(&mut *conn)
            .await?;
    }
    dispatches(conn, &attempt_ids).await
}

/// The attempts named, with their contacts, as providers receive them.
async fn dispatches(conn: &mut PgConnection, attempt_ids: &[String]) -> StoreResult<Vec<Dispatch>> {
    if attempt_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        "SELECT a.id AS attempt_id, a.campaign_id, a.iteration, a.handoff_tries, a.template, ",
        dispatch_contact_columns!(),
        " FROM attempts a JOIN contacts ct ON ct.id = a.contact_id WHERE a.id = ANY($1) ORDER BY ct.id"
    ))
    .bind(attempt_ids)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(dispatch_from_row).collect()
}

pub(super) async fn take_due_handoffs(
    conn: &mut PgConnection,
    at: Timestamp,
    lease_until: Timestamp,
    limit: u32,
) -> StoreResult<Vec<Dispatch>> {
    // A failing integration's attempts wait for it to be fixed (PROVIDERS.md §1).
    let due: Vec<(String, bool)> = sqlx::query_as(
        "WITH due AS (\
           SELECT id, handing_off FROM attempts WHERE open AND due_at <= $2 AND NOT handed_off AND deadline > $2 \
             AND NOT EXISTS (SELECT 1 FROM campaigns c JOIN integrations i ON i.id = c.integration_id \
               WHERE c.id = attempts.campaign_id AND i.health_reason IS NOT NULL) \
           ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
         UPDATE attempts a SET due_at = $1, handing_off = TRUE FROM due WHERE a.id = due.id \
         RETURNING a.id, due.handing_off",
    )
    .bind(to_millis(lease_until))
    .bind(to_millis(at))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<String> = due.iter().map(|(id, _)| id.clone()).collect();
    let mut dispatches = dispatches(conn, &ids).await?;
    let in_doubt: std::collections::HashSet<&str> = due.iter().filter(|(_, doubt)| *doubt).map(|(id, _)| id.as_str()).collect();
    for dispatch in &mut dispatches {
        dispatch.in_doubt = in_doubt.contains(dispatch.attempt_id.as_str());
    }
    Ok(dispatches)
}

/// What a batch of handoff results does to one attempt, applied in the batch's order.
#[derive(Default)]
struct HandoffUpdate {
    /// Re-sends asked for before the attempt was accepted.
    retries: i64,
    due_at: i64,
    accepted: bool,
    provider_id: Option<String>,
    /// The attempt's new deadline, when the result sets one.
    deadline: Option<i64>,
}

pub(super) async fn record_handoffs(conn: &mut PgConnection, results: Vec<HandoffResult>) -> StoreResult<()> {
    let mut handoffs: HashMap<String, HandoffUpdate> = HashMap::with_capacity(results.len());
    for result in results {
        match result {
            HandoffResult::Accepted { attempt_id, provider_id, deadline } => {
                let handoff = handoffs.entry(attempt_id).or_default();
                handoff.accepted = true;
                handoff.provider_id = provider_id;
                handoff.deadline = Some(to_millis(deadline));
            }
            HandoffResult::RetryAt { attempt_id, at, deadline } => {
                let handoff = handoffs.entry(attempt_id).or_default();
                // Once accepted in this batch, a later re-send changes nothing (as on the row).
                if !handoff.accepted {
                    handoff.retries += 1;
                    handoff.due_at = to_millis(at);
                    handoff.deadline = deadline.map(to_millis).or(handoff.deadline);
                }
            }
        }
    }
    if handoffs.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<String> = handoffs.keys().cloned().collect();
    ids.sort_unstable();
    // Attempts are locked in id order, as every other writer of several attempts does.
    sqlx::query("SELECT id FROM attempts WHERE id = ANY($1) ORDER BY id FOR UPDATE").bind(&ids).fetch_all(&mut *conn).await?;
    let mut retries = Vec::with_capacity(ids.len());
    let mut due = Vec::with_capacity(ids.len());
    let mut accepted = Vec::with_capacity(ids.len());
    let mut provider_ids = Vec::with_capacity(ids.len());
    let mut deadlines = Vec::with_capacity(ids.len());
    for id in &ids {
        let handoff = &handoffs[id];
        retries.push(handoff.retries);
        due.push(handoff.due_at);
        accepted.push(handoff.accepted);
        provider_ids.push(handoff.provider_id.as_deref());
        deadlines.push(handoff.deadline);
    }
    // A re-send counts only while the provider does not have the attempt; acceptance sets the
    // deadline as the next look, except that a provisional outcome held before this answer was
    // recorded keeps its earlier one.
    sqlx::query(
        "UPDATE attempts SET \
           handoff_tries = handoff_tries + CASE WHEN attempts.handed_off THEN 0 ELSE v.retries END, \
           handing_off = attempts.handing_off AND (attempts.handed_off OR v.retries = 0), \
           due_at = CASE WHEN v.accepted AND attempts.held_event IS NOT NULL \
                      THEN LEAST(attempts.due_at, COALESCE(v.deadline, attempts.deadline)) \
                    WHEN v.accepted THEN COALESCE(v.deadline, attempts.deadline) \
                    WHEN attempts.handed_off OR v.retries = 0 THEN attempts.due_at ELSE v.due_at END, \
           deadline = CASE WHEN attempts.held_event IS NOT NULL THEN LEAST(attempts.deadline, COALESCE(v.deadline, attempts.deadline)) \
                      WHEN v.accepted OR NOT attempts.handed_off THEN COALESCE(v.deadline, attempts.deadline) \
                      ELSE attempts.deadline END, \
           handed_off = attempts.handed_off OR v.accepted, \
           provider_id = COALESCE(attempts.provider_id, v.provider_id) \
         FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::boolean[], $5::text[], $6::bigint[]) \
           AS v(id, retries, due_at, accepted, provider_id, deadline) \
         WHERE attempts.id = v.id",
    )
    .bind(&ids)
    .bind(&retries)
    .bind(&due)
    .bind(&accepted)
    .bind(&provider_ids)
    .bind(&deadlines)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn expired_attempts(conn: &mut PgConnection, at: Timestamp, limit: u32) -> StoreResult<Vec<ExpiredAttempt>> {
    let rows = sqlx::query(
        "SELECT a.id, a.provider_id, a.held_event, c.integration_id, i.provider, i.config FROM attempts a \
         JOIN campaigns c ON c.id = a.campaign_id JOIN integrations i ON i.id = c.integration_id \
         WHERE a.open AND a.due_at <= $1 AND a.deadline <= $1 ORDER BY a.due_at LIMIT $2",
    )
    .bind(to_millis(at))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(expired_attempt_from_row).collect()
}

pub(super) async fn hold_events(conn: &mut PgConnection, integration_id: &str, held: Vec<HeldEvent>) -> StoreResult<()> {
    for HeldEvent { event, until } in held {
        sqlx::query(
            "UPDATE attempts SET held_event = $1, deadline = LEAST(deadline, $2), due_at = LEAST(due_at, $2) WHERE id = $3 AND open \
             AND campaign_id IN (SELECT id FROM campaigns WHERE integration_id = $4)",
        )
        .bind(serde_json::to_string(&event)?)
        .bind(to_millis(until))
        .bind(&event.attempt_id)
        .bind(integration_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(super) async fn mark_integration_failing(
    conn: &mut PgConnection,
    integration_id: &str,
    reason: &str,
    at: Timestamp,
) -> StoreResult<()> {
    sqlx::query("UPDATE integrations SET health_reason = $1, health_since = $2 WHERE id = $3 AND health_reason IS NULL")
        .bind(reason)
        .bind(to_seconds(at))
        .bind(integration_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The attempts named, with what their events need of their campaigns (see
/// [`attempt_state_from_row`]), locked in id order.
static LOAD_ATTEMPTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT a.id, a.campaign_id, a.contact_id, a.status, a.open, a.answered_by, a.converted, a.started_at, a.ended_at, \
         a.sent_at, a.delivered_at, a.read_at, a.duration, a.billed_duration, a.ended_by, a.ended_reason, a.extracted_data, a.tags, \
         c.org_id, c.channel, c.integration_id, c.status AS campaign_status, (c.settings::jsonb ->> '{SETTINGS_RETRIES}')::bigint AS voicemail_retries \
         FROM attempts a JOIN campaigns c ON c.id = a.campaign_id WHERE a.id = ANY($1) ORDER BY a.id FOR UPDATE OF a"
    )
});

async fn load_attempts(conn: &mut PgConnection, ids: &[&str]) -> StoreResult<HashMap<String, AttemptState>> {
    let rows = sqlx::query(AssertSqlSafe(LOAD_ATTEMPTS.as_str())).bind(ids).fetch_all(&mut *conn).await?;
    rows.iter().map(|row| Ok((row.try_get("id")?, attempt_state_from_row(row)?))).collect()
}

async fn load_contacts(conn: &mut PgConnection, ids: &[i64], with_data: bool) -> StoreResult<HashMap<i64, ContactState>> {
    macro_rules! load {
        ($($data:literal)?) => {
            concat!(
                "SELECT id, status, retries, failed_retries, next_attempt_at, failed_reason, last_attempt_id, processed, answered, billed_duration",
                $($data,)?
                " FROM contacts WHERE id = ANY($1) ORDER BY id FOR UPDATE"
            )
        };
    }
    let query = if with_data { load!(", extracted_data, tags") } else { load!() };
    let rows = sqlx::query(query).bind(ids).fetch_all(&mut *conn).await?;
    rows.iter().map(|row| Ok((row.try_get("id")?, contact_state_from_row(row, with_data)?))).collect()
}

/// Applies events, each idempotently; returns their outcomes and the attempts they closed.
pub(super) async fn apply_events(
    conn: &mut PgConnection,
    integration_id: Option<&str>,
    events: &[AttemptEvent],
    at: Timestamp,
    retry: RetrySettings,
) -> StoreResult<(Vec<EventOutcome>, Vec<FinishedAttempt>)> {
    let mut ids: Vec<&str> = events.iter().map(|e| e.attempt_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    // Lock order: the attempts' campaigns first (an attempt never changes campaign), then the
    // attempts, then their contacts.
    let mut campaign_ids: Vec<i64> =
        sqlx::query_scalar("SELECT DISTINCT campaign_id FROM attempts WHERE id = ANY($1)").bind(&ids).fetch_all(&mut *conn).await?;
    campaign_ids.sort_unstable();
    lock_campaigns(conn, &campaign_ids).await?;
    let mut attempts = load_attempts(conn, &ids).await?;
    let mut contact_ids: Vec<i64> = attempts.values().map(|a| a.contact_id).collect();
    contact_ids.sort_unstable();
    contact_ids.dedup();
    let with_data = events.iter().any(|e| e.extracted_data.is_some() || e.tags.is_some());
    let mut contacts = load_contacts(conn, &contact_ids, with_data).await?;
    let EventsApplied { outcomes, deltas, finished, webhook_events, opt_outs } =
        apply_outcomes(&mut attempts, &mut contacts, integration_id, events, at, retry);
    write_attempts(conn, &attempts).await?;
    write_contacts(conn, &contacts).await?;
    let mut deltas: Vec<_> = deltas.into_iter().collect();
    deltas.sort_unstable_by_key(|(campaign_id, _)| *campaign_id);
    for (campaign_id, delta) in deltas {
        write_delta(conn, campaign_id, delta).await?;
    }
    for (org, events) in by_organization(webhook_events) {
        webhooks::record_events(conn, org, &events, None).await?;
    }
    for opt_out in opt_outs {
        let phone: Option<String> =
            sqlx::query_scalar("SELECT phone FROM contacts WHERE id = $1").bind(opt_out.contact_id).fetch_optional(&mut *conn).await?;
        if let Some(item) = phone.and_then(|phone| provider_opt_out(phone, opt_out.channel)) {
            super::dnc::add_entries(conn, opt_out.org_id, &[item], &DncOrigin::from(DncSource::Provider), at).await?;
        }
    }
    Ok((outcomes, finished))
}

async fn write_attempts(conn: &mut PgConnection, attempts: &HashMap<String, AttemptState>) -> StoreResult<()> {
    let changed: Vec<(&String, &AttemptState)> = attempts.iter().filter(|(_, a)| a.changed).collect();
    if changed.is_empty() {
        return Ok(());
    }
    let n = changed.len();
    let (mut ids, mut statuses, mut open, mut answered_by, mut converted) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut started, mut ended, mut sent, mut delivered, mut read) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut recording_url, mut transcript) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut duration, mut billed, mut ended_by, mut ended_reason, mut data, mut tags) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (id, a) in changed {
        ids.push(id.as_str());
        statuses.push(a.status.as_str());
        open.push(a.open);
        answered_by.push(a.answered_by.map(AnsweredBy::as_str));
        converted.push(a.converted);
        started.push(a.started_at);
        ended.push(a.ended_at);
        sent.push(a.sent_at);
        delivered.push(a.delivered_at);
        read.push(a.read_at);
        duration.push(a.duration);
        billed.push(a.billed_duration);
        ended_by.push(a.ended_by.as_deref());
        ended_reason.push(a.ended_reason.as_deref());
        data.push(a.extracted_data.as_ref().map(serde_json::to_string).transpose()?);
        tags.push(a.tags.as_ref().map(serde_json::to_string).transpose()?);
        recording_url.push(a.new_recording_url.as_deref());
        transcript.push(a.new_transcript.as_ref().map(serde_json::to_string).transpose()?);
    }
    sqlx::query(
        "UPDATE attempts SET status = v.status, open = v.open, handed_off = TRUE, due_at = deadline, answered_by = v.answered_by, \
         converted = v.converted, started_at = v.started_at, ended_at = v.ended_at, sent_at = v.sent_at, \
         delivered_at = v.delivered_at, read_at = v.read_at, duration = v.duration, billed_duration = v.billed_duration, \
         ended_by = v.ended_by, ended_reason = v.ended_reason, extracted_data = v.extracted_data, tags = v.tags, \
         recording_url = COALESCE(v.recording_url, attempts.recording_url), transcript = COALESCE(v.transcript, attempts.transcript) \
         FROM UNNEST($1::text[], $2::text[], $3::boolean[], $4::text[], $5::boolean[], $6::bigint[], $7::bigint[], $8::bigint[], \
                     $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::text[], $15::text[], $16::text[], \
                     $17::text[], $18::text[]) \
           AS v(id, status, open, answered_by, converted, started_at, ended_at, sent_at, delivered_at, read_at, duration, \
                billed_duration, ended_by, ended_reason, extracted_data, tags, recording_url, transcript) \
         WHERE attempts.id = v.id",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&open)
    .bind(&answered_by)
    .bind(&converted)
    .bind(&started)
    .bind(&ended)
    .bind(&sent)
    .bind(&delivered)
    .bind(&read)
    .bind(&duration)
    .bind(&billed)
    .bind(&ended_by)
    .bind(&ended_reason)
    .bind(&data)
    .bind(&tags)
    .bind(&recording_url)
    .bind(&transcript)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn write_contacts(conn: &mut PgConnection, contacts: &HashMap<i64, ContactState>) -> StoreResult<()> {
    let changed: Vec<(&i64, &ContactState)> = contacts.iter().filter(|(_, c)| c.changed).collect();
    if changed.is_empty() {
        return Ok(());
    }
    let n = changed.len();
    let (mut ids, mut statuses, mut retries, mut failed_retries, mut next_attempt_at) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut processed, mut answered, mut billed, mut data, mut tags) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let mut failed_reasons = Vec::with_capacity(n);
    for (id, c) in changed {
        ids.push(*id);
        statuses.push(c.progress.status.as_str());
        retries.push(c.progress.retries);
        failed_retries.push(c.progress.failed_retries);
        next_attempt_at.push(c.progress.next_attempt_at.map(to_millis));
        failed_reasons.push(c.progress.failed_reason.map(FailedReason::as_str));
        processed.push(c.processed);
        answered.push(c.answered);
        billed.push(c.billed_duration);
        // Data and tags are written only when they were read (NULL keeps the stored ones).
        data.push(c.data.as_ref().map(|d| serde_json::to_string(&d.extracted_data)).transpose()?);
        tags.push(c.data.as_ref().map(|d| serde_json::to_string(&d.tags)).transpose()?);
    }
    sqlx::query(
        "UPDATE contacts SET status = v.status, retries = v.retries, failed_retries = v.failed_retries, \
         next_attempt_at = v.next_attempt_at, processed = v.processed, answered = v.answered, billed_duration = v.billed_duration, \
         extracted_data = COALESCE(v.extracted_data, contacts.extracted_data), tags = COALESCE(v.tags, contacts.tags), \
         failed_reason = v.failed_reason \
         FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::boolean[], $7::boolean[], \
                     $8::bigint[], $9::text[], $10::text[], $11::text[]) \
           AS v(id, status, retries, failed_retries, next_attempt_at, processed, answered, billed_duration, extracted_data, tags, \
                failed_reason) \
         WHERE contacts.id = v.id",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&retries)
    .bind(&failed_retries)
    .bind(&next_attempt_at)
    .bind(&processed)
    .bind(&answered)
    .bind(&billed)
    .bind(&data)
    .bind(&tags)
    .bind(&failed_reasons)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn write_delta(conn: &mut PgConnection, campaign_id: i64, delta: CampaignDelta) -> StoreResult<()> {
    sqlx::query(
        "UPDATE campaigns SET in_flight = in_flight + $1, calls = calls + $2, calls_human = calls_human + $3, \
         calls_machine = calls_machine + $4, calls_unknown = calls_unknown + $5, messages = messages + $6, \
         contacts_processed = contacts_processed + $7, contacts_answered = contacts_answered + $8 WHERE id = $9",
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

/// Adds to the per-status contact counts of a campaign (one statement; statuses distinct).
pub(super) async fn add_counts(conn: &mut PgConnection, campaign_id: i64, deltas: &[(ContactStatus, i64)]) -> StoreResult<()> {
    let (statuses, counts): (Vec<&str>, Vec<i64>) = deltas.iter().filter(|(_, d)| *d != 0).map(|(s, d)| (s.as_str(), *d)).unzip();
    if statuses.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO campaign_contact_counts (campaign_id, status, count) \
         SELECT $1, v.status, v.count FROM UNNEST($2::text[], $3::bigint[]) AS v(status, count) \
         ON CONFLICT (campaign_id, status) DO UPDATE SET count = campaign_contact_counts.count + excluded.count",
    )
    .bind(campaign_id)
    .bind(&statuses)
    .bind(&counts)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `WHERE` condition of the contacts a new iteration takes (§5.5): not converted, not in flight,
/// status not in `filter_statuses`, no tag in `filter_tags`. Binds `$1` (campaign), `$2`
/// (statuses) and `$3` (tags).
macro_rules! eligible {
    () => {
        " WHERE campaign_id = $1 AND failed_reason IS NULL AND status <> ALL($2) \
     AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(contacts.tags::jsonb) AS t(tag) WHERE t.tag = ANY($3))"
    };
}

fn eligible_binds(campaign: &Campaign) -> (Vec<&str>, Vec<&str>) {
    let cycles = &campaign.settings.cycles;
    let statuses = cycles.statuses_left_alone().into_iter().map(ContactStatus::as_str).collect();
    (statuses, cycles.filter_tags.iter().map(String::as_str).collect())
}

/// Starts an iteration's contacts: every eligible one back to `queue` with its retry counters
/// reset. Once per iteration, so it may scan the campaign's contacts; the counts are rebuilt.
/// The caller holds the campaign's row.
pub(super) async fn queue_eligible_contacts(conn: &mut PgConnection, campaign: &Campaign) -> StoreResult<()> {
    let (statuses, tags) = eligible_binds(campaign);
    let update = concat!("UPDATE contacts SET status = 'queue', retries = 0, failed_retries = 0, next_attempt_at = NULL", eligible!());
    sqlx::query(update).bind(campaign.id).bind(&statuses).bind(&tags).execute(&mut *conn).await?;
    sqlx::query("DELETE FROM campaign_contact_counts WHERE campaign_id = $1").bind(campaign.id).execute(&mut *conn).await?;
    sqlx::query(
        "INSERT INTO campaign_contact_counts (campaign_id, status, count) \
         SELECT campaign_id, status, COUNT(*) FROM contacts WHERE campaign_id = $1 GROUP BY campaign_id, status",
    )
    .bind(campaign.id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE campaign_zones SET queued = 0 WHERE campaign_id = $1").bind(campaign.id).execute(&mut *conn).await?;
    sqlx::query(
        "INSERT INTO campaign_zones (campaign_id, timezone, queued) \
         SELECT campaign_id, COALESCE(timezone, ''), COUNT(*) FROM contacts WHERE campaign_id = $1 AND status = 'queue' \
         GROUP BY campaign_id, COALESCE(timezone, '') \
         ON CONFLICT (campaign_id, timezone) DO UPDATE SET queued = excluded.queued",
    )
    .bind(campaign.id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn any_eligible(conn: &mut PgConnection, campaign: &Campaign) -> StoreResult<bool> {
    let (statuses, tags) = eligible_binds(campaign);
    let query = concat!("SELECT EXISTS (SELECT 1 FROM contacts", eligible!(), ")");
    Ok(sqlx::query_scalar(query).bind(campaign.id).bind(&statuses).bind(&tags).fetch_one(&mut *conn).await?)
}

pub(super) async fn advance_iteration(conn: &mut PgConnection, campaign_id: i64, at: Timestamp) -> StoreResult<Option<CampaignStatus>> {
    let row =
        sqlx::query(concat!(select_campaigns!(), " WHERE c.id = $1 FOR UPDATE OF c")).bind(campaign_id).fetch_optional(&mut *conn).await?;
    let Some(row) = row else { return Ok(None) };
    let mut campaign = campaign_from_row(&row)?;
    let previous = campaign.status;
    if campaign.begin_due_iteration(at) {
        queue_eligible_contacts(conn, &campaign).await?;
        update_campaign(conn, &campaign).await?;
        let events: Vec<_> = webhook::status_changed(&campaign, previous, at).into_iter().collect();
        webhooks::record_campaign_events(conn, campaign_id, &events).await?;
        return Ok(Some(campaign.status));
    }
    if !campaign.may_end_iteration() {
        return Ok(None);
    }
    let unfinished: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(count), 0)::bigint FROM campaign_contact_counts WHERE campaign_id = $1 AND status = ANY($2)",
    )
    .bind(campaign_id)
    .bind(ContactStatus::UNFINISHED.map(ContactStatus::as_str))
    .fetch_one(&mut *conn)
    .await?;
    if unfinished > 0 {
        return Ok(None);
    }
    let eligible = any_eligible(conn, &campaign).await?;
    let ended = campaign.current_iteration;
    campaign.end_iteration(at, eligible);
    update_campaign(conn, &campaign).await?;
    webhooks::record_campaign_events(conn, campaign_id, &webhook::iteration_ended(&campaign, previous, ended, at)).await?;
    Ok(Some(campaign.status))
}

/// `WHERE` of a `/calls` or `/messages` page: binds `$1` (campaign) to `$5`.
macro_rules! attempt_filters {
    () => {
        " WHERE a.campaign_id = $1 AND ($2::text[] IS NULL OR a.status = ANY($2)) \
     AND ($3::text IS NULL OR a.answered_by = $3) AND ($4::bigint IS NULL OR a.created_at >= $4) \
     AND ($5::bigint IS NULL OR a.created_at <= $5)"
    };
}

static ATTEMPTS_PAGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts a LEFT JOIN contacts ct ON ct.id = a.contact_id{} ORDER BY a.created_at, a.seq LIMIT $6 OFFSET $7",
        attempt_filters!()
    )
});

pub(super) async fn list_attempts(
    conn: &mut PgConnection,
    org: OrgId,
    campaign_id: i64,
    filter: &AttemptQuery,
) -> StoreResult<Option<AttemptPage>> {
    let channel: Option<String> = sqlx::query_scalar("SELECT channel FROM campaigns WHERE org_id = $1 AND id = $2")
        .bind(org)
        .bind(campaign_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(channel) = channel else { return Ok(None) };
    if filter.channel.is_some_and(|wanted| wanted != parse_channel(&channel).unwrap_or(wanted)) {
        return Ok(Some(AttemptPage { total_count: 0, attempts: Vec::new() }));
    }
    let statuses: Option<Vec<&str>> = filter.status.map(|status| status.filter_members().iter().map(|s| s.as_str()).collect());
    let answered_by = filter.answered_by.map(AnsweredBy::as_str);
    let (start, end) = (filter.start.map(to_millis), filter.end.map(to_millis));
    let count = concat!("SELECT COUNT(*) FROM attempts a", attempt_filters!());
    let total_count: i64 =
        sqlx::query_scalar(count).bind(campaign_id).bind(&statuses).bind(answered_by).bind(start).bind(end).fetch_one(&mut *conn).await?;
    let offset = i64::from(filter.page_size) * i64::from(filter.page_index);
    let rows = sqlx::query(AssertSqlSafe(ATTEMPTS_PAGE.as_str()))
        .bind(campaign_id)
        .bind(&statuses)
        .bind(answered_by)
        .bind(start)
        .bind(end)
        .bind(i64::from(filter.page_size))
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
    let attempts = rows.iter().map(attempt_from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(Some(AttemptPage { total_count, attempts }))
}
