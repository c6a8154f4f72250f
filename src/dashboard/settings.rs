//! The organization's settings pages (contract §11): agents, integrations with their provider
//! config forms, webhooks with their deliveries, and the organization's API keys.
//!
//! Every form goes through the API's own operation (`api::agents::create`,
//! `api::integrations::create` / `update`, `api::webhooks::…`), so a page allows exactly what the
//! API allows; a refusal is the API's error, shown beside the field its `field` names, with what
//! the user typed kept. Secrets (an integration's or a webhook's signing secret, a new API key)
//! are shown once, on the page that answers their creation, which browsers are told not to keep.
//! Times on these pages are the organization's, so they are shown in UTC and say so.

mod integrations;
mod webhooks;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde::Deserialize;

use super::session::Session;
use super::{Chrome, DashError, render};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::domain::agent::AgentInput;
use crate::domain::ids::{NewApiKey, normalize_key_prefix};
use crate::domain::validation::Field;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/agents", get(agents_page).post(create_agent))
        .route("/integrations", get(integrations::list).post(integrations::create))
        .route("/integrations/{id}", get(integrations::page).post(integrations::update))
        .route("/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/webhooks/{id}", get(webhooks::page))
        .route("/webhooks/{id}/test", post(webhooks::send_test))
        .route("/webhooks/{id}/delete", post(webhooks::delete))
        .route("/webhooks/{id}/deliveries/{delivery_id}/retry", post(webhooks::retry))
        .route("/keys", get(keys_page).post(create_key))
        .route("/keys/{prefix}/revoke", post(revoke_key))
}

// --- What the forms share --------------------------------------------------------------------

/// A submitted urlencoded form, every pair in order: checkbox groups repeat their name, which
/// the usual struct extractors cannot take. Reading it never fails (a broken pair is dropped).
pub(crate) struct FormFields(Vec<(String, String)>);

impl FormFields {
    pub(crate) fn parse(body: &[u8]) -> FormFields {
        FormFields(url::form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `name`, or `""`.
    pub(crate) fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
    }

    /// The first value of `name` trimmed, `None` when blank.
    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        Some(self.get(name).trim()).filter(|v| !v.is_empty())
    }

    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }
}

/// An API refusal laid out for a form: every violation with the field it names (`""` when it
/// names none), listed at the top of the form and shown beside its field.
#[derive(Default)]
pub(crate) struct FormErrors {
    pub(crate) list: Vec<(String, String)>,
}

impl FormErrors {
    fn from_api(err: &ApiError) -> FormErrors {
        let list = match &err.body.details {
            Some(details) => details.iter().map(|d| (d.field.clone(), d.message.clone())).collect(),
            None => vec![(err.body.field.clone().unwrap_or_default(), err.body.message.clone())],
        };
        FormErrors { list }
    }

    /// The first message about `field` or one of its items (`events` takes `events[1]`).
    pub(crate) fn of(&self, field: &str) -> Option<&str> {
        self.list.iter().find(|(f, _)| names(f, field)).map(|(_, m)| m.as_str())
    }
}

/// Whether an error's `field` is `field` itself or one of its items.
pub(crate) fn names(error_field: &str, field: &str) -> bool {
    error_field.strip_prefix(field).is_some_and(|rest| rest.is_empty() || rest.starts_with('['))
}

/// A refusal to show on the form (with the API's status), or a server error for the error page.
pub(crate) fn refused(err: ApiError) -> Result<(StatusCode, FormErrors), DashError> {
    if err.status.is_server_error() { Err(DashError::from(err)) } else { Ok((err.status, FormErrors::from_api(&err))) }
}

/// A page rendered with this status.
pub(crate) fn render_with(status: StatusCode, template: &impl Template) -> Response {
    let mut response = render(template);
    if response.status().is_success() {
        *response.status_mut() = status;
    }
    response
}

/// A page that shows a secret: browsers and proxies must not keep it.
pub(crate) fn secret_page(template: &impl Template) -> Response {
    let mut response = render(template);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A time as these pages show it: UTC, labelled.
pub(crate) fn utc(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

fn see_other(path: &str) -> Response {
    Redirect::to(path).into_response()
}

// --- Agents -----------------------------------------------------------------------------------

struct AgentRow {
    id: String,
    name: String,
    created: String,
}

#[derive(Template)]
#[template(path = "agents.html")]
struct AgentsPage {
    chrome: Chrome,
    agents: Vec<AgentRow>,
    /// The name typed, kept when the form is refused.
    name: String,
    errors: FormErrors,
    created: Option<String>,
}

#[derive(Deserialize)]
struct CreatedQuery {
    created: Option<String>,
}

async fn agents_page(State(app): State<AppState>, session: Session, Query(query): Query<CreatedQuery>) -> Result<Response, DashError> {
    // Only an id of this organization's agent is announced (the query is anyone's link).
    let created = query.created.and_then(|id| uuid::Uuid::parse_str(&id).ok());
    agents_response(&app, &session, String::new(), FormErrors::default(), StatusCode::OK, created).await
}

async fn agents_response(
    app: &AppState,
    session: &Session,
    name: String,
    errors: FormErrors,
    status: StatusCode,
    created: Option<uuid::Uuid>,
) -> Result<Response, DashError> {
    let agents = app.store.list_agents(session.org_id).await?;
    let created = created.and_then(|id| agents.iter().find(|a| a.id == id)).map(|a| a.name.clone());
    let agents = agents.into_iter().map(|a| AgentRow { id: a.id.to_string(), name: a.name, created: utc(a.created_at) }).collect();
    Ok(render_with(status, &AgentsPage { chrome: Chrome::new(session, "agents"), agents, name, errors, created }))
}

/// `POST /agents`: the API's create, with the name typed.
async fn create_agent(State(app): State<AppState>, session: Session, body: Bytes) -> Result<Response, DashError> {
    let form = FormFields::parse(&body);
    let name = form.get("name").to_owned();
    let input = AgentInput { name: Field::Value(name.clone()) };
    match crate::api::agents::create(&app, session.org_id, &input, None).await {
        Ok(agent) => Ok(see_other(&format!("/agents?created={}", agent.id))),
        Err(err) => {
            let (status, errors) = refused(err)?;
            agents_response(&app, &session, name, errors, status, None).await
        }
    }
}

// --- API keys ---------------------------------------------------------------------------------

struct KeyRow {
    prefix: String,
    created: String,
    last_used: String,
    revoked: Option<String>,
    /// The key this session was opened with: revoking it signs this browser out.
    current: bool,
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    chrome: Chrome,
    keys: Vec<KeyRow>,
    /// A key just created: shown on this page only.
    new_key: Option<String>,
    revoked: Option<String>,
}

#[derive(Deserialize)]
struct RevokedQuery {
    revoked: Option<String>,
}

async fn keys_page(State(app): State<AppState>, session: Session, Query(query): Query<RevokedQuery>) -> Result<Response, DashError> {
    let revoked = query.revoked.as_deref().and_then(normalize_key_prefix).map(str::to_owned);
    Ok(render(&keys_view(&app, &session, None, revoked).await?))
}

async fn keys_view(app: &AppState, session: &Session, new_key: Option<String>, revoked: Option<String>) -> Result<KeysPage, DashError> {
    let mut keys = Vec::new();
    for info in app.dashboard.list_org_api_keys(session.org_id).await? {
        // The list names keys by prefix; the session knows its key by id.
        let current = app.keys.find_api_key(&info.prefix).await?.is_some_and(|record| record.id == session.key_id);
        keys.push(KeyRow {
            created: utc(info.created_at),
            last_used: info.last_used_at.map_or_else(|| "never".to_owned(), utc),
            revoked: info.revoked_at.map(utc),
            prefix: info.prefix,
            current,
        });
    }
    let revoked = revoked.filter(|prefix| keys.iter().any(|k| &k.prefix == prefix && k.revoked.is_some()));
    Ok(KeysPage { chrome: Chrome::new(session, "keys"), keys, new_key, revoked })
}

/// `POST /keys`: a new key of the organization, shown once on the page that answers.
async fn create_key(State(app): State<AppState>, session: Session) -> Result<Response, DashError> {
    let key = NewApiKey::generate();
    app.dashboard.create_org_api_key(session.org_id, &key, app.clock.now()).await?;
    Ok(secret_page(&keys_view(&app, &session, Some(key.key), None).await?))
}

/// `POST /keys/{prefix}/revoke`: at once; the session opened with that key ends at its next
/// request (the session layer checks).
async fn revoke_key(State(app): State<AppState>, session: Session, Path(prefix): Path<String>) -> Result<Response, DashError> {
    let prefix = normalize_key_prefix(&prefix).ok_or(DashError::NotFound("API key"))?;
    if !app.dashboard.revoke_org_api_key(session.org_id, prefix, app.clock.now()).await? {
        return Err(DashError::NotFound("API key"));
    }
    Ok(see_other(&format!("/keys?revoked={prefix}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_field_or_its_items() {
        assert!(names("events", "events"));
        assert!(names("events[2]", "events"));
        assert!(names("config.parameters[0]", "config.parameters"));
        assert!(!names("config.url", "config"));
        assert!(!names("eventsx", "events"));
    }

    #[test]
    fn forms_keep_every_value_of_a_repeated_name() {
        let form = FormFields::parse(b"events=on_call_end&events=webhook.test&url=+https%3A%2F%2Fx.example+&csrf=t");
        assert_eq!(form.all("events"), ["on_call_end", "webhook.test"]);
        assert_eq!(form.text("url"), Some("https://x.example"));
        assert_eq!(form.text("description"), None);
        assert!(form.has("csrf") && !form.has("enabled"));
    }
}
