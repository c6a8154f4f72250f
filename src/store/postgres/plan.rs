//! The counts of a plan preview (§12.3) on PostgreSQL: kept counters (per status, queued per
//! zone), the retrying contacts through their index, and the suppressed ones found from the
//! do-not-contact entries added since the campaign was created (earlier ones were refused when
//! the contacts were added).

use jiff::Timestamp;
use sqlx::Row;
use sqlx::postgres::PgConnection;

use super::super::shared::{parse_contact_status, waiting_group_from_row};
use super::super::{OrgId, StoreResult, to_millis};
use super::attempts::{running_campaign, started_last_day};
use crate::domain::campaign::Campaign;
use crate::domain::dnc::DncChannel;
use crate::domain::plan::PlanCounts;

/// Closed attempts the observed attempt duration is the mean of.
const TIMED_ATTEMPTS: i64 = 1000;

pub(super) async fn plan_counts(
    conn: &mut PgConnection,
    org: OrgId,
    campaign_id: i64,
    at: Timestamp,
) -> StoreResult<Option<(Campaign, PlanCounts)>> {
    let owned: Option<i64> = sqlx::query_scalar("SELECT id FROM campaigns WHERE org_id = $1 AND id = $2")
        .bind(org)
        .bind(campaign_id)
        .fetch_optional(&mut *conn)
        .await?;
    if owned.is_none() {
        return Ok(None);
    }
    let Some(running) = running_campaign(conn, campaign_id).await? else { return Ok(None) };
    let now = to_millis(at);
    let by_status = sqlx::query("SELECT status, count::bigint AS count FROM campaign_contact_counts WHERE campaign_id = $1 AND count > 0")
        .bind(campaign_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| Ok((parse_contact_status(row.try_get("status")?)?, row.try_get::<i64, _>("count")?)))
        .collect::<StoreResult<Vec<_>>>()?;
    let waiting = sqlx::query(
        "SELECT timezone AS zone, 'queue' AS status, TRUE AS due, queued::bigint AS count FROM campaign_zones \
         WHERE campaign_id = $1 AND queued > 0 \
         UNION ALL \
         SELECT COALESCE(timezone, '') AS zone, 'retrying' AS status, next_attempt_at <= $2 AS due, COUNT(*)::bigint AS count \
         FROM contacts WHERE campaign_id = $1 AND status = 'retrying' GROUP BY 1, 3",
    )
    .bind(campaign_id)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(waiting_group_from_row)
    .collect::<StoreResult<Vec<_>>>()?;
    let suppressed = sqlx::query(
        "SELECT COALESCE(ct.timezone, '') AS zone, ct.status, (ct.status = 'queue' OR ct.next_attempt_at <= $5) AS due, \
           COUNT(DISTINCT ct.id)::bigint AS count \
         FROM dnc_entries d JOIN contacts ct ON ct.campaign_id = $1 AND ct.phone = d.contact \
         WHERE d.org_id = $2 AND d.created_at >= $3 AND d.channel = ANY($4) AND ct.status IN ('queue', 'retrying') GROUP BY 1, 2, 3",
    )
    .bind(campaign_id)
    .bind(org)
    .bind(running.campaign.created_at.as_second())
    .bind(DncChannel::suppressing(running.campaign.integration.channel))
    .bind(now)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(waiting_group_from_row)
    .collect::<StoreResult<Vec<_>>>()?;
    let mean: Option<f64> = sqlx::query_scalar(
        "SELECT AVG(ended_at - created_at)::float8 FROM (SELECT created_at, ended_at FROM attempts \
         WHERE campaign_id = $1 AND NOT open AND ended_at IS NOT NULL ORDER BY created_at DESC LIMIT $2) AS latest",
    )
    .bind(campaign_id)
    .bind(TIMED_ATTEMPTS)
    .fetch_one(&mut *conn)
    .await?;
    let counts = PlanCounts {
        by_status,
        waiting,
        suppressed,
        started_last_day: started_last_day(conn, campaign_id, at).await?,
        in_flight: running.in_flight,
        attempt_duration: mean.map(|millis| jiff::SignedDuration::from_secs_f64(millis.max(0.0) / 1000.0)),
        max_per_second: running.provider.max_per_second(),
    };
    Ok(Some((running.campaign, counts)))
}
