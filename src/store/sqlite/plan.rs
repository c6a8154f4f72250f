//! The counts of a plan preview (§12.3) on SQLite: kept counters (per status, queued per zone),
//! the retrying contacts through their index, and the suppressed ones found from the
//! do-not-contact entries added since the campaign was created (earlier ones were refused when
//! the contacts were added).

use jiff::Timestamp;
use rusqlite::{Connection, params};

use super::super::shared::{StoredRow, parse_contact_status, waiting_group_from_row};
use super::super::{OrgId, StoreResult, to_millis};
use super::attempts::{running_campaign, started_last_day};
use super::{all_rows, first_row};
use crate::domain::campaign::Campaign;
use crate::domain::dnc::DncChannel;
use crate::domain::plan::PlanCounts;

/// Closed attempts the observed attempt duration is the mean of.
const TIMED_ATTEMPTS: i64 = 1000;

pub(super) fn plan_counts(conn: &Connection, org: OrgId, campaign_id: i64, at: Timestamp) -> StoreResult<Option<(Campaign, PlanCounts)>> {
    let owned = first_row(conn, "SELECT 1 FROM campaigns WHERE org_id = ? AND id = ?", [org, campaign_id], |_| Ok(()))?;
    let Some(running) = owned.map(|()| running_campaign(conn, campaign_id)).transpose()?.flatten() else { return Ok(None) };
    let now = to_millis(at);
    let by_status =
        all_rows(conn, "SELECT status, count FROM campaign_contact_counts WHERE campaign_id = ? AND count > 0", [campaign_id], |row| {
            Ok((parse_contact_status(&row.text("status")?)?, row.int("count")?))
        })?;
    let mut waiting = all_rows(
        conn,
        "SELECT timezone AS zone, 'queue' AS status, 1 AS due, queued AS count FROM campaign_zones WHERE campaign_id = ? AND queued > 0",
        [campaign_id],
        |row| waiting_group_from_row(row),
    )?;
    waiting.extend(all_rows(
        conn,
        "SELECT COALESCE(timezone, '') AS zone, 'retrying' AS status, next_attempt_at <= ?2 AS due, COUNT(*) AS count \
         FROM contacts WHERE campaign_id = ?1 AND status = 'retrying' GROUP BY 1, 3",
        params![campaign_id, now],
        |row| waiting_group_from_row(row),
    )?);
    let [own, all] = DncChannel::suppressing(running.campaign.integration.channel);
    let suppressed = all_rows(
        conn,
        "SELECT COALESCE(ct.timezone, '') AS zone, ct.status, ct.status = 'queue' OR ct.next_attempt_at <= ?5 AS due, COUNT(DISTINCT ct.id) AS count \
         FROM dnc_entries d JOIN contacts ct ON ct.campaign_id = ?1 AND ct.phone = d.contact \
         WHERE d.org_id = ?2 AND d.created_at >= ?3 AND d.channel IN (?4, ?6) AND ct.status IN ('queue', 'retrying') GROUP BY 1, 2, 3",
        params![campaign_id, org, running.campaign.created_at.as_second(), own, now, all],
        |row| waiting_group_from_row(row),
    )?;
    let attempt_duration = first_row(
        conn,
        "SELECT AVG(ended_at - created_at) AS mean FROM (SELECT created_at, ended_at FROM attempts \
         WHERE campaign_id = ? AND open = 0 AND ended_at IS NOT NULL ORDER BY created_at DESC LIMIT ?)",
        params![campaign_id, TIMED_ATTEMPTS],
        |row| Ok(row.get::<_, Option<f64>>("mean")?),
    )?
    .flatten()
    .map(|millis| jiff::SignedDuration::from_secs_f64(millis.max(0.0) / 1000.0));
    let counts = PlanCounts {
        by_status,
        waiting,
        suppressed,
        started_last_day: started_last_day(conn, campaign_id, at)?,
        in_flight: running.in_flight,
        attempt_duration,
        max_per_second: running.provider.max_per_second(),
    };
    Ok(Some((running.campaign, counts)))
}
