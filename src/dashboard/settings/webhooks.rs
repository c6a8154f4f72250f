//! Webhook subscriptions (contract §8): the list and create form (the secret shown once), a
//! subscription's page with its deliveries log, "Send test event", "Retry" on a failed delivery,
//! and delete.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::{FormErrors, FormFields, refused, render_with, secret_page, see_other, utc};
use crate::api::AppState;
use crate::dashboard::session::Session;
use crate::dashboard::{Chrome, DashError, PAGE_SIZE, page_count, page_number, render};
use crate::domain::campaign::CampaignStatus;
use crate::domain::validation::Field;
use crate::domain::webhook::{
    DeliveryStatus, EventType, Webhook, WebhookFiltersInput, WebhookInput, delivery_public_id, parse_delivery_id,
};
use crate::store::Delivery;

fn event_label(event: EventType) -> &'static str {
    match event {
        EventType::CampaignStatusChanged => "A campaign's status changed",
        EventType::CampaignCycleCompleted => "A campaign's cycle ended",
        EventType::OnCallEnd => "A call ended",
        EventType::MessageStatusChanged => "A WhatsApp message's status changed",
        EventType::WebhookTest => "Test events",
    }
}

fn events_text(webhook: &Webhook) -> String {
    webhook.events.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")
}

fn filters_text(webhook: &Webhook) -> String {
    match webhook.filters.as_ref().and_then(|f| f.status.as_ref()) {
        Some(statuses) => statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
        None => "every status".to_owned(),
    }
}

// --- The list and the create form -------------------------------------------------------------

struct Row {
    id: String,
    url: String,
    events: String,
    description: String,
    enabled: bool,
    created: String,
}

/// What the create form holds: its defaults, or as submitted.
struct NewForm {
    url: String,
    events: Vec<String>,
    statuses: Vec<String>,
    description: String,
    enabled: bool,
}

impl Default for NewForm {
    fn default() -> Self {
        NewForm { url: String::new(), events: Vec::new(), statuses: Vec::new(), description: String::new(), enabled: true }
    }
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<Row>,
    total: i64,
    page: u32,
    pages: u32,
    event_types: [EventType; 5],
    statuses: [CampaignStatus; 6],
    form: NewForm,
    errors: FormErrors,
    deleted: bool,
}

impl ListPage {
    fn wants(&self, event: &EventType) -> bool {
        self.form.events.iter().any(|e| e == event.as_str())
    }

    fn filters(&self, status: &CampaignStatus) -> bool {
        self.form.statuses.iter().any(|s| s == status.as_str())
    }

    fn event_label(&self, event: &EventType) -> &'static str {
        event_label(*event)
    }
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    page: Option<u32>,
    deleted: Option<String>,
}

pub(super) async fn list(State(app): State<AppState>, session: Session, Query(query): Query<ListQuery>) -> Result<Response, DashError> {
    let page = page_number(query.page);
    let mut view = list_response(&app, &session, page, NewForm::default(), FormErrors::default()).await?;
    view.deleted = query.deleted.is_some();
    Ok(render(&view))
}

async fn list_response(app: &AppState, session: &Session, page: u32, form: NewForm, errors: FormErrors) -> Result<ListPage, DashError> {
    let found = app.webhooks.list_webhooks(session.org_id, PAGE_SIZE, page - 1).await?;
    let rows = found
        .webhooks
        .iter()
        .map(|w| Row {
            id: w.id.clone(),
            url: w.url.clone(),
            events: events_text(w),
            description: w.description.clone().unwrap_or_default(),
            enabled: w.enabled,
            created: utc(w.created_at),
        })
        .collect();
    Ok(ListPage {
        chrome: Chrome::new(session, "webhooks"),
        rows,
        total: found.total_count,
        page,
        pages: page_count(found.total_count),
        event_types: EventType::ALL,
        statuses: CampaignStatus::ALL,
        form,
        errors,
        deleted: false,
    })
}

/// `POST /webhooks`: the API's create; the answer shows the subscription and its secret, this once.
pub(super) async fn create(State(app): State<AppState>, session: Session, body: Bytes) -> Result<Response, DashError> {
    let form = FormFields::parse(&body);
    let kept = NewForm {
        url: form.get("url").to_owned(),
        events: form.all("events").into_iter().map(str::to_owned).collect(),
        statuses: form.all("status").into_iter().map(str::to_owned).collect(),
        description: form.get("description").to_owned(),
        enabled: form.has("enabled"),
    };
    let input = WebhookInput {
        url: form.text("url").map_or(Field::Absent, |url| Field::Value(url.to_owned())),
        events: Field::Value(kept.events.clone()),
        filters: if kept.statuses.is_empty() {
            Field::Absent
        } else {
            Field::Value(WebhookFiltersInput { status: Field::Value(kept.statuses.clone()) })
        },
        description: form.text("description").map_or(Field::Absent, |d| Field::Value(d.to_owned())),
        enabled: Field::Value(kept.enabled),
    };
    match crate::api::webhooks::create(&app, session.org_id, &input, None).await {
        Ok(webhook) => Ok(secret_page(&page_view(&app, &session, &webhook, DeliveryQuery::default(), Some(webhook.secret.clone())).await?)),
        Err(err) => {
            let (status, errors) = refused(err)?;
            Ok(render_with(status, &list_response(&app, &session, 1, kept, errors).await?))
        }
    }
}

// --- A subscription's page ------------------------------------------------------------------

struct DeliveryRow {
    id: String,
    event_id: String,
    event_type: &'static str,
    status: &'static str,
    retry: bool,
    attempts: i64,
    last_result: String,
    next_attempt: String,
    created: String,
    delivered: String,
    payload: String,
}

impl From<Delivery> for DeliveryRow {
    fn from(d: Delivery) -> Self {
        // The payload as the API's deliveries log shows it, indented for reading.
        let payload = crate::webhooks::payload::body(&d.event, &d.body)
            .map(|text| {
                serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| serde_json::to_string_pretty(&v).ok()).unwrap_or(text)
            })
            .unwrap_or_default();
        let last_result = match (d.last_status_code, &d.last_error) {
            (Some(code), Some(error)) => format!("{code}: {error}"),
            (Some(code), None) => code.to_string(),
            (None, Some(error)) => error.clone(),
            (None, None) => String::new(),
        };
        DeliveryRow {
            id: delivery_public_id(d.id),
            event_id: d.event.event_id,
            event_type: d.event.event_type.as_str(),
            status: d.status.as_str(),
            retry: d.status.may_retry(),
            attempts: d.attempts,
            last_result,
            next_attempt: d.next_attempt_at.filter(|_| d.status == DeliveryStatus::Pending).map(utc).unwrap_or_default(),
            created: utc(d.event.occurred_at),
            delivered: d.delivered_at.map(utc).unwrap_or_default(),
            payload,
        }
    }
}

#[derive(Template)]
#[template(path = "webhook.html")]
struct WebhookPage {
    chrome: Chrome,
    id: String,
    url: String,
    events: String,
    filters: String,
    description: String,
    enabled: bool,
    created: String,
    updated: String,
    /// The signing secret, on the page that answers the creation only.
    secret: Option<String>,
    deliveries: Vec<DeliveryRow>,
    total: i64,
    status: String,
    statuses: [DeliveryStatus; 3],
    page: u32,
    pages: u32,
    tested: Option<String>,
    retried: Option<String>,
}

impl WebhookPage {
    fn link(&self, page: u32) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if !self.status.is_empty() {
            query.append_pair("status", &self.status);
        }
        query.append_pair("page", &page.to_string());
        format!("/webhooks/{}?{}#deliveries", self.id, query.finish())
    }
}

#[derive(Deserialize, Default)]
pub(super) struct DeliveryQuery {
    status: Option<String>,
    page: Option<u32>,
    tested: Option<String>,
    retried: Option<String>,
}

async fn page_view(
    app: &AppState,
    session: &Session,
    webhook: &Webhook,
    query: DeliveryQuery,
    secret: Option<String>,
) -> Result<WebhookPage, DashError> {
    let status = query.status.as_deref().and_then(DeliveryStatus::parse);
    let page = page_number(query.page);
    let found = crate::api::webhooks::deliveries(app, session.org_id, &webhook.id, status, PAGE_SIZE, page - 1).await?;
    // Only well-formed ids are echoed back (the query is anyone's link).
    let tested = query
        .tested
        .filter(|id| id.strip_prefix("evt_").is_some_and(|rest| rest.len() == 20 && rest.bytes().all(|b| b.is_ascii_alphanumeric())));
    let retried = query.retried.filter(|id| parse_delivery_id(id).is_some());
    Ok(WebhookPage {
        chrome: Chrome::new(session, "webhooks"),
        id: webhook.id.clone(),
        url: webhook.url.clone(),
        events: events_text(webhook),
        filters: filters_text(webhook),
        description: webhook.description.clone().unwrap_or_default(),
        enabled: webhook.enabled,
        created: utc(webhook.created_at),
        updated: utc(webhook.updated_at),
        secret,
        total: found.total_count,
        pages: page_count(found.total_count),
        deliveries: found.deliveries.into_iter().map(DeliveryRow::from).collect(),
        status: status.map_or(String::new(), |s| s.as_str().to_owned()),
        statuses: DeliveryStatus::ALL,
        page,
        tested,
        retried,
    })
}

pub(super) async fn page(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<DeliveryQuery>,
) -> Result<Response, DashError> {
    let webhook = crate::api::webhooks::find(&app, session.org_id, &id).await?;
    Ok(render(&page_view(&app, &session, &webhook, query, None).await?))
}

/// `POST /webhooks/{id}/test`: the API's test event, to this subscription only.
pub(super) async fn send_test(State(app): State<AppState>, session: Session, Path(id): Path<String>) -> Result<Response, DashError> {
    let event_id = crate::api::webhooks::send_test(&app, session.org_id, &id, None).await?.ok_or(DashError::NotFound("webhook"))?;
    Ok(see_other(&format!("/webhooks/{id}?tested={event_id}#deliveries")))
}

/// `POST /webhooks/{id}/delete`: the API's delete (pending deliveries are dropped).
pub(super) async fn delete(State(app): State<AppState>, session: Session, Path(id): Path<String>) -> Result<Response, DashError> {
    crate::api::webhooks::delete(&app, session.org_id, &id).await?;
    Ok(see_other("/webhooks?deleted=1"))
}

/// `POST /webhooks/{id}/deliveries/{delivery_id}/retry`: the API's retry of a failed delivery.
pub(super) async fn retry(
    State(app): State<AppState>,
    session: Session,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<Response, DashError> {
    let outcome = crate::api::webhooks::retry(&app, session.org_id, &id, &delivery_id, None).await?;
    if let Some(refusal) = crate::api::webhooks::retry_refusal(&outcome) {
        return Err(refusal.into());
    }
    Ok(see_other(&format!("/webhooks/{id}?retried={delivery_id}#deliveries")))
}
