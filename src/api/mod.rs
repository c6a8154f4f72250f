//! The HTTP API: routes, shared state and the layers every request passes through.
//!
//! Layers, outermost first: request id → trace (JSON log line with the request id) → panic
//! catcher → envelope for errors produced outside handlers → metrics → body limit → routing;
//! `/api/v1.0` routes then pass authentication → per-key rate limit → Idempotency-Key (POST)
//! before their handler.

pub mod agents;
pub mod attempts;
pub mod auth;
pub mod callbacks;
pub mod campaigns;
pub mod contacts;
pub mod dnc;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod integrations;
pub mod openapi;
pub mod ops;
pub mod plan;
pub mod protocol_errors;
pub mod rate_limit;
pub mod read_cache;
pub mod views;
pub mod webhooks;

use std::num::NonZeroU32;
use std::sync::Arc;

use jiff::SignedDuration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clock::Clock;
use crate::domain::attempt::RetrySettings;
use crate::providers::keyring::Keyring;
use crate::store::{CallbackStore, DashboardStore, DncStore, DynStore, Health, IdempotencyStore, KeyStore, TenantStore, WebhookStore};
use crate::webhooks::WebhookSettings;
use error::ApiError;

/// Settings of the API layer (contract §5.6).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Requests per second per API key, burst equal to it; `None` turns the limit off.
    pub rate_limit_rps: Option<NonZeroU32>,
    /// How long Idempotency-Key records are kept.
    pub idempotency_ttl: SignedDuration,
    /// Retry rules applied when providers report outcomes.
    pub retry: RetrySettings,
    /// Webhook delivery (the API checks subscriptions' URLs against `allow_private`).
    pub webhooks: WebhookSettings,
    /// Seals provider credentials (`OUTBOUND_SECRET_KEY` or the key file).
    pub keyring: Arc<Keyring>,
    /// Where providers reach this deployment (`OUTBOUND_PUBLIC_URL`): callback URLs, and the
    /// URL Twilio signs. Empty: `http://` and the address the server is bound to.
    pub public_url: String,
    /// Serve the web dashboard at `/` (`--dashboard off` turns it off).
    pub dashboard: bool,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            rate_limit_rps: NonZeroU32::new(12),
            idempotency_ttl: SignedDuration::from_hours(24),
            retry: RetrySettings::default(),
            webhooks: WebhookSettings::default(),
            keyring: Default::default(),
            public_url: String::new(),
            dashboard: true,
        }
    }
}

/// Shared by every handler and middleware; one `Arc`, so handing it out costs one increment.
#[derive(Clone)]
pub struct AppState(Arc<AppContext>);

/// The store is held in the parts the API may use: the tenant-scoped one for handlers (no
/// method without an organization), and the few that authentication, Idempotency-Keys and
/// provider events need. Key administration and the engine's unscoped reads are not here.
pub struct AppContext {
    pub store: Arc<dyn TenantStore>,
    pub keys: Arc<dyn KeyStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub callbacks: Arc<dyn CallbackStore>,
    pub webhooks: Arc<dyn WebhookStore>,
    pub dashboard: Arc<dyn DashboardStore>,
    pub dnc: Arc<dyn DncStore>,
    pub health: Arc<dyn Health>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Option<PrometheusHandle>,
    pub settings: ApiSettings,
    pub rate_limiter: Option<rate_limit::KeyRateLimiter>,
    /// For the connectors that read provider callbacks (they make no request from here).
    providers_http: reqwest::Client,
    key_touches: auth::KeyTouches,
    running_keys: idempotency::RunningKeys,
    read_cache: read_cache::ReadCache,
}

impl std::ops::Deref for AppState {
    type Target = AppContext;

    fn deref(&self) -> &AppContext {
        &self.0
    }
}

impl AppState {
    /// State with the rate limit (when on) kept in this process.
    pub fn new(store: DynStore, clock: Arc<dyn Clock>, metrics: Option<PrometheusHandle>, settings: ApiSettings) -> Self {
        let rate_limiter = settings.rate_limit_rps.map(|rate| rate_limit::KeyRateLimiter::new(rate, clock.clone()));
        Self::with_rate_limiter(store, clock, metrics, settings, rate_limiter)
    }

    /// State with a given rate limiter (see [`rate_limit::KeyRateLimiter::select`]).
    pub fn with_rate_limiter(
        store: DynStore,
        clock: Arc<dyn Clock>,
        metrics: Option<PrometheusHandle>,
        settings: ApiSettings,
        rate_limiter: Option<rate_limit::KeyRateLimiter>,
    ) -> Self {
        AppState(Arc::new(AppContext {
            keys: store.clone(),
            idempotency: store.clone(),
            callbacks: store.clone(),
            webhooks: store.clone(),
            dashboard: store.clone(),
            dnc: store.clone(),
            health: store.clone(),
            store,
            clock,
            metrics,
            settings,
            rate_limiter,
            providers_http: reqwest::Client::new(),
            key_touches: auth::KeyTouches::default(),
            running_keys: Default::default(),
            read_cache: Default::default(),
        }))
    }
}

/// The versioned API's routes: those that take an API key, those that do not (provider events),
/// and the OpenAPI document generated from both.
fn versioned_api() -> (Router<AppState>, Router<AppState>, serde_json::Value) {
    let (keyed, mut openapi) = keyed_routes();
    let (public, events_doc) =
        OpenApiRouter::new().routes(routes!(callbacks::post_event, callbacks::verify_callback_url)).split_for_parts();
    openapi.merge(events_doc);
    (keyed, public, openapi::document(&openapi))
}

fn keyed_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(campaigns::create_campaign, campaigns::list_campaigns))
        .routes(routes!(campaigns::get_campaign, campaigns::update_campaign))
        .routes(routes!(campaigns::campaign_action))
        .routes(routes!(plan::get_plan))
        .routes(routes!(contacts::add_contacts, contacts::list_contacts))
        .routes(routes!(contacts::get_contact, contacts::delete_contact))
        .routes(routes!(attempts::list_calls))
        .routes(routes!(attempts::list_messages))
        .routes(routes!(agents::create_agent, agents::list_agents))
        .routes(routes!(agents::get_agent))
        .routes(routes!(integrations::create_integration, integrations::list_integrations))
        .routes(routes!(integrations::get_integration, integrations::update_integration))
        .routes(routes!(webhooks::create_webhook, webhooks::list_webhooks))
        .routes(routes!(webhooks::get_webhook, webhooks::update_webhook, webhooks::delete_webhook))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::test_webhook))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::retry_delivery))
        .routes(routes!(dnc::add_entries, dnc::list_entries))
        .routes(routes!(dnc::remove_entries))
        .routes(routes!(dnc::history))
        .routes(routes!(dnc::get_keywords, dnc::put_keywords))
        .split_for_parts()
}

/// The OpenAPI document served at `/api/v1.0/openapi.json`.
pub fn openapi_document() -> serde_json::Value {
    versioned_api().2
}

pub fn router(state: AppState) -> Router {
    let (api, public, openapi) = versioned_api();
    let routes = Arc::new(RouteMethods::new(&openapi));
    let openapi = Bytes::from(serde_json::to_vec(&openapi).unwrap_or_default());
    // route_layer wraps what came before, so the order a request meets is:
    // auth → rate limit → idempotency → handler.
    let api = api
        .route_layer(middleware::from_fn_with_state(state.clone(), idempotency::idempotency))
        .route_layer(middleware::from_fn_with_state(state.clone(), rate_limit::rate_limit))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_api_key))
        // Added after the auth layer: the document is public.
        .route("/openapi.json", get(move || async move { ([(header::CONTENT_TYPE, "application/json")], openapi) }))
        .merge(public);
    let site = if state.settings.dashboard { crate::dashboard::router(state.clone()) } else { Router::new() };
    site.nest("/api/v1.0", api)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT_BYTES))
        .layer(middleware::from_fn(ops::record_metrics))
        .layer(middleware::from_fn_with_state(routes, envelope_other_errors))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<Body>| {
            let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Errors that axum or a layer produce themselves (unknown route, wrong method, body limit, …)
/// come as plain text; give them the contract's envelope too.
async fn envelope_other_errors(State(routes): State<Arc<RouteMethods>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).map(HeaderValue::as_bytes).unwrap_or_default();
    // JSON is the API's own envelope already; HTML is a dashboard page.
    let is_answer = content_type.starts_with(b"application/json") || content_type.starts_with(b"text/html");
    if !(status.is_client_error() || status.is_server_error()) || is_answer {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::new(status, "NOT_FOUND", "no such route; the API lives under /api/v1.0"),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = routes.allowed(&path).unwrap_or_default();
            let mut reply =
                ApiError::new(status, "METHOD_NOT_ALLOWED", format!("method not allowed on this route; allowed: {allow}")).into_response();
            if let Ok(value) = HeaderValue::from_str(&allow) {
                reply.headers_mut().insert(header::ALLOW, value);
            }
            return reply;
        }
        StatusCode::PAYLOAD_TOO_LARGE => extract::payload_too_large(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::new(status, "UNSUPPORTED_MEDIA_TYPE", "the request body must be JSON with Content-Type: application/json")
        }
        s if s.is_server_error() => ApiError::internal(format!("a layer answered {s}")),
        _ => ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "the request could not be understood"),
    };
    error.into_response()
}

/// The methods of every route, for the `Allow` header of a 405: axum's own is lost on the way
/// through route layers. Read from the OpenAPI document (the versioned API) plus the routes
/// outside it, so it cannot drift from the routes served.
struct RouteMethods(Vec<(Vec<String>, String)>);

impl RouteMethods {
    fn new(openapi: &serde_json::Value) -> Self {
        let documented = openapi.get("paths").and_then(serde_json::Value::as_object).into_iter().flatten();
        let mut routes: Vec<(String, Vec<&str>)> = documented
            .map(|(path, item)| {
                let methods = ["GET", "POST", "PUT", "PATCH", "DELETE"];
                let served = methods.into_iter().filter(|m| item.get(m.to_ascii_lowercase()).is_some()).collect();
                (format!("/api/v1.0{path}"), served)
            })
            .collect();
        for path in ["/api/v1.0/openapi.json", "/healthz", "/readyz", "/metrics"] {
            routes.push((path.to_owned(), vec!["GET"]));
        }
        let table = routes
            .into_iter()
            .map(|(path, mut methods)| {
                // axum answers HEAD wherever it answers GET.
                if methods.contains(&"GET") {
                    methods.insert(1, "HEAD");
                }
                (path.split('/').map(str::to_owned).collect(), methods.join(","))
            })
            .collect();
        RouteMethods(table)
    }

    /// The `Allow` value of the route `path` takes: the template that matches with the most
    /// literal segments wins, as in axum's router (`/campaigns/1/contacts` is not an action).
    fn allowed(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        self.0
            .iter()
            .filter(|(template, _)| {
                template.len() == segments.len()
                    && template.iter().zip(&segments).all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()))
            })
            .max_by_key(|(template, _)| template.iter().filter(|t| !t.starts_with('{')).count())
            .map(|(_, methods)| methods.clone())
    }
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail =
        panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("unknown panic");
    ApiError::internal(format!("handler panicked: {detail}")).into_response()
}
