//! Providers (contract §5.3, §10, PROVIDERS.md): the outside systems attempts are handed to, and
//! whose callbacks report what happened. Each provider is one module implementing [`Connector`];
//! the engine and the callback route speak only to the trait.

pub mod keyring;
pub mod retell;
pub mod simulator;
pub mod twilio;
pub mod vapi;
pub mod webhook;
pub mod whatsapp_cloud;

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::{HeaderMap, Method};
use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use sha2::Sha256;

use crate::domain::attempt::AttemptEvent;
use crate::domain::campaign::Campaign;
use crate::domain::credentials::SecretKey;
use crate::domain::integration::{MAX_URL_CHARS, ProviderConfig};
use crate::store::DispatchContact;

/// `ended_reason` of an attempt whose provider may or may not have acted (a timeout or a 5xx
/// after the request was written): closed, never re-sent (PROVIDERS.md §1).
pub const UNKNOWN_REASON: &str = "provider_unknown";
/// `ended_reason` of an attempt whose integration's credentials cannot be opened with this
/// server's key.
pub const UNREADABLE_REASON: &str = "credentials_unreadable";

/// One attempt on its way to a provider.
pub struct Outgoing<'a> {
    pub attempt_id: &'a str,
    /// Hand-offs of this attempt already tried (0 on the first).
    pub tries: i64,
    pub iteration: i64,
    pub campaign: &'a Campaign,
    pub contact: &'a DispatchContact,
    /// The campaign's `template`, or `template_alt` on a retry (WhatsApp).
    pub template: Option<&'a str>,
    /// `{OUTBOUND_PUBLIC_URL}/api/v1.0/integrations/{id}/events`.
    pub callback_url: &'a str,
    /// The integration's signing secret (base64), for the generic signed format (§5.4).
    pub signing_secret: &'a str,
}

/// What a provider said to one hand-off.
#[derive(Debug, Clone, PartialEq)]
pub enum Handoff {
    /// The provider has the attempt, under its own id when it gives one.
    Accepted { provider_id: Option<String> },
    /// The provider surely did not act (connection refused before the request was written, HTTP
    /// 429, a documented throttling code): the same attempt is handed off again after `after`,
    /// or after the exponential back-off (1 s doubling, at most 5 min) when `None`.
    Retry { after: Option<SignedDuration> },
    /// The provider refused this attempt: it fails and follows the failed-retry policy.
    Failed { reason: String },
    /// The number is invalid or unreachable: the contact is `failed` at once, never retried.
    InvalidNumber { reason: String },
    /// The provider may have acted (a timeout or a 5xx after the request was written): the
    /// attempt is closed failed with [`UNKNOWN_REASON`], never re-sent.
    Unknown,
    /// The integration itself is broken (credentials, account, sender): its dispatch stops until
    /// its config is patched; the attempt is put back, to be handed off again unchanged.
    Broken { reason: String },
    /// The outcome is known at once (the simulator): these events are applied.
    Settled(Vec<AttemptEvent>),
}

/// A callback request as the provider made it.
pub struct Callback<'a> {
    pub method: &'a Method,
    /// The URL the provider called, as it knows it: `OUTBOUND_PUBLIC_URL`, the path and the raw
    /// query string (Twilio signs it).
    pub url: &'a str,
    /// The query parameters, decoded, in order.
    pub query: &'a [(String, String)],
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub now: Timestamp,
}

/// An event read from a provider's callback. The attempt is found by `provider_id` first, then
/// by `event.attempt_id` (which may be empty when the callback carries none).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderEvent {
    pub provider_id: Option<String>,
    pub event: AttemptEvent,
    /// Set on a provisional final outcome: it becomes the attempt's outcome only if no final
    /// event comes within this wait (Retell's `call_ended` before `call_analyzed`, Vapi's
    /// `status-update` `ended` before its `end-of-call-report`). It is kept with the attempt
    /// meanwhile, so a restart loses nothing.
    pub provisional: Option<SignedDuration>,
}

/// A text a contact sent back (WhatsApp), kept for the opt-out rule (§12.1).
#[derive(Debug, Clone, PartialEq)]
pub struct InboundText {
    /// The sender's number as the provider gives it (WhatsApp: digits without `+`).
    pub from: String,
    pub text: String,
    /// The provider id of the message it replies to (`context.id`), when quoted.
    pub reply_to: Option<String>,
    pub at: Option<Timestamp>,
}

/// What a verified callback asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum CallbackReply {
    /// Events to apply (possibly none: a callback about something Outbound does not track),
    /// texts received, and why the integration itself is broken when the callback shows it (an
    /// account out of credit): its dispatch then stops as after such a hand-off.
    Events { events: Vec<ProviderEvent>, inbound: Vec<InboundText>, broken: Option<String> },
    /// A verification handshake, answered `200 text/plain` with this text (WhatsApp's GET).
    Challenge(String),
}

/// Why a callback was refused; nothing changes.
#[derive(Debug, Clone, PartialEq)]
pub enum CallbackError {
    /// Missing or wrong signature → 401.
    BadSignature,
    /// A failed verification handshake → 403.
    Forbidden,
    /// Signed, but not a callback this provider sends → 400 with this message.
    Invalid(String),
}

impl CallbackError {
    pub fn invalid(message: &str) -> CallbackError {
        CallbackError::Invalid(message.to_owned())
    }
}

/// One provider, configured for one integration with its credentials opened.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Hands one attempt to the provider. Never re-sends by itself.
    async fn hand_off(&self, attempt: &Outgoing<'_>) -> Handoff;

    /// Whether the provider dedupes a repeated hand-off of one attempt, so that one left in doubt
    /// by a crash may be sent again. Real providers do not: theirs is closed with
    /// [`UNKNOWN_REASON`] instead (PROVIDERS.md §1).
    fn dedupes_attempts(&self) -> bool {
        false
    }

    /// Verifies a callback in the provider's own format and reads it. `None` when the provider
    /// has no format of its own (only the generic signed one of §5.4 is taken).
    fn callback(&self, _request: &Callback<'_>) -> Option<Result<CallbackReply, CallbackError>> {
        None
    }

    /// Asks the provider what became of an attempt whose deadline passed with no final event
    /// (Vapi does not retry its webhooks). `None` when the provider cannot tell or the call has
    /// not ended: then the attempt's provisional outcome, or the timeout, closes it.
    async fn reconcile(&self, _provider_id: &str, _attempt_id: &str) -> Option<Reconciled> {
        None
    }
}

/// What a provider said of a call whose deadline passed: its final event, and why the
/// integration itself is broken when the call shows it (an account out of credit).
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciled {
    pub event: AttemptEvent,
    pub broken: Option<String>,
}

/// The connector of an integration: its config with credentials opened under `key`. Fails with
/// [`UNREADABLE_REASON`] when a credential cannot be opened (no key, or another key sealed it).
pub fn connect(config: &ProviderConfig, key: Option<&SecretKey>, http: &reqwest::Client) -> Result<Arc<dyn Connector>, &'static str> {
    Ok(match config {
        ProviderConfig::Simulator(config) => Arc::new(simulator::Simulator::new(config.clone())),
        ProviderConfig::Webhook(config) => Arc::new(webhook::Webhook::new(config.clone(), http.clone())),
        ProviderConfig::Twilio(config) => {
            let auth_token = config.auth_token.reveal(key).ok_or(UNREADABLE_REASON)?;
            Arc::new(twilio::Twilio::new(config.clone(), auth_token, http.clone()))
        }
        ProviderConfig::WhatsappCloud(config) => {
            let access_token = config.access_token.reveal(key).ok_or(UNREADABLE_REASON)?;
            let app_secret = config.app_secret.reveal(key).ok_or(UNREADABLE_REASON)?;
            Arc::new(whatsapp_cloud::WhatsappCloud::new(config.clone(), access_token, app_secret, http.clone()))
        }
        ProviderConfig::Vapi(config) => {
            let api_key = config.api_key.reveal(key).ok_or(UNREADABLE_REASON)?;
            let server_secret = config.server_secret.reveal(key).ok_or(UNREADABLE_REASON)?;
            Arc::new(vapi::Vapi::new(config.clone(), api_key, server_secret, http.clone()))
        }
        ProviderConfig::Retell(config) => {
            let api_key = config.api_key.reveal(key).ok_or(UNREADABLE_REASON)?;
            Arc::new(retell::Retell::new(config.clone(), api_key, http.clone()))
        }
    })
}

/// What a failed request means for re-sending: a connection that never opened did not reach
/// the provider (re-send); anything later may have (unknown).
pub fn request_error(error: &reqwest::Error) -> Handoff {
    if error.is_connect() { Handoff::Retry { after: None } } else { Handoff::Unknown }
}

/// What a provider's answer means, read by `classify` from its status, headers and body. A body
/// cut short is classified as an empty one (the status still tells).
pub async fn answer(
    sent: Result<reqwest::Response, reqwest::Error>,
    classify: fn(reqwest::StatusCode, &reqwest::header::HeaderMap, &[u8]) -> Handoff,
) -> Handoff {
    match sent {
        Ok(response) => {
            let (status, headers) = (response.status(), response.headers().clone());
            let body = response.bytes().await.unwrap_or_default();
            classify(status, &headers, &body)
        }
        Err(error) => request_error(&error),
    }
}

/// The `Retry-After` header in seconds, when given.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<SignedDuration> {
    let seconds: i64 = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(SignedDuration::from_secs(seconds.clamp(0, 3600)))
}

/// The most of a provider's own message kept in an integration's health reason or an attempt's
/// failure reason.
pub const MAX_PROVIDER_MESSAGE_CHARS: usize = 500;

/// Bytes from hex digits of either case; `None` for an empty, odd or non-hex text.
pub fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    let digit = |byte: u8| char::from(byte).to_digit(16);
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes().chunks_exact(2).map(|pair| u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()).collect()
}

/// Whether two secrets are equal, compared in constant time: both are MACed under one key and
/// the tags compared with `verify_slice`, so neither their contents nor their lengths show in
/// the timing.
pub fn same_secret(given: &str, expected: &str) -> bool {
    let tag = |text: &str| {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"outbound secret comparison").expect("HMAC takes a key of any length");
        mac.update(text.as_bytes());
        mac
    };
    tag(given).verify_slice(&tag(expected).finalize().into_bytes()).is_ok()
}

/// Whether a URL a provider reports (a recording's) is one to keep: http(s), at most
/// [`MAX_URL_CHARS`] characters, no control characters.
pub fn is_web_url(url: &str) -> bool {
    url.chars().count() <= MAX_URL_CHARS
        && !url.contains(char::is_control)
        && url::Url::parse(url).is_ok_and(|url| matches!(url.scheme(), "http" | "https"))
}
