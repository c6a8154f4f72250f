//! Contacts in and out as CSV (contract §11): the upload on a campaign's page and the export.
//!
//! The upload reads the file with the CLI importer's reader (`import::Rows`: the same columns,
//! the same row → contact item) and sends it in batches of 1000 through the API's own batch
//! path (`api::contacts::add_batch`), with the importer's handling of a refused row and its
//! report rows; so a file gives the same contacts and the same report either way.

use askama::Template;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use futures::stream::{self, StreamExt};
use serde_json::json;

use super::DashError;
use super::campaigns::parse_id;
use super::session::Session;
use crate::api::AppState;
use crate::api::contacts::{add_batch, added};
use crate::api::error::ApiError;
use crate::api::extract::parse_json;
use crate::domain::contact::{Contact, ContactBatchInput, MAX_BATCH};
use crate::domain::timezone::TimeZone;
use crate::import::{Columns, ImportReport, Refused, RowOutcome, Rows, send_batch, write_report};
use crate::store::{ContactPage, OrgId};

/// The largest upload: a CSV of a few hundred thousand contacts.
const UPLOAD_LIMIT: usize = 50 * 1024 * 1024;
/// Contacts read per store call while exporting.
const EXPORT_PAGE: u32 = 1000;
/// Report rows shown on the page; all of them are in the downloadable report.
const SHOWN: usize = 20;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/campaigns/{id}/upload", post(upload).layer(DefaultBodyLimit::max(UPLOAD_LIMIT)))
        .route("/campaigns/{id}/export.csv", get(export))
}

// --- Upload ---------------------------------------------------------------------------------------

/// What the upload did, put into the campaign page's `#upload-result` by its script.
#[derive(Template)]
#[template(path = "upload_result.html")]
struct UploadResult {
    report: ImportReport,
    /// Why the upload stopped before the end of the file, if it did.
    error: Option<String>,
    /// `data:text/csv;base64,…` of the rows not created; none when every row was created.
    download: Option<String>,
    shown: usize,
}

impl UploadResult {
    fn new(report: ImportReport, error: Option<String>) -> UploadResult {
        let download = (!report.outcomes.is_empty()).then(|| report_link(&report.outcomes)).flatten();
        UploadResult { report, error, download, shown: SHOWN }
    }

    fn respond(self, status: StatusCode) -> Response {
        match self.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(err) => DashError::Internal(format!("the upload result could not be rendered: {err}")).into_response(),
        }
    }
}

/// The report as a link that needs no server state: the CSV itself, in the link.
fn report_link(outcomes: &[RowOutcome]) -> Option<String> {
    let mut csv = Vec::new();
    write_report(&mut csv, outcomes).ok()?;
    Some(format!("data:text/csv;base64,{}", base64::engine::general_purpose::STANDARD.encode(csv)))
}

impl From<ApiError> for Refused {
    fn from(err: ApiError) -> Refused {
        Refused { status: err.status.as_u16(), field: err.body.field.clone(), message: err.body.message.clone() }
    }
}

/// `POST /campaigns/{id}/upload` (multipart: `file`, `if_duplicate`; the CSRF token comes in
/// the `X-CSRF-Token` header): adds the file's contacts and answers an HTML fragment.
async fn upload(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, DashError> {
    let id = parse_id(&id)?;
    app.store.get_campaign(session.org_id, id).await?.ok_or(DashError::NotFound("campaign"))?;
    let stopped = |message: String, status: StatusCode| Ok(UploadResult::new(ImportReport::default(), Some(message)).respond(status));
    let mut multipart = match multipart {
        Ok(multipart) => multipart,
        Err(rejection) => return stopped(format!("The upload could not be read: {}", rejection.body_text()), rejection.status()),
    };
    let (mut file, mut if_duplicate) = (None, String::from("skip"));
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => return stopped(format!("The upload could not be read: {}", err.body_text()), err.status()),
        };
        match field.name() {
            Some("file") => match field.bytes().await {
                Ok(bytes) => file = Some(bytes),
                Err(err) => return stopped(format!("The file could not be read: {}", err.body_text()), err.status()),
            },
            Some("if_duplicate") => {
                if_duplicate = field.text().await.unwrap_or_default();
            }
            _ => {}
        }
    }
    let Some(file) = file.filter(|bytes| !bytes.is_empty()) else {
        return stopped("Choose a CSV file to upload.".to_owned(), StatusCode::BAD_REQUEST);
    };
    let (report, error) = add_rows(&app, session.org_id, id, file, &if_duplicate).await?;
    let status = match &error {
        Some(_) if report.rows == 0 => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    Ok(UploadResult::new(report, error).respond(status))
}

/// Adds the file's rows batch after batch, as `outbound contacts import` does through HTTP:
/// the counts and report rows, and why it stopped early if it did (a CSV error, a refused
/// batch). A store failure is the page's error.
async fn add_rows(
    app: &AppState,
    org: OrgId,
    campaign_id: i64,
    file: Bytes,
    if_duplicate: &str,
) -> Result<(ImportReport, Option<String>), DashError> {
    let mut rows = match Rows::new(file.as_ref(), Columns::Contacts) {
        Ok(rows) => rows,
        Err(err) => return Ok((ImportReport::default(), Some(format!("{err:#}.")))),
    };
    let mut report = ImportReport::default();
    loop {
        let batch = match rows.next_batch(MAX_BATCH) {
            Ok(batch) if batch.is_empty() => return Ok((report, None)),
            Ok(batch) => batch,
            Err(err) => return Ok((report, Some(format!("The file could not be read further: {err}. The rows before were added.")))),
        };
        let sent = send_batch(batch, |contacts| {
            // The body the API's endpoint takes, read by its parser: the same checks, the same errors.
            let body = json!({ "contacts": contacts, "if_duplicate": if_duplicate });
            async move {
                let outcome = async {
                    let bytes = serde_json::to_vec(&body).map_err(ApiError::internal)?;
                    let input: ContactBatchInput = parse_json(&bytes)?;
                    let outcome = add_batch(app, org, campaign_id, &input.contacts, input.if_duplicate, None).await?;
                    added(&outcome).map(<[_]>::to_vec)
                };
                Ok::<_, Refused>(outcome.await.map_err(Refused::from))
            }
        })
        .await;
        match sent {
            Ok(batch) => report.add(batch),
            Err(refused) if refused.status >= 500 => return Err(DashError::Internal(refused.message)),
            Err(refused) => return Ok((report, Some(format!("The upload stopped: {}", refused.message)))),
        }
    }
}

// --- Export ---------------------------------------------------------------------------------------

/// `GET /campaigns/{id}/export.csv`: every contact with its outcome, streamed page by page.
async fn export(State(app): State<AppState>, session: Session, Path(id): Path<String>) -> Result<Response, DashError> {
    let id = parse_id(&id)?;
    let org = session.org_id;
    let first = app.store.list_contacts(org, id, None, EXPORT_PAGE, 0).await?.ok_or(DashError::NotFound("campaign"))?;
    let zone = first.timezone.clone();
    let header = header_row(&zone);
    // Pages are read oldest first by offset; contacts added meanwhile come at the end.
    let pages = stream::unfold(Export::First(first), move |state| {
        let app = app.clone();
        let zone = zone.clone();
        async move {
            let (page, index) = match state {
                Export::Done => return None,
                Export::First(page) => (page, 0),
                Export::Next(index) => match app.store.list_contacts(org, id, None, EXPORT_PAGE, index).await {
                    Ok(Some(page)) => (page, index),
                    Ok(None) => return None,
                    Err(err) => {
                        tracing::error!(error = %err, "contacts export failed");
                        return Some((Err(std::io::Error::other("the export could not be completed")), Export::Done));
                    }
                },
            };
            if page.contacts.is_empty() {
                return None;
            }
            let next = if page.contacts.len() < EXPORT_PAGE as usize { Export::Done } else { Export::Next(index + 1) };
            Some((csv_rows(&page, &zone).map(Bytes::from), next))
        }
    });
    let body = Body::from_stream(stream::once(async move { header.map(Bytes::from) }).chain(pages));
    let disposition = format!("attachment; filename=\"campaign-{id}-contacts.csv\"");
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)], body).into_response())
}

enum Export {
    First(ContactPage),
    Next(u32),
    Done,
}

fn header_row(zone: &TimeZone) -> std::io::Result<Vec<u8>> {
    let last_call = format!("last_call_at ({})", zone.name());
    let columns =
        ["id", "contact", "name", "f_id", "status", "failed_reason", "call_count", &last_call, "context", "tags", "extracted_data"];
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(columns)?;
    writer.into_inner().map_err(|err| err.into_error())
}

fn csv_rows(page: &ContactPage, zone: &TimeZone) -> std::io::Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for contact in &page.contacts {
        writer.write_record(contact_record(contact, zone))?;
    }
    writer.into_inner().map_err(|err| err.into_error())
}

/// One contact's row: times in the campaign's timezone (named in the header), tags joined with
/// `|` as the importer reads them, `extracted_data` as JSON.
fn contact_record(c: &Contact, zone: &TimeZone) -> [String; 11] {
    [
        c.id.to_string(),
        c.phone.as_str().to_owned(),
        c.name.clone().unwrap_or_default(),
        c.f_id.clone().unwrap_or_default(),
        c.status.as_str().to_owned(),
        c.failed_reason.map_or("", |r| r.as_str()).to_owned(),
        c.call_count.to_string(),
        c.last_call_at.map(|at| at.to_zoned(zone.zone().clone()).strftime("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default(),
        c.context.clone().unwrap_or_default(),
        c.tags.join(&crate::import::TAG_SEPARATOR.to_string()),
        serde_json::Value::Object(c.extracted_data.clone()).to_string(),
    ]
}
