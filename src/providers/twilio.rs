//! `twilio` (PROVIDERS.md §2; reference providers.md §1, §5): calls created with Twilio's
//! Programmable Voice REST API, their progress read from Twilio's signed form callbacks.

use std::time::Duration;

use async_trait::async_trait;
use axum::http::{HeaderMap, Method, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use jiff::SignedDuration;
use jiff::fmt::rfc2822::DateTimeParser;
use serde::Deserialize;
use sha1::Sha1;

use super::{Callback, CallbackError, CallbackReply, Connector, Handoff, Outgoing, ProviderEvent};
use crate::domain::attempt::{AnsweredBy, AttemptEvent, AttemptStatus};
use crate::domain::integration::{MachineDetection, TwilioConfig};

const FORM: &str = "application/x-www-form-urlencoded";

/// Twilio codes that say "throttled, safe to re-send later": REST concurrency, call queue full,
/// call concurrency.
const THROTTLED: [i64; 3] = [20429, 22005, 10004];
/// Twilio codes for an invalid or unreachable `To` number: the contact fails at once.
const INVALID_NUMBER: [i64; 3] = [21211, 21214, 21217];

pub struct Twilio {
    config: TwilioConfig,
    auth_token: String,
    http: reqwest::Client,
}

impl Twilio {
    pub fn new(config: TwilioConfig, auth_token: String, http: reqwest::Client) -> Twilio {
        Twilio { config, auth_token, http }
    }

    /// The form of `POST Calls.json` for one attempt (reference §1.2). The attempt id rides on
    /// every URL Twilio calls back, so that each callback finds its attempt even before the call
    /// sid is stored, and the signature covers it. `Err` is the hand-off's outcome when the
    /// config cannot make a call.
    fn call_form(&self, attempt_id: &str, to: &str, callback_url: &str) -> Result<String, Handoff> {
        let broken = |reason: &str| Handoff::Broken { reason: reason.to_owned() };
        let callback = with_attempt_id(callback_url, attempt_id).ok_or_else(|| broken("twilio: the callback URL is not a URL"))?;
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("To", to).append_pair("From", &self.config.from);
        match (&self.config.twiml_url, &self.config.twiml) {
            (Some(twiml_url), _) => {
                let url = with_attempt_id(twiml_url, attempt_id).ok_or_else(|| broken("twilio: twiml_url is not a URL"))?;
                form.append_pair("Url", &url)
            }
            (None, Some(twiml)) => form.append_pair("Twiml", twiml),
            (None, None) => return Err(broken("twilio: neither twiml_url nor twiml is set")),
        };
        form.append_pair("StatusCallback", &callback).append_pair("StatusCallbackMethod", "POST");
        for event in ["initiated", "ringing", "answered", "completed"] {
            form.append_pair("StatusCallbackEvent", event);
        }
        form.append_pair("Timeout", &self.config.timeout_s.to_string());
        if let Some(detection) = self.config.machine_detection {
            let mode = match detection {
                MachineDetection::Enable => "Enable",
                MachineDetection::DetectMessageEnd => "DetectMessageEnd",
            };
            // Async, so the call is not held silent while Twilio listens; the verdict comes to
            // the same callback URL.
            form.append_pair("MachineDetection", mode)
                .append_pair("AsyncAmd", "true")
                .append_pair("AsyncAmdStatusCallback", &callback)
                .append_pair("AsyncAmdStatusCallbackMethod", "POST");
        }
        if self.config.record {
            form.append_pair("Record", "true")
                .append_pair("RecordingStatusCallback", &callback)
                .append_pair("RecordingStatusCallbackEvent", "completed");
        }
        Ok(form.finish())
    }

    /// Posts a call's form to Twilio and reads the answer.
    async fn create_call(&self, form: String) -> Handoff {
        let url = format!("{}/2010-04-01/Accounts/{}/Calls.json", self.config.api_base.trim_end_matches('/'), self.config.account_sid);
        let sent = self
            .http
            .post(url)
            .timeout(Duration::from_millis(u64::from(self.config.timeout_ms)))
            .basic_auth(&self.config.account_sid, Some(&self.auth_token))
            .header(header::CONTENT_TYPE, FORM)
            .body(form)
            .send()
            .await;
        super::answer(sent, classify).await
    }
}

#[async_trait]
impl Connector for Twilio {
    async fn hand_off(&self, attempt: &Outgoing<'_>) -> Handoff {
        match self.call_form(attempt.attempt_id, attempt.contact.contact.as_str(), attempt.callback_url) {
            Ok(form) => self.create_call(form).await,
            Err(outcome) => outcome,
        }
    }

    fn callback(&self, request: &Callback<'_>) -> Option<Result<CallbackReply, CallbackError>> {
        Some(self.read_callback(request))
    }
}

/// `url` with `attempt_id=<id>` added to its query (after any query it has).
fn with_attempt_id(url: &str, attempt_id: &str) -> Option<String> {
    let mut url = url::Url::parse(url).ok()?;
    url.query_pairs_mut().append_pair("attempt_id", attempt_id);
    Some(url.into())
}

/// The parts of Twilio's JSON answer that decide a hand-off: the call's `sid`, or an error's
/// `code` and `message` (reference §1.3, §1.4).
#[derive(Default, Deserialize)]
struct Answer {
    sid: Option<String>,
    code: Option<i64>,
    message: Option<String>,
}

/// What Twilio's answer to `POST Calls.json` means (reference §1.4, §5; PROVIDERS.md §1).
fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Handoff {
    let answer: Answer = serde_json::from_slice(body).unwrap_or_default();
    if status.is_success() {
        return match answer.sid.filter(|sid| !sid.is_empty()) {
            Some(sid) => Handoff::Accepted { provider_id: Some(sid) },
            // Twilio said yes without saying to what: a call may exist that no callback can be
            // matched to by sid, so the attempt must not be re-sent.
            None => Handoff::Unknown,
        };
    }
    let code = answer.code;
    let named = match code {
        Some(code) => format!("twilio_{code}"),
        None => format!("twilio_http_{}", status.as_u16()),
    };
    if status == StatusCode::TOO_MANY_REQUESTS || code.is_some_and(|c| THROTTLED.contains(&c)) {
        return Handoff::Retry { after: super::retry_after(headers) };
    }
    if code.is_some_and(|c| INVALID_NUMBER.contains(&c)) {
        return Handoff::InvalidNumber { reason: named };
    }
    let integration_fault = match code {
        Some(20003) => Some("authentication failed"),
        Some(21210) => Some("the From number is not verified for this account"),
        Some(21215) => Some("the account's geo permissions do not allow this destination"),
        _ if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN => Some("authentication failed"),
        _ => None,
    };
    if let Some(fallback) = integration_fault {
        let message = answer.message.filter(|m| !m.trim().is_empty());
        return Handoff::Broken { reason: format!("{named}: {}", message.as_deref().map_or(fallback, str::trim)) };
    }
    if status.is_client_error() { Handoff::Failed { reason: named } } else { Handoff::Unknown }
}

/// `X-Twilio-Signature` for a request to `url` with form `params` (reference §1.7): base64 of
/// HMAC-SHA1 keyed with the auth token over the URL, then each parameter's name immediately
/// followed by its value, sorted by name (then value).
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    BASE64.encode(mac(auth_token, url, params).finalize().into_bytes())
}

fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// Whether `claimed` signs `url` and `params`, compared in constant time. Like Twilio's own
/// validator, the URL is also tried without its port and with the scheme's default port, "since
/// sig generation on back end is inconsistent".
fn verify(auth_token: &str, url: &str, params: &[(String, String)], claimed: &str) -> bool {
    let Ok(claimed) = BASE64.decode(claimed.trim()) else { return false };
    url_variants(url).iter().any(|url| mac(auth_token, url, params).verify_slice(&claimed).is_ok())
}

/// `url` as given, then without its port if it has one, or else with `:443` (https) or `:80`.
/// Worked on the text, not a parsed URL, so that the path and query stay byte for byte as signed.
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else { return variants };
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    // An IPv6 host is bracketed; a port's colon comes after the bracket.
    let port_search = authority[host_start..].rfind(']').map_or(host_start, |bracket| host_start + bracket + 1);
    match authority[port_search..].rfind(':') {
        Some(colon) => variants.push(format!("{scheme}://{}{tail}", &authority[..port_search + colon])),
        None => {
            let port = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
            variants.push(format!("{scheme}://{authority}:{port}{tail}"));
        }
    }
    variants
}

impl Twilio {
    /// A Twilio callback: a signed form POST (reference §1.5–§1.7).
    fn read_callback(&self, request: &Callback<'_>) -> Result<CallbackReply, CallbackError> {
        let is_form = request
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case(FORM));
        if request.method != Method::POST || !is_form {
            return Err(CallbackError::Invalid(format!("a Twilio callback is a POST with a {FORM} body")));
        }
        let form: Vec<(String, String)> = url::form_urlencoded::parse(request.body).into_owned().collect();
        let claimed = request.headers.get("x-twilio-signature").and_then(|value| value.to_str().ok());
        if !claimed.is_some_and(|claimed| verify(&self.auth_token, request.url, &form, claimed)) {
            return Err(CallbackError::BadSignature);
        }
        let attempt_id = request.query.iter().find(|(name, _)| name == "attempt_id").map(|(_, id)| id.clone()).unwrap_or_default();
        let event = callback_event(&form, attempt_id, self.config.machine_detection.is_some())?;
        let provider_id = field(&form, "CallSid").map(str::to_owned);
        let events = event.map(|event| ProviderEvent { provider_id, event, provisional: None }).into_iter().collect();
        Ok(CallbackReply::Events { events, inbound: vec![], broken: None })
    }
}

/// The first non-empty value of a form field (Twilio sends empty fields for absent values).
fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(key, value)| key == name && !value.is_empty()).map(|(_, value)| value.as_str())
}

/// Twilio's `AnsweredBy` (reference §1.6). A value Twilio may add later reads as unknown.
fn answered_by(value: &str) -> AnsweredBy {
    match value {
        "human" => AnsweredBy::Human,
        "machine_start" | "machine_end_beep" | "machine_end_silence" | "machine_end_other" | "fax" => AnsweredBy::Machine,
        _ => AnsweredBy::Unknown,
    }
}

/// The event one callback reports, if any (reference §1.5, §1.6, §5). Callbacks may come out of
/// order or twice; `SequenceNumber` is not read because the attempt's status lattice only moves
/// forward, which already puts them in order.
fn callback_event(form: &[(String, String)], attempt_id: String, amd: bool) -> Result<Option<AttemptEvent>, CallbackError> {
    static RFC2822: DateTimeParser = DateTimeParser::new().relaxed_weekday(true);
    let base = AttemptEvent {
        answered_by: field(form, "AnsweredBy").map(answered_by),
        recording_url: field(form, "RecordingUrl").map(str::to_owned),
        ended_by: None,
        ended_reason: None,
        ..AttemptEvent::failed(attempt_id, "")
    };
    let Some(call_status) = field(form, "CallStatus") else {
        // The async AMD verdict and the recording callback come without a call status, while the
        // call goes on or after it ended: reported as in progress, which the store takes for
        // their answered_by or recording_url even on a finished call.
        return if base.answered_by.is_some() || base.recording_url.is_some() {
            Ok(Some(AttemptEvent { status: AttemptStatus::InProgress, ..base }))
        } else if field(form, "RecordingStatus").is_some() {
            Ok(None)
        } else {
            Err(CallbackError::Invalid("a Twilio callback has CallStatus, AnsweredBy or RecordingStatus".to_owned()))
        };
    };
    let status = match call_status {
        "queued" | "initiated" => return Ok(None),
        "ringing" => AttemptStatus::Ringing,
        "in-progress" => AttemptStatus::InProgress,
        "completed" => AttemptStatus::Ended,
        "busy" => AttemptStatus::Busy,
        "no-answer" => AttemptStatus::NoAnswer,
        // Canceled is our own cancel, not an outcome of the call; its reason says so.
        "failed" | "canceled" => AttemptStatus::Failed,
        other => return Err(CallbackError::Invalid(format!("unknown CallStatus {other:?}"))),
    };
    if !status.is_final_call() {
        return Ok(Some(AttemptEvent { status, ..base }));
    }
    let duration = field(form, "CallDuration").and_then(|seconds| seconds.parse::<i64>().ok()).filter(|seconds| *seconds >= 0);
    let ended_at = field(form, "Timestamp").and_then(|at| RFC2822.parse_timestamp(at).ok());
    let answered = status == AttemptStatus::Ended;
    let answered_by = match base.answered_by {
        Some(verdict) => Some(verdict),
        // `completed` alone does not say a human answered (a voicemail completes too). With AMD
        // on and no verdict here, unknown; the store keeps an earlier definite verdict over it.
        None if answered && amd => Some(AnsweredBy::Unknown),
        None if answered => duration.is_some_and(|seconds| seconds > 0).then_some(AnsweredBy::Human),
        None => None,
    };
    let started_at = match (answered, ended_at, duration) {
        (true, Some(end), Some(seconds)) => end.checked_sub(SignedDuration::from_secs(seconds)).ok(),
        _ => None,
    };
    Ok(Some(AttemptEvent {
        status,
        answered_by,
        started_at,
        ended_at,
        duration,
        billed_duration: duration,
        ended_reason: Some(call_status.to_owned()),
        ..base
    }))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use jiff::Timestamp;
    use serde_json::json;

    use super::*;

    const TOKEN: &str = "12345";
    const CALLBACK_URL: &str = "https://outbound.example/api/v1.0/integrations/7/events?attempt_id=cll_1";

    fn config(extra: serde_json::Value) -> TwilioConfig {
        let mut config = json!({
            "account_sid": "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "from": "+14155550199",
            "twiml_url": "https://agent.example/twiml",
        });
        config.as_object_mut().expect("an object").extend(extra.as_object().expect("an object").clone());
        serde_json::from_value(config).expect("a twilio config")
    }

    fn twilio(extra: serde_json::Value) -> Twilio {
        Twilio::new(config(extra), TOKEN.to_owned(), reqwest::Client::new())
    }

    fn pairs(params: &[(&str, &str)]) -> Vec<(String, String)> {
        params.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
    }

    // --- Signature ---

    fn official_params(caller: &str) -> Vec<(String, String)> {
        pairs(&[("CallSid", "CA1234567890ABCDE"), ("Caller", caller), ("Digits", "1234"), ("From", caller), ("To", "+18005551212")])
    }

    const OFFICIAL_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    #[test]
    fn signature_matches_twilios_own_vectors() {
        assert_eq!(signature(TOKEN, OFFICIAL_URL, &official_params("+14158675309")), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert_eq!(signature(TOKEN, OFFICIAL_URL, &official_params("+12349013030")), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
    }

    #[test]
    fn signature_sorts_parameters_whatever_their_order() {
        let mut params = official_params("+14158675309");
        params.reverse();
        assert_eq!(signature(TOKEN, OFFICIAL_URL, &params), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    }

    #[test]
    fn verify_accepts_the_official_vector_and_refuses_a_wrong_token_or_tampered_param() {
        let params = official_params("+14158675309");
        let claimed = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert!(verify(TOKEN, OFFICIAL_URL, &params, claimed));
        assert!(!verify("54321", OFFICIAL_URL, &params, claimed));
        let mut tampered = params.clone();
        tampered[2].1 = "9999".to_owned();
        assert!(!verify(TOKEN, OFFICIAL_URL, &tampered, claimed));
        assert!(!verify(TOKEN, "https://mycompany.com/myapp.php?foo=1&bar=3", &params, claimed));
        assert!(!verify(TOKEN, OFFICIAL_URL, &params, "not base64!"));
    }

    #[test]
    fn verify_takes_the_url_with_or_without_its_port() {
        let params = official_params("+14158675309");
        let without_port = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        // Signed without the port, called with it.
        assert!(verify(TOKEN, "https://mycompany.com:443/myapp.php?foo=1&bar=2", &params, without_port));
        // Signed with the port, called without it.
        let with_port = signature(TOKEN, "https://mycompany.com:443/myapp.php?foo=1&bar=2", &params);
        assert!(verify(TOKEN, OFFICIAL_URL, &params, &with_port));
        let http_with_port = signature(TOKEN, "http://mycompany.com:80/myapp.php?foo=1&bar=2", &params);
        assert!(verify(TOKEN, "http://mycompany.com/myapp.php?foo=1&bar=2", &params, &http_with_port));
    }

    #[test]
    fn url_variants_strip_or_add_the_port() {
        assert_eq!(url_variants("https://h.example/p?q=1"), ["https://h.example/p?q=1", "https://h.example:443/p?q=1"]);
        assert_eq!(url_variants("http://h.example:8080/p"), ["http://h.example:8080/p", "http://h.example/p"]);
        assert_eq!(url_variants("http://[::1]:3000?a=b:c"), ["http://[::1]:3000?a=b:c", "http://[::1]?a=b:c"]);
        assert_eq!(url_variants("https://[::1]/"), ["https://[::1]/", "https://[::1]:443/"]);
        assert_eq!(url_variants("not a url"), ["not a url"]);
    }

    // --- Hand-off ---

    fn form_of(body: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(body.as_bytes()).into_owned().collect()
    }

    fn values<'a>(form: &'a [(String, String)], name: &str) -> Vec<&'a str> {
        form.iter().filter(|(key, _)| key == name).map(|(_, value)| value.as_str()).collect()
    }

    #[test]
    fn call_form_carries_the_attempt_id_on_every_url() {
        let twilio = twilio(json!({ "twiml_url": "https://agent.example/twiml?lang=es", "record": true }));
        let body = twilio.call_form("cll_1", "+14155550100", "https://outbound.example/api/v1.0/integrations/7/events").expect("a form");
        let form = form_of(&body);
        let callback = "https://outbound.example/api/v1.0/integrations/7/events?attempt_id=cll_1";
        assert_eq!(values(&form, "To"), ["+14155550100"]);
        assert_eq!(values(&form, "From"), ["+14155550199"]);
        assert_eq!(values(&form, "Url"), ["https://agent.example/twiml?lang=es&attempt_id=cll_1"]);
        assert_eq!(values(&form, "Twiml"), Vec::<&str>::new());
        assert_eq!(values(&form, "StatusCallback"), [callback]);
        assert_eq!(values(&form, "StatusCallbackMethod"), ["POST"]);
        assert_eq!(values(&form, "StatusCallbackEvent"), ["initiated", "ringing", "answered", "completed"]);
        assert_eq!(values(&form, "Timeout"), ["30"]);
        assert_eq!(values(&form, "MachineDetection"), ["Enable"]);
        assert_eq!(values(&form, "AsyncAmd"), ["true"]);
        assert_eq!(values(&form, "AsyncAmdStatusCallback"), [callback]);
        assert_eq!(values(&form, "AsyncAmdStatusCallbackMethod"), ["POST"]);
        assert_eq!(values(&form, "Record"), ["true"]);
        assert_eq!(values(&form, "RecordingStatusCallback"), [callback]);
        assert_eq!(values(&form, "RecordingStatusCallbackEvent"), ["completed"]);
        // Repeated keys, percent-encoded `+`.
        assert!(body.contains("StatusCallbackEvent=initiated&StatusCallbackEvent=ringing"), "{body}");
        assert!(body.contains("To=%2B14155550100"), "{body}");
    }

    #[test]
    fn call_form_with_inline_twiml_detect_message_end_and_no_recording() {
        let twilio = twilio(json!({
            "twiml_url": null, "twiml": "<Response><Say>Hola</Say></Response>",
            "machine_detection": "DetectMessageEnd", "timeout_s": 45,
        }));
        let form = form_of(&twilio.call_form("cll_2", "+14155550100", "https://o.example/events?x=1").expect("a form"));
        assert_eq!(values(&form, "Url"), Vec::<&str>::new());
        assert_eq!(values(&form, "Twiml"), ["<Response><Say>Hola</Say></Response>"]);
        assert_eq!(values(&form, "StatusCallback"), ["https://o.example/events?x=1&attempt_id=cll_2"]);
        assert_eq!(values(&form, "MachineDetection"), ["DetectMessageEnd"]);
        assert_eq!(values(&form, "Timeout"), ["45"]);
        assert_eq!(values(&form, "Record"), Vec::<&str>::new());
        assert_eq!(values(&form, "RecordingStatusCallback"), Vec::<&str>::new());
    }

    #[test]
    fn call_form_without_amd_sends_no_amd_parameters() {
        let form = form_of(
            &twilio(json!({ "machine_detection": null })).call_form("cll_3", "+14155550100", "https://o.example/e").expect("a form"),
        );
        for name in ["MachineDetection", "AsyncAmd", "AsyncAmdStatusCallback", "AsyncAmdStatusCallbackMethod"] {
            assert_eq!(values(&form, name), Vec::<&str>::new(), "{name}");
        }
    }

    #[test]
    fn call_form_without_a_call_handler_is_a_broken_integration() {
        let twilio = twilio(json!({ "twiml_url": null }));
        assert!(matches!(twilio.call_form("cll_4", "+14155550100", "https://o.example/e"), Err(Handoff::Broken { .. })));
    }

    #[tokio::test]
    async fn create_call_posts_the_form_with_basic_auth() {
        use wiremock::matchers::{body_string_contains, header, method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        let basic = format!("Basic {}", BASE64.encode("ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:12345"));
        Mock::given(method("POST"))
            .and(path("/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Calls.json"))
            .and(header("authorization", basic.as_str()))
            .and(header("content-type", FORM))
            .and(body_string_contains("To=%2B14155550100"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "sid": "CA123", "status": "queued" })))
            .expect(1)
            .mount(&server)
            .await;
        let twilio = twilio(json!({ "api_base": server.uri() }));
        let form = twilio.call_form("cll_1", "+14155550100", "https://o.example/e").expect("a form");
        assert_eq!(twilio.create_call(form).await, Handoff::Accepted { provider_id: Some("CA123".to_owned()) });
    }

    #[tokio::test]
    async fn create_call_to_a_closed_port_is_retried() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let closed = format!("http://{}", listener.local_addr().expect("an address"));
        drop(listener);
        let twilio = twilio(json!({ "api_base": closed }));
        assert_eq!(twilio.create_call("To=%2B1".to_owned()).await, Handoff::Retry { after: None });
    }

    fn answer(status: u16, body: serde_json::Value) -> Handoff {
        answer_with(status, &HeaderMap::new(), body)
    }

    fn answer_with(status: u16, headers: &HeaderMap, body: serde_json::Value) -> Handoff {
        classify(StatusCode::from_u16(status).expect("a status"), headers, body.to_string().as_bytes())
    }

    fn error(status: u16, code: i64) -> Handoff {
        answer(status, json!({ "code": code, "message": format!("message {code}"), "status": status }))
    }

    #[test]
    fn classify_a_created_call() {
        assert_eq!(answer(201, json!({ "sid": "CAbb", "status": "queued" })), Handoff::Accepted { provider_id: Some("CAbb".to_owned()) });
        assert_eq!(answer(200, json!({ "status": "queued" })), Handoff::Unknown);
        assert_eq!(answer(201, json!({ "sid": "" })), Handoff::Unknown);
        assert_eq!(classify(StatusCode::CREATED, &HeaderMap::new(), b"<xml/>"), Handoff::Unknown);
    }

    #[test]
    fn classify_throttling() {
        let mut retry_after = HeaderMap::new();
        retry_after.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(answer_with(429, &retry_after, json!({ "code": 20429 })), Handoff::Retry { after: Some(SignedDuration::from_secs(7)) });
        assert_eq!(answer(429, json!({})), Handoff::Retry { after: None });
        assert_eq!(classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), b""), Handoff::Retry { after: None });
        assert_eq!(error(429, 20429), Handoff::Retry { after: None });
        assert_eq!(error(503, 22005), Handoff::Retry { after: None });
        assert_eq!(error(400, 10004), Handoff::Retry { after: None });
        assert_eq!(answer_with(400, &retry_after, json!({ "code": 22005 })), Handoff::Retry { after: Some(SignedDuration::from_secs(7)) });
    }

    #[test]
    fn classify_invalid_numbers() {
        for code in INVALID_NUMBER {
            assert_eq!(error(400, code), Handoff::InvalidNumber { reason: format!("twilio_{code}") });
        }
    }

    #[test]
    fn classify_a_broken_integration() {
        assert_eq!(
            answer(401, json!({ "code": 20003, "message": "Authenticate", "status": 401 })),
            Handoff::Broken { reason: "twilio_20003: Authenticate".to_owned() }
        );
        assert_eq!(answer(401, json!({ "code": 20003 })), Handoff::Broken { reason: "twilio_20003: authentication failed".to_owned() });
        assert_eq!(error(400, 21210), Handoff::Broken { reason: "twilio_21210: message 21210".to_owned() });
        assert_eq!(
            answer(400, json!({ "code": 21210 })),
            Handoff::Broken { reason: "twilio_21210: the From number is not verified for this account".to_owned() }
        );
        assert_eq!(error(400, 21215), Handoff::Broken { reason: "twilio_21215: message 21215".to_owned() });
        assert_eq!(
            answer(400, json!({ "code": 21215, "message": " " })),
            Handoff::Broken { reason: "twilio_21215: the account's geo permissions do not allow this destination".to_owned() }
        );
        assert_eq!(answer(401, json!({})), Handoff::Broken { reason: "twilio_http_401: authentication failed".to_owned() });
        assert_eq!(
            classify(StatusCode::FORBIDDEN, &HeaderMap::new(), b"Forbidden"),
            Handoff::Broken { reason: "twilio_http_403: authentication failed".to_owned() }
        );
        assert_eq!(error(403, 20005), Handoff::Broken { reason: "twilio_20005: message 20005".to_owned() });
    }

    #[test]
    fn classify_other_refusals_and_server_errors() {
        assert_eq!(error(400, 21216), Handoff::Failed { reason: "twilio_21216".to_owned() });
        assert_eq!(answer(404, json!({})), Handoff::Failed { reason: "twilio_http_404".to_owned() });
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), b"not json"),
            Handoff::Failed { reason: "twilio_http_400".to_owned() }
        );
        assert_eq!(error(500, 20500), Handoff::Unknown);
        assert_eq!(classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b""), Handoff::Unknown);
    }

    // --- Callbacks ---

    struct Request {
        method: Method,
        content_type: Option<&'static str>,
        signature: Option<String>,
        url: String,
        body: String,
    }

    /// A form callback to `url`, signed with the integration's token.
    fn signed(url: &str, params: &[(&str, &str)]) -> Request {
        let params = pairs(params);
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
        Request {
            method: Method::POST,
            content_type: Some(FORM),
            signature: Some(signature(TOKEN, url, &params)),
            url: url.to_owned(),
            body,
        }
    }

    fn deliver(twilio: &Twilio, request: &Request) -> Result<CallbackReply, CallbackError> {
        let mut headers = HeaderMap::new();
        if let Some(content_type) = request.content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        if let Some(signature) = &request.signature {
            headers.insert("x-twilio-signature", HeaderValue::from_str(signature).expect("a header value"));
        }
        let query: Vec<(String, String)> = url::Url::parse(&request.url).expect("a URL").query_pairs().into_owned().collect();
        let callback = Callback {
            method: &request.method,
            url: &request.url,
            query: &query,
            headers: &headers,
            body: request.body.as_bytes(),
            now: Timestamp::UNIX_EPOCH,
        };
        twilio.callback(&callback).expect("Twilio has its own callback format")
    }

    /// The events of a verified callback.
    fn events(twilio: &Twilio, params: &[(&str, &str)]) -> Vec<ProviderEvent> {
        match deliver(twilio, &signed(CALLBACK_URL, params)) {
            Ok(CallbackReply::Events { events, inbound, .. }) => {
                assert!(inbound.is_empty());
                events
            }
            other => panic!("not events: {other:?}"),
        }
    }

    /// The one event of a verified callback.
    fn event(twilio: &Twilio, params: &[(&str, &str)]) -> AttemptEvent {
        let mut events = events(twilio, params);
        assert_eq!(events.len(), 1, "{events:?}");
        let event = events.remove(0);
        assert_eq!(event.provider_id.as_deref(), Some("CAbb"));
        event.event
    }

    const ENDED_AT: &str = "Tue, 31 Aug 2010 20:36:44 +0000";

    fn final_status(status: &'static str, duration: &'static str, answered_by: Option<&'static str>) -> Vec<(&'static str, &'static str)> {
        let mut params = vec![
            ("AccountSid", "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            ("CallSid", "CAbb"),
            ("CallStatus", status),
            ("CallDuration", duration),
            ("CallbackSource", "call-progress-events"),
            ("Direction", "outbound-api"),
            ("From", "+14155550199"),
            ("To", "+14155550100"),
            ("SequenceNumber", "3"),
            ("Timestamp", ENDED_AT),
        ];
        params.extend(answered_by.map(|verdict| ("AnsweredBy", verdict)));
        params
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    #[test]
    fn completed_and_answered_by_a_human() {
        let event = event(&twilio(json!({})), &final_status("completed", "42", Some("human")));
        assert_eq!(event.attempt_id, "cll_1");
        assert_eq!(event.status, AttemptStatus::Ended);
        assert_eq!(event.answered_by, Some(AnsweredBy::Human));
        assert_eq!(event.duration, Some(42));
        assert_eq!(event.billed_duration, Some(42));
        assert_eq!(event.ended_at, Some(at("2010-08-31T20:36:44Z")));
        assert_eq!(event.started_at, Some(at("2010-08-31T20:36:02Z")));
        assert_eq!(event.ended_reason.as_deref(), Some("completed"));
        assert_eq!(event.ended_by, None);
        assert!(!event.converted && !event.invalid_number);
    }

    #[test]
    fn completed_and_answered_by_a_machine_or_fax() {
        for verdict in ["machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"] {
            let event = event(&twilio(json!({})), &final_status("completed", "12", Some(verdict)));
            assert_eq!((event.status, event.answered_by), (AttemptStatus::Ended, Some(AnsweredBy::Machine)), "{verdict}");
        }
        let event = event(&twilio(json!({})), &final_status("completed", "12", Some("unknown")));
        assert_eq!(event.answered_by, Some(AnsweredBy::Unknown));
    }

    #[test]
    fn completed_without_a_verdict() {
        let no_amd = twilio(json!({ "machine_detection": null }));
        let talked = event(&no_amd, &final_status("completed", "42", None));
        assert_eq!((talked.status, talked.answered_by), (AttemptStatus::Ended, Some(AnsweredBy::Human)));
        let silent = event(&no_amd, &final_status("completed", "0", None));
        assert_eq!((silent.status, silent.answered_by, silent.duration), (AttemptStatus::Ended, None, Some(0)));
        // With AMD on, the verdict came (or comes) on its own callback.
        let amd = event(&twilio(json!({})), &final_status("completed", "42", None));
        assert_eq!((amd.status, amd.answered_by), (AttemptStatus::Ended, Some(AnsweredBy::Unknown)));
    }

    #[test]
    fn unanswered_outcomes() {
        for (status, expected) in [
            ("busy", AttemptStatus::Busy),
            ("no-answer", AttemptStatus::NoAnswer),
            ("failed", AttemptStatus::Failed),
            ("canceled", AttemptStatus::Failed),
        ] {
            let event = event(&twilio(json!({})), &final_status(status, "0", None));
            assert_eq!(event.status, expected, "{status}");
            assert_eq!(event.ended_reason.as_deref(), Some(status));
            assert_eq!(event.answered_by, None);
            assert_eq!(event.ended_by, None);
            assert_eq!(event.ended_at, Some(at("2010-08-31T20:36:44Z")));
            assert_eq!(event.started_at, None);
            assert_eq!(event.duration, Some(0));
            assert!(!event.invalid_number);
        }
    }

    #[test]
    fn progress_statuses() {
        assert!(events(&twilio(json!({})), &[("CallSid", "CAbb"), ("CallStatus", "queued")]).is_empty());
        assert!(events(&twilio(json!({})), &[("CallSid", "CAbb"), ("CallStatus", "initiated")]).is_empty());
        let ringing = event(&twilio(json!({})), &[("CallSid", "CAbb"), ("CallStatus", "ringing"), ("Timestamp", ENDED_AT)]);
        assert_eq!((ringing.status, ringing.ended_at, ringing.ended_reason), (AttemptStatus::Ringing, None, None));
        let answered = event(&twilio(json!({})), &[("CallSid", "CAbb"), ("CallStatus", "in-progress")]);
        assert_eq!((answered.status, answered.answered_by), (AttemptStatus::InProgress, None));
    }

    #[test]
    fn async_amd_callback_carries_the_verdict() {
        let event = event(
            &twilio(json!({})),
            &[("AccountSid", "ACaa"), ("CallSid", "CAbb"), ("AnsweredBy", "machine_start"), ("MachineDetectionDuration", "2100")],
        );
        assert_eq!(event.status, AttemptStatus::InProgress);
        assert_eq!(event.answered_by, Some(AnsweredBy::Machine));
        assert_eq!((event.ended_reason, event.ended_at, event.duration), (None, None, None));
    }

    #[test]
    fn recording_callback_carries_the_recording() {
        let url = "https://api.twilio.com/2010-04-01/Accounts/ACaa/Recordings/REcc";
        let recording = event(
            &twilio(json!({ "record": true })),
            &[
                ("CallSid", "CAbb"),
                ("RecordingSid", "REcc"),
                ("RecordingUrl", url),
                ("RecordingStatus", "completed"),
                ("RecordingDuration", "40"),
            ],
        );
        assert_eq!(recording.status, AttemptStatus::InProgress);
        assert_eq!(recording.recording_url.as_deref(), Some(url));
        assert_eq!((recording.answered_by, recording.ended_reason), (None, None));
        // A recording that failed has nothing to keep.
        assert!(events(&twilio(json!({})), &[("CallSid", "CAbb"), ("RecordingStatus", "failed")]).is_empty());
        // A status callback carrying the recording keeps it too.
        let mut completed = final_status("completed", "42", Some("human"));
        completed.push(("RecordingUrl", url));
        assert_eq!(event(&twilio(json!({})), &completed).recording_url.as_deref(), Some(url));
    }

    #[test]
    fn attempt_id_is_empty_without_the_query_parameter() {
        let request = signed("https://outbound.example/api/v1.0/integrations/7/events", &final_status("busy", "0", None));
        let Ok(CallbackReply::Events { events, .. }) = deliver(&twilio(json!({})), &request) else { panic!("not events") };
        assert_eq!(events[0].event.attempt_id, "");
        assert_eq!(events[0].provider_id.as_deref(), Some("CAbb"));
    }

    #[test]
    fn a_bad_or_missing_signature_is_refused() {
        let twilio = twilio(json!({}));
        let params = final_status("completed", "42", Some("human"));
        let mut request = signed(CALLBACK_URL, &params);
        request.signature = None;
        assert_eq!(deliver(&twilio, &request), Err(CallbackError::BadSignature));
        request.signature = Some(signature("another token", CALLBACK_URL, &pairs(&params)));
        assert_eq!(deliver(&twilio, &request), Err(CallbackError::BadSignature));
        // Signed for one attempt, posted for another.
        let mut request = signed(CALLBACK_URL, &params);
        request.url = CALLBACK_URL.replace("cll_1", "cll_2");
        assert_eq!(deliver(&twilio, &request), Err(CallbackError::BadSignature));
        // A tampered form.
        let mut request = signed(CALLBACK_URL, &params);
        request.body = request.body.replace("CallDuration=42", "CallDuration=43");
        assert_eq!(deliver(&twilio, &request), Err(CallbackError::BadSignature));
    }

    #[test]
    fn a_callback_signed_with_the_default_port_is_taken() {
        let params = pairs(&final_status("busy", "0", None));
        let mut request = signed(CALLBACK_URL, &final_status("busy", "0", None));
        request.signature = Some(signature(TOKEN, &CALLBACK_URL.replace(".example/", ".example:443/"), &params));
        assert!(matches!(deliver(&twilio(json!({})), &request), Ok(CallbackReply::Events { .. })));
    }

    #[test]
    fn only_signed_form_posts_are_twilio_callbacks() {
        let twilio = twilio(json!({}));
        let params = final_status("busy", "0", None);
        let mut get = signed(CALLBACK_URL, &params);
        get.method = Method::GET;
        assert!(matches!(deliver(&twilio, &get), Err(CallbackError::Invalid(_))));
        let mut json_body = signed(CALLBACK_URL, &params);
        json_body.content_type = Some("application/json");
        assert!(matches!(deliver(&twilio, &json_body), Err(CallbackError::Invalid(_))));
        let mut no_type = signed(CALLBACK_URL, &params);
        no_type.content_type = None;
        assert!(matches!(deliver(&twilio, &no_type), Err(CallbackError::Invalid(_))));
        let mut charset = signed(CALLBACK_URL, &params);
        charset.content_type = Some("application/x-www-form-urlencoded; charset=utf-8");
        assert!(matches!(deliver(&twilio, &charset), Ok(CallbackReply::Events { .. })));
    }

    #[test]
    fn a_signed_callback_of_no_known_kind_is_invalid() {
        let twilio = twilio(json!({}));
        assert!(matches!(deliver(&twilio, &signed(CALLBACK_URL, &[("CallSid", "CAbb")])), Err(CallbackError::Invalid(_))));
        let odd = signed(CALLBACK_URL, &[("CallSid", "CAbb"), ("CallStatus", "exploded")]);
        assert!(matches!(deliver(&twilio, &odd), Err(CallbackError::Invalid(_))));
    }
}
