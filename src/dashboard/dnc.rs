//! The organization's do-not-contact list (contract §11, §12.1): the list, newest first, filtered
//! by number and stored channel; a form to add one number; a remove button per entry; each
//! number's history; the opt-out keywords and a form to replace them.
//!
//! Every action is the API's own (`api::dnc::add`, `remove`, `set_keywords`, `normalise`), with
//! the source `dashboard`: a number is read as the API reads it, and a refusal is the API's, shown
//! beside its field with nothing stored. Times are the organization's, shown in UTC.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::session::Session;
use super::settings::{FormErrors, FormFields, refused, render_with, utc};
use super::{Chrome, DashError, PAGE_SIZE, page_count, page_number, render};
use crate::api::AppState;
use crate::api::dnc::{add, normalise, parse_channel, remove, set_keywords};
use crate::domain::contact::{ItemError, PhoneNumber};
use crate::domain::dnc::{
    DncBatchInput, DncChannel, DncEntryInput, DncItemStatus, DncSource, MAX_KEYWORD_CHARS, MAX_KEYWORDS, MAX_REASON_CHARS,
    keywords_or_default,
};
use crate::domain::validation::Field;
use crate::store::{DncEntry, DncFilter, DncOrigin};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dnc", get(list).post(add_entry))
        .route("/dnc/remove", post(remove_entry))
        .route("/dnc/keywords", post(replace_keywords))
        .route("/dnc/{contact}/history", get(history))
}

const CHANNELS: [DncChannel; 3] = [DncChannel::All, DncChannel::PhoneCall, DncChannel::Whatsapp];

fn channel_label(channel: DncChannel) -> &'static str {
    match channel {
        DncChannel::All => "Every channel",
        DncChannel::PhoneCall => "Phone calls",
        DncChannel::Whatsapp => "WhatsApp",
    }
}

/// A number in a path: `+` percent-encoded, as `/dnc/{contact}/history` takes it.
fn history_link(contact: &str) -> String {
    format!("/dnc/{}/history", url::form_urlencoded::byte_serialize(contact.as_bytes()).collect::<String>())
}

fn origin() -> DncOrigin {
    DncOrigin::from(DncSource::Dashboard)
}

fn see_other(path: &str) -> Response {
    Redirect::to(path).into_response()
}

// --- The list page ----------------------------------------------------------------------------

struct Row {
    contact: String,
    channel: &'static str,
    reason: String,
    source: &'static str,
    created: String,
    history: String,
}

impl From<DncEntry> for Row {
    fn from(entry: DncEntry) -> Self {
        Row {
            history: history_link(entry.contact.as_str()),
            contact: entry.contact.into(),
            channel: entry.channel.as_str(),
            reason: entry.reason.unwrap_or_default(),
            source: entry.source.as_str(),
            created: utc(entry.created_at),
        }
    }
}

/// What the add form holds: empty, or as submitted.
struct AddForm {
    contact: String,
    channel: String,
    reason: String,
}

impl Default for AddForm {
    fn default() -> Self {
        AddForm { contact: String::new(), channel: DncChannel::All.as_str().to_owned(), reason: String::new() }
    }
}

/// What a redirect after an action announces (checked before it is shown: the query is anyone's link).
enum Notice {
    Added { contact: String, channel: &'static str, existing: bool },
    Removed { contact: String, channel: &'static str },
    KeywordsSaved,
}

#[derive(Template)]
#[template(path = "dnc.html")]
struct ListPage {
    chrome: Chrome,
    /// `None` when the filter could not be read (its error is shown beside it).
    rows: Option<Vec<Row>>,
    total: i64,
    page: u32,
    pages: u32,
    /// The filter as typed.
    contact: String,
    channel: String,
    filter_errors: FormErrors,
    channels: [DncChannel; 3],
    form: AddForm,
    errors: FormErrors,
    keywords: String,
    /// Whether the organization keeps the default keywords.
    default_keywords: bool,
    keyword_errors: FormErrors,
    notice: Option<Notice>,
    max_reason: usize,
    max_keywords: usize,
    max_keyword_chars: usize,
}

impl ListPage {
    fn channel_label(&self, channel: &DncChannel) -> &'static str {
        channel_label(*channel)
    }

    /// This page with its filters, at page `page`.
    fn link(&self, page: u32) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if !self.contact.is_empty() {
            query.append_pair("contact", &self.contact);
        }
        if !self.channel.is_empty() {
            query.append_pair("channel", &self.channel);
        }
        query.append_pair("page", &page.to_string());
        format!("/dnc?{}", query.finish())
    }
}

#[derive(Deserialize, Default)]
struct ListQuery {
    contact: Option<String>,
    channel: Option<String>,
    page: Option<u32>,
    added: Option<String>,
    removed: Option<String>,
    on: Option<String>,
    existing: Option<String>,
    keywords: Option<String>,
}

impl ListQuery {
    fn notice(&self) -> Option<Notice> {
        if self.keywords.is_some() {
            return Some(Notice::KeywordsSaved);
        }
        let channel = self.on.as_deref().and_then(DncChannel::parse)?.as_str();
        let number = |raw: &Option<String>| raw.clone().and_then(|raw| PhoneNumber::stored(raw).ok()).map(String::from);
        if let Some(contact) = number(&self.added) {
            return Some(Notice::Added { contact, channel, existing: self.existing.is_some() });
        }
        number(&self.removed).map(|contact| Notice::Removed { contact, channel })
    }
}

async fn list(State(app): State<AppState>, session: Session, Query(query): Query<ListQuery>) -> Result<Response, DashError> {
    let notice = query.notice();
    let mut view = list_view(&app, &session, query).await?;
    let status = if view.filter_errors.list.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    view.notice = notice;
    Ok(render_with(status, &view))
}

/// The page with its list as the query filters it (the API's filters, read as the API reads them).
async fn list_view(app: &AppState, session: &Session, query: ListQuery) -> Result<ListPage, DashError> {
    let contact = query.contact.unwrap_or_default().trim().to_owned();
    let channel = query.channel.unwrap_or_default();
    let page = page_number(query.page);
    let filter = async {
        let contact = match contact.as_str() {
            "" => None,
            raw => Some(normalise(app, session.org_id, "contact", raw).await?),
        };
        Ok(DncFilter { contact, channel: parse_channel(Some(channel.as_str()).filter(|c| !c.is_empty()))? })
    };
    let (rows, total, filter_errors) = match filter.await {
        Ok(filter) => {
            let found = app.dnc.list_dnc_entries(session.org_id, &filter, PAGE_SIZE, page - 1).await?;
            (Some(found.entries.into_iter().map(Row::from).collect()), found.total_count, FormErrors::default())
        }
        Err(err) => (None, 0, refused(err)?.1),
    };
    let stored = app.dnc.opt_out_keywords(session.org_id).await?;
    let default_keywords = stored.is_none();
    Ok(ListPage {
        chrome: Chrome::new(session, "dnc"),
        rows,
        total,
        page,
        pages: page_count(total),
        contact,
        channel,
        filter_errors,
        channels: CHANNELS,
        form: AddForm::default(),
        errors: FormErrors::default(),
        keywords: keywords_or_default(stored).join("\n"),
        default_keywords,
        keyword_errors: FormErrors::default(),
        notice: None,
        max_reason: MAX_REASON_CHARS,
        max_keywords: MAX_KEYWORDS,
        max_keyword_chars: MAX_KEYWORD_CHARS,
    })
}

// --- Adding a number --------------------------------------------------------------------------

/// The message beside the number when the API fails the entry.
fn entry_error(error: Option<ItemError>, sent: &str) -> String {
    match error {
        Some(ItemError::MissingContact) => "contact is required: type a phone number".to_owned(),
        _ => format!("contact must be a phone number (E.164, or in the organization's region), got {sent:?}"),
    }
}

/// `POST /dnc`: the API's batch add with this one entry, source `dashboard`.
async fn add_entry(State(app): State<AppState>, session: Session, body: Bytes) -> Result<Response, DashError> {
    let fields = FormFields::parse(&body);
    let form = AddForm {
        contact: fields.get("contact").to_owned(),
        channel: fields.get("channel").to_owned(),
        reason: fields.get("reason").to_owned(),
    };
    let outcome = match parse_channel(Some(form.channel.as_str())) {
        Ok(channel) => {
            let entry = DncEntryInput {
                contact: fields.text("contact").map_or(Field::Absent, |c| Field::Value(c.to_owned())),
                channel,
                reason: fields.text("reason").map(str::to_owned),
            };
            add(&app, session.org_id, &DncBatchInput { entries: vec![entry], region: None }, origin(), None).await
        }
        Err(err) => Err(err),
    };
    let (status, errors) = match outcome {
        Ok(results) => match results.into_iter().next() {
            Some(result) if result.status != DncItemStatus::Failed => {
                let mut query = url::form_urlencoded::Serializer::new(String::new());
                query.append_pair("added", result.contact.as_deref().unwrap_or_default()).append_pair("on", result.channel.as_str());
                if result.status == DncItemStatus::Existing {
                    query.append_pair("existing", "1");
                }
                return Ok(see_other(&format!("/dnc?{}", query.finish())));
            }
            Some(result) => {
                let message = entry_error(result.error, &form.contact);
                (StatusCode::BAD_REQUEST, FormErrors { list: vec![("contact".to_owned(), message)] })
            }
            None => return Err(DashError::Internal("a batch of one entry gave no result".to_owned())),
        },
        Err(err) => {
            // The form is the batch's only entry: its fields are named as the form names them.
            let (status, mut errors) = refused(err)?;
            for (field, message) in &mut errors.list {
                if let Some(name) = field.strip_prefix("entries[0].") {
                    *message = message.replace(field.as_str(), name);
                    *field = name.to_owned();
                }
            }
            (status, errors)
        }
    };
    let mut view = list_view(&app, &session, ListQuery::default()).await?;
    view.form = form;
    view.errors = errors;
    Ok(render_with(status, &view))
}

// --- Removing an entry ------------------------------------------------------------------------

/// `POST /dnc/remove` (`contact`, `channel`, default `all` as in the API): the API's remove, source
/// `dashboard`. An entry stored for every channel is removed as the API's `channel=all` removes:
/// with every entry of the number.
async fn remove_entry(State(app): State<AppState>, session: Session, body: Bytes) -> Result<Response, DashError> {
    let fields = FormFields::parse(&body);
    let channel = parse_channel(fields.text("channel"))?.unwrap_or(DncChannel::All);
    let contact = fields.get("contact");
    remove(&app, session.org_id, contact, channel, origin()).await.map_err(|err| {
        if err.status == StatusCode::NOT_FOUND { DashError::NotFound("do-not-contact entry") } else { DashError::from(err) }
    })?;
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("removed", contact.trim())
        .append_pair("on", channel.as_str())
        .finish();
    Ok(see_other(&format!("/dnc?{query}")))
}

// --- Opt-out keywords -------------------------------------------------------------------------

/// `POST /dnc/keywords`: one keyword per line (a keyword may hold a comma: a reply is matched
/// whole); blank lines are left out. The API's replace, its refusal beside the field.
async fn replace_keywords(State(app): State<AppState>, session: Session, body: Bytes) -> Result<Response, DashError> {
    let fields = FormFields::parse(&body);
    let typed = fields.get("keywords").to_owned();
    let lines: Vec<(usize, String)> =
        typed.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()).map(|(i, line)| (i + 1, line.to_owned())).collect();
    let keywords: Vec<String> = lines.iter().map(|(_, keyword)| keyword.clone()).collect();
    match set_keywords(&app, session.org_id, &keywords).await {
        Ok(_) => Ok(see_other("/dnc?keywords=saved#keywords")),
        Err(err) => {
            let (status, mut errors) = refused(err)?;
            // `keywords[i]` counts the keywords sent; the user counts lines.
            for (field, message) in &mut errors.list {
                let index = field.strip_prefix("keywords[").and_then(|rest| rest.strip_suffix(']')).and_then(|i| i.parse::<usize>().ok());
                if let Some((line, _)) = index.and_then(|i| lines.get(i)) {
                    message.push_str(&format!(" (line {line})"));
                }
            }
            let mut view = list_view(&app, &session, ListQuery::default()).await?;
            view.keywords = typed;
            view.keyword_errors = errors;
            Ok(render_with(status, &view))
        }
    }
}

// --- A number's history -----------------------------------------------------------------------

struct ChangeRow {
    at: String,
    action: &'static str,
    channel: &'static str,
    reason: String,
    source: &'static str,
    key_prefix: String,
}

#[derive(Template)]
#[template(path = "dnc_history.html")]
struct HistoryPage {
    chrome: Chrome,
    contact: String,
    changes: Vec<ChangeRow>,
    /// The channels the number is listed for now.
    listed: Vec<&'static str>,
}

/// `GET /dnc/{contact}/history`: every change of the number's entries, oldest first, as the API's
/// history gives them, and the channels it is listed for now.
async fn history(State(app): State<AppState>, session: Session, Path(contact): Path<String>) -> Result<Response, DashError> {
    let contact = normalise(&app, session.org_id, "contact", &contact).await?;
    let changes = app.dnc.dnc_history(session.org_id, &contact).await?;
    let filter = DncFilter { contact: Some(contact.clone()), channel: None };
    // A number has at most one entry per channel: one page holds them all.
    let listed = app.dnc.list_dnc_entries(session.org_id, &filter, PAGE_SIZE, 0).await?;
    Ok(render(&HistoryPage {
        chrome: Chrome::new(&session, "dnc"),
        contact: contact.into(),
        listed: listed.entries.iter().map(|e| e.channel.as_str()).collect(),
        changes: changes
            .into_iter()
            .map(|c| ChangeRow {
                at: utc(c.at),
                action: c.action.as_str(),
                channel: c.channel.as_str(),
                reason: c.reason.unwrap_or_default(),
                source: c.source.as_str(),
                key_prefix: c.key_prefix.unwrap_or_default(),
            })
            .collect(),
    }))
}
