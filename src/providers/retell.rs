//! `retell` (PROVIDERS.md §5; reference providers.md §4, §5): calls placed by a Retell agent
//! through Retell's create-phone-call API, their outcome read from Retell's signed webhooks.
//! `call_ended` gives a provisional outcome; `call_analyzed`, which adds the analysis (voicemail,
//! success, summary, custom data), gives the final one.

use std::time::Duration;

use async_trait::async_trait;
use axum::http::{HeaderMap, Method, StatusCode};
use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::{
    Callback, CallbackError, CallbackReply, Connector, Handoff, MAX_PROVIDER_MESSAGE_CHARS, Outgoing, ProviderEvent, hex_bytes, is_web_url,
    retry_after,
};
use crate::domain::attempt::{AnsweredBy, AttemptEvent, AttemptStatus, Speaker, TranscriptEntry};
use crate::domain::contact::check_extracted_data;
use crate::domain::integration::RetellConfig;
use crate::store::DispatchContact;

/// How long a `call_ended` outcome waits for its `call_analyzed` before it becomes final
/// (PROVIDERS.md §5): `converted` then stays false.
pub const ANALYSIS_WAIT: SignedDuration = SignedDuration::from_mins(10);
/// How far a signature's timestamp may be from our clock, either way (reference §4.7).
const SIGNATURE_TOLERANCE_MS: u64 = 5 * 60 * 1000;

pub struct Retell {
    config: RetellConfig,
    api_key: String,
    http: reqwest::Client,
}

impl Retell {
    pub fn new(config: RetellConfig, api_key: String, http: reqwest::Client) -> Retell {
        Retell { config, api_key, http }
    }

    /// The body of `POST /v2/create-phone-call` for one attempt (reference §4.2). The attempt id
    /// rides in `metadata`, which Retell echoes in every webhook's `call.metadata`.
    fn call_body(&self, attempt_id: &str, campaign_id: i64, contact: &DispatchContact) -> Value {
        let mut body = json!({
            "from_number": self.config.from_number,
            "to_number": contact.contact.as_str(),
            "retell_llm_dynamic_variables": dynamic_variables(contact),
            "metadata": { "attempt_id": attempt_id, "campaign_id": campaign_id },
        });
        if let Some(agent_id) = &self.config.agent_id {
            body["override_agent_id"] = json!(agent_id);
        }
        body
    }

    /// Posts a call's body to Retell and reads the answer.
    async fn create_call(&self, body: &Value) -> Handoff {
        let url = format!("{}/v2/create-phone-call", self.config.api_base.trim_end_matches('/'));
        let sent = self
            .http
            .post(url)
            .timeout(Duration::from_millis(u64::from(self.config.timeout_ms)))
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .await;
        super::answer(sent, classify).await
    }

    /// A Retell webhook: a JSON POST signed with `x-retell-signature` (reference §4.5, §4.7).
    fn read_callback(&self, request: &Callback<'_>) -> Result<CallbackReply, CallbackError> {
        if request.method != Method::POST {
            return Err(CallbackError::invalid("a Retell webhook is a POST"));
        }
        let claimed = request.headers.get("x-retell-signature").and_then(|value| value.to_str().ok());
        if !claimed.is_some_and(|claimed| verify(&self.api_key, request.body, claimed, request.now)) {
            return Err(CallbackError::BadSignature);
        }
        let webhook: Value =
            serde_json::from_slice(request.body).map_err(|error| CallbackError::invalid(&format!("not a Retell webhook: {error}")))?;
        let (Some(kind), Some(call)) = (webhook.get("event").and_then(Value::as_str), webhook.get("call").filter(|c| c.is_object())) else {
            return Err(CallbackError::invalid("a Retell webhook is {\"event\": …, \"call\": {…}}"));
        };
        let provider_id = text(call, "call_id").filter(|id| !id.is_empty() && !id.contains('\0')).map(str::to_owned);
        let attempt_id = call.pointer("/metadata/attempt_id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let (event, provisional, broken) = match kind {
            "call_started" => (started(call, attempt_id), None, None),
            "call_ended" => {
                let (event, broken) = outcome(call, None, attempt_id);
                (event, Some(ANALYSIS_WAIT), broken)
            }
            "call_analyzed" => {
                let analysis = call.get("call_analysis").filter(|a| a.is_object()).unwrap_or(&Value::Null);
                let (event, broken) = outcome(call, Some(analysis), attempt_id);
                (AttemptEvent { final_report: true, ..event }, None, broken)
            }
            // `transcript_updated`, `transfer_*` and whatever Retell adds: nothing to record.
            _ => return Ok(CallbackReply::Events { events: vec![], inbound: vec![], broken: None }),
        };
        Ok(CallbackReply::Events { events: vec![ProviderEvent { provider_id, event, provisional }], inbound: vec![], broken })
    }
}

#[async_trait]
impl Connector for Retell {
    async fn hand_off(&self, attempt: &Outgoing<'_>) -> Handoff {
        self.create_call(&self.call_body(attempt.attempt_id, attempt.campaign.id, attempt.contact)).await
    }

    fn callback(&self, request: &Callback<'_>) -> Option<Result<CallbackReply, CallbackError>> {
        Some(self.read_callback(request))
    }
}

/// `retell_llm_dynamic_variables` (string → string): every `extracted_data` value (a string as it
/// is, anything else as its JSON text, nulls left out), then the contact's own fields, which win
/// over data keys of the same name.
fn dynamic_variables(contact: &DispatchContact) -> Map<String, Value> {
    let mut variables: Map<String, Value> = contact
        .extracted_data
        .iter()
        .filter_map(|(key, value)| {
            let text = match value {
                Value::Null => return None,
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            Some((key.clone(), Value::String(text)))
        })
        .collect();
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
    variables
}

/// What Retell's answer to `POST /v2/create-phone-call` means (reference §4.3, §4.4, §5;
/// PROVIDERS.md §1). Error bodies are `{"status": "error", "message": …}`.
fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Handoff {
    let answer: Value = serde_json::from_slice(body).unwrap_or_default();
    if status.is_success() {
        return match text(&answer, "call_id").filter(|id| !id.trim().is_empty()) {
            Some(call_id) => Handoff::Accepted { provider_id: Some(call_id.to_owned()) },
            // Retell said yes without saying to what: a call may exist that no webhook can be
            // matched to by id, so the attempt must not be re-sent.
            None => Handoff::Unknown,
        };
    }
    let label = format!("retell_http_{}", status.as_u16());
    let integration_fault = match status.as_u16() {
        401 | 403 => Some("the API key is missing or invalid"),
        402 => Some("the account needs a payment method"),
        // "Cannot find requested asset under given api key": the number or agent of the config.
        422 => Some("the from_number or agent_id is not found under this API key"),
        _ => None,
    };
    if let Some(fallback) = integration_fault {
        let message = text(&answer, "message").map(str::trim).filter(|m| !m.is_empty()).unwrap_or(fallback);
        let message: String = message.chars().take(MAX_PROVIDER_MESSAGE_CHARS).collect();
        return Handoff::Broken { reason: format!("{label}: {message}") };
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        // Retell does not document `Retry-After` (reference §6.4): honoured when given.
        return Handoff::Retry { after: retry_after(headers) };
    }
    if status.is_client_error() { Handoff::Failed { reason: label } } else { Handoff::Unknown }
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

// --- Signature (reference §4.7) ---

/// `x-retell-signature` for `body` sent at `millis` (Unix milliseconds): `v=<millis>,d=<hex>`,
/// the lowercase hex HMAC-SHA256 keyed with the API key over the raw body followed by the
/// decimal timestamp.
pub fn signature(api_key: &str, body: &[u8], millis: i64) -> String {
    let digest: String = mac(api_key, body, millis).finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
    format!("v={millis},d={digest}")
}

fn mac(api_key: &str, body: &[u8], millis: i64) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(api_key.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.update(millis.to_string().as_bytes());
    mac
}

/// Whether `claimed` signs `body` with a timestamp within five minutes of `now` either way,
/// compared in constant time. As Retell's SDK: `v=<digits>,d=<64 hex digits>`, either case.
fn verify(api_key: &str, body: &[u8], claimed: &str, now: Timestamp) -> bool {
    let Some((millis, digest)) = parse_signature(claimed) else { return false };
    if now.as_millisecond().abs_diff(millis) > SIGNATURE_TOLERANCE_MS {
        return false;
    }
    mac(api_key, body, millis).verify_slice(&digest).is_ok()
}

/// The timestamp and digest of `v=<ms>,d=<hex>`.
fn parse_signature(claimed: &str) -> Option<(i64, Vec<u8>)> {
    let (version, digest) = claimed.trim().split_once(',')?;
    let millis = strip_prefix_ignoring_case(version, "v=")?;
    let digest = strip_prefix_ignoring_case(digest, "d=")?;
    if millis.is_empty() || !millis.bytes().all(|byte| byte.is_ascii_digit()) || digest.len() != 64 {
        return None;
    }
    Some((millis.parse().ok()?, hex_bytes(digest)?))
}

fn strip_prefix_ignoring_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

// --- Outcomes (reference §4.6, §5) ---

/// What a `disconnection_reason` says of a call, rows of the outcome table evaluated top-down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Connected and ended: a person answered unless the analysis says voicemail.
    Talked,
    /// Ended without a reason given: someone or something answered, not known who.
    Ended,
    /// A voicemail or an IVR answered.
    Machine,
    Busy,
    NoAnswer,
    InvalidNumber,
    /// Never placed for lack of capacity: tried again without using a retry.
    Throttled,
    /// The account cannot pay: never placed, and the integration stops dispatching.
    NoPayment,
    Failed,
    /// A reason this connector does not know: failed, and logged.
    Unknown,
}

fn ending(reason: &str) -> Ending {
    match reason {
        "user_hangup"
        | "agent_hangup"
        | "call_transfer"
        | "inactivity"
        | "max_duration_reached"
        | "transfer_bridged"
        | "transfer_cancelled"
        | "manual_stopped"
        | "call_take_over" => Ending::Talked,
        "voicemail_reached" | "ivr_reached" => Ending::Machine,
        // Declined: treated as busy (reference §5, our choice).
        "dial_busy" | "user_declined" => Ending::Busy,
        "dial_no_answer" => Ending::NoAnswer,
        "invalid_destination" => Ending::InvalidNumber,
        "concurrency_limit_reached" | "no_concurrency_fallback" | "telephony_provider_unavailable" => Ending::Throttled,
        "no_valid_payment" => Ending::NoPayment,
        "dial_failed"
        | "telephony_provider_permission_denied"
        | "sip_routing_error"
        | "marked_as_spam"
        | "scam_detected"
        | "registered_call_timeout" => Ending::Failed,
        _ if reason.starts_with("error_") => Ending::Failed,
        _ => Ending::Unknown,
    }
}

/// Who ended a call: the customer, the agent (also when it left a voicemail, met an IVR, or hung
/// up on silence or at the maximum duration), the system for other connected calls, nobody for
/// calls that never connected.
fn ended_by(reason: &str, connected: bool) -> Option<&'static str> {
    match reason {
        "user_hangup" => Some("user"),
        "agent_hangup" | "voicemail_reached" | "ivr_reached" | "inactivity" | "max_duration_reached" => Some("agent"),
        _ if connected => Some("system"),
        _ => None,
    }
}

/// A `call_started` webhook: the call connected (someone or something picked up; who is told
/// later).
fn started(call: &Value, attempt_id: String) -> AttemptEvent {
    AttemptEvent {
        status: AttemptStatus::InProgress,
        started_at: millis_at(call, "start_timestamp"),
        ended_by: None,
        ended_reason: None,
        ..AttemptEvent::failed(attempt_id, "")
    }
}

/// The outcome of an ended call (`call_ended`, `analysis` `None`) or an analyzed one
/// (`call_analyzed`, with its `call_analysis`, `Null` when it has none), and why the integration
/// is broken when the call shows it.
fn outcome(call: &Value, analysis: Option<&Value>, attempt_id: String) -> (AttemptEvent, Option<String>) {
    let call_status = text(call, "call_status");
    let given_reason = text(call, "disconnection_reason").filter(|reason| !reason.is_empty());
    let ending = match (given_reason, call_status) {
        (Some(reason), _) => ending(reason),
        (None, Some("ended")) => Ending::Ended,
        (None, Some("not_connected" | "error")) => Ending::Failed,
        (None, _) => Ending::Unknown,
    };
    let reason = given_reason.or(call_status).unwrap_or("unknown").replace('\0', "");
    if ending == Ending::Unknown {
        tracing::warn!(call_id = text(call, "call_id").unwrap_or_default(), %reason, "unknown Retell disconnection_reason: the call is taken as failed");
    }
    let analysis = analysis.unwrap_or(&Value::Null);
    let in_voicemail = analysis.get("in_voicemail").and_then(Value::as_bool) == Some(true);
    let (status, answered_by) = match ending {
        Ending::Talked if in_voicemail => (AttemptStatus::Ended, Some(AnsweredBy::Machine)),
        Ending::Talked => (AttemptStatus::Ended, Some(AnsweredBy::Human)),
        Ending::Ended if in_voicemail => (AttemptStatus::Ended, Some(AnsweredBy::Machine)),
        Ending::Ended => (AttemptStatus::Ended, Some(AnsweredBy::Unknown)),
        Ending::Machine => (AttemptStatus::Ended, Some(AnsweredBy::Machine)),
        Ending::Busy => (AttemptStatus::Busy, None),
        Ending::NoAnswer => (AttemptStatus::NoAnswer, None),
        Ending::InvalidNumber | Ending::Throttled | Ending::NoPayment | Ending::Failed | Ending::Unknown => (AttemptStatus::Failed, None),
    };
    let connected = status == AttemptStatus::Ended || call_status == Some("ended");
    let converted = status == AttemptStatus::Ended
        && answered_by == Some(AnsweredBy::Human)
        && analysis.get("call_successful").and_then(Value::as_bool) == Some(true);
    let (started_at, ended_at) = (millis_at(call, "start_timestamp"), millis_at(call, "end_timestamp"));
    let duration = whole_seconds(call, started_at, ended_at);
    let broken = (ending == Ending::NoPayment).then(|| format!("retell {reason}: the account has no valid payment method"));
    let event = AttemptEvent {
        status,
        answered_by,
        started_at,
        ended_at,
        duration,
        billed_duration: duration,
        ended_by: ended_by(&reason, connected).map(str::to_owned),
        ended_reason: Some(reason),
        converted,
        extracted_data: analysis_data(analysis),
        recording_url: text(call, "recording_url").filter(|url| is_web_url(url)).map(str::to_owned),
        transcript: transcript(call, started_at),
        invalid_number: ending == Ending::InvalidNumber,
        throttled: matches!(ending, Ending::Throttled | Ending::NoPayment),
        ..AttemptEvent::failed(attempt_id, "")
    };
    (event, broken)
}

/// A Unix-milliseconds field as an instant.
fn millis_at(call: &Value, key: &str) -> Option<Timestamp> {
    Timestamp::from_millisecond(whole(call.get(key)?)?).ok()
}

/// A JSON number as a whole number (Retell sends integers; a float is rounded).
fn whole(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_f64().filter(|f| f.is_finite() && f.abs() < 9e15).map(|f| f.round() as i64))
}

/// `duration_ms` in whole seconds, rounded; else the time between start and end.
fn whole_seconds(call: &Value, started_at: Option<Timestamp>, ended_at: Option<Timestamp>) -> Option<i64> {
    let millis = match call.get("duration_ms").and_then(whole) {
        Some(millis) => millis,
        None => ended_at?.as_millisecond() - started_at?.as_millisecond(),
    };
    (millis >= 0).then(|| (millis + 500) / 1000)
}

/// `transcript_object` as transcript lines: the agent's and the user's (a transfer target's
/// lines are left out), each at the call's start plus its first word's offset.
fn transcript(call: &Value, started_at: Option<Timestamp>) -> Option<Vec<TranscriptEntry>> {
    let start = started_at?;
    let lines: Vec<TranscriptEntry> = call
        .get("transcript_object")?
        .as_array()?
        .iter()
        .filter_map(|line| {
            let sent_by = match text(line, "role")? {
                "agent" => Speaker::Assistant,
                "user" => Speaker::User,
                _ => return None,
            };
            let first_word = line.get("words").and_then(Value::as_array).and_then(|words| words.first());
            let offset = first_word
                .and_then(|word| word.get("start"))
                .and_then(Value::as_f64)
                .filter(|seconds| seconds.is_finite() && (0.0..1e9).contains(seconds))
                .map(|seconds| SignedDuration::from_millis((seconds * 1000.0).round() as i64));
            let sent_at = offset.and_then(|offset| start.checked_add(offset).ok()).unwrap_or(start);
            Some(TranscriptEntry { sent_by, sent_at, content: text(line, "content")?.to_owned() })
        })
        .collect();
    (!lines.is_empty()).then_some(lines)
}

/// What the analysis adds to `extracted_data`: `summary`, `user_sentiment`, then the agent's
/// `custom_analysis_data` (its keys win). Custom data too large to keep is left out, logged.
fn analysis_data(analysis: &Value) -> Option<Map<String, Value>> {
    let mut data = Map::new();
    for (from, to) in [("call_summary", "summary"), ("user_sentiment", "user_sentiment")] {
        if let Some(value) = text(analysis, from) {
            data.insert(to.to_owned(), Value::String(value.to_owned()));
        }
    }
    let basic = data.clone();
    if let Some(Value::Object(custom)) = analysis.get("custom_analysis_data") {
        data.extend(custom.clone());
    }
    let data = match check_extracted_data("custom_analysis_data", &data) {
        Ok(()) => data,
        Err(problem) => {
            tracing::warn!(%problem, "Retell analysis data left out");
            check_extracted_data("call_summary", &basic).is_ok().then_some(basic)?
        }
    };
    (!data.is_empty()).then_some(data)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::domain::contact::PhoneNumber;

    const KEY: &str = "key_test_123";
    const NOW_MS: i64 = 1_703_302_428_855;

    fn config(extra: Value) -> RetellConfig {
        let mut config = json!({ "from_number": "+14157774444", "agent_id": "oBeDLoLOeuAbiuaMFXRtDOLriTJ5tSxD" });
        if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
            config.extend(extra);
        }
        serde_json::from_value(config).expect("a retell config")
    }

    fn retell(extra: Value) -> Retell {
        Retell::new(config(extra), KEY.to_owned(), reqwest::Client::new())
    }

    fn contact() -> DispatchContact {
        let extracted_data: Map<String, Value> = serde_json::from_value(json!({
            "order_id": "ORD-9271", "total": 12.5, "vip": true, "none": null, "items": [1, "a"], "address": { "city": "CDMX" },
            "name": "from data",
        }))
        .expect("an object");
        DispatchContact {
            id: 7,
            f_id: Some("F-1".to_owned()),
            name: Some("Asha".to_owned()),
            contact: PhoneNumber::stored("+12137774445".to_owned()).expect("E.164"),
            context: Some("Ordered on Monday".to_owned()),
            extracted_data,
            tags: Vec::new(),
        }
    }

    // --- Hand-off ---

    #[test]
    fn call_body_carries_every_field() {
        let body = retell(json!({})).call_body("cll_1", 42, &contact());
        assert_eq!(
            body,
            json!({
                "from_number": "+14157774444",
                "to_number": "+12137774445",
                "override_agent_id": "oBeDLoLOeuAbiuaMFXRtDOLriTJ5tSxD",
                "retell_llm_dynamic_variables": {
                    "name": "Asha", "contact": "+12137774445", "context": "Ordered on Monday", "f_id": "F-1",
                    "order_id": "ORD-9271", "total": "12.5", "vip": "true", "items": "[1,\"a\"]", "address": "{\"city\":\"CDMX\"}",
                },
                "metadata": { "attempt_id": "cll_1", "campaign_id": 42 },
            })
        );
    }

    #[test]
    fn call_body_without_an_agent_or_optional_fields() {
        let mut contact = contact();
        (contact.name, contact.context, contact.f_id) = (None, None, None);
        contact.extracted_data.clear();
        let body = retell(json!({ "agent_id": null })).call_body("cll_2", 1, &contact);
        assert!(body.get("override_agent_id").is_none(), "{body}");
        assert_eq!(body["retell_llm_dynamic_variables"], json!({ "contact": "+12137774445" }));
    }

    #[tokio::test]
    async fn create_call_posts_json_with_the_bearer_key() {
        use wiremock::matchers::{body_json, header, method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        let retell = retell(json!({ "api_base": format!("{}/", server.uri()) }));
        let body = retell.call_body("cll_1", 42, &contact());
        Mock::given(method("POST"))
            .and(path("/v2/create-phone-call"))
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .and(header("content-type", "application/json"))
            .and(body_json(&body))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "call_id": "Jabr9", "call_status": "registered" })))
            .expect(1)
            .mount(&server)
            .await;
        assert_eq!(retell.create_call(&body).await, Handoff::Accepted { provider_id: Some("Jabr9".to_owned()) });
    }

    #[tokio::test]
    async fn create_call_times_out_as_unknown_and_a_closed_port_is_retried() {
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::method("POST"))
            .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_millis(1000)))
            .mount(&server)
            .await;
        let slow = retell(json!({ "api_base": server.uri(), "timeout_ms": 100 }));
        assert_eq!(slow.create_call(&json!({})).await, Handoff::Unknown);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let closed = format!("http://{}", listener.local_addr().expect("an address"));
        drop(listener);
        assert_eq!(retell(json!({ "api_base": closed })).create_call(&json!({})).await, Handoff::Retry { after: None });
    }

    fn answer(status: u16, body: Value) -> Handoff {
        answer_with(status, &HeaderMap::new(), body)
    }

    fn answer_with(status: u16, headers: &HeaderMap, body: Value) -> Handoff {
        classify(StatusCode::from_u16(status).expect("a status"), headers, body.to_string().as_bytes())
    }

    fn error(status: u16, message: &str) -> Handoff {
        answer(status, json!({ "status": "error", "message": message }))
    }

    #[test]
    fn classify_a_created_call() {
        let created = json!({ "call_id": "Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6", "call_status": "registered" });
        assert_eq!(answer(201, created.clone()), Handoff::Accepted { provider_id: Some("Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6".to_owned()) });
        assert_eq!(answer(200, created), Handoff::Accepted { provider_id: Some("Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6".to_owned()) });
        assert_eq!(answer(201, json!({ "call_status": "registered" })), Handoff::Unknown);
        assert_eq!(answer(201, json!({ "call_id": " " })), Handoff::Unknown);
        assert_eq!(answer(201, json!({ "call_id": 7 })), Handoff::Unknown);
        assert_eq!(classify(StatusCode::CREATED, &HeaderMap::new(), b"not json"), Handoff::Unknown);
    }

    #[test]
    fn classify_throttling_with_and_without_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        let limited = json!({ "status": "error", "message": "Account rate limited, please throttle your requests." });
        assert_eq!(answer_with(429, &headers, limited.clone()), Handoff::Retry { after: Some(SignedDuration::from_secs(7)) });
        assert_eq!(answer(429, limited), Handoff::Retry { after: None });
        assert_eq!(classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), b""), Handoff::Retry { after: None });
    }

    #[test]
    fn classify_a_broken_integration_with_retells_message() {
        assert_eq!(
            error(401, "API key is missing or invalid."),
            Handoff::Broken { reason: "retell_http_401: API key is missing or invalid.".to_owned() }
        );
        assert_eq!(
            error(402, "Trial has ended, please add payment method."),
            Handoff::Broken { reason: "retell_http_402: Trial has ended, please add payment method.".to_owned() }
        );
        assert_eq!(
            error(422, "Cannot find requested asset under given api key."),
            Handoff::Broken { reason: "retell_http_422: Cannot find requested asset under given api key.".to_owned() }
        );
        assert_eq!(
            classify(StatusCode::FORBIDDEN, &HeaderMap::new(), b""),
            Handoff::Broken { reason: "retell_http_403: the API key is missing or invalid".to_owned() }
        );
        assert_eq!(error(402, "  "), Handoff::Broken { reason: "retell_http_402: the account needs a payment method".to_owned() });
        let Handoff::Broken { reason } = error(401, &"x".repeat(5000)) else { panic!("broken") };
        assert_eq!(reason.len(), "retell_http_401: ".len() + MAX_PROVIDER_MESSAGE_CHARS);
    }

    #[test]
    fn classify_other_refusals_and_server_errors() {
        assert_eq!(error(400, "to_number is invalid"), Handoff::Failed { reason: "retell_http_400".to_owned() });
        assert_eq!(answer(404, json!({})), Handoff::Failed { reason: "retell_http_404".to_owned() });
        assert_eq!(error(500, "Internal server error"), Handoff::Unknown);
        assert_eq!(classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"<html>"), Handoff::Unknown);
        assert_eq!(classify(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), b""), Handoff::Unknown);
    }

    // --- Signature ---

    const EXAMPLE_BODY: &str = r#"{"event":"call_ended","call":{"call_id":"Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6"}}"#;
    const EXAMPLE_SIGNATURE: &str = "v=1703302428855,d=60ce5b87c0ca48b22f40b9f237ab5ac8591787810b40fe4f66b3e228900f33fd";

    fn at_ms(millis: i64) -> Timestamp {
        Timestamp::from_millisecond(millis).expect("an instant")
    }

    #[test]
    fn signature_matches_the_references_computed_example() {
        assert_eq!(signature(KEY, EXAMPLE_BODY.as_bytes(), NOW_MS), EXAMPLE_SIGNATURE);
        assert!(verify(KEY, EXAMPLE_BODY.as_bytes(), EXAMPLE_SIGNATURE, at_ms(NOW_MS)));
    }

    #[test]
    fn verify_takes_either_case_and_refuses_a_wrong_key_body_or_form() {
        let body = EXAMPLE_BODY.as_bytes();
        let now = at_ms(NOW_MS);
        assert!(verify(KEY, body, &EXAMPLE_SIGNATURE.to_uppercase(), now));
        assert!(verify(KEY, body, &format!(" {EXAMPLE_SIGNATURE} "), now));
        assert!(!verify("key_test_124", body, EXAMPLE_SIGNATURE, now));
        assert!(!verify(KEY, &body[1..], EXAMPLE_SIGNATURE, now));
        // The timestamp is signed: moved by a millisecond, the digest no longer matches.
        assert!(!verify(KEY, body, &EXAMPLE_SIGNATURE.replace("855,", "856,"), now));
        let digest = EXAMPLE_SIGNATURE.split_once(",d=").expect("a digest").1;
        for malformed in [
            "",
            "v=1703302428855",
            &format!("d={digest},v=1703302428855"),
            &format!("v=,d={digest}"),
            &format!("v=-1703302428855,d={digest}"),
            &format!("v=1703302428855,d={}", &digest[..62]),
            &format!("v=1703302428855,d={digest}00"),
            &format!("v=1703302428855,d={}zz", &digest[..62]),
            &format!("v=1703302428855, d={digest}"),
            &format!("t=1703302428855,d={digest}"),
            &format!("v=99999999999999999999999,d={digest}"),
        ] {
            assert!(!verify(KEY, body, malformed, now), "{malformed}");
        }
    }

    #[test]
    fn verify_takes_five_minutes_either_way_and_no_more() {
        let body = EXAMPLE_BODY.as_bytes();
        let five_minutes = 5 * 60 * 1000;
        for (now, taken) in [
            (NOW_MS + five_minutes, true),
            (NOW_MS - five_minutes, true),
            (NOW_MS + five_minutes + 1, false),
            (NOW_MS - five_minutes - 1, false),
        ] {
            assert_eq!(verify(KEY, body, EXAMPLE_SIGNATURE, at_ms(now)), taken, "{}", now - NOW_MS);
        }
    }

    // --- Webhooks ---

    struct Request {
        method: Method,
        signature: Option<String>,
        body: Vec<u8>,
        now: Timestamp,
    }

    /// A webhook of `event` about `call`, signed now.
    fn signed(event: &str, call: Value) -> Request {
        let body = serde_json::to_vec(&json!({ "event": event, "call": call })).expect("JSON");
        Request { method: Method::POST, signature: Some(signature(KEY, &body, NOW_MS)), body, now: at_ms(NOW_MS) }
    }

    fn deliver(retell: &Retell, request: &Request) -> Result<CallbackReply, CallbackError> {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        if let Some(signature) = &request.signature {
            headers.insert("x-retell-signature", HeaderValue::from_str(signature).expect("a header value"));
        }
        let callback = Callback {
            method: &request.method,
            url: "https://outbound.example/api/v1.0/integrations/7/events",
            query: &[],
            headers: &headers,
            body: &request.body,
            now: request.now,
        };
        retell.callback(&callback).expect("Retell has its own webhook format")
    }

    /// The events and the broken reason of a verified webhook.
    fn reply(event: &str, call: Value) -> (Vec<ProviderEvent>, Option<String>) {
        match deliver(&retell(json!({})), &signed(event, call)) {
            Ok(CallbackReply::Events { events, inbound, broken }) => {
                assert!(inbound.is_empty());
                (events, broken)
            }
            other => panic!("not events: {other:?}"),
        }
    }

    /// The one event of a verified webhook, with its provisional wait.
    fn one_event(kind: &str, call: Value) -> (AttemptEvent, Option<SignedDuration>) {
        let (mut events, _) = reply(kind, call);
        assert_eq!(events.len(), 1, "{events:?}");
        let found = events.remove(0);
        assert_eq!(found.provider_id.as_deref(), Some("Jabr9"));
        (found.event, found.provisional)
    }

    const START_MS: i64 = 1_703_302_407_333;

    /// A call as `call_ended` describes it (reference §4.5), ended for `reason`.
    fn call(reason: &str) -> Value {
        json!({
            "call_type": "phone_call", "call_id": "Jabr9", "agent_id": "oBeDLoLOeuAbiuaMFXRtDOLriTJ5tSxD", "agent_version": 1,
            "call_status": "ended", "direction": "outbound", "from_number": "+14157774444", "to_number": "+12137774445",
            "metadata": { "attempt_id": "cll_1", "campaign_id": 42 },
            "start_timestamp": START_MS, "end_timestamp": 1_703_302_428_855_i64, "duration_ms": 21_522,
            "disconnection_reason": reason,
            "transcript": "Agent: hi how are you doing?\nUser: Doing pretty well.\n",
            "transcript_object": [
                { "role": "agent", "content": "hi how are you doing?", "words": [{ "word": "hi", "start": 0.7, "end": 1.0 }] },
                { "role": "transfer_target", "content": "Hello?", "words": [] },
                { "role": "user", "content": "Doing pretty well.", "words": [{ "word": "Doing", "start": 2.25, "end": 2.5 }] },
                { "role": "user", "content": "Bye." },
            ],
            "recording_url": "https://dxc03zgurdly9.cloudfront.net/abc/recording.wav",
            "public_log_url": "https://example.com/public.log",
        })
    }

    /// The same call, not connected (no start, no recording, no transcript), for `reason`.
    fn unconnected(reason: &str) -> Value {
        json!({
            "call_id": "Jabr9", "call_status": "not_connected", "metadata": { "attempt_id": "cll_1" },
            "end_timestamp": 1_703_302_428_855_i64, "duration_ms": 0, "disconnection_reason": reason,
        })
    }

    fn analyzed(mut call: Value, analysis: Value) -> Value {
        call["call_analysis"] = analysis;
        call
    }

    fn analysis(successful: bool, in_voicemail: bool) -> Value {
        json!({
            "call_summary": "The agent confirmed the order.", "in_voicemail": in_voicemail, "user_sentiment": "Positive",
            "call_successful": successful, "custom_analysis_data": { "confirmed": true, "summary": "custom wins" },
        })
    }

    #[test]
    fn call_analyzed_is_final_with_everything_the_call_tells() {
        let (event, provisional) = one_event("call_analyzed", analyzed(call("user_hangup"), analysis(true, false)));
        assert_eq!(provisional, None);
        assert_eq!(event.attempt_id, "cll_1");
        assert_eq!((event.status, event.answered_by, event.converted), (AttemptStatus::Ended, Some(AnsweredBy::Human), true));
        assert_eq!(event.started_at, Some(at_ms(START_MS)));
        assert_eq!(event.ended_at, Some(at_ms(1_703_302_428_855)));
        assert_eq!((event.duration, event.billed_duration), (Some(22), Some(22)));
        assert_eq!((event.ended_by.as_deref(), event.ended_reason.as_deref()), (Some("user"), Some("user_hangup")));
        assert_eq!(event.recording_url.as_deref(), Some("https://dxc03zgurdly9.cloudfront.net/abc/recording.wav"));
        assert_eq!(
            event.transcript,
            Some(vec![
                TranscriptEntry {
                    sent_by: Speaker::Assistant,
                    sent_at: at_ms(START_MS + 700),
                    content: "hi how are you doing?".to_owned()
                },
                TranscriptEntry { sent_by: Speaker::User, sent_at: at_ms(START_MS + 2250), content: "Doing pretty well.".to_owned() },
                TranscriptEntry { sent_by: Speaker::User, sent_at: at_ms(START_MS), content: "Bye.".to_owned() },
            ])
        );
        let data = event.extracted_data.expect("data");
        assert_eq!(Value::Object(data), json!({ "summary": "custom wins", "user_sentiment": "Positive", "confirmed": true }));
        assert!(!event.invalid_number && !event.throttled);
        assert_eq!(event.tags, None);
    }

    #[test]
    fn call_ended_is_provisional_for_ten_minutes_and_never_converted() {
        let (event, provisional) = one_event("call_ended", call("agent_hangup"));
        assert_eq!(provisional, Some(SignedDuration::from_mins(10)));
        assert_eq!((event.status, event.answered_by, event.converted), (AttemptStatus::Ended, Some(AnsweredBy::Human), false));
        assert_eq!((event.ended_by.as_deref(), event.ended_reason.as_deref()), (Some("agent"), Some("agent_hangup")));
        assert_eq!(event.extracted_data, None);
        assert_eq!(event.duration, Some(22));
        assert_eq!(event.transcript.as_ref().map(Vec::len), Some(3));
        // A call_analysis on call_ended (Retell sends none) is not read.
        let (event, _) = one_event("call_ended", analyzed(call("user_hangup"), analysis(true, true)));
        assert_eq!((event.answered_by, event.converted, event.extracted_data), (Some(AnsweredBy::Human), false, None));
    }

    #[test]
    fn call_started_moves_the_call_in_progress() {
        let mut started = call("");
        for key in ["disconnection_reason", "end_timestamp", "duration_ms", "transcript_object", "recording_url"] {
            started.as_object_mut().expect("an object").remove(key);
        }
        started["call_status"] = json!("ongoing");
        let (event, provisional) = one_event("call_started", started);
        assert_eq!(provisional, None);
        assert_eq!((event.status, event.answered_by), (AttemptStatus::InProgress, None));
        assert_eq!(event.started_at, Some(at_ms(START_MS)));
        assert_eq!((event.ended_at, event.duration, event.ended_by, event.ended_reason), (None, None, None, None));
        assert_eq!((event.transcript, event.recording_url, event.extracted_data), (None, None, None));
    }

    /// The final event of a call analyzed with `analysis`, ended for `reason` (connected or not).
    fn final_of(reason: &str, connected: bool, analysis: Value) -> (AttemptEvent, Option<String>) {
        let call = if connected { call(reason) } else { unconnected(reason) };
        let (mut events, broken) = reply("call_analyzed", analyzed(call, analysis));
        assert_eq!(events.len(), 1);
        (events.remove(0).event, broken)
    }

    #[test]
    fn every_connected_ending_is_a_human_unless_in_voicemail_and_converted_on_success() {
        for (reason, by) in [
            ("user_hangup", "user"),
            ("agent_hangup", "agent"),
            ("call_transfer", "system"),
            ("inactivity", "agent"),
            ("max_duration_reached", "agent"),
            ("transfer_bridged", "system"),
            ("transfer_cancelled", "system"),
            ("manual_stopped", "system"),
            ("call_take_over", "system"),
        ] {
            let (event, broken) = final_of(reason, true, analysis(true, false));
            assert_eq!(broken, None);
            assert_eq!(
                (event.status, event.answered_by, event.converted),
                (AttemptStatus::Ended, Some(AnsweredBy::Human), true),
                "{reason}"
            );
            assert_eq!((event.ended_by.as_deref(), event.ended_reason.as_deref()), (Some(by), Some(reason)));
            let (event, _) = final_of(reason, true, analysis(false, false));
            assert_eq!((event.answered_by, event.converted), (Some(AnsweredBy::Human), false), "{reason}");
            // The analysis heard a voicemail: a machine, never converted.
            let (event, _) = final_of(reason, true, analysis(true, true));
            assert_eq!(
                (event.status, event.answered_by, event.converted),
                (AttemptStatus::Ended, Some(AnsweredBy::Machine), false),
                "{reason}"
            );
        }
    }

    #[test]
    fn voicemail_and_ivr_endings_are_a_machine() {
        for reason in ["voicemail_reached", "ivr_reached"] {
            let (event, _) = final_of(reason, true, analysis(true, false));
            assert_eq!(
                (event.status, event.answered_by, event.converted),
                (AttemptStatus::Ended, Some(AnsweredBy::Machine), false),
                "{reason}"
            );
            assert_eq!((event.ended_by.as_deref(), event.ended_reason.as_deref()), (Some("agent"), Some(reason)));
        }
    }

    #[test]
    fn unconnected_endings() {
        // (reason, status, invalid number, throttled)
        let rows = [
            ("dial_busy", AttemptStatus::Busy, false, false),
            ("user_declined", AttemptStatus::Busy, false, false),
            ("dial_no_answer", AttemptStatus::NoAnswer, false, false),
            ("invalid_destination", AttemptStatus::Failed, true, false),
            ("concurrency_limit_reached", AttemptStatus::Failed, false, true),
            ("no_concurrency_fallback", AttemptStatus::Failed, false, true),
            ("telephony_provider_unavailable", AttemptStatus::Failed, false, true),
            ("dial_failed", AttemptStatus::Failed, false, false),
            ("telephony_provider_permission_denied", AttemptStatus::Failed, false, false),
            ("sip_routing_error", AttemptStatus::Failed, false, false),
            ("marked_as_spam", AttemptStatus::Failed, false, false),
            ("scam_detected", AttemptStatus::Failed, false, false),
            ("registered_call_timeout", AttemptStatus::Failed, false, false),
            ("error_llm_websocket_open", AttemptStatus::Failed, false, false),
            ("error_no_audio_received", AttemptStatus::Failed, false, false),
            ("error_unknown", AttemptStatus::Failed, false, false),
            ("a_reason_retell_adds_later", AttemptStatus::Failed, false, false),
        ];
        for (reason, status, invalid_number, throttled) in rows {
            let (event, broken) = final_of(reason, false, analysis(true, false));
            assert_eq!(broken, None, "{reason}");
            assert_eq!(event.status, status, "{reason}");
            assert_eq!((event.invalid_number, event.throttled), (invalid_number, throttled), "{reason}");
            assert_eq!((event.answered_by, event.converted), (None, false), "{reason}");
            assert_eq!((event.ended_by, event.ended_reason.as_deref()), (None, Some(reason)), "{reason}");
            assert_eq!((event.started_at, event.duration, event.transcript), (None, Some(0), None), "{reason}");
        }
    }

    #[test]
    fn an_error_during_a_connected_call_fails_it_ended_by_the_system() {
        let (event, _) = final_of("error_llm_websocket_lost_connection", true, analysis(true, false));
        assert_eq!((event.status, event.answered_by, event.converted), (AttemptStatus::Failed, None, false));
        assert_eq!(event.ended_by.as_deref(), Some("system"));
        assert!(!event.throttled);
    }

    #[test]
    fn no_valid_payment_is_throttled_and_breaks_the_integration() {
        for kind in ["call_ended", "call_analyzed"] {
            let (events, broken) = reply(kind, unconnected("no_valid_payment"));
            let event = &events[0].event;
            assert_eq!((event.status, event.throttled, event.invalid_number), (AttemptStatus::Failed, true, false), "{kind}");
            assert_eq!(event.ended_reason.as_deref(), Some("no_valid_payment"));
            assert!(broken.as_deref().is_some_and(|reason| reason.starts_with("retell no_valid_payment")), "{kind}: {broken:?}");
        }
    }

    #[test]
    fn a_call_without_a_reason_falls_back_on_its_status() {
        let mut ended = call("");
        ended.as_object_mut().expect("an object").remove("disconnection_reason");
        let (event, _) = final_of_call(ended.clone(), analysis(true, false));
        assert_eq!((event.status, event.answered_by, event.converted), (AttemptStatus::Ended, Some(AnsweredBy::Unknown), false));
        assert_eq!((event.ended_reason.as_deref(), event.ended_by.as_deref()), (Some("ended"), Some("system")));
        let (event, _) = final_of_call(ended.clone(), analysis(false, true));
        assert_eq!(event.answered_by, Some(AnsweredBy::Machine));
        ended["call_status"] = json!("not_connected");
        let (event, _) = final_of_call(ended.clone(), Value::Null);
        assert_eq!((event.status, event.ended_reason.as_deref()), (AttemptStatus::Failed, Some("not_connected")));
        ended.as_object_mut().expect("an object").remove("call_status");
        let (event, _) = final_of_call(ended, Value::Null);
        assert_eq!((event.status, event.ended_reason.as_deref()), (AttemptStatus::Failed, Some("unknown")));
    }

    fn final_of_call(call: Value, analysis: Value) -> (AttemptEvent, Option<SignedDuration>) {
        one_event("call_analyzed", analyzed(call, analysis))
    }

    #[test]
    fn call_analyzed_without_an_analysis_is_final_and_not_converted() {
        let mut call = call("user_hangup");
        call.as_object_mut().expect("an object").remove("call_analysis");
        let (event, provisional) = one_event("call_analyzed", call);
        assert_eq!(provisional, None);
        assert_eq!((event.answered_by, event.converted, event.extracted_data), (Some(AnsweredBy::Human), false, None));
    }

    #[test]
    fn analysis_data_takes_what_is_given_and_leaves_out_custom_data_too_large() {
        let (event, _) = final_of("user_hangup", true, json!({ "call_summary": "Short.", "custom_analysis_data": "not an object" }));
        assert_eq!(event.extracted_data.map(Value::Object), Some(json!({ "summary": "Short." })));
        let (event, _) =
            final_of("user_hangup", true, json!({ "user_sentiment": "Neutral", "custom_analysis_data": { "notes": "x".repeat(20_000) } }));
        assert_eq!(event.extracted_data.map(Value::Object), Some(json!({ "user_sentiment": "Neutral" })));
        let (event, _) = final_of("user_hangup", true, json!({ "call_summary": "y".repeat(20_000) }));
        assert_eq!(event.extracted_data, None);
    }

    #[test]
    fn times_recording_and_transcript_are_read_tolerantly() {
        let mut call = call("user_hangup");
        call["duration_ms"] = json!(21_499);
        call["recording_url"] = json!("ftp://example.com/recording.wav");
        call["transcript_object"][0]["words"][0]["start"] = json!(-3);
        let (event, _) = one_event("call_analyzed", call.clone());
        assert_eq!(event.duration, Some(21));
        assert_eq!(event.recording_url, None, "only http(s) recordings are kept");
        assert_eq!(event.transcript.expect("a transcript")[0].sent_at, at_ms(START_MS));
        // Without duration_ms, the time between start and end; a float timestamp is rounded.
        call.as_object_mut().expect("an object").remove("duration_ms");
        call["start_timestamp"] = json!(1_703_302_407_333.4_f64);
        let (event, _) = one_event("call_analyzed", call.clone());
        assert_eq!((event.duration, event.started_at), (Some(22), Some(at_ms(START_MS))));
        // Without a start, the transcript has no times to give: left out.
        call.as_object_mut().expect("an object").remove("start_timestamp");
        let (event, _) = one_event("call_analyzed", call.clone());
        assert_eq!((event.started_at, event.duration, event.transcript), (None, None, None));
        call["start_timestamp"] = json!(START_MS);
        call["transcript_object"] = json!([{ "role": "transfer_target", "content": "Hi" }]);
        assert_eq!(one_event("call_analyzed", call).0.transcript, None, "no line of ours: no transcript");
    }

    #[test]
    fn other_events_are_acknowledged_without_events() {
        for kind in ["transcript_updated", "transfer_started", "transfer_bridged", "transfer_cancelled", "transfer_ended", "new_thing"] {
            assert_eq!(reply(kind, call("")), (vec![], None), "{kind}");
        }
    }

    #[test]
    fn the_attempt_id_and_call_id_may_be_missing() {
        let (events, _) = reply("call_analyzed", json!({ "call_status": "not_connected", "disconnection_reason": "dial_busy" }));
        assert_eq!((events[0].provider_id.as_deref(), events[0].event.attempt_id.as_str()), (None, ""));
        assert_eq!(events[0].event.status, AttemptStatus::Busy);
    }

    #[test]
    fn bad_missing_or_stale_signatures_are_refused() {
        let retell = retell(json!({}));
        let mut request = signed("call_analyzed", call("user_hangup"));
        assert!(matches!(deliver(&retell, &request), Ok(CallbackReply::Events { .. })));
        request.now = at_ms(NOW_MS + 5 * 60 * 1000 + 1);
        assert_eq!(deliver(&retell, &request), Err(CallbackError::BadSignature), "stale");
        request.now = at_ms(NOW_MS - 5 * 60 * 1000 - 1);
        assert_eq!(deliver(&retell, &request), Err(CallbackError::BadSignature), "from the future");
        let mut request = signed("call_analyzed", call("user_hangup"));
        request.signature = None;
        assert_eq!(deliver(&retell, &request), Err(CallbackError::BadSignature), "missing");
        let mut request = signed("call_analyzed", call("user_hangup"));
        request.signature = Some(signature("another key", &request.body, NOW_MS));
        assert_eq!(deliver(&retell, &request), Err(CallbackError::BadSignature), "another key");
        let mut request = signed("call_analyzed", call("user_hangup"));
        request.body = String::from_utf8(request.body).expect("UTF-8").replace("user_hangup", "dial_busy").into_bytes();
        assert_eq!(deliver(&retell, &request), Err(CallbackError::BadSignature), "tampered");
    }

    #[test]
    fn signed_bodies_that_are_not_retell_webhooks_are_invalid() {
        let retell = retell(json!({}));
        for body in [&b"not json"[..], br#"{"event":"call_ended"}"#, br#"{"call":{}}"#, br#"{"event":"call_ended","call":[]}"#, b"[]"] {
            let request =
                Request { method: Method::POST, signature: Some(signature(KEY, body, NOW_MS)), body: body.to_vec(), now: at_ms(NOW_MS) };
            assert!(matches!(deliver(&retell, &request), Err(CallbackError::Invalid(_))), "{}", String::from_utf8_lossy(body));
        }
        let mut get = signed("call_ended", call("user_hangup"));
        get.method = Method::GET;
        assert!(matches!(deliver(&retell, &get), Err(CallbackError::Invalid(_))));
    }
}
