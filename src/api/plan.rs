//! The plan preview (§12.3, ext): `GET /campaigns/{id}/plan`, what the engine would do now.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Tenant, parse_id};
use super::views::format_time;
use crate::domain::campaign::ContactStatus;
use crate::domain::plan::{Blocked, Plan, plan};

#[derive(Serialize, ToSchema)]
pub struct PlanResponse {
    success: bool,
    plan: PlanView,
}

/// Counts of contacts. `eligible_now` plus the `blocked` counts equals `remaining` (contacts in
/// `queue` or `retrying`); each is counted under the first reason that holds it, in the order
/// suppressed, window_closed, cycle_cooldown, contact_hours, retry_wait, then the tighter of
/// message_limit and concurrency.
#[derive(Serialize, ToSchema)]
pub struct PlanView {
    /// The instant planned for (now).
    at: String,
    eligible_now: i64,
    blocked: Blocked,
    remaining: i64,
    /// When the campaign window next opens (after the current one when it is open now).
    next_window_opens_at: Option<String>,
    /// When the remaining contacts would be done at the pace the caps and windows allow, from the
    /// campaign's observed attempt duration; null when it cannot be estimated yet.
    estimated_finish_at: Option<String>,
    /// Contacts per status (§3.5), every status listed.
    #[schema(value_type = BTreeMap<String, i64>)]
    by_status: BTreeMap<&'static str, i64>,
}

impl From<Plan> for PlanView {
    fn from(plan: Plan) -> Self {
        let mut by_status: BTreeMap<&'static str, i64> = ContactStatus::ALL.iter().map(|status| (status.as_str(), 0)).collect();
        for (status, count) in plan.by_status {
            *by_status.entry(status.as_str()).or_default() += count;
        }
        PlanView {
            at: format_time(plan.at),
            eligible_now: plan.eligible_now,
            blocked: plan.blocked,
            remaining: plan.remaining,
            next_window_opens_at: plan.next_window_opens_at.map(format_time),
            estimated_finish_at: plan.estimated_finish_at.map(format_time),
            by_status,
        }
    }
}

/// Preview a campaign's plan: what the engine would do with its remaining contacts now. No side
/// effect. A campaign not started yet is planned as if it were activated now.
#[utoipa::path(get, path = "/campaigns/{id}/plan", tag = "campaigns",
    params(("id" = i64, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "The plan", body = PlanResponse),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn get_plan(State(app): State<AppState>, tenant: Tenant, Path(id): Path<String>) -> ApiResult<Json<PlanResponse>> {
    let id = parse_id("id", &id)?;
    let at = app.clock.now();
    let (campaign, counts) = app.store.plan_counts(tenant.org_id, id, at).await?.ok_or_else(|| ApiError::not_found("campaign"))?;
    let plan = plan(&campaign, &counts, at);
    Ok(Json(PlanResponse { success: true, plan: plan.into() }))
}
