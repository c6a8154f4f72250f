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
use crate::domain::attempt::{AnsweredBy, AttemptEvent, AttemptStatus, EventInput, MessageStatus, TranscriptEntry};
use crate::domain::campaign::{Channel, ContactStatus};
use crate::domain::contact::{check_extracted_data, clean_tags};
use crate::domain::ids::{is_integration_id, verify_signature};
use crate::domain::integration::MAX_URL_CHARS;
use crate::domain::validation::no_nul;
use crate::metrics::{self, EventRefusal, EventSource};
use crate::store::{Attempt, AttemptContact, AttemptPage, AttemptQuery, EventOutcome};

#[derive(Serialize, ToSchema)]
pub struct AttemptContactView {
    id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    f_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    name: Option<String>,
    phone_number: String,
    status: ContactStatus,
}

impl From<AttemptContact> for AttemptContactView {
    fn from(c: AttemptContact) -> Self {
        AttemptContactView { id: c.id, f_id: c.f_id, name: c.name, phone_number: c.phone.into(), status: c.status }
    }
}

/// A call as `/calls` lists it (§4). Fields Altur does not mark nullable are left out when the
/// provider gave no value (§0.2); Altur's `policy_evaluation` is never given, so never shown.
#[derive(Serialize, ToSchema)]
pub struct CallView {
    id: String,
    #[serde(rename = "type")]
    kind: CallType,
    status: CallStatus,
    /// Left out when nobody answered: Altur marks it nullable, but its enum has no `null`, and
    /// generated clients (OpenAPI 3.0.3) refuse a `null` outside the enum.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    answered_by: Option<AnsweredBy>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(required = true, format = DateTime)]
    started_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    ended_at: Option<String>,
    ended_by: CallEndedBy,
    /// Why the call ended, `""` when not known.
    ended_reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[schema(minimum = 0)]
    duration: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[schema(minimum = 0)]
    billed_duration: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    contact: Option<AttemptContactView>,
    #[schema(value_type = Object)]
    extracted_data: serde_json::Map<String, serde_json::Value>,
    tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    recording_url: Option<String>,
    /// The conversation as the provider reported it (ext); `null` when none was.
    #[schema(required = true)]
    transcript: Option<Vec<TranscriptEntry>>,
}

/// A call's `type`: Outbound's calls are all outbound (Altur's enum also has `inbound`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CallType {
    Outbound,
}

/// A call's status as `/calls` shows it: queued and ringing calls show as in progress.
#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    Ended,
    Failed,
    Busy,
    NoAnswer,
    InProgress,
}

impl From<AttemptStatus> for CallStatus {
    fn from(status: AttemptStatus) -> Self {
        match status {
            AttemptStatus::Ended => CallStatus::Ended,
            AttemptStatus::Busy => CallStatus::Busy,
            AttemptStatus::NoAnswer => CallStatus::NoAnswer,
            AttemptStatus::Failed => CallStatus::Failed,
            _ => CallStatus::InProgress,
        }
    }
}

/// Who ended a call: `""` when it never connected or nobody said (Altur's enum has `""`).
#[derive(Serialize)]
pub enum CallEndedBy {
    #[serde(rename = "agent")]
    Agent,
    #[serde(rename = "user")]
    User,
    #[serde(rename = "system")]
    System,
    #[serde(rename = "")]
    Nobody,
}

// By hand: utoipa's derive reads an empty `rename` as none and would document `Nobody`.
impl utoipa::PartialSchema for CallEndedBy {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .enum_values(Some(["agent", "user", "system", ""]))
            .description(Some("Who ended the call: `agent`, `user` or `system`; `\"\"` when it never connected or nobody said."))
            .into()
    }
}

impl ToSchema for CallEndedBy {}

impl CallEndedBy {
    /// The party a provider named (`agent`, `user` or `system`): what events may say (§5.4).
    fn named(text: &str) -> Option<Self> {
        match text {
            "agent" => Some(CallEndedBy::Agent),
            "user" => Some(CallEndedBy::User),
            "system" => Some(CallEndedBy::System),
            _ => None,
        }
    }

    pub fn of(stored: Option<&str>) -> Self {
        stored.and_then(CallEndedBy::named).unwrap_or(CallEndedBy::Nobody)
    }
}

impl From<Attempt> for CallView {
    fn from(a: Attempt) -> Self {
        CallView {
            id: a.id,
            kind: CallType::Outbound,
            status: CallStatus::from(a.status),
            answered_by: a.answered_by,
            created_at: format_time(a.created_at),
            started_at: a.started_at.map(format_time),
            ended_at: a.ended_at.map(format_time),
            ended_by: CallEndedBy::of(a.ended_by.as_deref()),
            ended_reason: a.ended_reason.unwrap_or_default(),
            duration: a.duration,
            billed_duration: a.billed_duration,
            contact: a.contact.map(AttemptContactView::from),
            extracted_data: a.extracted_data,
            tags: a.tags,
            recording_url: a.recording_url,
            transcript: a.transcript,
        }
    }
}

/// A WhatsApp message as `/messages` lists it (ext).
#[derive(Serialize, ToSchema)]
pub struct MessageView {
    id: String,
    status: MessageStatus,
    #[schema(required = true)]
    template: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(required = true, format = DateTime)]
    sent_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    delivered_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    read_at: Option<String>,
    #[schema(required = true)]
    contact: Option<AttemptContactView>,
    #[schema(value_type = Object)]
    extracted_data: serde_json::Map<String, serde_json::Value>,
    tags: Vec<String>,
}

impl From<Attempt> for MessageView {
    fn from(a: Attempt) -> Self {
        MessageView {
            id: a.id,
            status: MessageStatus::from(a.status),
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
    #[schema(required = true)]
    next_page: Option<u32>,
    #[schema(required = true)]
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

impl PagePosition {
    /// Where page `page_index` of `page_size` items stands among `total` items.
    pub(super) fn new(total: i64, page_size: u32, page_index: u32) -> Self {
        let links = OffsetPagination::new(total, page_size, page_index);
        PagePosition {
            page_index,
            page_size,
            has_next: links.has_next,
            has_previous: links.has_previous,
            next_page: links.next_page,
            previous_page: links.previous_page,
        }
    }
}

fn position(page: &AttemptPage, query: &AttemptQuery) -> PagePosition {
    PagePosition::new(page.total_count, query.page_size, query.page_index)
}

async fn list(app: &AppState, tenant: &Tenant, id: &str, query: &QueryParams, channel: Channel) -> ApiResult<(AttemptPage, AttemptQuery)> {
    let id = parse_id("id", id)?;
    let query = attempt_query(query, channel)?;
    let page = app.store.list_attempts(tenant.org_id, id, &query).await?.ok_or_else(|| ApiError::not_found("campaign"))?;
    Ok((page, query))
}

/// List a phone campaign's calls, oldest first (a WhatsApp campaign answers an empty list).
#[utoipa::path(get, path = "/campaigns/{id}/calls", tag = "calls",
    params(("id" = i64, Path), ("status" = Option<CallStatus>, Query),
        ("answeredBy" = Option<AnsweredBy>, Query),
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
    params(("id" = i64, Path), ("status" = Option<MessageStatus>, Query),
        ("answeredBy" = Option<AnsweredBy>, Query), ("startDate" = Option<String>, Query), ("endDate" = Option<String>, Query),
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

/// Checks an event body against the integration's channel.
fn parse_event(input: EventInput, channel: Channel) -> ApiResult<AttemptEvent> {
    let status = AttemptStatus::parse_event(channel, &input.status).ok_or_else(|| {
        let allowed = match channel {
            Channel::PhoneCall => "ringing, in-progress, ended, busy, no-answer or failed",
            Channel::Whatsapp => "sent, delivered, read, failed, accepted or rejected",
        };
        ApiError::invalid("status", format!("status must be {allowed} on a {} integration, got {:?}", channel.as_str(), input.status))
    })?;
    let (duration, billed_duration) = (input.duration.map(|d| d.0), input.billed_duration.map(|d| d.0));
    for (field, value) in [("duration", duration), ("billed_duration", billed_duration)] {
        if value.is_some_and(|v| v < 0) {
            return Err(ApiError::invalid(field, format!("{field} must be a whole number of seconds, 0 or more")));
        }
    }
    if let Some(data) = &input.extracted_data {
        check_extracted_data("extracted_data", data).map_err(|message| ApiError::invalid("extracted_data", message))?;
    }
    let tags = input
        .tags
        .as_deref()
        .map(|tags| clean_tags("tags", tags))
        .transpose()
        .map_err(|(field, message)| ApiError::invalid(field, message))?;
    if let Some(url) = &input.recording_url {
        let web = url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !web || url.chars().count() > MAX_URL_CHARS || url.contains(char::is_control) {
            return Err(ApiError::invalid(
                "recording_url",
                format!("recording_url must be an http(s) URL of at most {MAX_URL_CHARS} characters"),
            ));
        }
    }
    if let Some(reason) = &input.ended_reason {
        no_nul("ended_reason", reason).map_err(|v| ApiError::invalid(v.field, v.message))?;
    }
    if let Some(ended_by) = input.ended_by.as_deref().filter(|e| !e.is_empty() && CallEndedBy::named(e).is_none()) {
        return Err(ApiError::invalid("ended_by", format!("ended_by must be agent, user or system, got {ended_by:?}")));
    }
    Ok(AttemptEvent {
        attempt_id: input.attempt_id,
        status,
        answered_by: input.answered_by,
        started_at: input.started_at,
        ended_at: input.ended_at,
        duration,
        billed_duration,
        ended_by: input.ended_by.filter(|e| !e.is_empty()),
        ended_reason: input.ended_reason,
        converted: input.converted.unwrap_or(false),
        extracted_data: input.extracted_data,
        tags,
        recording_url: input.recording_url,
        transcript: input.transcript,
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
    let outcome = receive_event(&app, &id, &headers, &body).await;
    match &outcome {
        Ok(outcome) => metrics::provider_events(EventSource::Http, std::slice::from_ref(outcome)),
        Err(err) if err.status == StatusCode::UNAUTHORIZED => {
            metrics::provider_event_refused(EventSource::Http, EventRefusal::BadSignature)
        }
        Err(err) if err.status.is_client_error() => metrics::provider_event_refused(EventSource::Http, EventRefusal::Invalid),
        // A server error says nothing about the event: the provider sends it again.
        Err(_) => {}
    }
    match outcome? {
        EventOutcome::Applied | EventOutcome::Ignored => Ok(Json(EventAccepted { success: true })),
        EventOutcome::UnknownAttempt => Err(ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "attempt not found for this integration")),
    }
}

/// Checks an event's signature and body and applies it; `Err` for an event refused before the store.
async fn receive_event(app: &AppState, id: &str, headers: &HeaderMap, body: &Bytes) -> ApiResult<EventOutcome> {
    let signature = headers.get("x-outbound-signature").and_then(|v| v.to_str().ok());
    // An unknown integration and a bad signature answer alike: neither reveals which ids exist.
    let bad_signature = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "missing or invalid X-Outbound-Signature: base64(HMAC-SHA256(base64-decoded integration secret, raw body))",
        )
    };
    if !is_integration_id(id) {
        return Err(bad_signature());
    }
    let (channel, secret) = app.callbacks.integration_secret(id).await?.ok_or_else(bad_signature)?;
    if !signature.is_some_and(|s| verify_signature(&secret, body, s)) {
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
    let event = parse_event(parse_json::<EventInput>(body)?, channel)?;
    let outcomes = app.callbacks.apply_integration_events(id, vec![event], app.clock.now(), app.settings.retry).await?;
    Ok(outcomes.first().copied().unwrap_or(EventOutcome::UnknownAttempt))
}
