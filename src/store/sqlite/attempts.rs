//! The engine's storage on SQLite: claims, attempts, events and iterations.
//!
//! The writes run on the writer's thread, synchronously on its rusqlite connection inside the
//! open transaction, so a statement costs a call into SQLite and no hand-off between threads.
//! Statements that touch many contacts are therefore a cached single-row statement run once per
//! row, or one set-based statement where SQL can say it (`WHERE campaign_id = ?`, `INSERT …
//! SELECT`). The reads (running campaigns, expired attempts, the attempt list) run on the read
//! connections of `reads`, on a blocking thread.

use crate::store::shared::expired_attempt_from_row;
use crate::store::{DncOrigin, ExpiredAttempt, HeldEvent};
use std::collections::HashMap;
use std::sync::LazyLock;

use jiff::Timestamp;
use rusqlite::types::Value;
use rusqlite::{Connection, params, params_from_iter};

use super::super::shared::{
    ATTEMPT_COLUMNS, MINUTES_PER_DAY, SETTINGS_RETRIES, START_COUNTS_KEPT_MINUTES, StoredRow, attempt_from_row, attempt_state_from_row,
    contact_state_from_row, dispatch_contact_columns, dispatch_contact_from_row, dispatch_from_row, minute_of, parse_campaign_status,
    parse_channel, running_from_row, sql_list, waiting_from_row, zone_deltas,
};
use super::super::{
    AttemptPage, AttemptQuery, ClaimRequest, Dispatch, EventOutcome, HandoffResult, OrgId, RunningCampaign, StoreResult, to_millis,
    to_seconds,
};
use super::contacts::suppressed_numbers;
use super::{all_rows, campaign_columns, campaign_from_row, first_row, select_campaigns, update_campaign, webhooks};
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
         (SELECT COALESCE(SUM(count), 0) FROM campaign_contact_counts WHERE campaign_id = c.id AND status IN ({unfinished})) AS unfinished, \
         (SELECT COALESCE(SUM(count), 0) FROM campaign_contact_counts WHERE campaign_id = c.id AND status = 'queue') AS queued, \
         (SELECT MIN(next_attempt_at) FROM contacts WHERE campaign_id = c.id AND status = 'retrying') AS next_retry_at \
         FROM campaigns c JOIN agents a ON a.id = c.agent_id JOIN integrations i ON i.id = c.integration_id",
        campaign_columns!()
    )
});
static RUNNING_CAMPAIGNS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} WHERE c.status IN ({}) AND c.archived = 0 ORDER BY c.id",
        *SELECT_RUNNING,
        sql_list(CampaignStatus::RUNNING.map(CampaignStatus::as_str))
    )
});
static RUNNING_CAMPAIGN: LazyLock<String> = LazyLock::new(|| format!("{} WHERE c.id = ?", *SELECT_RUNNING));

pub(super) fn running_campaigns(conn: &Connection) -> StoreResult<Vec<RunningCampaign>> {
    all_rows(conn, &RUNNING_CAMPAIGNS, [], |row| running_from_row(row))
}

pub(super) fn running_campaign(conn: &Connection, campaign_id: i64) -> StoreResult<Option<RunningCampaign>> {
    first_row(conn, &RUNNING_CAMPAIGN, [campaign_id], |row| running_from_row(row))
}

static WAITING_CONTACTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT c.status, SUM(n.count) AS waiting FROM campaign_contact_counts n JOIN campaigns c ON c.id = n.campaign_id \
         WHERE n.status IN ({}) AND c.archived = 0 GROUP BY c.status",
        sql_list(ContactStatus::WAITING.map(ContactStatus::as_str))
    )
});

pub(super) fn waiting_contacts(conn: &Connection) -> StoreResult<Vec<(CampaignStatus, i64)>> {
    all_rows(conn, &WAITING_CONTACTS, [], |row| waiting_from_row(row))
}

/// Attempts started in the rolling 24 hours before `at`. The oldest minute is counted whole, so
/// the limit is never exceeded (an attempt may wait up to a minute longer than strictly needed).
pub(super) fn started_last_day(conn: &Connection, campaign_id: i64, at: Timestamp) -> StoreResult<i64> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(SUM(count), 0) FROM campaign_starts WHERE campaign_id = ? AND minute >= ?")?
        .query_row(params![campaign_id, minute_of(at) - MINUTES_PER_DAY], |row| row.get(0))?)
}

/// The candidates of a claim: queued and due retrying contacts, in the order they were added, with
/// what providers receive of each contact (the claim needs no second read) and the zone key that
/// `campaign_zones` counts them under. `$zones` narrows both kinds of contact alike.
macro_rules! claim_candidates {
    ($zones:literal, $queued_limit:literal) => {
        concat!(
            "SELECT ct.status, ct.failed_retries, COALESCE(ct.timezone, '') AS zone, ",
            dispatch_contact_columns!(),
            " FROM (\
               SELECT id FROM (SELECT id FROM contacts WHERE campaign_id = ?1 AND status = 'queue'",
            $zones,
            " ORDER BY id LIMIT ",
            $queued_limit,
            ") \
               UNION ALL SELECT id FROM (SELECT id FROM contacts WHERE campaign_id = ?1 AND status = 'retrying' AND next_attempt_at <= ?2",
            $zones,
            " ORDER BY id LIMIT ?3) \
               ORDER BY id LIMIT ?3) AS picked JOIN contacts ct ON ct.id = picked.id ORDER BY ct.id"
        )
    };
}
const CANDIDATES: &str = claim_candidates!("", "?3");
/// The candidates outside the zones whose contact hours are closed (`?4`, a JSON array of zone
/// keys), at most `?5` of them queued (0 when no open zone has any: see [`ZoneGate::Closed`]).
const CANDIDATES_IN_OPEN_ZONES: &str = claim_candidates!(" AND COALESCE(timezone, '') NOT IN (SELECT value FROM json_each(?4))", "?5");

/// Which of the campaign's zones its contact hours close at `at`; the zones are read only when
/// the campaign has hours.
fn zone_gate(conn: &Connection, campaign_id: i64, settings: &CampaignSettings, at: Timestamp) -> StoreResult<ZoneGate> {
    let Some(hours) = &settings.contact_hours else { return Ok(ZoneGate::Open) };
    let zones: Vec<(String, i64)> = conn
        .prepare_cached("SELECT timezone, queued FROM campaign_zones WHERE campaign_id = ?")?
        .query_map([campaign_id], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(ZoneGate::at(Some(hours), &settings.timezone, zones.iter().map(|(key, queued)| (key.as_str(), *queued)), at))
}

pub(super) fn claim_attempts(conn: &Connection, claim: ClaimRequest) -> StoreResult<Vec<Dispatch>> {
    let found = first_row(
        conn,
        "SELECT org_id, status, archived, channel, settings, current_iteration, in_flight FROM campaigns WHERE id = ?",
        [claim.campaign_id],
        |row| {
            Ok((
                row.get::<_, i64>("org_id")?,
                row.get::<_, String>("status")?,
                row.get::<_, bool>("archived")?,
                row.get::<_, String>("channel")?,
                row.get::<_, String>("settings")?,
                row.get::<_, i64>("current_iteration")?,
                row.get::<_, i64>("in_flight")?,
            ))
        },
    )?;
    let Some((org, status, archived, channel, settings, iteration, in_flight)) = found else { return Ok(Vec::new()) };
    if !parse_campaign_status(&status)?.dispatches(archived) {
        return Ok(Vec::new());
    }
    let settings: CampaignSettings = serde_json::from_str(&settings)?;
    let channel = parse_channel(&channel)?;
    // The budgets, checked in the transaction that claims (§5.1, §5.2); the window is checked by
    // the engine with the same instant just before.
    let room = settings.claim_room(i64::from(claim.limit), started_last_day(conn, claim.campaign_id, claim.at)?, in_flight);
    let pace = match &claim.pace {
        Some(pace) => Some((pace, pace_state(conn, &pace.integration_id)?)),
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
    let (candidates_sql, closed_zones) = match zone_gate(conn, claim.campaign_id, &settings, claim.at)? {
        ZoneGate::Open => (CANDIDATES, None),
        ZoneGate::Closed { closed, queued_open } => {
            (CANDIDATES_IN_OPEN_ZONES, Some((serde_json::to_string(&closed)?, if queued_open { room } else { 0 })))
        }
        ZoneGate::Shut => return Ok(Vec::new()),
    };
    // Each with the zone it is counted under while queued (`None` when retrying).
    let mut candidates: Vec<(Option<String>, Dispatch)> = Vec::new();
    {
        let mut select = conn.prepare_cached(candidates_sql)?;
        let at = to_millis(claim.at);
        let mut rows = match &closed_zones {
            None => select.query(params![claim.campaign_id, at, room])?,
            Some((closed, queued_room)) => select.query(params![claim.campaign_id, at, room, closed, queued_room])?,
        };
        while let Some(row) = rows.next()? {
            let failed_retries: i64 = row.get("failed_retries")?;
            let queued_zone = if row.get::<_, String>("status")? == ContactStatus::Queue.as_str() { Some(row.get("zone")?) } else { None };
            candidates.push((
                queued_zone,
                Dispatch {
                    attempt_id: new_attempt_id(channel),
                    campaign_id: claim.campaign_id,
                    iteration,
                    tries: 0,
                    in_doubt: false,
                    template: settings.template_for(channel, failed_retries),
                    contact: dispatch_contact_from_row(row)?,
                },
            ));
        }
    }
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // Every candidate leaves `queue` now, attempted or not.
    let queued_zones = zone_deltas(candidates.iter().filter_map(|(zone, _)| zone.as_deref()).map(|zone| (zone, -1)));
    add_zone_counts(conn, claim.campaign_id, &queued_zones)?;
    // A number suppressed since its contact was added is never attempted: the contact fails now.
    let suppressed = suppressed_numbers(conn, org, channel, candidates.iter().map(|(_, d)| d.contact.contact.as_str()))?;
    let (withheld, claimed): (Vec<_>, Vec<_>) =
        candidates.into_iter().partition(|(_, dispatch)| suppressed.contains(dispatch.contact.contact.as_str()));
    let from_queue = i64::try_from(claimed.iter().filter(|(zone, _)| zone.is_some()).count()).unwrap_or(i64::MAX);
    let from_retrying = i64::try_from(claimed.len()).unwrap_or(i64::MAX) - from_queue;
    if !withheld.is_empty() {
        let mut fail =
            conn.prepare_cached("UPDATE contacts SET status = 'failed', failed_reason = ?, next_attempt_at = NULL WHERE id = ?")?;
        for (_, dispatch) in &withheld {
            fail.execute(params![FailedReason::Suppressed.as_str(), dispatch.contact.id])?;
        }
        let queued = i64::try_from(withheld.iter().filter(|(zone, _)| zone.is_some()).count()).unwrap_or(i64::MAX);
        let total = i64::try_from(withheld.len()).unwrap_or(i64::MAX);
        add_counts(
            conn,
            claim.campaign_id,
            [(ContactStatus::Queue, -queued), (ContactStatus::Retrying, queued - total), (ContactStatus::Failed, total)],
        )?;
    }
    let claimed: Vec<Dispatch> = claimed.into_iter().map(|(_, dispatch)| dispatch).collect();
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO attempts (id, campaign_id, contact_id, iteration, due_at, deadline, template, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )?;
    let mut take = conn.prepare_cached(
        "UPDATE contacts SET status = 'sending', call_count = call_count + 1, last_call_at = ?, next_attempt_at = NULL, \
         last_attempt_id = ? WHERE id = ?",
    )?;
    for dispatch in &claimed {
        insert.execute(params![
            dispatch.attempt_id,
            claim.campaign_id,
            dispatch.contact.id,
            iteration,
            to_millis(claim.lease_until),
            to_millis(claim.deadline),
            dispatch.template,
            to_millis(claim.at),
        ])?;
        take.execute(params![to_seconds(claim.at), dispatch.attempt_id, dispatch.contact.id])?;
    }
    let taken = from_queue + from_retrying;
    if let Some((pace, tat)) = pace {
        let tat = pacing::after_taking(tat, claim.at, pace.per_second, taken);
        conn.prepare_cached("UPDATE integrations SET pace_tat = ? WHERE id = ?")?.execute(params![tat, pace.integration_id])?;
    }
    add_counts(
        conn,
        claim.campaign_id,
        [(ContactStatus::Queue, -from_queue), (ContactStatus::Retrying, -from_retrying), (ContactStatus::Sending, taken)],
    )?;
    conn.prepare_cached("UPDATE campaigns SET in_flight = in_flight + ? WHERE id = ?")?.execute(params![taken, claim.campaign_id])?;
    let minute = minute_of(claim.at);
    conn.prepare_cached(
        "INSERT INTO campaign_starts (campaign_id, minute, count) VALUES (?, ?, ?) \
         ON CONFLICT (campaign_id, minute) DO UPDATE SET count = count + excluded.count",
    )?
    .execute(params![claim.campaign_id, minute, taken])?;
    // Minutes are kept a week, for the dashboard's attempts-per-hour chart (the daily cap reads
    // only the last day of them); older ones are cleared out now and then.
    if minute % 10 == 0 {
        conn.prepare_cached("DELETE FROM campaign_starts WHERE campaign_id = ? AND minute < ?")?
            .execute(params![claim.campaign_id, minute - START_COUNTS_KEPT_MINUTES])?;
    }
    Ok(claimed)
}

/// The attempts named, with their contacts, as providers receive them, in the order of their
/// contacts. An attempt whose contact was deleted is left out (there is nothing to send).
fn dispatches(conn: &Connection, attempt_ids: &[String]) -> StoreResult<Vec<Dispatch>> {
    let sql = concat!(
        "SELECT a.id AS attempt_id, a.campaign_id, a.iteration, a.handoff_tries, a.template, ",
        dispatch_contact_columns!(),
        " FROM attempts a JOIN contacts ct ON ct.id = a.contact_id WHERE a.id = ?"
    );
    let mut out = Vec::with_capacity(attempt_ids.len());
    for id in attempt_ids {
        out.extend(first_row(conn, sql, [id], |row| dispatch_from_row(row))?);
    }
    out.sort_by_key(|dispatch| dispatch.contact.id);
    Ok(out)
}

/// The stored pace of an integration (see [`crate::domain::pacing`]).
fn pace_state(conn: &Connection, integration_id: &str) -> StoreResult<Option<i64>> {
    Ok(first_row(conn, "SELECT pace_tat FROM integrations WHERE id = ?", [integration_id], |row| row.opt_int("pace_tat"))?.flatten())
}

pub(super) fn take_due_handoffs(conn: &Connection, at: Timestamp, lease_until: Timestamp, limit: u32) -> StoreResult<Vec<Dispatch>> {
    // A failing integration's attempts wait for it to be fixed (PROVIDERS.md §1).
    let due: Vec<(String, bool)> = conn
        .prepare_cached(
            "SELECT id, handing_off FROM attempts WHERE open = 1 AND due_at <= ?1 AND handed_off = 0 AND deadline > ?1 \
               AND NOT EXISTS (SELECT 1 FROM campaigns c JOIN integrations i ON i.id = c.integration_id \
                 WHERE c.id = attempts.campaign_id AND i.health_reason IS NOT NULL) \
             ORDER BY due_at LIMIT ?2",
        )?
        .query_map(params![to_millis(at), i64::from(limit)], |row| Ok((row.get::<_, String>(0)?, row.get::<_, bool>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut take = conn.prepare_cached("UPDATE attempts SET due_at = ?, handing_off = 1 WHERE id = ?")?;
    for (id, _) in &due {
        take.execute(params![to_millis(lease_until), id])?;
    }
    let ids: Vec<String> = due.iter().map(|(id, _)| id.clone()).collect();
    let mut dispatches = dispatches(conn, &ids)?;
    let in_doubt: std::collections::HashSet<&str> = due.iter().filter(|(_, doubt)| *doubt).map(|(id, _)| id.as_str()).collect();
    for dispatch in &mut dispatches {
        dispatch.in_doubt = in_doubt.contains(dispatch.attempt_id.as_str());
    }
    Ok(dispatches)
}

pub(super) fn record_handoffs(conn: &Connection, results: Vec<HandoffResult>) -> StoreResult<()> {
    // An attempt already closed by a callback that outran this record keeps its state.
    let mut accepted = conn.prepare_cached(
        // A provisional outcome held before this answer was recorded keeps its earlier deadline.
        "UPDATE attempts SET handed_off = 1, provider_id = COALESCE(?, provider_id), \
         deadline = CASE WHEN held_event IS NULL THEN ?2 ELSE MIN(deadline, ?2) END, \
         due_at = CASE WHEN held_event IS NULL THEN ?2 ELSE MIN(due_at, ?2) END WHERE id = ? AND open = 1",
    )?;
    let mut named = conn.prepare_cached("UPDATE attempts SET provider_id = COALESCE(provider_id, ?) WHERE id = ? AND open = 0")?;
    let mut retry = conn.prepare_cached(
        "UPDATE attempts SET handoff_tries = handoff_tries + 1, handing_off = 0, due_at = ?, deadline = COALESCE(?, deadline) \
         WHERE id = ? AND handed_off = 0",
    )?;
    for result in results {
        match result {
            HandoffResult::Accepted { attempt_id, provider_id, deadline } => {
                accepted.execute(params![provider_id, to_millis(deadline), attempt_id])?;
                named.execute(params![provider_id, attempt_id])?;
            }
            HandoffResult::RetryAt { attempt_id, at, deadline } => {
                retry.execute(params![to_millis(at), deadline.map(to_millis), attempt_id])?;
            }
        };
    }
    Ok(())
}

pub(super) fn expired_attempts(conn: &Connection, at: Timestamp, limit: u32) -> StoreResult<Vec<ExpiredAttempt>> {
    let sql = "SELECT a.id, a.provider_id, a.held_event, c.integration_id, i.provider, i.config FROM attempts a \
               JOIN campaigns c ON c.id = a.campaign_id JOIN integrations i ON i.id = c.integration_id \
               WHERE a.open = 1 AND a.due_at <= ?1 AND a.deadline <= ?1 ORDER BY a.due_at LIMIT ?2";
    all_rows(conn, sql, params![to_millis(at), i64::from(limit)], |row| expired_attempt_from_row(row))
}

pub(super) fn hold_events(conn: &Connection, integration_id: &str, held: Vec<HeldEvent>) -> StoreResult<()> {
    let mut hold = conn.prepare_cached(
        "UPDATE attempts SET held_event = ?1, deadline = MIN(deadline, ?2), due_at = MIN(due_at, ?2) WHERE id = ?3 AND open = 1 \
         AND campaign_id IN (SELECT id FROM campaigns WHERE integration_id = ?4)",
    )?;
    for HeldEvent { event, until } in held {
        hold.execute(params![serde_json::to_string(&event)?, to_millis(until), event.attempt_id, integration_id])?;
    }
    Ok(())
}

pub(super) fn mark_integration_failing(conn: &Connection, integration_id: &str, reason: &str, at: Timestamp) -> StoreResult<()> {
    conn.prepare_cached("UPDATE integrations SET health_reason = ?, health_since = ? WHERE id = ? AND health_reason IS NULL")?
        .execute(params![reason, to_seconds(at), integration_id])?;
    Ok(())
}

pub(super) fn release_leases(conn: &Connection, at: Timestamp) -> StoreResult<u64> {
    let released = conn
        .prepare_cached("UPDATE attempts SET due_at = ?1 WHERE open = 1 AND handed_off = 0 AND due_at > ?1")?
        .execute([to_millis(at)])?;
    Ok(released as u64)
}

/// An attempt with what its events need of its campaign (see [`attempt_state_from_row`]).
static LOAD_ATTEMPT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT a.campaign_id, a.contact_id, a.status, a.open, a.answered_by, a.converted, a.started_at, a.ended_at, \
         a.sent_at, a.delivered_at, a.read_at, a.duration, a.billed_duration, a.ended_by, a.ended_reason, a.extracted_data, a.tags, \
         c.org_id, c.channel, c.integration_id, c.status AS campaign_status, json_extract(c.settings, '$.{SETTINGS_RETRIES}') AS voicemail_retries \
         FROM attempts a JOIN campaigns c ON c.id = a.campaign_id WHERE a.id = ?"
    )
});

/// The attempts named that exist, by id.
fn load_attempts(conn: &Connection, ids: &[&str]) -> StoreResult<HashMap<String, AttemptState>> {
    let mut attempts = HashMap::with_capacity(ids.len());
    for &id in ids {
        // A batch may carry several events of one attempt.
        if !attempts.contains_key(id)
            && let Some(attempt) = first_row(conn, &LOAD_ATTEMPT, [id], |row| attempt_state_from_row(row))?
        {
            attempts.insert(id.to_owned(), attempt);
        }
    }
    Ok(attempts)
}

/// The contacts named that exist, by id; with their data and tags when `with_data`.
fn load_contacts(conn: &Connection, ids: &[i64], with_data: bool) -> StoreResult<HashMap<i64, ContactState>> {
    let sql = if with_data {
        "SELECT status, retries, failed_retries, next_attempt_at, failed_reason, last_attempt_id, processed, answered, billed_duration, \
         extracted_data, tags FROM contacts WHERE id = ?"
    } else {
        "SELECT status, retries, failed_retries, next_attempt_at, failed_reason, last_attempt_id, processed, answered, billed_duration \
         FROM contacts WHERE id = ?"
    };
    let mut contacts = HashMap::with_capacity(ids.len());
    for &id in ids {
        // Several attempts of a batch may share a contact.
        if !contacts.contains_key(&id)
            && let Some(contact) = first_row(conn, sql, [id], |row| contact_state_from_row(row, with_data))?
        {
            contacts.insert(id, contact);
        }
    }
    Ok(contacts)
}

/// Applies events, each idempotently; returns their outcomes and the attempts they closed.
pub(super) fn apply_events(
    conn: &Connection,
    integration_id: Option<&str>,
    events: &[AttemptEvent],
    at: Timestamp,
    retry: RetrySettings,
) -> StoreResult<(Vec<EventOutcome>, Vec<FinishedAttempt>)> {
    let ids: Vec<&str> = events.iter().map(|e| e.attempt_id.as_str()).collect();
    let mut attempts = load_attempts(conn, &ids)?;
    let contact_ids: Vec<i64> = attempts.values().map(|a| a.contact_id).collect();
    let with_data = events.iter().any(|e| e.extracted_data.is_some() || e.tags.is_some());
    let mut contacts = load_contacts(conn, &contact_ids, with_data)?;
    let EventsApplied { outcomes, deltas, finished, webhook_events, opt_outs } =
        apply_outcomes(&mut attempts, &mut contacts, integration_id, events, at, retry);
    write_attempts(conn, &attempts)?;
    write_contacts(conn, &contacts)?;
    for (campaign_id, delta) in deltas {
        write_delta(conn, campaign_id, delta)?;
    }
    for (org, events) in by_organization(webhook_events) {
        webhooks::record_events(conn, org, &events, None)?;
    }
    for opt_out in opt_outs {
        let phone = first_row(conn, "SELECT phone FROM contacts WHERE id = ?", [opt_out.contact_id], |row| row.text("phone"))?;
        if let Some(item) = phone.and_then(|phone| provider_opt_out(phone, opt_out.channel)) {
            super::dnc::add_entries(conn, opt_out.org_id, &[item], &DncOrigin::from(DncSource::Provider), at)?;
        }
    }
    Ok((outcomes, finished))
}

fn write_attempts(conn: &Connection, attempts: &HashMap<String, AttemptState>) -> StoreResult<()> {
    let mut update = conn.prepare_cached(
        "UPDATE attempts SET status = ?, open = ?, handed_off = 1, due_at = deadline, answered_by = ?, converted = ?, started_at = ?, \
         ended_at = ?, sent_at = ?, delivered_at = ?, read_at = ?, duration = ?, billed_duration = ?, ended_by = ?, ended_reason = ?, \
         extracted_data = ?, tags = ?, recording_url = COALESCE(?, recording_url), transcript = COALESCE(?, transcript) WHERE id = ?",
    )?;
    for (id, a) in attempts.iter().filter(|(_, a)| a.changed) {
        let data = a.extracted_data.as_ref().map(serde_json::to_string).transpose()?;
        let tags = a.tags.as_ref().map(serde_json::to_string).transpose()?;
        let transcript = a.new_transcript.as_ref().map(serde_json::to_string).transpose()?;
        update.execute(params![
            a.status.as_str(),
            a.open,
            a.answered_by.map(AnsweredBy::as_str),
            a.converted,
            a.started_at,
            a.ended_at,
            a.sent_at,
            a.delivered_at,
            a.read_at,
            a.duration,
            a.billed_duration,
            a.ended_by,
            a.ended_reason,
            data,
            tags,
            a.new_recording_url,
            transcript,
            id,
        ])?;
    }
    Ok(())
}

fn write_contacts(conn: &Connection, contacts: &HashMap<i64, ContactState>) -> StoreResult<()> {
    // Data and tags are written back only when they were read (`ContactState::data`); NULL keeps them.
    let mut update = conn.prepare_cached(
        "UPDATE contacts SET status = ?, retries = ?, failed_retries = ?, next_attempt_at = ?, failed_reason = ?, processed = ?, \
         answered = ?, billed_duration = ?, extracted_data = COALESCE(?, extracted_data), tags = COALESCE(?, tags) WHERE id = ?",
    )?;
    for (id, c) in contacts.iter().filter(|(_, c)| c.changed) {
        let p = &c.progress;
        let (extracted, tags) = match &c.data {
            Some(data) => (Some(serde_json::to_string(&data.extracted_data)?), Some(serde_json::to_string(&data.tags)?)),
            None => (None, None),
        };
        update.execute(params![
            p.status.as_str(),
            p.retries,
            p.failed_retries,
            p.next_attempt_at.map(to_millis),
            p.failed_reason.map(FailedReason::as_str),
            c.processed,
            c.answered,
            c.billed_duration,
            extracted,
            tags,
            id,
        ])?;
    }
    Ok(())
}

fn write_delta(conn: &Connection, campaign_id: i64, delta: CampaignDelta) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE campaigns SET in_flight = in_flight + ?, calls = calls + ?, calls_human = calls_human + ?, \
         calls_machine = calls_machine + ?, calls_unknown = calls_unknown + ?, messages = messages + ?, \
         contacts_processed = contacts_processed + ?, contacts_answered = contacts_answered + ? WHERE id = ?",
    )?
    .execute(params![
        delta.in_flight,
        delta.calls,
        delta.calls_human,
        delta.calls_machine,
        delta.calls_unknown,
        delta.messages,
        delta.contacts_processed,
        delta.contacts_answered,
        campaign_id,
    ])?;
    add_counts(conn, campaign_id, delta.statuses)
}

/// Adds to the queued contacts of a campaign's zones (by zone key), making a zone's row when it
/// has none (also for a delta of 0: see `campaign_zones`).
pub(super) fn add_zone_counts(conn: &Connection, campaign_id: i64, deltas: &[(&str, i64)]) -> StoreResult<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO campaign_zones (campaign_id, timezone, queued) VALUES (?, ?, ?) \
         ON CONFLICT (campaign_id, timezone) DO UPDATE SET queued = queued + excluded.queued",
    )?;
    for (key, delta) in deltas {
        upsert.execute(params![campaign_id, key, delta])?;
    }
    Ok(())
}

/// Adds to the per-status contact counts of a campaign (statuses whose delta is 0 are left alone).
pub(super) fn add_counts(conn: &Connection, campaign_id: i64, deltas: impl IntoIterator<Item = (ContactStatus, i64)>) -> StoreResult<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO campaign_contact_counts (campaign_id, status, count) VALUES (?, ?, ?) \
         ON CONFLICT (campaign_id, status) DO UPDATE SET count = count + excluded.count",
    )?;
    for (status, delta) in deltas.into_iter().filter(|(_, d)| *d != 0) {
        upsert.execute(params![campaign_id, status.as_str(), delta])?;
    }
    Ok(())
}

/// Appends to `sql` the `WHERE` condition of the contacts a new iteration takes (§5.5), and its
/// parameters to `params`: not converted, not failed for good, not in flight, status not in
/// `filter_statuses`, no tag in `filter_tags`.
fn push_eligible(sql: &mut String, params: &mut Vec<Value>, campaign: &Campaign) {
    let cycles = &campaign.settings.cycles;
    // A contact that failed for good (an invalid number) is never attempted again.
    sql.push_str(" WHERE campaign_id = ? AND failed_reason IS NULL AND status NOT IN (");
    params.push(Value::Integer(campaign.id));
    let left_alone = cycles.statuses_left_alone();
    sql.push_str(&vec!["?"; left_alone.len()].join(", "));
    params.extend(left_alone.into_iter().map(|status| Value::Text(status.as_str().to_owned())));
    sql.push(')');
    if !cycles.filter_tags.is_empty() {
        sql.push_str(" AND NOT EXISTS (SELECT 1 FROM json_each(contacts.tags) WHERE value IN (");
        for (i, tag) in cycles.filter_tags.iter().enumerate() {
            sql.push_str(if i == 0 { "?" } else { ", ?" });
            params.push(Value::Text(tag.clone()));
        }
        sql.push_str("))");
    }
}

/// Starts an iteration's contacts: every eligible one back to `queue` with its retry counters
/// reset. Once per iteration, so it may scan the campaign's contacts; the counts are rebuilt.
pub(super) fn queue_eligible_contacts(conn: &Connection, campaign: &Campaign) -> StoreResult<()> {
    let mut sql = String::from("UPDATE contacts SET status = 'queue', retries = 0, failed_retries = 0, next_attempt_at = NULL");
    let mut params = Vec::new();
    push_eligible(&mut sql, &mut params, campaign);
    // The filters vary per campaign and this runs once per iteration: not worth a cache slot.
    conn.execute(&sql, params_from_iter(params))?;
    conn.prepare_cached("DELETE FROM campaign_contact_counts WHERE campaign_id = ?")?.execute([campaign.id])?;
    conn.prepare_cached(
        "INSERT INTO campaign_contact_counts (campaign_id, status, count) \
         SELECT campaign_id, status, COUNT(*) FROM contacts WHERE campaign_id = ? GROUP BY status",
    )?
    .execute([campaign.id])?;
    conn.prepare_cached("UPDATE campaign_zones SET queued = 0 WHERE campaign_id = ?")?.execute([campaign.id])?;
    conn.prepare_cached(
        "INSERT INTO campaign_zones (campaign_id, timezone, queued) \
         SELECT campaign_id, COALESCE(timezone, ''), COUNT(*) FROM contacts WHERE campaign_id = ? AND status = 'queue' \
         GROUP BY COALESCE(timezone, '') \
         ON CONFLICT (campaign_id, timezone) DO UPDATE SET queued = excluded.queued",
    )?
    .execute([campaign.id])?;
    Ok(())
}

fn any_eligible(conn: &Connection, campaign: &Campaign) -> StoreResult<bool> {
    let mut sql = String::from("SELECT EXISTS (SELECT 1 FROM contacts");
    let mut params = Vec::new();
    push_eligible(&mut sql, &mut params, campaign);
    sql.push(')');
    Ok(conn.query_row(&sql, params_from_iter(params), |row| row.get(0))?)
}

static COUNT_UNFINISHED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT COALESCE(SUM(count), 0) FROM campaign_contact_counts WHERE campaign_id = ? AND status IN ({})",
        sql_list(ContactStatus::UNFINISHED.map(ContactStatus::as_str))
    )
});

pub(super) fn advance_iteration(conn: &Connection, campaign_id: i64, at: Timestamp) -> StoreResult<Option<CampaignStatus>> {
    let found = first_row(conn, concat!(select_campaigns!(), " WHERE c.id = ?"), [campaign_id], |row| campaign_from_row(row))?;
    let Some(mut campaign) = found else { return Ok(None) };
    let previous = campaign.status;
    if campaign.begin_due_iteration(at) {
        queue_eligible_contacts(conn, &campaign)?;
        update_campaign(conn, &campaign)?;
        webhooks::record_campaign_events(
            conn,
            campaign_id,
            &webhook::status_changed(&campaign, previous, at).into_iter().collect::<Vec<_>>(),
        )?;
        return Ok(Some(campaign.status));
    }
    if !campaign.may_end_iteration() {
        return Ok(None);
    }
    let unfinished: i64 = conn.prepare_cached(&COUNT_UNFINISHED)?.query_row([campaign_id], |row| row.get(0))?;
    if unfinished > 0 {
        return Ok(None);
    }
    let eligible = any_eligible(conn, &campaign)?;
    let ended = campaign.current_iteration;
    campaign.end_iteration(at, eligible);
    update_campaign(conn, &campaign)?;
    let events = webhook::iteration_ended(&campaign, previous, ended, at);
    webhooks::record_campaign_events(conn, campaign_id, &events)?;
    Ok(Some(campaign.status))
}

/// Appends the `WHERE` of a `/calls` or `/messages` page to `sql`, and its values to `params`.
fn push_attempt_filters(sql: &mut String, params: &mut Vec<Value>, campaign_id: i64, filter: &AttemptQuery) {
    sql.push_str(" WHERE a.campaign_id = ?");
    params.push(Value::Integer(campaign_id));
    if let Some(status) = filter.status {
        let members = status.filter_members();
        sql.push_str(" AND a.status IN (");
        sql.push_str(&vec!["?"; members.len()].join(", "));
        sql.push(')');
        params.extend(members.iter().map(|member| Value::Text(member.as_str().to_owned())));
    }
    if let Some(answered_by) = filter.answered_by {
        sql.push_str(" AND a.answered_by = ?");
        params.push(Value::Text(answered_by.as_str().to_owned()));
    }
    if let Some(start) = filter.start {
        sql.push_str(" AND a.created_at >= ?");
        params.push(Value::Integer(to_millis(start)));
    }
    if let Some(end) = filter.end {
        sql.push_str(" AND a.created_at <= ?");
        params.push(Value::Integer(to_millis(end)));
    }
}

pub(super) fn list_attempts(conn: &Connection, org: OrgId, campaign_id: i64, filter: &AttemptQuery) -> StoreResult<Option<AttemptPage>> {
    let channel =
        first_row(conn, "SELECT channel FROM campaigns WHERE org_id = ? AND id = ?", [org, campaign_id], |row| row.text("channel"))?;
    let Some(channel) = channel else { return Ok(None) };
    if filter.channel.is_some_and(|wanted| wanted != parse_channel(&channel).unwrap_or(wanted)) {
        return Ok(Some(AttemptPage { total_count: 0, attempts: Vec::new() }));
    }
    let (mut count, mut params) = ("SELECT COUNT(*) FROM attempts a".to_owned(), Vec::new());
    push_attempt_filters(&mut count, &mut params, campaign_id, filter);
    let total_count: i64 = conn.prepare_cached(&count)?.query_row(params_from_iter(params), |row| row.get(0))?;
    // The inner query walks only the attempts' index; rows are joined for one page.
    let mut page = format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts a LEFT JOIN contacts ct ON ct.id = a.contact_id WHERE a.rowid IN (SELECT a.rowid FROM attempts a"
    );
    let mut params = Vec::new();
    push_attempt_filters(&mut page, &mut params, campaign_id, filter);
    page.push_str(" ORDER BY a.created_at, a.rowid LIMIT ? OFFSET ?) ORDER BY a.created_at, a.rowid");
    params
        .extend([Value::Integer(i64::from(filter.page_size)), Value::Integer(i64::from(filter.page_size) * i64::from(filter.page_index))]);
    let attempts = all_rows(conn, &page, params_from_iter(params), |row| attempt_from_row(row))?;
    Ok(Some(AttemptPage { total_count, attempts }))
}
