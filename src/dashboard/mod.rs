//! The web dashboard (contract §11): server-rendered pages on the same listener as the API.
//!
//! Every page and form goes through the same domain rules and store calls as the API (one rule
//! path): a form is turned into the API's own input type and checked by the same functions, and
//! a refusal is the API's error, shown beside the field it names. Templates (askama, checked at
//! compile time) live in `templates/`, static files in `assets/`.

pub mod assets;
pub mod campaign_forms;
pub mod campaigns;
pub mod charts;
pub mod contacts_csv;
pub mod dnc;
pub mod session;
pub mod settings;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tower_http::compression::CompressionLayer;

use crate::api::AppState;
use crate::api::contacts::MAX_PAGE_INDEX;
use crate::api::error::ApiError;
use crate::store::{NewSession, StoreError};
use session::Session;

/// The dashboard's routes, merged beside `/api/v1.0` when it is on.
pub fn router(state: AppState) -> Router<AppState> {
    let signed_in = Router::new()
        .route("/", get(|| async { Redirect::to("/campaigns") }))
        .route("/sign-out", post(sign_out))
        .merge(campaigns::routes())
        .merge(campaign_forms::routes())
        .merge(contacts_csv::routes())
        .merge(settings::routes())
        .merge(dnc::routes())
        .route_layer(middleware::from_fn_with_state(state, session::require_session));
    // Pages and assets are text that gzip shrinks to a third; the API stays as it is.
    Router::new()
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/assets/{name}", get(assets::serve))
        .merge(signed_in)
        .layer(CompressionLayer::new())
}

/// What every signed-in page shows around its content.
pub struct Chrome {
    pub organization: String,
    pub csrf: String,
    /// The section of the navigation this page belongs to.
    pub section: &'static str,
    pub css: &'static str,
    pub app_js: &'static str,
    pub htmx_js: &'static str,
}

impl Chrome {
    pub fn new(session: &Session, section: &'static str) -> Chrome {
        let urls = &*assets::URLS;
        Chrome {
            organization: session.organization.clone(),
            csrf: session.csrf.clone(),
            section,
            css: &urls.css,
            app_js: &urls.app_js,
            htmx_js: &urls.htmx_js,
        }
    }
}

/// Rows on a page of the dashboard's paged lists.
pub const PAGE_SIZE: u32 = 25;

/// The pages a list of `total` rows fills (at least one), as deep as the API pages
/// (`pageIndex` 25,000).
pub fn page_count(total: i64) -> u32 {
    let size = i64::from(PAGE_SIZE);
    u32::try_from((total.max(1) + size - 1) / size).unwrap_or(u32::MAX).min(MAX_PAGE_INDEX + 1)
}

/// The page a query asks for (counted from 1, the store counts from 0), within those reachable.
pub fn page_number(asked: Option<u32>) -> u32 {
    asked.unwrap_or(1).clamp(1, MAX_PAGE_INDEX + 1)
}

/// A page rendered, or the error page.
pub fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(err) => DashError::Internal(format!("a page could not be rendered: {err}")).into_response(),
    }
}

/// What can go wrong on a page; each is shown as a page of its own (never a stack trace).
#[derive(Debug)]
pub enum DashError {
    SignedOut,
    NotFound(&'static str),
    Csrf,
    Invalid(String),
    Internal(String),
}

impl From<StoreError> for DashError {
    fn from(err: StoreError) -> Self {
        DashError::Internal(err.to_string())
    }
}

impl From<ApiError> for DashError {
    fn from(err: ApiError) -> Self {
        match err.status {
            StatusCode::NOT_FOUND => DashError::NotFound("page"),
            status if status.is_server_error() => DashError::Internal(err.body.message),
            _ => DashError::Invalid(err.body.message),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    css: &'a str,
    title: &'a str,
    message: String,
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            DashError::SignedOut => return Redirect::to("/sign-in").into_response(),
            DashError::NotFound(what) => (StatusCode::NOT_FOUND, "Not found", format!("This {what} does not exist in your organization.")),
            DashError::Csrf => (
                StatusCode::FORBIDDEN,
                "Request refused",
                "This form was not sent from this dashboard (cross-site request), or its page is too old. Go back, reload and try again."
                    .to_owned(),
            ),
            DashError::Invalid(message) => (StatusCode::BAD_REQUEST, "Not possible", message),
            DashError::Internal(detail) => {
                tracing::error!(error = %detail, "dashboard page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The server could not show this page; it has been logged.".to_owned(),
                )
            }
        };
        let page = ErrorPage { css: &assets::URLS.css, title, message };
        let html = page.render().unwrap_or_else(|_| title.to_owned());
        (status, Html(html)).into_response()
    }
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage<'a> {
    css: &'a str,
    next: String,
    error: Option<&'a str>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn sign_in_page(Query(query): Query<NextQuery>) -> Response {
    let next = session::local_target(query.next.as_deref()).to_owned();
    render(&SignInPage { css: &assets::URLS.css, next, error: None })
}

#[derive(Deserialize)]
struct SignInForm {
    key: String,
    next: Option<String>,
}

/// Checks the key as the API does, then opens a session for its organization.
async fn sign_in(State(app): State<AppState>, headers: HeaderMap, Form(form): Form<SignInForm>) -> Result<Response, DashError> {
    session::check_origin(&headers)?;
    let next = session::local_target(form.next.as_deref()).to_owned();
    let tenant = match crate::api::auth::check_key(&app, form.key.trim()).await {
        Ok(tenant) => tenant,
        Err(err) if err.status == StatusCode::UNAUTHORIZED => {
            let page = SignInPage { css: &assets::URLS.css, next, error: Some("That API key is not valid (unknown or revoked).") };
            let mut response = render(&page);
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            return Ok(response);
        }
        Err(err) => return Err(err.into()),
    };
    let (id, id_hash) = session::new_id();
    let new = NewSession { id_hash, org_id: tenant.org_id, key_id: tenant.key_id, created_at: app.clock.now() };
    app.dashboard.create_session(&new).await?;
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().insert(header::SET_COOKIE, session::set_cookie(&app, Some(&id)));
    Ok(response)
}

async fn sign_out(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, DashError> {
    if let Some(id) = session::cookie_value(&headers) {
        app.dashboard.delete_session(&session::hash_id(id)).await?;
    }
    let mut response = Redirect::to("/sign-in").into_response();
    response.headers_mut().insert(header::SET_COOKIE, session::set_cookie(&app, None));
    Ok(response)
}

/// A week schedule in one line: `Mon 09:00–18:00, Tue …`; inactive days left out.
pub fn schedule_summary(schedule: &crate::domain::schedule::WeekSchedule) -> String {
    const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let days: Vec<String> =
        NAMES.iter().zip(schedule.days()).filter(|(_, d)| d.active).map(|(name, d)| format!("{name} {}–{}", d.start, d.stop)).collect();
    if days.is_empty() { "no active day".to_owned() } else { days.join(", ") }
}
