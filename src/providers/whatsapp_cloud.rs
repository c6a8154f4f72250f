//! `whatsapp_cloud` (PROVIDERS.md §3): template messages through Meta's WhatsApp Cloud API
//! (reference `providers.md` §2). A hand-off sends one template; Meta's status and inbound
//! message webhooks, signed with the app secret, report what became of it.

use std::time::Duration;

use async_trait::async_trait;
use axum::http::{HeaderMap, Method, StatusCode};
use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use super::{
    Callback, CallbackError, CallbackReply, Connector, Handoff, InboundText, Outgoing, ProviderEvent, hex_bytes, retry_after, same_secret,
};
use crate::domain::attempt::{AttemptEvent, AttemptStatus};
use crate::domain::integration::WhatsappCloudConfig;
use crate::store::DispatchContact;

/// The least a contact waits after Meta's per-recipient pair limit (131056): about one message
/// per 6 s to the same user (reference §2.9).
const PAIR_WAIT: SignedDuration = SignedDuration::from_secs(6);
/// How long a marketing message Meta held back "for healthy engagement" (131049) waits: Meta
/// gives no interval, and the same day would meet the same answer.
const ENGAGEMENT_WAIT: SignedDuration = SignedDuration::from_hours(24);

pub struct WhatsappCloud {
    config: WhatsappCloudConfig,
    access_token: String,
    app_secret: String,
    http: reqwest::Client,
}

impl WhatsappCloud {
    pub fn new(config: WhatsappCloudConfig, access_token: String, app_secret: String, http: reqwest::Client) -> WhatsappCloud {
        WhatsappCloud { config, access_token, app_secret, http }
    }

    /// Sends one template to `contact`. Apart from [`Connector::hand_off`] so that it can be tested
    /// without a campaign.
    async fn send(&self, attempt_id: &str, template: Option<&str>, contact: &DispatchContact) -> Handoff {
        let body = match message_body(&self.config, attempt_id, template, contact) {
            Ok(body) => body,
            Err(reason) => return Handoff::Failed { reason },
        };
        let url =
            format!("{}/{}/{}/messages", self.config.api_base.trim_end_matches('/'), self.config.api_version, self.config.phone_number_id);
        let sent = self
            .http
            .post(url)
            .timeout(Duration::from_millis(u64::from(self.config.timeout_ms)))
            .bearer_auth(&self.access_token)
            .json(&body)
            .send()
            .await;
        super::answer(sent, classify).await
    }

    /// Meta's subscription check (reference §2.5): the challenge is echoed only to whoever knows
    /// the verify token.
    fn verify_subscription(&self, query: &[(String, String)]) -> Result<CallbackReply, CallbackError> {
        let get = |name: &str| query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
        let subscribing = get("hub.mode") == Some("subscribe");
        let known = get("hub.verify_token").is_some_and(|token| same_secret(token, &self.config.verify_token));
        if !(subscribing && known) {
            return Err(CallbackError::Forbidden);
        }
        get("hub.challenge")
            .map(|challenge| CallbackReply::Challenge(challenge.to_owned()))
            .ok_or_else(|| CallbackError::invalid("hub.challenge is missing"))
    }

    /// A webhook notification (reference §2.6, §2.7), once its signature is checked over the raw
    /// bytes: Meta signs the body exactly as sent, so it is never re-serialized first.
    fn notification(&self, headers: &HeaderMap, body: &[u8]) -> Result<CallbackReply, CallbackError> {
        let claimed = headers.get("x-hub-signature-256").and_then(|value| value.to_str().ok()).ok_or(CallbackError::BadSignature)?;
        if !signature_matches(&self.app_secret, body, claimed) {
            return Err(CallbackError::BadSignature);
        }
        let notification: Notification =
            serde_json::from_slice(body).map_err(|error| CallbackError::invalid(&format!("not a WhatsApp notification: {error}")))?;
        let (mut events, mut inbound) = (Vec::new(), Vec::new());
        for value in notification.entry.iter().flat_map(|entry| &entry.changes).map(|change| &change.value) {
            events.extend(value.statuses.iter().flat_map(status_events));
            for message in &value.messages {
                match message.kind.as_str() {
                    "button" => events.extend(self.answer(message, message.button.as_ref().map(|button| button.payload.as_str()))),
                    "interactive" => {
                        let reply = message.interactive.as_ref().and_then(|interactive| interactive.button_reply.as_ref());
                        events.extend(self.answer(message, reply.map(|reply| reply.id.as_str())));
                    }
                    "text" => inbound.extend(inbound_text(message)),
                    _ => {}
                }
            }
        }
        Ok(CallbackReply::Events { events, inbound, broken: None })
    }

    /// A quick-reply tap on one of our templates (its `context.id`): the payload lists of the
    /// config say what it means; other payloads mean nothing to the campaign.
    fn answer(&self, message: &InboundMessage, payload: Option<&str>) -> Option<ProviderEvent> {
        let wamid = message.context.as_ref().map(|context| context.id.as_str()).filter(|id| !id.is_empty())?;
        let payload = payload?;
        let listed = |list: &[String]| list.iter().any(|listed| listed == payload);
        let (status, converted) = if listed(&self.config.convert_payloads) {
            (AttemptStatus::Accepted, true)
        } else if listed(&self.config.accept_payloads) {
            (AttemptStatus::Accepted, false)
        } else if listed(&self.config.reject_payloads) {
            (AttemptStatus::Rejected, false)
        } else {
            return None;
        };
        Some(ProviderEvent {
            provider_id: Some(wamid.to_owned()),
            event: AttemptEvent { converted, ..event(String::new(), status) },
            provisional: None,
        })
    }
}

#[async_trait]
impl Connector for WhatsappCloud {
    async fn hand_off(&self, attempt: &Outgoing<'_>) -> Handoff {
        self.send(attempt.attempt_id, attempt.template, attempt.contact).await
    }

    fn callback(&self, request: &Callback<'_>) -> Option<Result<CallbackReply, CallbackError>> {
        Some(match *request.method {
            Method::GET => self.verify_subscription(request.query),
            Method::POST => self.notification(request.headers, request.body),
            _ => Err(CallbackError::invalid("WhatsApp calls back with GET or POST")),
        })
    }
}

/// The `X-Hub-Signature-256` value Meta sends with `body` (reference §2.8): `sha256=` and the
/// lowercase hex HMAC-SHA256 of the raw body, keyed with the app secret.
pub fn signature(app_secret: &str, body: &[u8]) -> String {
    let hex: String = hmac_of(app_secret, body).finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256={hex}")
}

fn hmac_of(app_secret: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(app_secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    mac
}

/// Whether `claimed` (`sha256=<hex>`, either case) signs `body`, compared in constant time.
fn signature_matches(app_secret: &str, body: &[u8], claimed: &str) -> bool {
    let Some(claimed) = claimed.trim().strip_prefix("sha256=").and_then(hex_bytes) else { return false };
    hmac_of(app_secret, body).verify_slice(&claimed).is_ok()
}

/// The send request (reference §2.2), or the `ended_reason` of an attempt that cannot be sent:
/// a template without its parameters is refused by Meta (132000) anyway, so it is not tried.
fn message_body(
    config: &WhatsappCloudConfig,
    attempt_id: &str,
    template: Option<&str>,
    contact: &DispatchContact,
) -> Result<Value, String> {
    let template = template.filter(|name| !name.trim().is_empty()).ok_or_else(|| "missing_template".to_owned())?;
    let parameters = config
        .parameters
        .iter()
        .map(|field| {
            parameter(contact, field)
                .map(|text| json!({ "type": "text", "text": text }))
                .ok_or_else(|| format!("missing_parameter:{field}"))
        })
        .collect::<Result<Vec<Value>, String>>()?;
    let mut template = json!({ "name": template, "language": { "code": config.language } });
    if !parameters.is_empty() {
        template["components"] = json!([{ "type": "body", "parameters": parameters }]);
    }
    Ok(json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": contact.contact.as_str().trim_start_matches('+'),
        "type": "template",
        "biz_opaque_callback_data": attempt_id,
        "template": template,
    }))
}

/// The text of one body parameter: a contact field, or a value of its `extracted_data` (a
/// string as it is, a number or boolean as its JSON text). `None` when missing or blank.
fn parameter(contact: &DispatchContact, field: &str) -> Option<String> {
    let text = match field {
        "name" => contact.name.clone(),
        "contact" => Some(contact.contact.as_str().to_owned()),
        "context" => contact.context.clone(),
        "f_id" => contact.f_id.clone(),
        _ => match contact.extracted_data.get(field.strip_prefix("extracted_data.")?)? {
            Value::String(text) => Some(text.clone()),
            value @ (Value::Number(_) | Value::Bool(_)) => Some(value.to_string()),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        },
    };
    text.filter(|text| !text.trim().is_empty())
}

/// What Meta's answer to a send means (reference §2.3, §2.4, §5). Meta's error `code` decides
/// (its HTTP status for one code varies); the HTTP status only when the code is not a known one.
fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Handoff {
    let answer: Value = serde_json::from_slice(body).unwrap_or_default();
    if status.is_success() {
        // Meta has the message even when its id could not be read; statuses still find the
        // attempt through `biz_opaque_callback_data`.
        return Handoff::Accepted { provider_id: answer.pointer("/messages/0/id").and_then(Value::as_str).map(str::to_owned) };
    }
    let code = answer.pointer("/error/code").and_then(Value::as_i64);
    let label = code.map_or_else(|| format!("whatsapp_http_{}", status.as_u16()), |code| format!("whatsapp_{code}"));
    let broken = || {
        let message = answer.pointer("/error/message").and_then(Value::as_str).unwrap_or("").trim();
        Handoff::Broken { reason: if message.is_empty() { label.clone() } else { format!("{label}: {message}") } }
    };
    match code {
        // Throttled, or Meta says the send itself failed: it did not go out, so it is repeated.
        Some(130429 | 80007 | 4 | 131048 | 131000 | 131016 | 1 | 2) => Handoff::Retry { after: retry_after(headers) },
        Some(131056) => Handoff::Retry { after: Some(retry_after(headers).map_or(PAIR_WAIT, |after| after.max(PAIR_WAIT))) },
        Some(131049) => Handoff::Retry { after: Some(ENGAGEMENT_WAIT) },
        // Expired token, blocked sender, locked account: no send will pass until the config changes.
        Some(190 | 368 | 131031) => broken(),
        Some(131026) => Handoff::InvalidNumber { reason: label },
        // Template or parameters Meta refuses: repeating the same send cannot help.
        Some(132000 | 132001 | 132012 | 131047) => Handoff::Failed { reason: label },
        _ if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => broken(),
        _ if status == StatusCode::TOO_MANY_REQUESTS => Handoff::Retry { after: retry_after(headers) },
        _ if status.is_client_error() => Handoff::Failed { reason: label },
        // A 5xx (or anything else) after the request was written: Meta may have sent it.
        _ => Handoff::Unknown,
    }
}

/// An event of `status` for `attempt_id`, with nothing else known.
fn event(attempt_id: String, status: AttemptStatus) -> AttemptEvent {
    AttemptEvent { status, ended_by: None, ended_reason: None, ..AttemptEvent::failed(attempt_id, "") }
}

/// The events of one `statuses[]` item. `read` also counts as `delivered`, since Meta sends no
/// `delivered` for a message read at once; the store ignores it when the message is past it.
fn status_events(status: &MessageStatus) -> Vec<ProviderEvent> {
    let provider_id = Some(status.id.clone()).filter(|id| !id.is_empty());
    let attempt_id = status.biz_opaque_callback_data.clone().unwrap_or_default();
    let events = match status.status.as_str() {
        "sent" => vec![event(attempt_id, AttemptStatus::Sent)],
        "delivered" => vec![event(attempt_id, AttemptStatus::Delivered)],
        "read" => vec![event(attempt_id.clone(), AttemptStatus::Delivered), event(attempt_id, AttemptStatus::Read)],
        "failed" => {
            let code = status.errors.first().and_then(|error| error.code);
            let reason = code.map_or_else(|| "whatsapp_failed".to_owned(), |code| format!("whatsapp_{code}"));
            vec![AttemptEvent {
                ended_reason: Some(reason),
                invalid_number: code == Some(131026),
                ..event(attempt_id, AttemptStatus::Failed)
            }]
        }
        _ => Vec::new(),
    };
    events.into_iter().map(|event| ProviderEvent { provider_id: provider_id.clone(), event, provisional: None }).collect()
}

fn inbound_text(message: &InboundMessage) -> Option<InboundText> {
    Some(InboundText {
        from: message.from.clone(),
        text: message.text.as_ref()?.body.clone(),
        reply_to: message.context.as_ref().map(|context| context.id.clone()).filter(|id| !id.is_empty()),
        at: message.timestamp.as_deref().and_then(|seconds| Timestamp::from_second(seconds.trim().parse().ok()?).ok()),
    })
}

// The webhook payload, as far as Outbound reads it (reference §2.6, §2.7). Every field may be
// missing: Meta adds and drops fields between API versions.

#[derive(Default, Deserialize)]
#[serde(default)]
struct Notification {
    entry: Vec<Entry>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Entry {
    changes: Vec<Change>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Change {
    value: ChangeValue,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ChangeValue {
    statuses: Vec<MessageStatus>,
    messages: Vec<InboundMessage>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct MessageStatus {
    id: String,
    status: String,
    biz_opaque_callback_data: Option<String>,
    errors: Vec<StatusError>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct StatusError {
    code: Option<i64>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct InboundMessage {
    from: String,
    timestamp: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    text: Option<TextBody>,
    button: Option<Button>,
    interactive: Option<Interactive>,
    context: Option<Context>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct TextBody {
    body: String,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Button {
    payload: String,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Interactive {
    button_reply: Option<ButtonReply>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ButtonReply {
    id: String,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Context {
    id: String,
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::Map;

    use super::*;
    use crate::domain::contact::PhoneNumber;

    const SECRET: &str = "app_secret_123";

    fn config(extra: Value) -> WhatsappCloudConfig {
        let mut config = json!({ "phone_number_id": "106540352242922", "verify_token": "meatyhamhock", "language": "en_US" });
        if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
            config.extend(extra);
        }
        serde_json::from_value(config).expect("a valid config")
    }

    fn connector(extra: Value) -> WhatsappCloud {
        WhatsappCloud::new(config(extra), "token_abc".to_owned(), SECRET.to_owned(), reqwest::Client::new())
    }

    fn contact() -> DispatchContact {
        let extracted_data: Map<String, Value> =
            serde_json::from_value(json!({ "order": "ORD-9271", "total": 12.5, "vip": true, "none": null, "items": [1] }))
                .expect("an object");
        DispatchContact {
            id: 7,
            f_id: Some("F-1".to_owned()),
            name: Some("Asha".to_owned()),
            contact: PhoneNumber::stored("+14155550100".to_owned()).expect("E.164"),
            context: Some("".to_owned()),
            extracted_data,
            tags: Vec::new(),
        }
    }

    fn body_with(parameters: &[&str]) -> Result<Value, String> {
        message_body(&config(json!({ "parameters": parameters })), "msg_1", Some("order_confirmation"), &contact())
    }

    #[test]
    fn the_body_is_a_template_with_the_parameters_in_order() {
        let body = body_with(&["name", "extracted_data.order", "contact", "f_id", "extracted_data.total", "extracted_data.vip"]);
        assert_eq!(
            body,
            Ok(json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "14155550100",
                "type": "template",
                "biz_opaque_callback_data": "msg_1",
                "template": {
                    "name": "order_confirmation",
                    "language": { "code": "en_US" },
                    "components": [{ "type": "body", "parameters": [
                        { "type": "text", "text": "Asha" },
                        { "type": "text", "text": "ORD-9271" },
                        { "type": "text", "text": "+14155550100" },
                        { "type": "text", "text": "F-1" },
                        { "type": "text", "text": "12.5" },
                        { "type": "text", "text": "true" },
                    ] }],
                },
            }))
        );
    }

    #[test]
    fn a_template_without_parameters_has_no_components() {
        let body = body_with(&[]).expect("a body");
        assert_eq!(body["template"], json!({ "name": "order_confirmation", "language": { "code": "en_US" } }));
    }

    #[test]
    fn a_missing_or_blank_parameter_or_template_is_not_sent() {
        for field in ["context", "extracted_data.none", "extracted_data.items", "extracted_data.absent", "nickname"] {
            assert_eq!(body_with(&["name", field]), Err(format!("missing_parameter:{field}")));
        }
        let mut nameless = contact();
        nameless.name = None;
        assert_eq!(
            message_body(&config(json!({ "parameters": ["name"] })), "msg_1", Some("t"), &nameless),
            Err("missing_parameter:name".to_owned())
        );
        for template in [None, Some(""), Some(" ")] {
            assert_eq!(message_body(&config(json!({})), "msg_1", template, &contact()), Err("missing_template".to_owned()));
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).expect("a header value"));
        }
        headers
    }

    fn meta_error(http: u16, code: i64) -> Handoff {
        let body =
            json!({ "error": { "message": format!("(#{code}) Something"), "type": "OAuthException", "code": code, "fbtrace_id": "Az8" } });
        classify(StatusCode::from_u16(http).expect("a status"), &HeaderMap::new(), body.to_string().as_bytes())
    }

    #[test]
    fn an_accepted_send_keeps_the_wamid() {
        let body = br#"{"messaging_product":"whatsapp","contacts":[{"input":"14155550100","wa_id":"14155550100"}],
            "messages":[{"id":"wamid.HBgL","message_status":"accepted"}]}"#;
        assert_eq!(classify(StatusCode::OK, &HeaderMap::new(), body), Handoff::Accepted { provider_id: Some("wamid.HBgL".to_owned()) });
        assert_eq!(classify(StatusCode::OK, &HeaderMap::new(), b"not json"), Handoff::Accepted { provider_id: None });
    }

    #[test]
    fn throttling_and_transient_codes_are_retried_whatever_the_http_status() {
        for code in [130429, 80007, 4, 131048, 131000, 131016, 1, 2] {
            for http in [400, 429, 500, 503] {
                assert_eq!(meta_error(http, code), Handoff::Retry { after: None }, "{code} on {http}");
            }
        }
        let waited = headers(&[("retry-after", "30")]);
        let body = json!({ "error": { "code": 130429, "message": "Rate limit hit" } }).to_string();
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, &waited, body.as_bytes()),
            Handoff::Retry { after: Some(SignedDuration::from_secs(30)) }
        );
    }

    #[test]
    fn the_pair_limit_waits_at_least_six_seconds_and_the_engagement_limit_a_day() {
        let pair = json!({ "error": { "code": 131056, "message": "pair rate limit hit" } }).to_string();
        for (retry_after, wait) in [(None, 6), (Some("2"), 6), (Some("20"), 20)] {
            let headers = retry_after.map_or_else(HeaderMap::new, |seconds| headers(&[("retry-after", seconds)]));
            assert_eq!(
                classify(StatusCode::BAD_REQUEST, &headers, pair.as_bytes()),
                Handoff::Retry { after: Some(SignedDuration::from_secs(wait)) }
            );
        }
        assert_eq!(meta_error(400, 131049), Handoff::Retry { after: Some(SignedDuration::from_hours(24)) });
    }

    #[test]
    fn account_errors_break_the_integration() {
        for code in [190, 368, 131031] {
            for http in [400, 401, 403, 500] {
                assert_eq!(
                    meta_error(http, code),
                    Handoff::Broken { reason: format!("whatsapp_{code}: (#{code}) Something") },
                    "{code} on {http}"
                );
            }
        }
        assert_eq!(meta_error(403, 10), Handoff::Broken { reason: "whatsapp_10: (#10) Something".to_owned() });
        assert_eq!(classify(StatusCode::UNAUTHORIZED, &HeaderMap::new(), b""), Handoff::Broken { reason: "whatsapp_http_401".to_owned() });
    }

    #[test]
    fn an_undeliverable_number_is_invalid() {
        assert_eq!(meta_error(400, 131026), Handoff::InvalidNumber { reason: "whatsapp_131026".to_owned() });
    }

    #[test]
    fn refused_sends_fail_with_the_code_or_the_http_status() {
        for code in [132000, 132001, 132012, 131047] {
            for http in [400, 404, 500] {
                assert_eq!(meta_error(http, code), Handoff::Failed { reason: format!("whatsapp_{code}") }, "{code} on {http}");
            }
        }
        assert_eq!(meta_error(400, 100), Handoff::Failed { reason: "whatsapp_100".to_owned() });
        assert_eq!(
            classify(StatusCode::NOT_FOUND, &HeaderMap::new(), b"<html>"),
            Handoff::Failed { reason: "whatsapp_http_404".to_owned() }
        );
    }

    #[test]
    fn http_429_without_a_known_code_is_retried_honouring_retry_after() {
        assert_eq!(classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), b""), Handoff::Retry { after: None });
        let waited = headers(&[("retry-after", "12")]);
        assert_eq!(classify(StatusCode::TOO_MANY_REQUESTS, &waited, b"{}"), Handoff::Retry { after: Some(SignedDuration::from_secs(12)) });
        assert_eq!(meta_error(429, 99999), Handoff::Retry { after: None });
    }

    #[test]
    fn a_5xx_without_a_retry_code_is_unknown() {
        assert_eq!(classify(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), b""), Handoff::Unknown);
        assert_eq!(meta_error(502, 99999), Handoff::Unknown);
    }

    fn call(
        connector: &WhatsappCloud,
        method: Method,
        query: &[(&str, &str)],
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<CallbackReply, CallbackError> {
        let query: Vec<(String, String)> = query.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let request =
            Callback { method: &method, url: "https://outbound.test/events", query: &query, headers, body, now: Timestamp::UNIX_EPOCH };
        connector.callback(&request).expect("WhatsApp has its own callback format")
    }

    fn handshake(query: &[(&str, &str)]) -> Result<CallbackReply, CallbackError> {
        call(&connector(json!({})), Method::GET, query, &HeaderMap::new(), b"")
    }

    #[test]
    fn the_handshake_echoes_the_challenge_to_the_verify_token_only() {
        let good = [("hub.mode", "subscribe"), ("hub.challenge", "1158201444"), ("hub.verify_token", "meatyhamhock")];
        assert_eq!(handshake(&good), Ok(CallbackReply::Challenge("1158201444".to_owned())));
        for bad in [
            [("hub.mode", "subscribe"), ("hub.challenge", "1"), ("hub.verify_token", "meatyhamhoc")],
            [("hub.mode", "subscribe"), ("hub.challenge", "1"), ("hub.verify_token", "")],
            [("hub.mode", "unsubscribe"), ("hub.challenge", "1"), ("hub.verify_token", "meatyhamhock")],
            [("hub.mode", "subscribe"), ("hub.challenge", "1"), ("verify_token", "meatyhamhock")],
        ] {
            assert_eq!(handshake(&bad), Err(CallbackError::Forbidden), "{bad:?}");
        }
        assert_eq!(handshake(&[]), Err(CallbackError::Forbidden));
        assert!(matches!(handshake(&good[..1].iter().chain(&good[2..]).copied().collect::<Vec<_>>()), Err(CallbackError::Invalid(_))));
    }

    #[test]
    fn the_signature_is_the_reference_vector() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        assert_eq!(signature(SECRET, body), "sha256=02fe0c96d28c59ddb7cf81eff0ca05809b360ba73b63c28210b5906a0a107d1f");
        assert_eq!(signature("secret", b"test"), "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914");
    }

    fn notify(connector: &WhatsappCloud, body: &Value) -> Result<CallbackReply, CallbackError> {
        let body = body.to_string();
        call(connector, Method::POST, &[], &headers(&[("x-hub-signature-256", &signature(SECRET, body.as_bytes()))]), body.as_bytes())
    }

    #[test]
    fn only_a_body_signed_with_the_app_secret_is_read() {
        let connector = connector(json!({}));
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let signed = |value: &str| call(&connector, Method::POST, &[], &headers(&[("x-hub-signature-256", value)]), body);
        let nothing = Ok(CallbackReply::Events { events: Vec::new(), inbound: Vec::new(), broken: None });
        assert_eq!(signed("sha256=02fe0c96d28c59ddb7cf81eff0ca05809b360ba73b63c28210b5906a0a107d1f"), nothing);
        assert_eq!(signed("sha256=02FE0C96D28C59DDB7CF81EFF0CA05809B360BA73B63C28210B5906A0A107D1F"), nothing);
        for bad in [
            "sha256=02fe0c96d28c59ddb7cf81eff0ca05809b360ba73b63c28210b5906a0a107d1e",
            "sha256=02fe0c96d28c59ddb7cf81eff0ca05809b360ba73b63c28210b5906a0a107d1",
            "sha256=02fe0c96",
            "sha256=",
            "sha256=zz",
            "02fe0c96d28c59ddb7cf81eff0ca05809b360ba73b63c28210b5906a0a107d1f",
            "sha1=02fe0c96d28c59ddb7cf81eff0ca05809b360ba73b63c28210b5906a0a107d1f",
        ] {
            assert_eq!(signed(bad), Err(CallbackError::BadSignature), "{bad}");
        }
        assert_eq!(call(&connector, Method::POST, &[], &HeaderMap::new(), body), Err(CallbackError::BadSignature));
        let other_secret = signature("another", body);
        assert_eq!(signed(&other_secret), Err(CallbackError::BadSignature));
    }

    #[test]
    fn a_signed_body_that_is_not_a_notification_is_invalid() {
        let connector = connector(json!({}));
        for body in [&b"not json"[..], b"[1]", br#"{"entry":"x"}"#] {
            let headers = headers(&[("x-hub-signature-256", &signature(SECRET, body))]);
            assert!(matches!(call(&connector, Method::POST, &[], &headers, body), Err(CallbackError::Invalid(_))));
        }
        assert!(matches!(call(&connector, Method::PUT, &[], &HeaderMap::new(), b""), Err(CallbackError::Invalid(_))));
    }

    fn change(value: Value) -> Value {
        json!({ "object": "whatsapp_business_account", "entry": [{ "id": "WABA", "changes": [{ "field": "messages", "value": value }] }] })
    }

    fn events_of(connector: &WhatsappCloud, value: Value) -> (Vec<ProviderEvent>, Vec<InboundText>) {
        match notify(connector, &change(value)) {
            Ok(CallbackReply::Events { events, inbound, broken: None }) => (events, inbound),
            other => panic!("not events: {other:?}"),
        }
    }

    fn statuses(items: Value) -> Vec<ProviderEvent> {
        events_of(&connector(json!({})), json!({ "messaging_product": "whatsapp", "statuses": items })).0
    }

    fn provider_event(provider_id: &str, event: AttemptEvent) -> ProviderEvent {
        ProviderEvent { provider_id: Some(provider_id.to_owned()), event, provisional: None }
    }

    #[test]
    fn each_status_is_an_event_of_its_message() {
        let item = |status: &str| {
            json!({ "id": "wamid.A", "status": status, "timestamp": "1750857384", "recipient_id": "14155550100",
            "biz_opaque_callback_data": "msg_1", "pricing": { "billable": true } })
        };
        assert_eq!(statuses(json!([item("sent")])), [provider_event("wamid.A", event("msg_1".to_owned(), AttemptStatus::Sent))]);
        assert_eq!(statuses(json!([item("delivered")])), [provider_event("wamid.A", event("msg_1".to_owned(), AttemptStatus::Delivered))]);
        assert_eq!(statuses(json!([item("played"), item("deleted")])), []);
        let two = statuses(json!([item("sent"), { "id": "wamid.B", "status": "delivered" }]));
        assert_eq!(
            two,
            [
                provider_event("wamid.A", event("msg_1".to_owned(), AttemptStatus::Sent)),
                provider_event("wamid.B", event(String::new(), AttemptStatus::Delivered))
            ]
        );
    }

    #[test]
    fn read_counts_as_delivered_then_read() {
        let events = statuses(json!([{ "id": "wamid.A", "status": "read", "biz_opaque_callback_data": "msg_1" }]));
        assert_eq!(
            events,
            [
                provider_event("wamid.A", event("msg_1".to_owned(), AttemptStatus::Delivered)),
                provider_event("wamid.A", event("msg_1".to_owned(), AttemptStatus::Read)),
            ]
        );
    }

    #[test]
    fn a_failed_status_carries_its_code_and_131026_marks_the_number_invalid() {
        let failed = |errors: Value| {
            statuses(json!([{ "id": "wamid.A", "status": "failed", "biz_opaque_callback_data": "msg_1", "errors": errors }]))
        };
        let undeliverable =
            json!([{ "code": 131026, "title": "Message undeliverable", "error_data": { "details": "Message Undeliverable." } }]);
        let expected = |reason: &str, invalid_number| {
            let event =
                AttemptEvent { ended_reason: Some(reason.to_owned()), invalid_number, ..event("msg_1".to_owned(), AttemptStatus::Failed) };
            vec![provider_event("wamid.A", event)]
        };
        assert_eq!(failed(undeliverable), expected("whatsapp_131026", true));
        assert_eq!(failed(json!([{ "code": 131049 }])), expected("whatsapp_131049", false));
        assert_eq!(failed(json!([])), expected("whatsapp_failed", false));
        assert!(failed(json!([{ "code": 131049 }]))[0].event.ended_by.is_none());
    }

    fn tap(kind: &str, payload: &str, context: Value) -> Value {
        let mut message = json!({ "from": "14155550100", "id": "wamid.IN", "timestamp": "1739321024", "type": kind, "context": context });
        match kind {
            "button" => message["button"] = json!({ "payload": payload, "text": "Label" }),
            _ => message["interactive"] = json!({ "type": "button_reply", "button_reply": { "id": payload, "title": "Label" } }),
        }
        json!({ "messages": [message] })
    }

    #[test]
    fn button_payloads_answer_the_template_they_reply_to() {
        let configured = connector(json!({ "accept_payloads": ["yes"], "reject_payloads": ["no"], "convert_payloads": ["buy"] }));
        let ours = json!({ "from": "15550783881", "id": "wamid.OURS" });
        let answered = |status, converted| vec![provider_event("wamid.OURS", AttemptEvent { converted, ..event(String::new(), status) })];
        for kind in ["button", "interactive"] {
            assert_eq!(events_of(&configured, tap(kind, "yes", ours.clone())).0, answered(AttemptStatus::Accepted, false), "{kind}");
            assert_eq!(events_of(&configured, tap(kind, "no", ours.clone())).0, answered(AttemptStatus::Rejected, false), "{kind}");
            assert_eq!(events_of(&configured, tap(kind, "buy", ours.clone())).0, answered(AttemptStatus::Accepted, true), "{kind}");
            assert_eq!(events_of(&configured, tap(kind, "maybe", ours.clone())).0, [], "{kind}");
            assert_eq!(events_of(&configured, tap(kind, "yes", Value::Null)).0, [], "{kind} without context");
        }
        let defaults = connector(json!({}));
        assert_eq!(events_of(&defaults, tap("button", "accept", ours.clone())).0, answered(AttemptStatus::Accepted, false));
        assert_eq!(events_of(&defaults, tap("button", "reject", ours)).0, answered(AttemptStatus::Rejected, false));
    }

    #[test]
    fn texts_are_passed_on_and_other_messages_ignored() {
        let connector = connector(json!({}));
        let messages = json!({ "contacts": [{ "profile": { "name": "Sheena" }, "wa_id": "16505551234" }], "messages": [
            { "from": "16505551234", "id": "wamid.1", "timestamp": "1739321024", "type": "text",
              "text": { "body": "STOP" }, "context": { "from": "15550783881", "id": "wamid.OURS" } },
            { "from": "16505551234", "id": "wamid.2", "type": "text", "text": { "body": "hola" } },
            { "from": "16505551234", "id": "wamid.3", "type": "image", "image": { "id": "media" } },
            { "from": "16505551234", "id": "wamid.4", "type": "text" },
        ] });
        let (events, inbound) = events_of(&connector, messages);
        assert_eq!(events, []);
        assert_eq!(
            inbound,
            [
                InboundText {
                    from: "16505551234".to_owned(),
                    text: "STOP".to_owned(),
                    reply_to: Some("wamid.OURS".to_owned()),
                    at: Some(Timestamp::from_second(1_739_321_024).expect("a timestamp")),
                },
                InboundText { from: "16505551234".to_owned(), text: "hola".to_owned(), reply_to: None, at: None },
            ]
        );
    }

    #[tokio::test]
    async fn a_send_posts_the_template_with_the_bearer_token() {
        use wiremock::matchers::{body_json, header, method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};

        let meta = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v21.0/106540352242922/messages"))
            .and(header("authorization", "Bearer token_abc"))
            .and(body_json(body_with(&["name"]).expect("a body")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "messages": [{ "id": "wamid.SENT" }] })))
            .expect(1)
            .mount(&meta)
            .await;
        let connector = connector(json!({ "api_base": format!("{}/", meta.uri()), "parameters": ["name"] }));
        let sent = connector.send("msg_1", Some("order_confirmation"), &contact()).await;
        assert_eq!(sent, Handoff::Accepted { provider_id: Some("wamid.SENT".to_owned()) });
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried_and_a_missing_parameter_never_sent() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("a free port");
        let connector = connector(json!({ "api_base": format!("http://{closed}"), "parameters": ["context"] }));
        assert_eq!(
            connector.send("msg_1", Some("t"), &contact()).await,
            Handoff::Failed { reason: "missing_parameter:context".to_owned() }
        );
        let connector = WhatsappCloud { config: config(json!({ "api_base": format!("http://{closed}") })), ..connector };
        assert_eq!(connector.send("msg_1", Some("t"), &contact()).await, Handoff::Retry { after: None });
    }
}
