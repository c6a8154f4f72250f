//! Campaign endpoints (contract §2): create, retrieve, list, update, lifecycle actions.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{JsonBody, QueryParams, Tenant, parse_id};
use super::idempotency::{Recording, Reply, json_body};
use super::views::{AgentRefView, IntegrationRefView, format_time};
use crate::domain::analytics::Analytics;
use crate::domain::campaign::{
    Campaign, CampaignInput, CampaignStatus, Channel, ContactStatus, CycleMode, LifecycleAction, ReferenceError, parse_new_campaign,
};
use crate::domain::contact_hours::ContactHours;
use crate::domain::schedule::WeekSchedule;
use crate::store::{CampaignChange, CampaignCursor, CampaignFilter, CampaignPage, CreateCampaignOutcome, Modified, PageDirection, Refusal};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 100;

#[derive(Serialize, ToSchema)]
pub struct CyclesView {
    enabled: bool,
    mode: CycleMode,
    max_iterations: i64,
    cooldown_minutes: i64,
    filter_statuses: Vec<ContactStatus>,
    /// Left out unless the campaign has a scheduled-mode schedule (§0.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    schedule: Option<WeekSchedule>,
    #[schema(required = true, format = Date)]
    schedule_start_date: Option<String>,
    #[schema(required = true, format = Date)]
    schedule_end_date: Option<String>,
    current_iteration: i64,
    #[schema(required = true, format = DateTime)]
    last_iteration_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    next_cycle_at: Option<String>,
}

/// The campaign as create, retrieve, update and lifecycle actions return it (§2.3).
#[derive(Serialize, ToSchema)]
pub struct CampaignDetail {
    id: i64,
    name: String,
    #[schema(required = true)]
    description: Option<String>,
    status: CampaignStatus,
    archived: bool,
    integration: IntegrationRefView,
    agent: AgentRefView,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(required = true, format = DateTime)]
    started_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    ended_at: Option<String>,
    timezone: String,
    retries: i64,
    message_limit: i64,
    #[schema(required = true)]
    concurrency_limit: Option<i64>,
    #[schema(required = true)]
    first_message: Option<String>,
    #[schema(required = true)]
    template: Option<String>,
    #[schema(required = true)]
    template_alt: Option<String>,
    scheduling: WeekSchedule,
    cycles: CyclesView,
    /// Hours in each contact's own local time (ext, §12.2); `null`: off.
    #[schema(required = true)]
    contact_hours: Option<ContactHours>,
    /// Left out until the campaign has been activated once (§0.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    analytics: Option<Analytics>,
}

#[derive(Serialize, ToSchema)]
pub struct CampaignDetailResponse {
    success: bool,
    campaign: CampaignDetail,
}

impl CampaignDetailResponse {
    pub fn new(campaign: &Campaign, analytics: Option<Analytics>) -> Self {
        let s = &campaign.settings;
        let c = &s.cycles;
        CampaignDetailResponse {
            success: true,
            campaign: CampaignDetail {
                id: campaign.id,
                name: s.name.clone(),
                description: s.description.clone(),
                status: campaign.status,
                archived: campaign.archived,
                integration: IntegrationRefView::from(&campaign.integration),
                agent: AgentRefView::from(&campaign.agent),
                created_at: format_time(campaign.created_at),
                started_at: campaign.started_at.map(format_time),
                ended_at: campaign.ended_at.map(format_time),
                timezone: s.timezone.name().to_owned(),
                retries: s.retries,
                message_limit: s.message_limit,
                concurrency_limit: s.concurrency_limit,
                first_message: s.first_message.clone(),
                template: s.template.clone(),
                template_alt: s.template_alt.clone(),
                scheduling: s.scheduling.clone(),
                cycles: CyclesView {
                    enabled: c.enabled,
                    mode: c.mode,
                    max_iterations: c.max_iterations,
                    cooldown_minutes: c.cooldown_minutes,
                    filter_statuses: c.filter_statuses.clone(),
                    schedule: c.schedule.clone(),
                    schedule_start_date: c.schedule_start_date.map(|d| d.to_string()),
                    schedule_end_date: c.schedule_end_date.map(|d| d.to_string()),
                    current_iteration: campaign.current_iteration,
                    last_iteration_at: campaign.last_iteration_at.map(format_time),
                    next_cycle_at: campaign.next_cycle_at.map(format_time),
                },
                contact_hours: s.contact_hours,
                analytics,
            },
        }
    }
}

/// The analytics of a campaign, none before its first activation (§2.3).
fn analytics_of(campaign: &Campaign) -> Option<Analytics> {
    campaign.started_at.map(|_| Analytics::from_counters(campaign.integration.channel, &campaign.counters))
}

fn detail(campaign: &Campaign) -> CampaignDetailResponse {
    CampaignDetailResponse::new(campaign, analytics_of(campaign))
}

/// Create a campaign.
#[utoipa::path(post, path = "/campaigns", tag = "campaigns", request_body = CampaignInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe (§7)")),
    responses(
        (status = 201, description = "Campaign created", body = CampaignDetailResponse),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 404, description = "Unknown agent or integration", body = ErrorBody),
    ))]
pub async fn create_campaign(
    State(app): State<AppState>,
    tenant: Tenant,
    recording: Recording,
    JsonBody(input): JsonBody<CampaignInput>,
) -> ApiResult<Reply> {
    let new = parse_new_campaign(&input)?;
    recording.respond(created_reply, |record| app.store.create_campaign(tenant.org_id, new, app.clock.now(), record)).await
}

fn created_reply(outcome: &CreateCampaignOutcome) -> Reply {
    match outcome {
        CreateCampaignOutcome::Created(campaign) => Reply::json(StatusCode::CREATED, &detail(campaign)),
        CreateCampaignOutcome::Refused(refused) => reference_error(*refused).into_reply(),
    }
}

/// Why the store refused a new campaign's agent or integration, as the API answers it; the
/// dashboard's form shows the same error beside the same field.
pub(crate) fn reference_error(refused: ReferenceError) -> ApiError {
    match refused {
        ReferenceError::AgentNotFound => {
            ApiError::new(StatusCode::NOT_FOUND, "AGENT_NOT_FOUND", "agent_id names no agent of this organization").with_field("agent_id")
        }
        ReferenceError::IntegrationNotFound => ApiError::new(
            StatusCode::NOT_FOUND,
            "INTEGRATION_NOT_FOUND",
            "integration_id names no integration of this organization owned by agent_id",
        )
        .with_field("integration_id"),
        ReferenceError::WrongIntegrationType(actual) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_INTEGRATION_TYPE",
            format!("integration_type does not match the integration, which is {}", actual.as_str()),
        )
        .with_field("integration_type"),
    }
}

/// Retrieve a campaign.
#[utoipa::path(get, path = "/campaigns/{id}", tag = "campaigns",
    params(("id" = i64, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "Campaign detail", body = CampaignDetailResponse),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn get_campaign(State(app): State<AppState>, tenant: Tenant, Path(id): Path<String>) -> ApiResult<Response> {
    let id = parse_id("id", &id)?;
    let cached = tenant.data_version.and_then(|version| app.read_cache.campaign(version, tenant.org_id, id));
    let body = match cached {
        Some(body) => body,
        None => {
            let campaign = app.store.get_campaign(tenant.org_id, id).await?.ok_or_else(|| ApiError::not_found("campaign"))?;
            let body = Bytes::from(json_body(&detail(&campaign))?);
            if let Some(version) = tenant.data_version {
                app.read_cache.keep_campaign(version, tenant.org_id, id, body.clone());
            }
            body
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Update a campaign. The body is checked against the stored campaign too: immutable fields keep
/// their value (`IMMUTABLE_FIELD`), channel-only fields must fit its channel (`INVALID_REQUEST`),
/// cycle fields need cycles (`CYCLES_NOT_ENABLED`) and schedule fields scheduled mode
/// (`SCHEDULED_MODE_ONLY`).
#[utoipa::path(patch, path = "/campaigns/{id}", tag = "campaigns", request_body = CampaignInput,
    params(("id" = i64, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "Campaign updated", body = CampaignDetailResponse),
        (status = 400, description = "Invalid request or immutable field", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "Campaign finished", body = ErrorBody),
    ))]
pub async fn update_campaign(
    State(app): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<CampaignInput>,
) -> ApiResult<Reply> {
    let id = parse_id("id", &id)?;
    Ok(modified_reply(&app.store.modify_campaign(tenant.org_id, id, app.clock.now(), update_change(input), None).await?))
}

/// The change an update request makes, applied by the store inside its transaction: the API's
/// PATCH and the dashboard's edit form both go through it.
pub(crate) fn update_change(input: CampaignInput) -> CampaignChange {
    Box::new(move |campaign: &mut Campaign| campaign.apply_update(&input).map_err(Refusal::Campaign))
}

/// Apply a lifecycle action: `activate`, `pause`, `resume` or `archive`.
#[utoipa::path(post, path = "/campaigns/{id}/{action}", tag = "campaigns",
    params(("id" = i64, Path, description = "Campaign id"), ("action" = LifecycleAction, Path, description = "Lifecycle action"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe (§7)")),
    responses(
        (status = 200, description = "Action applied (or a no-op)", body = CampaignDetailResponse),
        (status = 400, description = "Unknown action", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "Not allowed in the current status; lists valid_targets", body = ErrorBody),
    ))]
pub async fn campaign_action(
    State(app): State<AppState>,
    tenant: Tenant,
    recording: Recording,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult<Reply> {
    let id = parse_id("id", &id)?;
    let action = LifecycleAction::parse(&action).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "UNKNOWN_ACTION",
            format!("unknown action {action:?}; use activate, pause, resume or archive"),
        )
        .with_field("action")
    })?;
    let now = app.clock.now();
    let change = Box::new(move |campaign: &mut Campaign| campaign.apply_action(action, now).map_err(Refusal::Lifecycle));
    recording.respond(modified_reply, |record| app.store.modify_campaign(tenant.org_id, id, now, change, record)).await
}

/// The reply to an update or an action: the campaign, or why it was refused.
fn modified_reply(outcome: &Modified) -> Reply {
    match outcome {
        Modified::Done(campaign) => Reply::json(StatusCode::OK, &detail(campaign)),
        Modified::Refused(refusal) => ApiError::from(refusal.clone()).into_reply(),
        Modified::NotFound => ApiError::not_found("campaign").into_reply(),
    }
}

/// One campaign in the list (§2.4): flat `cycle_*` fields, as Altur returns them.
#[derive(Serialize, ToSchema)]
pub struct CampaignListItem {
    id: i64,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    description: Option<String>,
    status: CampaignStatus,
    archived: bool,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(required = true, format = DateTime)]
    started_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    ended_at: Option<String>,
    agent: AgentRefView,
    integration: IntegrationRefView,
    scheduling: WeekSchedule,
    timezone: String,
    retries: i64,
    message_limit: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    first_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    concurrency_limit: Option<i64>,
    cycle_enabled: bool,
    cycle_max_iterations: i64,
    cycle_cooldown_minutes: i64,
    cycle_filter_statuses: Vec<ContactStatus>,
    cycle_filter_tags: Vec<String>,
    cycle_current_iteration: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[schema(format = DateTime)]
    cycle_last_iteration_at: Option<String>,
    /// Hours in each contact's own local time (ext, §12.2); `null`: off.
    #[schema(required = true)]
    contact_hours: Option<ContactHours>,
}

impl From<&Campaign> for CampaignListItem {
    fn from(campaign: &Campaign) -> Self {
        let s = &campaign.settings;
        CampaignListItem {
            id: campaign.id,
            name: s.name.clone(),
            description: s.description.clone(),
            status: campaign.status,
            archived: campaign.archived,
            created_at: format_time(campaign.created_at),
            started_at: campaign.started_at.map(format_time),
            ended_at: campaign.ended_at.map(format_time),
            agent: AgentRefView::from(&campaign.agent),
            integration: IntegrationRefView::from(&campaign.integration),
            scheduling: s.scheduling.clone(),
            timezone: s.timezone.name().to_owned(),
            retries: s.retries,
            message_limit: s.message_limit,
            template: s.template.clone(),
            first_message: s.first_message.clone(),
            concurrency_limit: s.concurrency_limit,
            cycle_enabled: s.cycles.enabled,
            cycle_max_iterations: s.cycles.max_iterations,
            cycle_cooldown_minutes: s.cycles.cooldown_minutes,
            cycle_filter_statuses: s.cycles.filter_statuses.clone(),
            cycle_filter_tags: s.cycles.filter_tags.clone(),
            cycle_current_iteration: campaign.current_iteration,
            cycle_last_iteration_at: campaign.last_iteration_at.map(format_time),
            contact_hours: s.contact_hours,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CursorPagination {
    has_next: bool,
    has_previous: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    next_cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    previous_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CampaignListResponse {
    total_count: i64,
    campaigns: Vec<CampaignListItem>,
    pagination: CursorPagination,
}

const LIST_PARAMS: [&str; 14] = [
    "agentId",
    "status",
    "integration",
    "createdAfter",
    "createdBefore",
    "startDate",
    "endDate",
    "startedAfter",
    "startedBefore",
    "endedAfter",
    "endedBefore",
    "archived",
    "pageSize",
    "cursor",
];

/// List campaigns, newest first, with filters and cursor paging.
#[utoipa::path(get, path = "/campaigns", tag = "campaigns",
    params(
        ("agentId" = Option<String>, Query, format = Uuid, description = "Only campaigns of this agent"),
        ("status" = Option<CampaignStatus>, Query),
        ("integration" = Option<Channel>, Query),
        ("createdAfter" = Option<String>, Query, description = "RFC 3339 or YYYY-MM-DD, inclusive (alias startDate)"),
        ("createdBefore" = Option<String>, Query, description = "Inclusive (alias endDate)"),
        ("startDate" = Option<String>, Query, description = "Alias of createdAfter (with both, both bounds hold)"),
        ("endDate" = Option<String>, Query, description = "Alias of createdBefore (with both, both bounds hold)"),
        ("startedAfter" = Option<String>, Query), ("startedBefore" = Option<String>, Query),
        ("endedAfter" = Option<String>, Query), ("endedBefore" = Option<String>, Query),
        ("archived" = Option<bool>, Query, description = "Include archived campaigns (default false)"),
        ("pageSize" = Option<u32>, Query, description = "1–100, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor or previous_cursor of an earlier page"),
    ),
    responses(
        (status = 200, description = "A page of campaigns", body = CampaignListResponse),
        (status = 400, description = "Bad query parameter", body = ErrorBody),
    ))]
pub async fn list_campaigns(State(app): State<AppState>, tenant: Tenant, query: QueryParams) -> ApiResult<Json<CampaignListResponse>> {
    query.check(&LIST_PARAMS)?;
    let filter = parse_filter(&query)?;
    let page_size = match query.get("pageSize") {
        None => DEFAULT_PAGE_SIZE,
        Some(raw) => raw.parse::<u32>().ok().filter(|n| (1..=MAX_PAGE_SIZE).contains(n)).ok_or_else(|| {
            ApiError::invalid("pageSize", format!("pageSize must be an integer between 1 and {MAX_PAGE_SIZE}, got {raw:?}"))
        })?,
    };
    let cursor = query.get("cursor").map(decode_cursor).transpose()?;
    let page = app.store.list_campaigns(tenant.org_id, &filter, cursor, page_size).await?;
    Ok(Json(list_response(page)))
}

fn list_response(page: CampaignPage) -> CampaignListResponse {
    let key = |c: &Campaign| (c.created_at.as_second(), c.id);
    let next_cursor = page.campaigns.last().filter(|_| page.has_next).map(|c| encode_cursor(PageDirection::After, key(c)));
    let previous_cursor = page.campaigns.first().filter(|_| page.has_previous).map(|c| encode_cursor(PageDirection::Before, key(c)));
    CampaignListResponse {
        total_count: page.total_count,
        campaigns: page.campaigns.iter().map(CampaignListItem::from).collect(),
        pagination: CursorPagination { has_next: page.has_next, has_previous: page.has_previous, next_cursor, previous_cursor },
    }
}

fn parse_filter(query: &QueryParams) -> ApiResult<CampaignFilter> {
    let time = |name: &str| query.get(name).map(|raw| parse_time_param(name, raw)).transpose();
    // An alias given beside its name narrows the filter like any other filter: both bounds hold.
    let both = |name: &str, alias: &str, narrowest: fn(Timestamp, Timestamp) -> Timestamp| -> ApiResult<Option<Timestamp>> {
        Ok(match (time(name)?, time(alias)?) {
            (Some(a), Some(b)) => Some(narrowest(a, b)),
            (a, b) => a.or(b),
        })
    };
    Ok(CampaignFilter {
        agent_id: query
            .get("agentId")
            .map(|raw| uuid::Uuid::parse_str(raw).map_err(|_| ApiError::invalid("agentId", format!("agentId must be a UUID, got {raw:?}"))))
            .transpose()?,
        status: query
            .get("status")
            .map(|raw| {
                CampaignStatus::parse(raw).ok_or_else(|| {
                    ApiError::invalid(
                        "status",
                        format!("status must be one of pending, ready, active, inactive, cooldown, finished; got {raw:?}"),
                    )
                })
            })
            .transpose()?,
        channel: query
            .get("integration")
            .map(|raw| {
                Channel::parse(raw)
                    .ok_or_else(|| ApiError::invalid("integration", format!("integration must be phone_call or whatsapp, got {raw:?}")))
            })
            .transpose()?,
        created_after: both("createdAfter", "startDate", Timestamp::max)?,
        created_before: both("createdBefore", "endDate", Timestamp::min)?,
        started_after: time("startedAfter")?,
        started_before: time("startedBefore")?,
        ended_after: time("endedAfter")?,
        ended_before: time("endedBefore")?,
        include_archived: query.flag("archived", false)?,
        name_contains: None,
    })
}

/// RFC 3339 with an offset, or a date `YYYY-MM-DD` meaning its midnight in UTC.
pub fn parse_time_param(name: &str, raw: &str) -> ApiResult<Timestamp> {
    raw.parse::<Timestamp>()
        .ok()
        .or_else(|| {
            (raw.len() == 10)
                .then(|| raw.parse::<jiff::civil::Date>().ok())
                .flatten()
                .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
                .map(|z| z.timestamp())
        })
        .ok_or_else(|| {
            ApiError::invalid(
                name,
                format!("{name} must be an RFC 3339 timestamp (2026-06-08T18:00:00Z) or a date YYYY-MM-DD, got {raw:?}"),
            )
        })
}

/// Cursors are opaque to clients: base64url of the edge item's key with a checksum, so an
/// edited cursor is refused instead of silently paging from somewhere else.
pub(crate) fn encode_cursor(direction: PageDirection, (created_at, id): (i64, i64)) -> String {
    let marker = match direction {
        PageDirection::After => 'a',
        PageDirection::Before => 'b',
    };
    let payload = format!("{marker}.{created_at}.{id}");
    let text = format!("{payload}.{}", cursor_check(&payload));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

fn cursor_check(payload: &str) -> String {
    let digest = Sha256::digest(format!("outbound-cursor-v1:{payload}").as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn decode_cursor(raw: &str) -> ApiResult<CampaignCursor> {
    let invalid = || ApiError::invalid("cursor", "cursor is not one this server issued; use next_cursor or previous_cursor as returned");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (payload, check) = text.rsplit_once('.').ok_or_else(invalid)?;
    if cursor_check(payload) != check {
        return Err(invalid());
    }
    let mut parts = payload.split('.');
    let direction = match parts.next() {
        Some("a") => PageDirection::After,
        Some("b") => PageDirection::Before,
        _ => return Err(invalid()),
    };
    let created_at = parts.next().and_then(|p| p.parse().ok()).ok_or_else(invalid)?;
    let id = parts.next().and_then(|p| p.parse().ok()).ok_or_else(invalid)?;
    Ok(CampaignCursor { direction, created_at, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_detect_edits() {
        let raw = encode_cursor(PageDirection::Before, (1_780_000_000, 42));
        let cursor = decode_cursor(&raw).expect("round trip");
        assert_eq!(cursor, CampaignCursor { direction: PageDirection::Before, created_at: 1_780_000_000, id: 42 });
        let edited = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&raw).expect("b64"))
                .expect("utf8")
                .replace(".42.", ".43."),
        );
        assert!(decode_cursor(&edited).is_err());
        assert!(decode_cursor("not-a-cursor").is_err());
    }
}
