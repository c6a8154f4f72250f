//! Attempts over HTTP: the calls and messages of a campaign (§4) and the events providers post
//! about them (§5.4).

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::campaigns::parse_time_param;
use super::contacts::{OffsetPagination, parse_offset_paging};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{QueryParams, Tenant, parse_id};
use super::views::format_time;
use crate::domain::attempt::{AnsweredBy, AttemptStatus, MessageStatus, TranscriptEntry};
use crate::domain::campaign::{Channel, ContactStatus};
use crate::store::{Attempt, AttemptContact, AttemptPage, AttemptQuery};

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
    /// The provider's own id of the call, such as Twilio's `CA…` sid (ext); `null` until the
    /// provider accepted it, or when the provider gives none.
    #[schema(required = true)]
    provider_id: Option<String>,
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
    pub fn named(text: &str) -> Option<Self> {
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
            provider_id: a.provider_id,
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
    /// The provider's own id of the message, such as WhatsApp's `wamid.…`; `null` until the
    /// provider accepted it, or when the provider gives none.
    #[schema(required = true)]
    provider_id: Option<String>,
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
            provider_id: a.provider_id,
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
