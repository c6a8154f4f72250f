//! Attempts over HTTP: the calls and messages of a campaign (§4) and the events providers post
//! about them (§5.4).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::campaigns::parse_time_param;
use super::contacts::{OffsetPagination, parse_offset_paging};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{QueryParams, Tenant, parse_id, parse_json};
use super::views::format_time;
use crate::domain::attempt::{AnsweredBy, AttemptEvent, AttemptStatus, EventInput};
use crate::domain::campaign::{Channel, ContactStatus};
use crate::domain::ids::verify_signature;
use crate::store::{Attempt, AttemptContact, AttemptPage, AttemptQuery, EventOutcome};

#[derive(Serialize, ToSchema)]
pub struct AttemptContactView {
    id: i64,
    f_id: Option<String>,
    name: Option<String>,
    phone_number: String,
    status: ContactStatus,
}

impl From<AttemptContact> for AttemptContactView {
    fn from(c: AttemptContact) -> Self {
        AttemptContactView { id: c.id, f_id: c.f_id, name: c.name, phone_number: c.phone.into(), status: c.status }
    }
}

/// A call as `/calls` lists it (§4).
#[derive(Serialize, ToSchema)]
pub struct CallView {
    id: String,
    #[serde(rename = "type")]
    #[schema(example = "outbound")]
    kind: &'static str,
    /// `ended`, `failed`, `busy`, `no-answer` or `in-progress` (queued and ringing calls show as in progress).
    status: &'static str,
    #[schema(value_type = Option<String>)]
    answered_by: Option<&'static str>,
    created_at: String,
    started_at: Option<String>,
    ended_at: Option<String>,
    ended_by: Option<String>,
    ended_reason: Option<String>,
    duration: Option<i64>,
    billed_duration: Option<i64>,
    contact: Option<AttemptContactView>,
    #[schema(value_type = Object)]
    extracted_data: serde_json::Map<String, serde_json::Value>,
    tags: Vec<String>,
    recording_url: Option<String>,
    #[schema(value_type = Option<Object>)]
    policy_evaluation: Option<serde_json::Value>,
}

fn call_status(status: AttemptStatus) -> &'static str {
    match status {
        AttemptStatus::Ended | AttemptStatus::Busy | AttemptStatus::NoAnswer | AttemptStatus::Failed => status.as_str(),
        _ => AttemptStatus::InProgress.as_str(),
    }
}

impl From<Attempt> for CallView {
    fn from(a: Attempt) -> Self {
        CallView {
            id: a.id,
            kind: "outbound",
            status: call_status(a.status),
            answered_by: a.answered_by.map(AnsweredBy::as_str),
            created_at: format_time(a.created_at),
            started_at: a.started_at.map(format_time),
            ended_at: a.ended_at.map(format_time),
            ended_by: a.ended_by,
            ended_reason: a.ended_reason,
            duration: a.duration,
            billed_duration: a.billed_duration,
            contact: a.contact.map(AttemptContactView::from),
            extracted_data: a.extracted_data,
            tags: a.tags,
            recording_url: None,
            policy_evaluation: None,
        }
    }
}

/// A WhatsApp message as `/messages` lists it (ext).
#[derive(Serialize, ToSchema)]
pub struct MessageView {
    id: String,
    /// `queued`, `sent`, `delivered`, `read` or `failed` (accepted and rejected messages were read).
    status: &'static str,
    template: Option<String>,
    created_at: String,
    sent_at: Option<String>,
    delivered_at: Option<String>,
    read_at: Option<String>,
    contact: Option<AttemptContactView>,
    #[schema(value_type = Object)]
    extracted_data: serde_json::Map<String, serde_json::Value>,
    tags: Vec<String>,
}

fn message_status(status: AttemptStatus) -> &'static str {
    match status {
        AttemptStatus::Accepted | AttemptStatus::Rejected => AttemptStatus::Read.as_str(),
        other => other.as_str(),
    }
}

impl From<Attempt> for MessageView {
    fn from(a: Attempt) -> Self {
        MessageView {
            id: a.id,
            status: message_status(a.status),
            template: a.template,
            created_at: format_time(a.created_at),
            sent_at: a.sent_at.map(format_time),
            delivered_at: a.delivered_at.map(format_time),
            read_at: a.read_at.map(format_time),
            contact: a.contact.map(AttemptContactView::from),
            extracted_data: a.extracted_data,
            tags: a.tags,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PagePosition {
    page_index: u32,
    page_size: u32,
    has_next: bool,
    has_previous: bool,
    next_page: Option<u32>,
    previous_page: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct CallListResponse {
    total_count: i64,
    calls: Vec<CallView>,
    pagination: PagePosition,
}

#[derive(Serialize, ToSchema)]
pub struct MessageListResponse {
    total_count: i64,
    messages: Vec<MessageView>,
    pagination: PagePosition,
}

const CALL_STATUSES: [AttemptStatus; 5] =
    [AttemptStatus::Ended, AttemptStatus::Failed, AttemptStatus::Busy, AttemptStatus::NoAnswer, AttemptStatus::InProgress];
const MESSAGE_STATUSES: [AttemptStatus; 5] =
    [AttemptStatus::Queued, AttemptStatus::Sent, AttemptStatus::Delivered, AttemptStatus::Read, AttemptStatus::Failed];

/// Reads the shared query of `/calls` and `/messages`.
fn attempt_query(query: &QueryParams, channel: Channel) -> ApiResult<AttemptQuery> {
    query.check(&["status", "answeredBy", "startDate", "endDate", "pageSize", "pageIndex"])?;
    let allowed: &[AttemptStatus] = match channel {
        Channel::PhoneCall => &CALL_STATUSES,
        Channel::Whatsapp => &MESSAGE_STATUSES,
    };
    let status = query
        .get("status")
        .map(|raw| {
            allowed.iter().copied().find(|s| s.as_str() == raw).ok_or_else(|| {
                let names: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
                ApiError::invalid("status", format!("status must be one of {}, got {raw:?}", names.join(", ")))
            })
        })
        .transpose()?;
    let answered_by = query
        .get("answeredBy")
        .map(|raw| {
            AnsweredBy::parse(raw)
                .ok_or_else(|| ApiError::invalid("answeredBy", format!("answeredBy must be human, machine or unknown, got {raw:?}")))
        })
        .transpose()?;
    let date = |name: &str| query.get(name).map(|raw| parse_time_param(name, raw)).transpose();
    let (start, end) = (date("startDate")?, date("endDate")?);
    let (page_size, page_index) = parse_offset_paging(query)?;
    Ok(AttemptQuery { channel: Some(channel), status, answered_by, start, end, page_size, page_index })
}

fn position(page: &AttemptPage, query: &AttemptQuery) -> PagePosition {
    let links = OffsetPagination::new(page.total_count, query.page_size, query.page_index);
    PagePosition {
        page_index: query.page_index,
        page_size: query.page_size,
        has_next: links.has_next,
        has_previous: links.has_previous,
        next_page: links.next_page,
        previous_page: links.previous_page,
    }
}

async fn list(app: &AppState, tenant: &Tenant, id: &str, query: &QueryParams, channel: Channel) -> ApiResult<(AttemptPage, AttemptQuery)> {
    let id = parse_id("id", id)?;
    let query = attempt_query(query, channel)?;
    let page = app.store.list_attempts(tenant.org_id, id, &query).await?.ok_or_else(|| ApiError::not_found("campaign"))?;
    Ok((page, query))
}

/// List a phone campaign's calls, oldest first (a WhatsApp campaign answers an empty list).
#[utoipa::path(get, path = "/campaigns/{id}/calls", tag = "calls",
    params(("id" = i64, Path), ("status" = Option<String>, Query, description = "ended, failed, busy, no-answer or in-progress"),
        ("answeredBy" = Option<String>, Query, description = "human, machine or unknown"),
        ("startDate" = Option<String>, Query, description = "ISO 8601; calls created at or after"),
        ("endDate" = Option<String>, Query, description = "ISO 8601; calls created at or before"),
        ("pageSize" = Option<u32>, Query, description = "1–100, default 50"), ("pageIndex" = Option<u32>, Query, description = "0–25000, default 0")),
    responses((status = 200, body = CallListResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_calls(
    State(app): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    query: QueryParams,
) -> ApiResult<Json<CallListResponse>> {
    let (page, query) = list(&app, &tenant, &id, &query, Channel::PhoneCall).await?;
    let pagination = position(&page, &query);
    Ok(Json(CallListResponse { total_count: page.total_count, calls: page.attempts.into_iter().map(CallView::from).collect(), pagination }))
}

/// List a WhatsApp campaign's messages, oldest first (a phone campaign answers an empty list).
#[utoipa::path(get, path = "/campaigns/{id}/messages", tag = "calls",
    params(("id" = i64, Path), ("status" = Option<String>, Query, description = "queued, sent, delivered, read or failed"),
        ("answeredBy" = Option<String>, Query), ("startDate" = Option<String>, Query), ("endDate" = Option<String>, Query),
        ("pageSize" = Option<u32>, Query, description = "1–100, default 50"), ("pageIndex" = Option<u32>, Query, description = "0–25000, default 0")),
    responses((status = 200, body = MessageListResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_messages(
    State(app): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    query: QueryParams,
) -> ApiResult<Json<MessageListResponse>> {
    let (page, query) = list(&app, &tenant, &id, &query, Channel::Whatsapp).await?;
    let pagination = position(&page, &query);
    Ok(Json(MessageListResponse {
        total_count: page.total_count,
        messages: page.attempts.into_iter().map(MessageView::from).collect(),
        pagination,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct EventAccepted {
    success: bool,
}

const ENDED_BY: [&str; 3] = ["agent", "user", "system"];

/// Checks an event body against the integration's channel.
fn parse_event(input: EventInput, channel: Channel) -> ApiResult<AttemptEvent> {
    let status = AttemptStatus::parse_event(channel, &input.status).ok_or_else(|| {
        let allowed = match channel {
            Channel::PhoneCall => "ringing, in-progress, ended, busy, no-answer or failed",
            Channel::Whatsapp => "sent, delivered, read, failed, accepted or rejected",
        };
        ApiError::invalid("status", format!("status must be {allowed} on a {} integration, got {:?}", channel.as_str(), input.status))
    })?;
    for (field, value) in [("duration", input.duration), ("billed_duration", input.billed_duration)] {
        if value.is_some_and(|v| v < 0) {
            return Err(ApiError::invalid(field, format!("{field} must be a whole number of seconds, 0 or more")));
        }
    }
    if let Some(ended_by) = input.ended_by.as_deref().filter(|e| !e.is_empty() && !ENDED_BY.contains(e)) {
        return Err(ApiError::invalid("ended_by", format!("ended_by must be agent, user or system, got {ended_by:?}")));
    }
    Ok(AttemptEvent {
        attempt_id: input.attempt_id,
        status,
        answered_by: input.answered_by,
        started_at: input.started_at,
        ended_at: input.ended_at,
        duration: input.duration,
        billed_duration: input.billed_duration,
        ended_by: input.ended_by.filter(|e| !e.is_empty()),
        ended_reason: input.ended_reason,
        converted: input.converted.unwrap_or(false),
        extracted_data: input.extracted_data,
        tags: input.tags,
    })
}

/// Report what happened to an attempt (provider → Outbound). Authenticated by its signature:
/// `X-Outbound-Signature` = base64(HMAC-SHA256(base64-decoded integration secret, raw body)).
#[utoipa::path(post, path = "/integrations/{id}/events", tag = "integrations", request_body = EventInput, security(()),
    params(("id" = String, Path), ("X-Outbound-Signature" = String, Header, description = "base64 HMAC-SHA256 of the raw body")),
    responses((status = 200, body = EventAccepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "Unknown attempt", body = ErrorBody)))]
pub async fn post_event(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<EventAccepted>> {
    let signature = headers.get("x-outbound-signature").and_then(|v| v.to_str().ok());
    // An unknown integration and a bad signature answer alike: neither reveals which ids exist.
    let bad_signature = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "missing or invalid X-Outbound-Signature: base64(HMAC-SHA256(base64-decoded integration secret, raw body))",
        )
    };
    let (channel, secret) = app.callbacks.integration_secret(&id).await?.ok_or_else(bad_signature)?;
    if !signature.is_some_and(|s| verify_signature(&secret, &body, s)) {
        return Err(bad_signature());
    }
    let is_json = headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "the request body must be JSON with Content-Type: application/json",
        ));
    }
    let event = parse_event(parse_json::<EventInput>(&body)?, channel)?;
    let outcome = app.callbacks.apply_integration_events(&id, vec![event], app.clock.now(), app.settings.retry).await?;
    match outcome.first() {
        Some(EventOutcome::Applied | EventOutcome::Ignored) => Ok(Json(EventAccepted { success: true })),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "attempt not found for this integration")),
    }
}
