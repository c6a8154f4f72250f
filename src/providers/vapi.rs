//! `vapi` (PROVIDERS.md §4; reference providers.md §3, §5): calls placed by a Vapi assistant with
//! `POST /call`, their progress and outcome read from Vapi's server messages (`status-update`,
//! `end-of-call-report`). Vapi does not retry its messages, so an attempt whose report never came
//! is asked about with `GET /call/{id}` when its deadline passes.

use std::time::Duration;

use async_trait::async_trait;
use axum::http::{HeaderMap, Method, StatusCode};
use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::{
    Callback, CallbackError, CallbackReply, Connector, Handoff, MAX_PROVIDER_MESSAGE_CHARS, Outgoing, ProviderEvent, Reconciled, hex_bytes,
    is_web_url, retry_after, same_secret,
};
use crate::domain::attempt::{AnsweredBy, AttemptEvent, AttemptStatus, Speaker, TranscriptEntry};
use crate::domain::contact::check_extracted_data;
use crate::domain::integration::VapiConfig;
use crate::store::DispatchContact;

/// How long a `status-update` `ended` outcome waits for its `end-of-call-report` before the
/// engine asks Vapi (PROVIDERS.md §4).
pub const REPORT_WAIT: SignedDuration = SignedDuration::from_mins(5);
/// How far an HMAC-signed message's `x-timestamp` may be from now, either way.
const TIMESTAMP_TOLERANCE: SignedDuration = SignedDuration::from_mins(5);
/// An `x-timestamp` above this is read as milliseconds (10^11 seconds is the year 5138).
const MILLISECONDS_ABOVE: i64 = 100_000_000_000;
/// Vapi's limit on `name` and `customer.name` (reference §3.2).
const MAX_NAME_CHARS: usize = 40;
/// The server messages Outbound asks for: progress, and the final report.
const SERVER_MESSAGES: [&str; 2] = ["status-update", "end-of-call-report"];

pub struct Vapi {
    config: VapiConfig,
    api_key: String,
    server_secret: String,
    http: reqwest::Client,
}

impl Vapi {
    pub fn new(config: VapiConfig, api_key: String, server_secret: String, http: reqwest::Client) -> Vapi {
        Vapi { config, api_key, server_secret, http }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.config.timeout_ms))
    }

    /// Posts one call to Vapi and reads the answer. Apart from [`Connector::hand_off`] so that it
    /// can be tested without a campaign.
    async fn create_call(&self, body: &Value) -> Handoff {
        let url = format!("{}/call", self.config.api_base.trim_end_matches('/'));
        let sent = self.http.post(url).timeout(self.timeout()).bearer_auth(&self.api_key).json(body).send().await;
        super::answer(sent, classify).await
    }

    /// `GET /call/{id}`: the Call, when Vapi answers with one.
    async fn fetch_call(&self, provider_id: &str) -> Option<Value> {
        let mut url = url::Url::parse(&format!("{}/call", self.config.api_base.trim_end_matches('/'))).ok()?;
        url.path_segments_mut().ok()?.push(provider_id);
        let response = match self.http.get(url).timeout(self.timeout()).bearer_auth(&self.api_key).send().await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(provider_id, %error, "vapi: GET /call failed");
                return None;
            }
        };
        if !response.status().is_success() {
            tracing::warn!(provider_id, status = response.status().as_u16(), "vapi: GET /call was refused");
            return None;
        }
        response.json().await.ok()
    }

    /// Whether a server message carries one of the credentials this integration accepts
    /// (reference §3.7): `X-Vapi-Secret`, a Bearer token, or (with `server_hmac`) a fresh
    /// `x-signature`.
    fn authenticated(&self, headers: &HeaderMap, body: &[u8], now: Timestamp) -> bool {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim);
        if self.server_secret.is_empty() {
            return false;
        }
        if header("x-vapi-secret").is_some_and(|given| same_secret(given, &self.server_secret)) {
            return true;
        }
        let bearer = header("authorization").and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        if bearer.is_some_and(|token| same_secret(token, &self.server_secret)) {
            return true;
        }
        self.config.server_hmac
            && match (header("x-timestamp"), header("x-signature")) {
                (Some(timestamp), Some(signature)) => hmac_matches(&self.server_secret, timestamp, body, signature, now),
                _ => false,
            }
    }

    /// A server message (reference §3.5), once authenticated.
    fn read_callback(&self, request: &Callback<'_>) -> Result<CallbackReply, CallbackError> {
        if request.method != Method::POST {
            return Err(CallbackError::invalid("a Vapi server message is a POST"));
        }
        if !self.authenticated(request.headers, request.body, request.now) {
            return Err(CallbackError::BadSignature);
        }
        let body: Value =
            serde_json::from_slice(request.body).map_err(|error| CallbackError::invalid(&format!("not a Vapi server message: {error}")))?;
        let message = body
            .get("message")
            .filter(|message| message.is_object())
            .ok_or_else(|| CallbackError::invalid("a Vapi server message has a message object"))?;
        let kind = message.get("type").and_then(Value::as_str).ok_or_else(|| CallbackError::invalid("a Vapi server message has a type"))?;
        let call = message.get("call");
        let provider_id = call.and_then(|call| text(call, "/id")).map(str::to_owned);
        let attempt_id = call.map(attempt_id_of).unwrap_or_default();
        let report = Report { primary: message, fallback: call };
        let (event, provisional, broken) = match kind {
            "status-update" => match message.get("status").and_then(Value::as_str) {
                Some("ringing") => (Some(progress(attempt_id, AttemptStatus::Ringing)), None, None),
                Some("in-progress") => (Some(progress(attempt_id, AttemptStatus::InProgress)), None, None),
                Some("ended") => {
                    let (event, broken) = final_event(attempt_id, &report, self.config.success_key.as_deref());
                    (Some(event), Some(REPORT_WAIT), broken)
                }
                _ => (None, None, None),
            },
            "end-of-call-report" => {
                let (event, broken) = final_event(attempt_id, &report, self.config.success_key.as_deref());
                (Some(AttemptEvent { final_report: true, ..event }), None, broken)
            }
            _ => (None, None, None),
        };
        let events = event.map(|event| ProviderEvent { provider_id, event, provisional }).into_iter().collect();
        Ok(CallbackReply::Events { events, inbound: vec![], broken })
    }
}

#[async_trait]
impl Connector for Vapi {
    async fn hand_off(&self, attempt: &Outgoing<'_>) -> Handoff {
        let body =
            call_body(&self.config, &self.server_secret, attempt.attempt_id, attempt.campaign.id, attempt.contact, attempt.callback_url);
        self.create_call(&body).await
    }

    fn callback(&self, request: &Callback<'_>) -> Option<Result<CallbackReply, CallbackError>> {
        Some(self.read_callback(request))
    }

    /// The Call as Vapi keeps it: once `ended`, it carries what the lost report would have.
    async fn reconcile(&self, provider_id: &str, attempt_id: &str) -> Option<Reconciled> {
        let call = self.fetch_call(provider_id).await?;
        if call.get("status").and_then(Value::as_str) != Some("ended") {
            return None;
        }
        let (event, broken) =
            final_event(attempt_id.to_owned(), &Report { primary: &call, fallback: None }, self.config.success_key.as_deref());
        Some(Reconciled { event, broken })
    }
}

/// The body of `POST /call` for one attempt (reference §3.2). The server URL and its secret ride
/// on the call itself, so that Vapi reports to this integration whatever the assistant's own
/// server settings are, and authenticates its messages even where a stored credential would not
/// apply to a server URL given through the API (reference §3.7).
pub fn call_body(
    config: &VapiConfig,
    server_secret: &str,
    attempt_id: &str,
    campaign_id: i64,
    contact: &DispatchContact,
    callback_url: &str,
) -> Value {
    // The contact's own fields win over extracted data of the same name.
    let mut variables: Map<String, Value> = contact.extracted_data.clone();
    let fields = [
        ("name", contact.name.as_deref()),
        ("contact", Some(contact.contact.as_str())),
        ("context", contact.context.as_deref()),
        ("f_id", contact.f_id.as_deref()),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            variables.insert(key.to_owned(), Value::String(value.to_owned()));
        }
    }
    let mut customer = json!({ "number": contact.contact.as_str() });
    if let Some(name) = contact.name.as_deref().map(str::trim).filter(|name| !name.is_empty()) {
        customer["name"] = Value::String(name.chars().take(MAX_NAME_CHARS).collect());
    }
    json!({
        "assistantId": config.assistant_id,
        "phoneNumberId": config.phone_number_id,
        "customer": customer,
        "name": attempt_id.chars().take(MAX_NAME_CHARS).collect::<String>(),
        "assistantOverrides": {
            "variableValues": variables,
            "metadata": { "attempt_id": attempt_id, "campaign_id": campaign_id },
            "server": { "url": callback_url, "headers": { "X-Vapi-Secret": server_secret } },
            "serverMessages": SERVER_MESSAGES,
        },
    })
}

/// What Vapi's answer to `POST /call` means (reference §3.3, §3.4; PROVIDERS.md §1).
fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Handoff {
    let answer: Value = serde_json::from_slice(body).unwrap_or_default();
    if status.is_success() {
        // `subscriptionLimits.concurrencyBlocked` is not a refusal: whether such a call fails or
        // waits is unconfirmed, and one that fails reports
        // `call.start.error-subscription-concurrency-limit-reached`, retried then as throttled;
        // sending it again now could call the person twice.
        return match text(&answer, "/id") {
            Some(id) => Handoff::Accepted { provider_id: Some(id.to_owned()) },
            None => Handoff::Unknown,
        };
    }
    let label = format!("vapi_http_{}", status.as_u16());
    let message = error_message(&answer);
    let with_message = |fallback: &str| match &message {
        Some(message) => format!("{label}: {message}"),
        None if fallback.is_empty() => label.clone(),
        None => format!("{label}: {fallback}"),
    };
    match status {
        StatusCode::TOO_MANY_REQUESTS => Handoff::Retry { after: retry_after(headers) },
        StatusCode::BAD_REQUEST if message.as_deref().is_some_and(mentions_a_limit) => Handoff::Retry { after: retry_after(headers) },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Handoff::Broken { reason: with_message("authentication failed") },
        StatusCode::PAYMENT_REQUIRED => Handoff::Broken { reason: with_message("payment required") },
        // `POST /call` itself not found: `api_base` is wrong.
        StatusCode::NOT_FOUND => Handoff::Broken { reason: with_message("no /call at this api_base") },
        _ if status.is_client_error() => Handoff::Failed { reason: with_message("") },
        // A 5xx, or anything else, after the request was written: Vapi may have placed the call.
        _ => Handoff::Unknown,
    }
}

/// The text of an error answer. Its shape is unconfirmed (reference §3.4): NestJS's
/// `{"message": "…" | ["…"], "error": "Bad Request", "statusCode": 400}` is read, cut to
/// [`MAX_PROVIDER_MESSAGE_CHARS`].
fn error_message(answer: &Value) -> Option<String> {
    let mut parts: Vec<&str> = match answer.get("message") {
        Some(Value::String(message)) => vec![message.as_str()],
        Some(Value::Array(messages)) => messages.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    parts.extend(answer.get("error").and_then(Value::as_str));
    let joined = parts.iter().map(|part| part.trim()).filter(|part| !part.is_empty()).collect::<Vec<_>>().join("; ");
    let cleaned: String = joined.chars().filter(|c| !c.is_control()).take(MAX_PROVIDER_MESSAGE_CHARS).collect();
    Some(cleaned).filter(|message| !message.is_empty())
}

/// Whether a refusal says a limit stopped the call (concurrency, daily number limit): retried.
fn mentions_a_limit(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("concurrency") || message.contains("limit")
}

/// The hex `x-signature` of Vapi's default HMAC credential (reference §3.7): HMAC-SHA256 keyed
/// with the secret over `{x-timestamp}.{raw body}`.
pub fn hmac_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    hmac_of(secret, timestamp, body).finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect()
}

fn hmac_of(secret: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Whether `signature` (hex, either case, `sha256=` tolerated) signs `body` at `timestamp`, and
/// `timestamp` is within [`TIMESTAMP_TOLERANCE`] of `now`. Compared in constant time.
fn hmac_matches(secret: &str, timestamp: &str, body: &[u8], signature: &str, now: Timestamp) -> bool {
    let fresh = signed_at(timestamp).is_some_and(|at| now.duration_since(at).abs() <= TIMESTAMP_TOLERANCE);
    let signature = signature.trim();
    let hex = signature.get(..7).filter(|prefix| prefix.eq_ignore_ascii_case("sha256=")).map_or(signature, |_| &signature[7..]);
    let Some(claimed) = hex_bytes(hex) else { return false };
    fresh && hmac_of(secret, timestamp, body).verify_slice(&claimed).is_ok()
}

/// The instant of an `x-timestamp`, in seconds or milliseconds since the epoch (its unit is
/// unconfirmed: reference §3.7).
fn signed_at(timestamp: &str) -> Option<Timestamp> {
    let number: i64 = timestamp.trim().parse().ok()?;
    if number > MILLISECONDS_ABOVE { Timestamp::from_millisecond(number).ok() } else { Timestamp::from_second(number).ok() }
}

/// A non-empty string at `pointer` in `value`.
fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str).map(str::trim).filter(|text| !text.is_empty())
}

/// The attempt id Outbound sent with the call: `assistantOverrides.metadata.attempt_id`, echoed
/// in the Call; its `name` (also the attempt id) when the metadata did not come back.
fn attempt_id_of(call: &Value) -> String {
    text(call, "/assistantOverrides/metadata/attempt_id")
        .or_else(|| text(call, "/name").filter(|name| name.starts_with("cll_")))
        .unwrap_or_default()
        .to_owned()
}

/// An event of `status` with nothing else known.
fn progress(attempt_id: String, status: AttemptStatus) -> AttemptEvent {
    AttemptEvent { status, ended_by: None, ended_reason: None, ..AttemptEvent::failed(attempt_id, "") }
}

/// Where a call's outcome is read: the `end-of-call-report` (or `status-update`) message with
/// its `call` behind it, or a Call alone (from `GET /call/{id}`). Both carry `endedReason`,
/// `startedAt`, `endedAt`, `analysis` and `artifact`; the message's own fields win.
struct Report<'a> {
    primary: &'a Value,
    fallback: Option<&'a Value>,
}

impl<'a> Report<'a> {
    fn get(&self, pointer: &str) -> Option<&'a Value> {
        let found = |value: &'a Value| value.pointer(pointer).filter(|found| !found.is_null());
        found(self.primary).or_else(|| self.fallback.and_then(found))
    }

    fn text(&self, pointer: &str) -> Option<&'a str> {
        self.get(pointer).and_then(Value::as_str).map(str::trim).filter(|text| !text.is_empty())
    }

    fn time(&self, pointer: &str) -> Option<Timestamp> {
        self.text(pointer)?.parse().ok()
    }
}

/// What an `endedReason` means (reference §3.6, §5), by rows evaluated top-down.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Outcome {
    status: AttemptStatus,
    answered_by: Option<AnsweredBy>,
    invalid_number: bool,
    /// The call was never placed for lack of capacity: tried again without counting.
    throttled: bool,
    /// The account cannot place calls: the integration stops dispatching, for this reason.
    account: Option<&'static str>,
}

impl Outcome {
    const fn of(status: AttemptStatus) -> Outcome {
        Outcome { status, answered_by: None, invalid_number: false, throttled: false, account: None }
    }
}

/// Normal ends of a call a person took part in.
const HUMAN_ENDS: [&str; 9] = [
    "assistant-said-end-call-phrase",
    "assistant-forwarded-call",
    "exceeded-max-duration",
    "silence-timed-out",
    "call.in-progress.twilio-completed-call",
    "call.in-progress.sip-completed-call",
    "vonage-completed",
    // A hook ran while a connected call ended (`call.ending.hook-executed-say`, `-transfer`).
    "call.ending.hook-executed-say",
    "call.ending.hook-executed-transfer",
];

/// Known failures (the reference's failed row and the enum's other errors): these follow the
/// failed-retry policy, logged only when the value is unknown.
const FAILED_PREFIXES: [&str; 12] = [
    "call.start.error-",
    "call-start-error-",
    "call.in-progress.error-",
    "call.ringing.",
    "call.forwarding.",
    "pipeline-error-",
    "assistant-not-",
    "assistant-request-",
    "twilio-",
    "vonage-",
    "phone-call-provider-",
    "customer-did-not-give-",
];
const FAILED: [&str; 5] = ["worker-shutdown", "assistant-join-timed-out", "manually-canceled", "scheduled-call-deleted", "call-deleted"];

const SIP_FAULT: &str = "call.in-progress.error-providerfault-outbound-sip-";

fn outcome(reason: &str) -> Outcome {
    use AttemptStatus::*;
    let prefixed = |prefix: &str| reason.starts_with(prefix);
    let human = prefixed("customer-ended-call") || prefixed("assistant-ended-call") || HUMAN_ENDS.contains(&reason);
    if human {
        Outcome { answered_by: Some(AnsweredBy::Human), ..Outcome::of(Ended) }
    } else if reason == "voicemail" {
        Outcome { answered_by: Some(AnsweredBy::Machine), ..Outcome::of(Ended) }
    } else if reason == "customer-busy" || prefixed(&format!("{SIP_FAULT}503-")) {
        Outcome::of(Busy)
    } else if reason == "customer-did-not-answer" || prefixed(&format!("{SIP_FAULT}408-")) || prefixed(&format!("{SIP_FAULT}480-")) {
        Outcome::of(NoAnswer)
    } else if reason == "twilio-reported-customer-misdialed" {
        Outcome { invalid_number: true, ..Outcome::of(Failed) }
    } else if reason == "call.start.error-subscription-concurrency-limit-reached"
        || reason == "call.start.error-vapi-number-outbound-daily-limit"
    {
        Outcome { throttled: true, ..Outcome::of(Failed) }
    } else if reason == "call.start.error-subscription-frozen" {
        Outcome { throttled: true, account: Some("the Vapi subscription is frozen"), ..Outcome::of(Failed) }
    } else if reason == "call.start.error-subscription-insufficient-credits" {
        Outcome { throttled: true, account: Some("the Vapi account has insufficient credits"), ..Outcome::of(Failed) }
    } else {
        if !(FAILED_PREFIXES.iter().any(|prefix| prefixed(prefix)) || FAILED.contains(&reason)) {
            tracing::warn!(ended_reason = reason, "vapi: unknown endedReason, taken as failed");
        }
        Outcome::of(Failed)
    }
}

/// Who ended a call: the customer, the assistant, or the system for other connected calls
/// (normal ends, voicemail, faults while the call was in progress); nobody for calls that never
/// connected.
fn ended_by(reason: &str, outcome: &Outcome) -> Option<&'static str> {
    let connected = match outcome.status {
        AttemptStatus::Ended => true,
        AttemptStatus::Failed => {
            reason.starts_with("call.in-progress.error-")
                && !reason.starts_with(SIP_FAULT)
                && !reason.contains("failed-to-connect")
                && !reason.contains("never-connected")
        }
        _ => false,
    };
    if !connected {
        None
    } else if reason.starts_with("customer-") {
        Some("user")
    } else if reason.starts_with("assistant-") {
        Some("agent")
    } else {
        Some("system")
    }
}

/// The final event of a call from its report or Call (reference §3.5, §3.8), and why the
/// integration is broken when the reason says so.
fn final_event(attempt_id: String, report: &Report<'_>, success_key: Option<&str>) -> (AttemptEvent, Option<String>) {
    let reason = report.text("/endedReason");
    let outcome = match reason {
        Some(reason) => outcome(reason),
        None => {
            tracing::warn!(attempt_id, "vapi: an ended call without an endedReason, taken as failed");
            Outcome::of(AttemptStatus::Failed)
        }
    };
    let (started_at, ended_at) = (report.time("/startedAt"), report.time("/endedAt"));
    let duration = match (started_at, ended_at) {
        (Some(started), Some(ended)) if ended >= started => Some(ended.duration_since(started).as_secs_f64().round() as i64),
        _ => None,
    };
    let human = outcome.status == AttemptStatus::Ended && outcome.answered_by == Some(AnsweredBy::Human);
    let structured = report.get("/analysis/structuredData").and_then(Value::as_object);
    let converted = human
        && match success_key {
            Some(key) => structured.and_then(|data| data.get(key)).is_some_and(is_true),
            None => report.get("/analysis/successEvaluation").is_some_and(is_true),
        };
    let event = AttemptEvent {
        attempt_id,
        status: outcome.status,
        answered_by: outcome.answered_by,
        started_at,
        ended_at,
        duration,
        billed_duration: duration,
        ended_by: reason.and_then(|reason| ended_by(reason, &outcome)).map(str::to_owned),
        ended_reason: reason.map(str::to_owned),
        converted,
        extracted_data: extracted_data(report.text("/analysis/summary"), structured),
        tags: None,
        recording_url: recording_url(report),
        transcript: transcript(report, started_at.or(ended_at)),
        invalid_number: outcome.invalid_number,
        throttled: outcome.throttled,
        final_report: false,
        suppressed: false,
        opt_out: false,
    };
    let broken = outcome.account.map(|why| format!("vapi: {why} ({})", reason.unwrap_or_default()));
    (event, broken)
}

/// `true`, or the string `"true"` (Vapi's PassFail rubric gives a string).
fn is_true(value: &Value) -> bool {
    match value {
        Value::Bool(value) => *value,
        Value::String(text) => text.trim().eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// The summary under `summary`, the structured data merged over it. Data too large or deep to
/// keep is dropped (logged); the summary alone is kept then.
fn extracted_data(summary: Option<&str>, structured: Option<&Map<String, Value>>) -> Option<Map<String, Value>> {
    let mut data = Map::new();
    if let Some(summary) = summary {
        data.insert("summary".to_owned(), Value::String(summary.to_owned()));
    }
    let summary_only = data.clone();
    data.extend(structured.into_iter().flat_map(|structured| structured.clone()));
    let kept = match check_extracted_data("analysis.structuredData", &data) {
        Ok(()) => data,
        Err(why) => {
            tracing::warn!(%why, "vapi: the call's structured data is not kept");
            summary_only
        }
    };
    Some(kept).filter(|data| !data.is_empty() && check_extracted_data("analysis.summary", data).is_ok())
}

/// The recording: `artifact.recordingUrl`, or the mono recording's combined URL, or the Call's
/// older top-level `recordingUrl`; an http(s) URL only.
fn recording_url(report: &Report<'_>) -> Option<String> {
    ["/artifact/recordingUrl", "/artifact/recording/mono/combinedUrl", "/recordingUrl"]
        .into_iter()
        .filter_map(|pointer| report.text(pointer))
        .find(|url| is_web_url(url))
        .map(str::to_owned)
}

/// The conversation from `artifact.messages` (bot and user lines; system and tool messages
/// skipped), or else from the text `artifact.transcript` (`AI:` / `User:` lines, all stamped
/// `at`).
fn transcript(report: &Report<'_>, at: Option<Timestamp>) -> Option<Vec<TranscriptEntry>> {
    let speaker = |role: &str| match role {
        "bot" | "assistant" => Some(Speaker::Assistant),
        "user" => Some(Speaker::User),
        _ => None,
    };
    if let Some(messages) = report.get("/artifact/messages").and_then(Value::as_array).filter(|messages| !messages.is_empty()) {
        let entries: Vec<TranscriptEntry> = messages
            .iter()
            .filter_map(|message| {
                let sent_by = speaker(message.get("role")?.as_str()?)?;
                let content = message.get("message")?.as_str()?.trim();
                let from_start = || {
                    let seconds = message.get("secondsFromStart")?.as_f64()?;
                    at?.checked_add(SignedDuration::try_from_secs_f64(seconds).ok()?).ok()
                };
                let sent_at = message.get("time").and_then(Value::as_f64).and_then(|ms| Timestamp::from_millisecond(ms as i64).ok());
                Some(TranscriptEntry { sent_by, sent_at: sent_at.or_else(from_start)?, content: content.to_owned() })
                    .filter(|entry| !entry.content.is_empty())
            })
            .collect();
        return Some(entries).filter(|entries| !entries.is_empty());
    }
    let at = at?;
    let entries: Vec<TranscriptEntry> = report
        .text("/artifact/transcript")?
        .lines()
        .filter_map(|line| {
            let (role, content) = line.split_once(':')?;
            let sent_by = match role.trim().to_ascii_lowercase().as_str() {
                "ai" | "bot" | "assistant" => Speaker::Assistant,
                "user" | "customer" => Speaker::User,
                _ => return None,
            };
            Some(TranscriptEntry { sent_by, sent_at: at, content: content.trim().to_owned() }).filter(|entry| !entry.content.is_empty())
        })
        .collect();
    Some(entries).filter(|entries| !entries.is_empty())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::domain::contact::PhoneNumber;

    const SECRET: &str = "vapi_secret_123";
    const CALLBACK_URL: &str = "https://outbound.example/api/v1.0/integrations/int_1/events";

    fn config(extra: Value) -> VapiConfig {
        let mut config = json!({ "assistant_id": "asst_1", "phone_number_id": "pn_1" });
        if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
            config.extend(extra);
        }
        serde_json::from_value(config).expect("a vapi config")
    }

    fn vapi(extra: Value) -> Vapi {
        Vapi::new(config(extra), "key_abc".to_owned(), SECRET.to_owned(), reqwest::Client::new())
    }

    fn contact() -> DispatchContact {
        let extracted_data: Map<String, Value> =
            serde_json::from_value(json!({ "order_id": "ORD-9271", "total": 12.5, "name": "from data" })).expect("an object");
        DispatchContact {
            id: 7,
            f_id: Some("F-1".to_owned()),
            name: Some("Asha Rao".to_owned()),
            contact: PhoneNumber::stored("+14155550100".to_owned()).expect("E.164"),
            context: None,
            extracted_data,
            tags: Vec::new(),
        }
    }

    // --- Hand-off ---

    #[test]
    fn the_call_body_carries_every_field() {
        let body = call_body(&config(json!({})), SECRET, "cll_1", 7, &contact(), CALLBACK_URL);
        assert_eq!(
            body,
            json!({
                "assistantId": "asst_1",
                "phoneNumberId": "pn_1",
                "customer": { "number": "+14155550100", "name": "Asha Rao" },
                "name": "cll_1",
                "assistantOverrides": {
                    "variableValues": { "name": "Asha Rao", "contact": "+14155550100", "f_id": "F-1", "order_id": "ORD-9271", "total": 12.5 },
                    "metadata": { "attempt_id": "cll_1", "campaign_id": 7 },
                    "server": { "url": CALLBACK_URL, "headers": { "X-Vapi-Secret": SECRET } },
                    "serverMessages": ["status-update", "end-of-call-report"],
                },
            })
        );
    }

    #[test]
    fn names_are_cut_to_forty_characters_and_a_missing_name_is_left_out() {
        let mut long = contact();
        long.name = Some(format!("  {}ñandú  ", "x".repeat(38)));
        let id = format!("cll_{}", "a".repeat(50));
        let body = call_body(&config(json!({})), SECRET, &id, 1, &long, CALLBACK_URL);
        assert_eq!(body["customer"]["name"], format!("{}ña", "x".repeat(38)));
        assert_eq!(body["name"].as_str().map(|name| name.chars().count()), Some(40));
        assert_eq!(body["assistantOverrides"]["metadata"]["attempt_id"], id.as_str(), "the metadata keeps the whole id");
        for name in [None, Some(" ".to_owned())] {
            let mut nameless = contact();
            nameless.name = name;
            nameless.extracted_data.clear();
            let body = call_body(&config(json!({})), SECRET, "cll_1", 1, &nameless, CALLBACK_URL);
            assert_eq!(body["customer"], json!({ "number": "+14155550100" }));
            assert_eq!(body["assistantOverrides"]["variableValues"].get("name").is_some(), nameless.name.is_some());
        }
    }

    #[tokio::test]
    async fn create_call_posts_json_with_the_bearer_key() {
        use wiremock::matchers::{body_json, header, method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        let body = call_body(&config(json!({})), SECRET, "cll_1", 7, &contact(), CALLBACK_URL);
        Mock::given(method("POST"))
            .and(path("/call"))
            .and(header("authorization", "Bearer key_abc"))
            .and(header("content-type", "application/json"))
            .and(body_json(&body))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": "019a9046", "status": "queued" })))
            .expect(1)
            .mount(&server)
            .await;
        let vapi = vapi(json!({ "api_base": format!("{}/", server.uri()) }));
        assert_eq!(vapi.create_call(&body).await, Handoff::Accepted { provider_id: Some("019a9046".to_owned()) });
    }

    #[tokio::test]
    async fn create_call_timing_out_is_unknown_and_a_closed_port_is_retried() {
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::method("POST"))
            .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_millis(1000)))
            .mount(&server)
            .await;
        let slow = vapi(json!({ "api_base": server.uri(), "timeout_ms": 100 }));
        assert_eq!(slow.create_call(&json!({})).await, Handoff::Unknown);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let closed = format!("http://{}", listener.local_addr().expect("an address"));
        drop(listener);
        assert_eq!(vapi(json!({ "api_base": closed })).create_call(&json!({})).await, Handoff::Retry { after: None });
    }

    fn answer(status: u16, body: Value) -> Handoff {
        answer_with(status, &HeaderMap::new(), body)
    }

    fn answer_with(status: u16, headers: &HeaderMap, body: Value) -> Handoff {
        classify(StatusCode::from_u16(status).expect("a status"), headers, body.to_string().as_bytes())
    }

    fn nest(status: u16, message: Value) -> Handoff {
        answer(status, json!({ "message": message, "error": "Bad Request", "statusCode": status }))
    }

    fn retry_after_7() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        headers
    }

    #[test]
    fn classify_a_created_call() {
        let created = json!({ "id": "019a9046-121e", "orgId": "org", "status": "queued" });
        assert_eq!(answer(201, created), Handoff::Accepted { provider_id: Some("019a9046-121e".to_owned()) });
        // A call blocked by the concurrency limit is Vapi's to fail (then reported, and retried
        // as throttled) or to queue: never sent twice.
        let blocked = json!({ "id": "019a", "subscriptionLimits": { "concurrencyBlocked": true, "remainingConcurrentCalls": 0 } });
        assert_eq!(answer(201, blocked), Handoff::Accepted { provider_id: Some("019a".to_owned()) });
        assert_eq!(answer(200, json!({ "status": "queued" })), Handoff::Unknown);
        assert_eq!(answer(201, json!({ "id": "" })), Handoff::Unknown);
        assert_eq!(classify(StatusCode::CREATED, &HeaderMap::new(), b"<html>"), Handoff::Unknown);
    }

    #[test]
    fn classify_limits_and_rate_limits_as_retries() {
        assert_eq!(nest(400, json!("Concurrency limit reached")), Handoff::Retry { after: None });
        assert_eq!(nest(400, json!(["Outbound daily LIMIT reached for this number"])), Handoff::Retry { after: None });
        assert_eq!(answer(400, json!({ "error": "over the concurrency cap" })), Handoff::Retry { after: None });
        assert_eq!(
            answer_with(400, &retry_after_7(), json!({ "message": "limit" })),
            Handoff::Retry { after: Some(SignedDuration::from_secs(7)) }
        );
        assert_eq!(answer_with(429, &retry_after_7(), json!({})), Handoff::Retry { after: Some(SignedDuration::from_secs(7)) });
        assert_eq!(classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), b""), Handoff::Retry { after: None });
    }

    #[test]
    fn classify_other_refusals_as_failures_with_vapis_message() {
        assert_eq!(
            nest(400, json!(["customer.number must be a valid phone number in the E.164 format"])),
            Handoff::Failed {
                reason: "vapi_http_400: customer.number must be a valid phone number in the E.164 format; Bad Request".to_owned()
            }
        );
        assert_eq!(classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), b"nope"), Handoff::Failed { reason: "vapi_http_400".to_owned() });
        assert_eq!(
            answer(422, json!({ "message": "x".repeat(MAX_PROVIDER_MESSAGE_CHARS + 1) })),
            Handoff::Failed { reason: format!("vapi_http_422: {}", "x".repeat(MAX_PROVIDER_MESSAGE_CHARS)) }
        );
    }

    #[test]
    fn classify_account_and_configuration_answers_as_a_broken_integration() {
        assert_eq!(
            answer(
                401,
                json!({ "message": "Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa." })
            ),
            Handoff::Broken {
                reason: "vapi_http_401: Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa."
                    .to_owned()
            }
        );
        assert_eq!(answer(401, json!({})), Handoff::Broken { reason: "vapi_http_401: authentication failed".to_owned() });
        assert_eq!(
            classify(StatusCode::FORBIDDEN, &HeaderMap::new(), b""),
            Handoff::Broken { reason: "vapi_http_403: authentication failed".to_owned() }
        );
        assert_eq!(answer(402, json!({ "message": "Wallet empty" })), Handoff::Broken { reason: "vapi_http_402: Wallet empty".to_owned() });
        assert_eq!(answer(404, json!({})), Handoff::Broken { reason: "vapi_http_404: no /call at this api_base".to_owned() });
    }

    #[test]
    fn classify_server_errors_as_unknown() {
        assert_eq!(nest(500, json!("Internal server error")), Handoff::Unknown);
        assert_eq!(nest(503, json!("concurrency limit")), Handoff::Unknown, "a 5xx may have placed the call");
        assert_eq!(classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b""), Handoff::Unknown);
    }

    // --- Authentication ---

    const VECTOR_BODY: &str = r#"{"message":{"type":"status-update","status":"ended"}}"#;
    const VECTOR_TIMESTAMP: &str = "1703302428";
    const VECTOR_SIGNATURE: &str = "40773e2271677bea144c6604d5eba702958e6f8d9c848a05b8f3f194dc2529a8";

    fn at_second(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("a timestamp")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).expect("a header value"));
        }
        headers
    }

    fn deliver_at(vapi: &Vapi, headers: &HeaderMap, body: &[u8], now: Timestamp) -> Result<CallbackReply, CallbackError> {
        let callback = Callback { method: &Method::POST, url: CALLBACK_URL, query: &[], headers, body, now };
        vapi.callback(&callback).expect("Vapi has its own callback format")
    }

    fn deliver(vapi: &Vapi, headers: &HeaderMap, body: &[u8]) -> Result<CallbackReply, CallbackError> {
        deliver_at(vapi, headers, body, at_second(1_763_719_290))
    }

    #[test]
    fn the_hmac_is_the_reference_vector() {
        assert_eq!(hmac_signature(SECRET, VECTOR_TIMESTAMP, VECTOR_BODY.as_bytes()), VECTOR_SIGNATURE);
    }

    #[test]
    fn an_hmac_signature_is_taken_fresh_in_seconds_or_milliseconds() {
        let vapi = vapi(json!({ "server_hmac": true }));
        let body = VECTOR_BODY.as_bytes();
        let signed = |timestamp: &str, signature: &str| headers(&[("x-timestamp", timestamp), ("x-signature", signature)]);
        let seconds = signed(VECTOR_TIMESTAMP, VECTOR_SIGNATURE);
        let sent = at_second(1_703_302_428);
        for now in [sent, at_second(1_703_302_428 + 300), at_second(1_703_302_428 - 300)] {
            assert!(deliver_at(&vapi, &seconds, body, now).is_ok(), "{now}");
        }
        for stale in [at_second(1_703_302_428 + 301), at_second(1_703_302_428 - 301)] {
            assert_eq!(deliver_at(&vapi, &seconds, body, stale), Err(CallbackError::BadSignature), "{stale}");
        }
        // The same instant in milliseconds, signed over its own text.
        let millis = "1703302428500";
        let in_millis = signed(millis, &hmac_signature(SECRET, millis, body));
        assert!(deliver_at(&vapi, &in_millis, body, sent.checked_add(SignedDuration::from_mins(5)).expect("later")).is_ok());
        let late = sent.checked_add(SignedDuration::from_millis(300_501)).expect("later");
        assert_eq!(deliver_at(&vapi, &in_millis, body, late), Err(CallbackError::BadSignature));
        // Prefixed and upper case.
        assert!(deliver_at(&vapi, &signed(VECTOR_TIMESTAMP, &format!("sha256={VECTOR_SIGNATURE}")), body, sent).is_ok());
        assert!(deliver_at(&vapi, &signed(VECTOR_TIMESTAMP, &VECTOR_SIGNATURE.to_uppercase()), body, sent).is_ok());
    }

    #[test]
    fn a_bad_hmac_signature_is_refused() {
        let hmac = vapi(json!({ "server_hmac": true }));
        let body = VECTOR_BODY.as_bytes();
        let sent = at_second(1_703_302_428);
        let mut wrong = VECTOR_SIGNATURE.to_owned();
        wrong.replace_range(0..1, "5");
        for (timestamp, signature) in [
            (VECTOR_TIMESTAMP, wrong.as_str()),
            (VECTOR_TIMESTAMP, &VECTOR_SIGNATURE[..62]),
            (VECTOR_TIMESTAMP, ""),
            (VECTOR_TIMESTAMP, "sha1=40773e2271677bea144c6604d5eba702958e6f8d9c848a05b8f3f194dc2529a8"),
            ("1703302429", VECTOR_SIGNATURE),
            ("not a number", VECTOR_SIGNATURE),
        ] {
            let signed = headers(&[("x-timestamp", timestamp), ("x-signature", signature)]);
            assert_eq!(deliver_at(&hmac, &signed, body, sent), Err(CallbackError::BadSignature), "{timestamp} {signature}");
        }
        let tampered = VECTOR_BODY.replace("ended", "ringing");
        let signed = headers(&[("x-timestamp", VECTOR_TIMESTAMP), ("x-signature", VECTOR_SIGNATURE)]);
        assert_eq!(deliver_at(&hmac, &signed, tampered.as_bytes(), sent), Err(CallbackError::BadSignature));
        assert_eq!(deliver_at(&hmac, &headers(&[("x-signature", VECTOR_SIGNATURE)]), body, sent), Err(CallbackError::BadSignature));
        // Without server_hmac, a good signature is no credential.
        assert_eq!(deliver_at(&vapi(json!({})), &signed, body, sent), Err(CallbackError::BadSignature));
    }

    #[test]
    fn the_shared_secret_is_taken_in_x_vapi_secret_or_as_a_bearer_token() {
        let vapi = vapi(json!({}));
        let body = VECTOR_BODY.as_bytes();
        for good in [
            headers(&[("x-vapi-secret", SECRET)]),
            headers(&[("X-Vapi-Secret", &format!(" {SECRET} "))]),
            headers(&[("authorization", &format!("Bearer {SECRET}"))]),
            headers(&[("authorization", &format!("bearer {SECRET}"))]),
            headers(&[("x-vapi-secret", "wrong"), ("authorization", &format!("Bearer {SECRET}"))]),
        ] {
            assert!(deliver(&vapi, &good, body).is_ok(), "{good:?}");
        }
        for bad in [
            HeaderMap::new(),
            headers(&[("x-vapi-secret", "vapi_secret_12")]),
            headers(&[("x-vapi-secret", "vapi_secret_1234")]),
            headers(&[("x-vapi-secret", "")]),
            headers(&[("authorization", SECRET)]),
            headers(&[("authorization", &format!("Basic {SECRET}"))]),
            headers(&[("authorization", "Bearer nope")]),
        ] {
            assert_eq!(deliver(&vapi, &bad, body), Err(CallbackError::BadSignature), "{bad:?}");
        }
        let no_secret = Vapi::new(config(json!({})), "key".to_owned(), String::new(), reqwest::Client::new());
        assert_eq!(deliver(&no_secret, &headers(&[("x-vapi-secret", "")]), body), Err(CallbackError::BadSignature));
    }

    // --- Messages ---

    fn authed() -> HeaderMap {
        headers(&[("x-vapi-secret", SECRET)])
    }

    fn reply(vapi: &Vapi, body: &Value) -> (Vec<ProviderEvent>, Option<String>) {
        match deliver(vapi, &authed(), body.to_string().as_bytes()) {
            Ok(CallbackReply::Events { events, inbound, broken }) => {
                assert!(inbound.is_empty());
                (events, broken)
            }
            other => panic!("not events: {other:?}"),
        }
    }

    /// The one event of a message, checked to be the call's.
    fn event_of(vapi: &Vapi, body: &Value) -> ProviderEvent {
        let (mut events, _) = reply(vapi, body);
        assert_eq!(events.len(), 1, "{events:?}");
        let event = events.remove(0);
        assert_eq!(event.provider_id.as_deref(), Some("019a9046"));
        event
    }

    fn call_object(extra: Value) -> Value {
        let mut call = json!({
            "id": "019a9046", "orgId": "org", "type": "outboundPhoneCall", "name": "cll_1",
            "assistantOverrides": { "metadata": { "attempt_id": "cll_1", "campaign_id": 7 } },
        });
        if let (Some(call), Value::Object(extra)) = (call.as_object_mut(), extra) {
            call.extend(extra);
        }
        call
    }

    fn status_update(status: &str, ended_reason: Option<&str>) -> Value {
        let mut message = json!({ "type": "status-update", "status": status, "timestamp": 1_763_719_230_123_i64, "call": call_object(json!({ "status": status })) });
        if let Some(reason) = ended_reason {
            message["endedReason"] = json!(reason);
            message["call"]["endedReason"] = json!(reason);
        }
        json!({ "message": message })
    }

    /// The reference's `end-of-call-report` (§3.5) with `ended_reason` and `analysis`.
    fn report(ended_reason: &str, analysis: Value) -> Value {
        json!({ "message": {
            "type": "end-of-call-report", "endedReason": ended_reason, "timestamp": 1_763_719_290_456_i64,
            "startedAt": "2026-11-21T10:00:05.000Z", "endedAt": "2026-11-21T10:01:30.400Z", "cost": 0.11,
            "call": call_object(json!({ "status": "ended", "endedReason": ended_reason })),
            "customer": { "number": "+14155550100" },
            "analysis": analysis,
            "artifact": {
                "transcript": "AI: Hi Asha…\nUser: Yes…",
                "recordingUrl": "https://storage.vapi.ai/mono.wav",
                "stereoRecordingUrl": "https://storage.vapi.ai/stereo.wav",
                "messages": [
                    { "role": "system", "message": "You are a helpful agent", "time": 1_763_719_205_000_i64, "secondsFromStart": 0 },
                    { "role": "bot", "message": "Hi Asha…", "time": 1_763_719_206_000_i64, "secondsFromStart": 0.8 },
                    { "role": "tool_calls", "toolCalls": [], "time": 1_763_719_207_000_i64 },
                    { "role": "user", "message": "Yes…", "time": 1_763_719_210_000_i64, "secondsFromStart": 4.2 },
                ],
            },
        } })
    }

    fn confirmed() -> Value {
        json!({ "summary": "Customer confirmed the order.", "structuredData": { "confirmed": true, "summary": "theirs" }, "successEvaluation": "true" })
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    #[test]
    fn progress_status_updates() {
        let vapi = vapi(json!({}));
        let ringing = event_of(&vapi, &status_update("ringing", None));
        assert_eq!((ringing.event.status, ringing.provisional), (AttemptStatus::Ringing, None));
        assert_eq!((ringing.event.attempt_id.as_str(), &ringing.event.ended_by, &ringing.event.ended_reason), ("cll_1", &None, &None));
        let answered = event_of(&vapi, &status_update("in-progress", None));
        assert_eq!((answered.event.status, answered.provisional), (AttemptStatus::InProgress, None));
        for status in ["scheduled", "queued", "forwarding", "not-found"] {
            assert_eq!(reply(&vapi, &status_update(status, None)), (vec![], None), "{status}");
        }
    }

    #[test]
    fn an_ended_status_update_is_a_provisional_outcome() {
        let vapi = vapi(json!({}));
        let ended = event_of(&vapi, &status_update("ended", Some("customer-did-not-answer")));
        assert_eq!((ended.provisional, ended.event.final_report), (Some(SignedDuration::from_mins(5)), false));
        assert_eq!(ended.event.status, AttemptStatus::NoAnswer);
        assert_eq!(ended.event.ended_reason.as_deref(), Some("customer-did-not-answer"));
        let human = event_of(&vapi, &status_update("ended", Some("customer-ended-call")));
        assert_eq!(
            (human.event.status, human.event.answered_by, human.provisional.is_some()),
            (AttemptStatus::Ended, Some(AnsweredBy::Human), true)
        );
        // An account failure already stops dispatch from the status update.
        let (events, broken) = reply(&vapi, &status_update("ended", Some("call.start.error-subscription-frozen")));
        assert!(events[0].event.throttled && events[0].provisional.is_some());
        assert!(broken.is_some_and(|why| why.contains("frozen")));
    }

    #[test]
    fn the_end_of_call_report_is_final_with_everything_vapi_tells() {
        let event = event_of(&vapi(json!({})), &report("customer-ended-call", confirmed()));
        assert_eq!(event.provisional, None);
        assert!(event.event.final_report, "a late report adds its data but converts nothing");
        let event = event.event;
        assert_eq!(event.attempt_id, "cll_1");
        assert_eq!((event.status, event.answered_by), (AttemptStatus::Ended, Some(AnsweredBy::Human)));
        assert_eq!(event.started_at, Some(at("2026-11-21T10:00:05Z")));
        assert_eq!(event.ended_at, Some(at("2026-11-21T10:01:30.4Z")));
        assert_eq!((event.duration, event.billed_duration), (Some(85), Some(85)), "85.4 s rounds to 85");
        assert_eq!((event.ended_by.as_deref(), event.ended_reason.as_deref()), (Some("user"), Some("customer-ended-call")));
        assert!(event.converted);
        assert_eq!(event.recording_url.as_deref(), Some("https://storage.vapi.ai/mono.wav"));
        let data = event.extracted_data.expect("data");
        assert_eq!(Value::Object(data), json!({ "summary": "theirs", "confirmed": true }), "the structured data's own keys win");
        assert_eq!(
            event.transcript,
            Some(vec![
                TranscriptEntry { sent_by: Speaker::Assistant, sent_at: at("2025-11-21T10:00:06Z"), content: "Hi Asha…".to_owned() },
                TranscriptEntry { sent_by: Speaker::User, sent_at: at("2025-11-21T10:00:10Z"), content: "Yes…".to_owned() },
            ])
        );
        assert!(!event.invalid_number && !event.throttled);
    }

    #[test]
    fn converted_follows_the_success_evaluation_or_the_success_key_on_answered_calls_only() {
        let converted = |extra: Value, reason: &str, analysis: Value| event_of(&vapi(extra), &report(reason, analysis)).event.converted;
        assert!(converted(json!({}), "customer-ended-call", json!({ "successEvaluation": "true" })));
        assert!(converted(json!({}), "customer-ended-call", json!({ "successEvaluation": true })));
        assert!(!converted(json!({}), "customer-ended-call", json!({ "successEvaluation": "false" })));
        assert!(!converted(json!({}), "customer-ended-call", json!({ "successEvaluation": "8" })));
        assert!(!converted(json!({}), "customer-ended-call", json!({})));
        let keyed = json!({ "success_key": "confirmed" });
        assert!(converted(
            keyed.clone(),
            "assistant-ended-call",
            json!({ "structuredData": { "confirmed": true }, "successEvaluation": "false" })
        ));
        assert!(!converted(
            keyed.clone(),
            "assistant-ended-call",
            json!({ "structuredData": { "confirmed": false }, "successEvaluation": "true" })
        ));
        assert!(!converted(keyed.clone(), "assistant-ended-call", json!({ "successEvaluation": "true" })));
        for reason in ["voicemail", "customer-busy", "customer-did-not-answer", "twilio-failed-to-connect-call"] {
            assert!(!converted(json!({}), reason, json!({ "successEvaluation": "true" })), "{reason}");
            assert!(!converted(keyed.clone(), reason, json!({ "structuredData": { "confirmed": true } })), "{reason}");
        }
    }

    /// (endedReason, status, answered_by, invalid_number, throttled, broken, ended_by)
    type Row = (&'static str, AttemptStatus, Option<AnsweredBy>, bool, bool, bool, Option<&'static str>);

    #[test]
    fn every_row_of_the_outcome_table() {
        use AttemptStatus::*;
        let human = Some(AnsweredBy::Human);
        let rows: Vec<Row> = vec![
            ("customer-ended-call", Ended, human, false, false, false, Some("user")),
            ("customer-ended-call-before-warm-transfer", Ended, human, false, false, false, Some("user")),
            ("customer-ended-call-after-warm-transfer-attempt", Ended, human, false, false, false, Some("user")),
            ("customer-ended-call-during-transfer", Ended, human, false, false, false, Some("user")),
            ("assistant-ended-call", Ended, human, false, false, false, Some("agent")),
            ("assistant-said-end-call-phrase", Ended, human, false, false, false, Some("agent")),
            ("assistant-ended-call-after-message-spoken", Ended, human, false, false, false, Some("agent")),
            ("assistant-ended-call-with-hangup-task", Ended, human, false, false, false, Some("agent")),
            ("assistant-forwarded-call", Ended, human, false, false, false, Some("agent")),
            ("exceeded-max-duration", Ended, human, false, false, false, Some("system")),
            ("silence-timed-out", Ended, human, false, false, false, Some("system")),
            ("call.in-progress.twilio-completed-call", Ended, human, false, false, false, Some("system")),
            ("call.in-progress.sip-completed-call", Ended, human, false, false, false, Some("system")),
            ("vonage-completed", Ended, human, false, false, false, Some("system")),
            ("voicemail", Ended, Some(AnsweredBy::Machine), false, false, false, Some("system")),
            ("customer-busy", Busy, None, false, false, false, None),
            ("call.in-progress.error-providerfault-outbound-sip-503-service-unavailable", Busy, None, false, false, false, None),
            ("customer-did-not-answer", NoAnswer, None, false, false, false, None),
            ("call.in-progress.error-providerfault-outbound-sip-408-request-timeout", NoAnswer, None, false, false, false, None),
            ("call.in-progress.error-providerfault-outbound-sip-480-temporarily-unavailable", NoAnswer, None, false, false, false, None),
            ("twilio-reported-customer-misdialed", Failed, None, true, false, false, None),
            ("call.start.error-subscription-concurrency-limit-reached", Failed, None, false, true, false, None),
            ("call.start.error-vapi-number-outbound-daily-limit", Failed, None, false, true, false, None),
            ("call.start.error-subscription-frozen", Failed, None, false, true, true, None),
            ("call.start.error-subscription-insufficient-credits", Failed, None, false, true, true, None),
            ("twilio-failed-to-connect-call", Failed, None, false, false, false, None),
            ("vonage-failed-to-connect-call", Failed, None, false, false, false, None),
            ("vonage-rejected", Failed, None, false, false, false, None),
            ("call.start.error-get-assistant", Failed, None, false, false, false, None),
            ("call.start.error-get-phone-number", Failed, None, false, false, false, None),
            ("assistant-not-found", Failed, None, false, false, false, None),
            ("assistant-not-valid", Failed, None, false, false, false, None),
            ("assistant-request-failed", Failed, None, false, false, false, None),
            ("call.start.error-fraud-check-failed", Failed, None, false, false, false, None),
            ("call.start.error-vapi-number-international", Failed, None, false, false, false, None),
            ("pipeline-error-openai-llm-failed", Failed, None, false, false, false, None),
            ("worker-shutdown", Failed, None, false, false, false, None),
            ("phone-call-provider-closed-websocket", Failed, None, false, false, false, None),
            ("call.in-progress.error-sip-outbound-call-failed-to-connect", Failed, None, false, false, false, None),
            ("call.in-progress.error-providerfault-outbound-sip-403-forbidden", Failed, None, false, false, false, None),
            ("call.in-progress.error-providerfault-transport-never-connected", Failed, None, false, false, false, None),
            // Faults while the call was up: plain failures (never loop calling a person).
            ("call.in-progress.error-vapifault-openai-voice-failed", Failed, None, false, false, false, Some("system")),
            ("call.in-progress.error-providerfault-openai-llm-failed", Failed, None, false, false, false, Some("system")),
            ("call.in-progress.error-assistant-did-not-receive-customer-audio", Failed, None, false, false, false, Some("system")),
            ("manually-canceled", Failed, None, false, false, false, None),
            // Not in Vapi's enum (its docs' own sample): failed, logged.
            ("hangup", Failed, None, false, false, false, None),
            ("something-new", Failed, None, false, false, false, None),
        ];
        let vapi = vapi(json!({}));
        for (reason, status, answered_by, invalid_number, throttled, broken, ended_by) in rows {
            let (events, account) = reply(&vapi, &report(reason, json!({})));
            let event = &events[0].event;
            assert_eq!(
                (event.status, event.answered_by, event.invalid_number, event.throttled, account.is_some(), event.ended_by.as_deref()),
                (status, answered_by, invalid_number, throttled, broken, ended_by),
                "{reason}"
            );
            assert_eq!(event.ended_reason.as_deref(), Some(reason));
        }
    }

    #[test]
    fn a_report_without_an_ended_reason_takes_the_calls_or_fails() {
        let vapi = vapi(json!({}));
        let mut body = report("customer-busy", json!({}));
        body["message"].as_object_mut().expect("object").remove("endedReason");
        assert_eq!(event_of(&vapi, &body).event.status, AttemptStatus::Busy, "the call's endedReason");
        body["message"]["call"].as_object_mut().expect("object").remove("endedReason");
        let event = event_of(&vapi, &body).event;
        assert_eq!((event.status, event.ended_reason, event.ended_by), (AttemptStatus::Failed, None, None));
    }

    #[test]
    fn the_recording_falls_back_to_the_mono_recording_and_must_be_a_web_url() {
        let vapi = vapi(json!({}));
        let mut body = report("customer-ended-call", json!({}));
        body["message"]["artifact"]["recordingUrl"] = json!("ftp://storage.vapi.ai/mono.wav");
        body["message"]["artifact"]["recording"] = json!({ "mono": { "combinedUrl": "https://storage.vapi.ai/combined.wav" } });
        assert_eq!(event_of(&vapi, &body).event.recording_url.as_deref(), Some("https://storage.vapi.ai/combined.wav"));
        body["message"]["artifact"]["recording"] = json!({ "mono": { "combinedUrl": "not a url" } });
        assert_eq!(event_of(&vapi, &body).event.recording_url, None);
        body["message"]["artifact"]["recordingUrl"] = Value::Null;
        body["message"]["call"]["recordingUrl"] = json!("https://storage.vapi.ai/legacy.wav");
        assert_eq!(event_of(&vapi, &body).event.recording_url.as_deref(), Some("https://storage.vapi.ai/legacy.wav"));
    }

    #[test]
    fn the_transcript_falls_back_to_seconds_from_start_and_to_the_text() {
        let vapi = vapi(json!({}));
        let mut body = report("customer-ended-call", json!({}));
        body["message"]["artifact"]["messages"] =
            json!([{ "role": "assistant", "message": "Hola", "secondsFromStart": 1.5 }, { "role": "user", "message": "  " }]);
        assert_eq!(
            event_of(&vapi, &body).event.transcript,
            Some(vec![TranscriptEntry { sent_by: Speaker::Assistant, sent_at: at("2026-11-21T10:00:06.5Z"), content: "Hola".to_owned() }])
        );
        body["message"]["artifact"]["messages"] = json!([]);
        body["message"]["artifact"]["transcript"] = json!("AI: Hi Asha\nUser: Yes: Friday\nnoise\n");
        let started = at("2026-11-21T10:00:05Z");
        assert_eq!(
            event_of(&vapi, &body).event.transcript,
            Some(vec![
                TranscriptEntry { sent_by: Speaker::Assistant, sent_at: started, content: "Hi Asha".to_owned() },
                TranscriptEntry { sent_by: Speaker::User, sent_at: started, content: "Yes: Friday".to_owned() },
            ])
        );
        body["message"]["artifact"] = json!({});
        assert_eq!(event_of(&vapi, &body).event.transcript, None);
    }

    #[test]
    fn summary_and_structured_data_too_large_are_cut_to_the_summary() {
        let vapi = vapi(json!({}));
        let huge = json!({ "summary": "Short.", "structuredData": { "blob": "x".repeat(20_000) } });
        let data = event_of(&vapi, &report("customer-ended-call", huge)).event.extracted_data;
        assert_eq!(data.map(Value::Object), Some(json!({ "summary": "Short." })));
        let none = event_of(&vapi, &report("customer-ended-call", json!({ "structuredData": "not an object" }))).event.extracted_data;
        assert_eq!(none, None);
    }

    #[test]
    fn the_attempt_id_comes_from_the_metadata_or_the_calls_name() {
        let vapi = vapi(json!({}));
        let mut body = status_update("ringing", None);
        body["message"]["call"]["assistantOverrides"] = json!({});
        assert_eq!(event_of(&vapi, &body).event.attempt_id, "cll_1");
        body["message"]["call"]["name"] = json!("Someone's call");
        assert_eq!(event_of(&vapi, &body).event.attempt_id, "");
        body["message"].as_object_mut().expect("object").remove("call");
        let (events, _) = reply(&vapi, &body);
        assert_eq!((events[0].provider_id.as_deref(), events[0].event.attempt_id.as_str()), (None, ""));
    }

    #[test]
    fn other_messages_are_acknowledged_and_malformed_ones_are_invalid() {
        let vapi = vapi(json!({}));
        for kind in ["transcript", "speech-update", "conversation-update", "hang", "tool-calls"] {
            assert_eq!(reply(&vapi, &json!({ "message": { "type": kind, "call": call_object(json!({})) } })), (vec![], None), "{kind}");
        }
        for body in [&b"not json"[..], br#"{"type":"status-update"}"#, br#"{"message":"x"}"#, br#"{"message":{"status":"ended"}}"#] {
            assert!(matches!(deliver(&vapi, &authed(), body), Err(CallbackError::Invalid(_))), "{}", String::from_utf8_lossy(body));
        }
        let get =
            Callback { method: &Method::GET, url: CALLBACK_URL, query: &[], headers: &authed(), body: b"", now: Timestamp::UNIX_EPOCH };
        assert!(matches!(vapi.callback(&get), Some(Err(CallbackError::Invalid(_)))));
    }

    // --- Reconcile ---

    #[tokio::test]
    async fn reconcile_reads_an_ended_call_like_its_report() {
        use wiremock::matchers::{header, method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        let mut ended = report("assistant-ended-call", confirmed())["message"].clone();
        let call = ended["call"].take();
        let mut call = call.as_object().expect("object").clone();
        for key in ["startedAt", "endedAt", "analysis", "artifact"] {
            call.insert(key.to_owned(), ended[key].take());
        }
        Mock::given(method("GET"))
            .and(path("/call/019a9046"))
            .and(header("authorization", "Bearer key_abc"))
            .respond_with(ResponseTemplate::new(200).set_body_json(Value::Object(call)))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/call/still%20going"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "still going", "status": "in-progress" })))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/call/garbled"))
            .respond_with(ResponseTemplate::new(200).set_body_string("{"))
            .mount(&server)
            .await;
        let vapi = vapi(json!({ "api_base": server.uri() }));
        let Reconciled { event, broken } = vapi.reconcile("019a9046", "cll_9").await.expect("an ended call");
        assert_eq!(broken, None);
        assert_eq!(event.attempt_id, "cll_9");
        assert_eq!((event.status, event.answered_by, event.converted), (AttemptStatus::Ended, Some(AnsweredBy::Human), true));
        assert_eq!((event.duration, event.ended_by.as_deref()), (Some(85), Some("agent")));
        assert_eq!(event.transcript.map(|lines| lines.len()), Some(2));
        assert_eq!(event.recording_url.as_deref(), Some("https://storage.vapi.ai/mono.wav"));
        assert_eq!(vapi.reconcile("still going", "cll_9").await, None, "not ended");
        assert_eq!(vapi.reconcile("garbled", "cll_9").await, None);
        assert_eq!(vapi.reconcile("unknown", "cll_9").await, None, "404");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let closed = format!("http://{}", listener.local_addr().expect("an address"));
        drop(listener);
        assert_eq!(self::vapi(json!({ "api_base": closed })).reconcile("019a9046", "cll_9").await, None);
    }
}
