//! The organization's do-not-contact list (§12.1): batch add, list, remove, a number's history,
//! and the opt-out keywords that inbound replies are matched against.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::contacts::{OffsetPagination, parse_offset_paging};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{JsonBody, QueryParams, Tenant};
use super::idempotency::{Recording, Reply};
use super::views::format_time;
use crate::domain::contact::{ItemError, PhoneNumber};
use crate::domain::dnc::{
    DncAction, DncBatchInput, DncChannel, DncItemStatus, DncResult, DncSource, check_batch_size, default_region, keywords_or_default,
    parse_contact, parse_entry, parse_keywords, parse_region,
};
use crate::domain::validation::{Field, Violation};
use crate::store::{DncChange, DncEntry, DncFilter, DncOrigin, OrgId, ResponseRecorder};

#[derive(Serialize, ToSchema, Default)]
pub struct DncSummary {
    created: usize,
    existing: usize,
    failed: usize,
}

#[derive(Serialize, ToSchema)]
pub struct DncItemView {
    index: usize,
    status: DncItemStatus,
    /// E.164, or the text sent when it could not be read; `null` when none was sent.
    #[schema(required = true)]
    contact: Option<String>,
    channel: DncChannel,
    /// Why the entry failed; `null` on an entry that did not.
    #[schema(required = true)]
    error: Option<ItemError>,
}

#[derive(Serialize, ToSchema)]
pub struct DncBatchResponse {
    success: bool,
    summary: DncSummary,
    results: Vec<DncItemView>,
}

#[derive(Serialize, ToSchema)]
pub struct DncEntryView {
    #[schema(example = "+525512345678")]
    contact: String,
    channel: DncChannel,
    #[schema(required = true)]
    reason: Option<String>,
    source: DncSource,
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<DncEntry> for DncEntryView {
    fn from(entry: DncEntry) -> Self {
        DncEntryView {
            contact: entry.contact.into(),
            channel: entry.channel,
            reason: entry.reason,
            source: entry.source,
            created_at: format_time(entry.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DncListResponse {
    success: bool,
    total_count: i64,
    entries: Vec<DncEntryView>,
    pagination: OffsetPagination,
}

#[derive(Serialize, ToSchema)]
pub struct DncChangeView {
    #[schema(format = DateTime)]
    at: String,
    action: DncAction,
    channel: DncChannel,
    #[schema(required = true)]
    reason: Option<String>,
    source: DncSource,
    /// The 8 characters of the API key used (source `api`), else `null`.
    #[schema(required = true)]
    key_prefix: Option<String>,
}

impl From<DncChange> for DncChangeView {
    fn from(change: DncChange) -> Self {
        DncChangeView {
            at: format_time(change.at),
            action: change.action,
            channel: change.channel,
            reason: change.reason,
            source: change.source,
            key_prefix: change.key_prefix,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DncHistoryResponse {
    success: bool,
    history: Vec<DncChangeView>,
}

/// The body of `PUT /settings/opt-out-keywords`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeywordsInput {
    #[schema(min_items = 1, max_items = 50)]
    pub keywords: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KeywordsResponse {
    success: bool,
    keywords: Vec<String>,
}

fn invalid(violation: Violation) -> ApiError {
    ApiError::invalid(violation.field, violation.message)
}

/// Add numbers to the organization's do-not-contact list: 1 to 1000 entries, each on its own.
#[utoipa::path(post, path = "/dnc", tag = "do-not-contact", request_body = DncBatchInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried batch safe (§7)")),
    responses((status = 201, description = "Per-entry results", body = DncBatchResponse), (status = 400, body = ErrorBody)))]
pub async fn add_entries(
    State(app): State<AppState>,
    tenant: Tenant,
    recording: Recording,
    JsonBody(input): JsonBody<DncBatchInput>,
) -> ApiResult<Reply> {
    let origin = DncOrigin { source: DncSource::Api, key_prefix: Some(tenant.key_prefix.as_str().to_owned()) };
    recording.respond(batch_reply, |record| add(&app, tenant.org_id, &input, origin, record)).await
}

/// Adds a batch as the API does (§12.1): 1 to 1000 entries, each checked on its own (a malformed
/// one refuses the batch, a bad number fails only its entry), then one store transaction. The
/// API and the dashboard's form both add entries through this.
pub(crate) async fn add(
    app: &AppState,
    org: OrgId,
    input: &DncBatchInput,
    origin: DncOrigin,
    record: Option<ResponseRecorder<Vec<DncResult>>>,
) -> ApiResult<Vec<DncResult>> {
    check_batch_size(input.entries.len()).map_err(invalid)?;
    let region = match &input.region {
        Some(region) => parse_region(region).map_err(invalid)?,
        None => organization_region(app, org).await?,
    };
    let items = input.entries.iter().enumerate().map(|(i, entry)| parse_entry(i, entry, region)).collect::<Result<Vec<_>, _>>();
    Ok(app.dnc.add_dnc_entries(org, items.map_err(invalid)?, origin, app.clock.now(), record).await?)
}

/// The region numbers without `+` are read in when none is given (§12.1).
async fn organization_region(app: &AppState, org: OrgId) -> ApiResult<phonenumber::country::Id> {
    Ok(default_region(app.dnc.first_campaign_timezone(org).await?.as_deref()))
}

/// A number named outside a body (query, path, the dashboard's forms), read as a body's entry
/// is; a 400 naming `field` when it is not a number.
pub(crate) async fn normalise(app: &AppState, org: OrgId, field: &str, raw: &str) -> ApiResult<PhoneNumber> {
    let region = organization_region(app, org).await?;
    parse_contact(&Field::Value(raw.to_owned()), region).map_err(|_| {
        ApiError::invalid(field, format!("{field} must be a phone number (E.164, or in the organization's region), got {raw:?}"))
    })
}

fn batch_reply(results: &Vec<DncResult>) -> Reply {
    let mut summary = DncSummary::default();
    for result in results {
        match result.status {
            DncItemStatus::Created => summary.created += 1,
            DncItemStatus::Existing => summary.existing += 1,
            DncItemStatus::Failed => summary.failed += 1,
        }
    }
    let results = results
        .iter()
        .map(|r| DncItemView { index: r.index, status: r.status, contact: r.contact.clone(), channel: r.channel, error: r.error })
        .collect();
    Reply::json(StatusCode::CREATED, &DncBatchResponse { success: true, summary, results })
}

/// A stored channel named in a query; `None` when absent.
pub(crate) fn parse_channel(raw: Option<&str>) -> ApiResult<Option<DncChannel>> {
    raw.map(|raw| {
        DncChannel::parse(raw)
            .ok_or_else(|| ApiError::invalid("channel", format!("channel must be phone_call, whatsapp or all, got {raw:?}")))
    })
    .transpose()
}

/// List the organization's do-not-contact entries, newest first.
#[utoipa::path(get, path = "/dnc", tag = "do-not-contact",
    params(("contact" = Option<String>, Query, description = "Only this number (normalised first)"),
        ("channel" = Option<DncChannel>, Query, description = "Only entries stored with this channel"),
        ("pageSize" = Option<u32>, Query, description = "1–100, default 50"), ("pageIndex" = Option<u32>, Query, description = "0–25000, default 0")),
    responses((status = 200, body = DncListResponse), (status = 400, body = ErrorBody)))]
pub async fn list_entries(State(app): State<AppState>, tenant: Tenant, query: QueryParams) -> ApiResult<Json<DncListResponse>> {
    query.check(&["contact", "channel", "pageSize", "pageIndex"])?;
    let contact = match query.get("contact") {
        Some(raw) => Some(normalise(&app, tenant.org_id, "contact", raw).await?),
        None => None,
    };
    let filter = DncFilter { contact, channel: parse_channel(query.get("channel"))? };
    let (page_size, page_index) = parse_offset_paging(&query)?;
    let page = app.dnc.list_dnc_entries(tenant.org_id, &filter, page_size, page_index).await?;
    Ok(Json(DncListResponse {
        success: true,
        total_count: page.total_count,
        pagination: OffsetPagination::new(page.total_count, page_size, page_index),
        entries: page.entries.into_iter().map(DncEntryView::from).collect(),
    }))
}

/// Remove a number's entry on one channel, or (`all`, the default) every entry of the number.
#[utoipa::path(delete, path = "/dnc/{contact}", tag = "do-not-contact",
    params(("contact" = String, Path, description = "The number, E.164 (`%2B52…`) or in the organization's region"),
        ("channel" = Option<DncChannel>, Query, description = "Default all: every entry of the number")),
    responses((status = 204, description = "Removed"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_entries(
    State(app): State<AppState>,
    tenant: Tenant,
    Path(contact): Path<String>,
    query: QueryParams,
) -> ApiResult<StatusCode> {
    query.check(&["channel"])?;
    let channel = parse_channel(query.get("channel"))?.unwrap_or(DncChannel::All);
    let origin = DncOrigin { source: DncSource::Api, key_prefix: Some(tenant.key_prefix.as_str().to_owned()) };
    remove(&app, tenant.org_id, &contact, channel, origin).await.map(|()| StatusCode::NO_CONTENT)
}

/// Removes a number's entries (the API's and the dashboard's); 404 when there was none.
pub(crate) async fn remove(app: &AppState, org: OrgId, contact: &str, channel: DncChannel, origin: DncOrigin) -> ApiResult<()> {
    let contact = normalise(app, org, "contact", contact).await?;
    let removed = app.dnc.remove_dnc_entries(org, &contact, channel, origin, app.clock.now()).await?;
    if removed.is_empty() { Err(ApiError::not_found("do-not-contact entry")) } else { Ok(()) }
}

/// Every change of a number's entries, oldest first (empty for a number never listed).
#[utoipa::path(get, path = "/dnc/{contact}/history", tag = "do-not-contact",
    params(("contact" = String, Path, description = "The number, E.164 (`%2B52…`) or in the organization's region")),
    responses((status = 200, body = DncHistoryResponse), (status = 400, body = ErrorBody)))]
pub async fn history(State(app): State<AppState>, tenant: Tenant, Path(contact): Path<String>) -> ApiResult<Json<DncHistoryResponse>> {
    let contact = normalise(&app, tenant.org_id, "contact", &contact).await?;
    let history = app.dnc.dnc_history(tenant.org_id, &contact).await?;
    Ok(Json(DncHistoryResponse { success: true, history: history.into_iter().map(DncChangeView::from).collect() }))
}

/// The organization's opt-out keywords (the defaults until it sets its own).
#[utoipa::path(get, path = "/settings/opt-out-keywords", tag = "do-not-contact", responses((status = 200, body = KeywordsResponse)))]
pub async fn get_keywords(State(app): State<AppState>, tenant: Tenant) -> ApiResult<Json<KeywordsResponse>> {
    let keywords = keywords_or_default(app.dnc.opt_out_keywords(tenant.org_id).await?);
    Ok(Json(KeywordsResponse { success: true, keywords }))
}

/// Replace the organization's opt-out keywords: 1 to 50, each 1 to 40 characters once trimmed;
/// a keyword equal to an earlier one once case and accents are folded is dropped.
#[utoipa::path(put, path = "/settings/opt-out-keywords", tag = "do-not-contact", request_body = KeywordsInput,
    responses((status = 200, description = "The keywords stored", body = KeywordsResponse), (status = 400, body = ErrorBody)))]
pub async fn put_keywords(
    State(app): State<AppState>,
    tenant: Tenant,
    JsonBody(input): JsonBody<KeywordsInput>,
) -> ApiResult<Json<KeywordsResponse>> {
    let keywords = set_keywords(&app, tenant.org_id, &input.keywords).await?;
    Ok(Json(KeywordsResponse { success: true, keywords }))
}

/// Checks and stores the organization's keywords (the API's and the dashboard's); the list kept.
pub(crate) async fn set_keywords(app: &AppState, org: OrgId, keywords: &[String]) -> ApiResult<Vec<String>> {
    let keywords = parse_keywords(keywords).map_err(invalid)?;
    app.dnc.set_opt_out_keywords(org, keywords.clone()).await?;
    Ok(keywords)
}
