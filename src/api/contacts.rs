//! Contacts of a campaign (contract §3): batch add, list, retrieve, delete.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::campaigns::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{JsonBody, QueryParams, Tenant, parse_id};
use super::idempotency::{Recording, Reply};
use crate::domain::attempt::FailedReason;
use crate::domain::campaign::ContactStatus;
use crate::domain::contact::{Contact, ContactBatchInput, ContactInput, IfDuplicate, ItemError, MAX_BATCH, parse_item, region_of_timezone};
use crate::domain::contact_hours::{TimezoneSource, zone_in_use};
use crate::domain::timezone::TimeZone;
use crate::store::{AddContactsOutcome, BatchItem, ContactLookup, DeleteOutcome, ItemResult, ItemStatus, OrgId, ResponseRecorder};

pub const MAX_PAGE_INDEX: u32 = 25_000;

/// A contact as the API shows it (§3.3).
#[derive(Serialize, ToSchema)]
pub struct ContactView {
    id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    f_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    name: Option<String>,
    contact: String,
    status: ContactStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    context: Option<String>,
    retries: i64,
    failed_retries: i64,
    has_follow_up: bool,
    call_count: i64,
    billed_duration: i64,
    /// `YYYY-MM-DD HH:MM:SS` in the campaign's timezone.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[schema(example = "2026-06-08 13:05:00", pattern = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")]
    last_call_at: Option<String>,
    #[schema(value_type = Object)]
    extracted_data: serde_json::Map<String, serde_json::Value>,
    tags: Vec<String>,
    /// Why the contact failed for good (ext): `invalid_number` when the provider said the number
    /// cannot be reached, `suppressed` when its number is on the do-not-contact list (§12.1);
    /// `null` otherwise.
    #[schema(required = true)]
    failed_reason: Option<FailedReason>,
    /// The IANA zone the contact is called in (ext, §12.2): its own, else the campaign's.
    #[schema(example = "America/Mexico_City")]
    timezone: String,
    /// Where `timezone` comes from (ext): the item's `timezone` field, the number, or the campaign.
    timezone_source: TimezoneSource,
}

impl ContactView {
    fn new(contact: Contact, timezone: &TimeZone) -> Self {
        let zone = timezone.zone();
        let (in_use, timezone_source) = zone_in_use(contact.timezone.as_ref(), timezone);
        let in_use = in_use.name().to_owned();
        ContactView {
            id: contact.id,
            f_id: contact.f_id,
            name: contact.name,
            contact: contact.phone.into(),
            status: contact.status,
            context: contact.context,
            retries: contact.retries,
            failed_retries: contact.failed_retries,
            has_follow_up: contact.has_follow_up,
            call_count: contact.call_count,
            billed_duration: contact.billed_duration,
            last_call_at: contact.last_call_at.map(|at| at.to_zoned(zone.clone()).strftime("%Y-%m-%d %H:%M:%S").to_string()),
            extracted_data: contact.extracted_data,
            tags: contact.tags,
            failed_reason: contact.failed_reason,
            timezone: in_use,
            timezone_source,
        }
    }
}

#[derive(Serialize, ToSchema, Default)]
pub struct BatchSummary {
    created: usize,
    updated: usize,
    skipped_duplicate: usize,
    failed: usize,
}

#[derive(Serialize, ToSchema)]
pub struct BatchItemView {
    index: usize,
    status: ItemStatus,
    /// The contact's id, as a string (as Altur returns it); left out on a failed item.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    id: Option<String>,
    /// The number as stored (E.164), or as sent when it failed; left out when none was sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    contact: Option<String>,
    /// Why the item failed; left out on a successful one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error: Option<ItemError>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResponse {
    success: bool,
    summary: BatchSummary,
    results: Vec<BatchItemView>,
}

/// Add contacts to a campaign: 1 to 1000 items, each processed on its own.
#[utoipa::path(post, path = "/campaigns/{id}/contacts", tag = "contacts", request_body = ContactBatchInput,
    params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried batch safe (§7)")),
    responses(
        (status = 201, description = "Per-item results", body = BatchResponse),
        (status = 400, description = "Invalid batch", body = ErrorBody),
        (status = 404, description = "Campaign not found", body = ErrorBody),
        (status = 409, description = "Campaign finished", body = ErrorBody),
    ))]
pub async fn add_contacts(
    State(app): State<AppState>,
    tenant: Tenant,
    recording: Recording,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<ContactBatchInput>,
) -> ApiResult<Reply> {
    let id = parse_id("id", &id)?;
    let if_duplicate = input.if_duplicate;
    recording.respond(batch_reply, |record| add_batch(&app, tenant.org_id, id, &input.contacts, if_duplicate, record)).await
}

/// Adds a batch as the API does (§3.1): 1 to 1000 items, a campaign of this organization that
/// still takes contacts, each item checked on its own (a malformed one refuses the batch, a bad
/// number fails only its item), then one store transaction. The API's endpoint and the
/// dashboard's CSV upload both add contacts through this; `record` keeps the API's response
/// under its Idempotency-Key.
pub(crate) async fn add_batch(
    app: &AppState,
    org: OrgId,
    campaign_id: i64,
    contacts: &[ContactInput],
    if_duplicate: IfDuplicate,
    record: Option<ResponseRecorder<AddContactsOutcome>>,
) -> ApiResult<AddContactsOutcome> {
    let count = contacts.len();
    if count == 0 || count > MAX_BATCH {
        return Err(ApiError::invalid("contacts", format!("contacts must hold 1 to {MAX_BATCH} items, got {count}")));
    }
    let campaign = app.store.get_campaign(org, campaign_id).await?.ok_or_else(|| ApiError::not_found("campaign"))?;
    if !campaign.status.accepts_contacts() {
        return Err(finished());
    }
    let region = region_of_timezone(campaign.settings.timezone.name());
    let items = contacts
        .iter()
        .enumerate()
        .map(|(index, item)| parse_item(index, item, region).map_err(|e| ApiError::invalid(e.field, e.message)))
        .collect::<ApiResult<Vec<BatchItem>>>()?;
    Ok(app.store.add_contacts(org, campaign_id, items, if_duplicate, app.clock.now(), record).await?)
}

fn finished() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "CAMPAIGN_FINISHED", "the campaign is finished and takes no more contacts")
}

fn batch_reply(outcome: &AddContactsOutcome) -> Reply {
    let results = match added(outcome) {
        Ok(results) => results,
        Err(err) => return err.into_reply(),
    };
    let mut summary = BatchSummary::default();
    for result in results {
        match result.status {
            ItemStatus::Created => summary.created += 1,
            ItemStatus::Updated => summary.updated += 1,
            ItemStatus::SkippedDuplicate => summary.skipped_duplicate += 1,
            ItemStatus::Failed => summary.failed += 1,
        }
    }
    let results = results
        .iter()
        .map(|r| BatchItemView {
            index: r.index,
            status: r.status,
            id: r.id.map(|id| id.to_string()),
            contact: r.contact.clone(),
            error: r.error,
        })
        .collect();
    Reply::json(StatusCode::CREATED, &BatchResponse { success: true, summary, results })
}

/// The per-item results of a batch the store took, or the API's error for one it did not.
pub(crate) fn added(outcome: &AddContactsOutcome) -> ApiResult<&[ItemResult]> {
    match outcome {
        AddContactsOutcome::Added(results) => Ok(results),
        AddContactsOutcome::CampaignFinished => Err(finished()),
        AddContactsOutcome::CampaignNotFound => Err(ApiError::not_found("campaign")),
    }
}

#[derive(Serialize, ToSchema)]
pub struct OffsetPagination {
    pub(super) has_next: bool,
    pub(super) has_previous: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(super) next_page: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(super) previous_page: Option<u32>,
}

impl OffsetPagination {
    /// Where page `page_index` of `page_size` items stands among `total` items.
    pub(super) fn new(total: i64, page_size: u32, page_index: u32) -> Self {
        let shown_until = u64::from(page_index + 1) * u64::from(page_size);
        let has_next = i128::from(shown_until) < i128::from(total);
        let has_previous = page_index > 0;
        OffsetPagination {
            has_next,
            has_previous,
            next_page: has_next.then_some(page_index + 1),
            previous_page: has_previous.then(|| page_index - 1),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ContactListResponse {
    total_count: i64,
    contacts: Vec<ContactView>,
    pagination: OffsetPagination,
}

/// Page size and index of an offset-paged list (`pageSize` 1–100, `pageIndex` 0–25000).
pub fn parse_offset_paging(query: &QueryParams) -> ApiResult<(u32, u32)> {
    let number = |name: &str, default: u32, min: u32, max: u32| -> ApiResult<u32> {
        match query.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse::<u32>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| ApiError::invalid(name, format!("{name} must be an integer between {min} and {max}, got {raw:?}"))),
        }
    };
    Ok((number("pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)?, number("pageIndex", 0, 0, MAX_PAGE_INDEX)?))
}

/// List a campaign's contacts, oldest first.
#[utoipa::path(get, path = "/campaigns/{id}/contacts", tag = "contacts",
    params(("id" = i64, Path), ("status" = Option<ContactStatus>, Query), ("pageSize" = Option<u32>, Query, description = "1–100, default 50"),
        ("pageIndex" = Option<u32>, Query, description = "0–25000, default 0")),
    responses((status = 200, body = ContactListResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_contacts(
    State(app): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    query: QueryParams,
) -> ApiResult<Json<ContactListResponse>> {
    let id = parse_id("id", &id)?;
    query.check(&["status", "pageSize", "pageIndex"])?;
    let status = query
        .get("status")
        .map(|raw| {
            ContactStatus::parse(raw)
                .ok_or_else(|| ApiError::invalid("status", format!("status must be a contact status (§3.5), got {raw:?}")))
        })
        .transpose()?;
    let (page_size, page_index) = parse_offset_paging(&query)?;
    let page =
        app.store.list_contacts(tenant.org_id, id, status, page_size, page_index).await?.ok_or_else(|| ApiError::not_found("campaign"))?;
    let timezone = page.timezone;
    Ok(Json(ContactListResponse {
        total_count: page.total_count,
        pagination: OffsetPagination::new(page.total_count, page_size, page_index),
        contacts: page.contacts.into_iter().map(|c| ContactView::new(c, &timezone)).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ContactResponse {
    success: bool,
    contact: ContactView,
}

/// Retrieve one contact of a campaign.
#[utoipa::path(get, path = "/campaigns/{id}/contacts/{contact_id}", tag = "contacts", params(("id" = i64, Path), ("contact_id" = i64, Path)),
    responses((status = 200, body = ContactResponse), (status = 404, body = ErrorBody)))]
pub async fn get_contact(
    State(app): State<AppState>,
    tenant: Tenant,
    Path((id, contact_id)): Path<(String, String)>,
) -> ApiResult<Json<ContactResponse>> {
    let id = parse_id("id", &id)?;
    let contact_id = parse_id("contact_id", &contact_id)?;
    match app.store.get_contact(tenant.org_id, id, contact_id).await? {
        ContactLookup::Found { contact, timezone } => {
            Ok(Json(ContactResponse { success: true, contact: ContactView::new(*contact, &timezone) }))
        }
        ContactLookup::ContactNotFound => Err(contact_not_found()),
        ContactLookup::CampaignNotFound => Err(ApiError::not_found("campaign")),
    }
}

fn contact_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "CONTACT_NOT_FOUND", "contact not found in this campaign")
}

/// Delete a contact that is still `queue` or `failed`.
#[utoipa::path(delete, path = "/campaigns/{id}/contacts/{contact_id}", tag = "contacts", params(("id" = i64, Path), ("contact_id" = i64, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_contact(
    State(app): State<AppState>,
    tenant: Tenant,
    Path((id, contact_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id = parse_id("id", &id)?;
    let contact_id = parse_id("contact_id", &contact_id)?;
    match app.store.delete_contact(tenant.org_id, id, contact_id).await? {
        DeleteOutcome::Deleted => Ok(StatusCode::NO_CONTENT.into_response()),
        DeleteOutcome::NotDeletable(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "CONTACT_NOT_DELETABLE",
            format!("only contacts in queue or failed can be deleted; this one is {}", status.as_str()),
        )),
        DeleteOutcome::ContactNotFound => Err(contact_not_found()),
        DeleteOutcome::CampaignNotFound => Err(ApiError::not_found("campaign")),
    }
}
