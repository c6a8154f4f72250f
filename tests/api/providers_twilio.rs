//! The `twilio` provider through HTTP (PROVIDERS.md §2, reference/providers.md §1): a wiremock
//! server plays Twilio's REST API, the test plays Twilio's status callbacks, signed as Twilio
//! signs them (computed here, independently of the server's code). Checks every field of the
//! call creation, every row of the outcome table, out-of-order and repeated callbacks, bad
//! signatures, each error code at hand-off, throttling, a timeout after the request was written,
//! a broken credential, rotation by PATCH, pacing and an unreadable credential.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use hmac::Mac;
use jiff::SignedDuration;
use outbound::domain::credentials::SecretKey;
use outbound::engine::{Engine, EngineSettings};
use outbound::providers::keyring::Keyring;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::engine::{Harness, Provider, retry_settings};

const SID: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const TOKEN: &str = "twilio-token-1234";
const FROM: &str = "+14155550199";

fn calls_path() -> String {
    format!("/2010-04-01/Accounts/{SID}/Calls.json")
}

/// Twilio's answer to a call creation: 201 with a `sid` derived from the attempt id (so a test
/// can tell which call it is), or what `answer` says.
struct Answers(Arc<dyn Fn(&Request) -> ResponseTemplate + Send + Sync>);

impl Respond for Answers {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        (self.0)(request)
    }
}

fn created(request: &Request) -> ResponseTemplate {
    let attempt = attempt_of(request);
    ResponseTemplate::new(201).set_body_json(json!({ "sid": sid_of(&attempt), "status": "queued", "account_sid": SID }))
}

/// The call sid the mock gives an attempt: `CA` and 32 hex digits.
fn sid_of(attempt_id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(attempt_id.as_bytes());
    format!("CA{}", digest[..16].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn twilio_error(status: u16, code: i64) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "code": code, "message": format!("error {code}"), "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status
    }))
}

fn form(request: &Request) -> Vec<(String, String)> {
    url::form_urlencoded::parse(&request.body).into_owned().collect()
}

fn param<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn attempt_of(request: &Request) -> String {
    let form = form(request);
    let callback = param(&form, "StatusCallback").unwrap_or_default();
    url::Url::parse(callback)
        .ok()
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "attempt_id").map(|(_, v)| v.into_owned()))
        .unwrap_or_default()
}

/// `X-Twilio-Signature`: base64(HMAC-SHA1(token, url + each param name and value, sorted)).
fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted: Vec<&(&str, &str)> = params.iter().collect();
    sorted.sort();
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).expect("any key");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

struct Twilio {
    h: Harness,
    server: MockServer,
    token: String,
}

fn config(server: &MockServer, extra: Value) -> Value {
    super::helpers::merge(
        json!({
            "account_sid": SID, "auth_token": TOKEN, "from": FROM, "twiml_url": "https://agent.example/twiml?lang=es",
            "api_base": server.uri(), "max_per_second": 1000, "timeout_ms": 2000
        }),
        extra,
    )
}

impl Twilio {
    /// A harness whose integration is `twilio` on a mock answering with `answer`; the failed
    /// retry limit is `failed_retries`.
    async fn new(
        extra: Value,
        failed_retries: i64,
        answer: impl Fn(&Request) -> ResponseTemplate + Send + Sync + 'static,
    ) -> Option<Twilio> {
        let server = MockServer::start().await;
        Mock::given(method("POST")).and(path(calls_path())).respond_with(Answers(Arc::new(answer))).mount(&server).await;
        let config = config(&server, extra);
        let h = Harness::new(retry_settings(30, failed_retries), "phone_call", Provider::Config("twilio", config)).await?;
        Some(Twilio { h, server, token: TOKEN.to_owned() })
    }

    /// The call creations Twilio received, oldest first.
    async fn creates(&self) -> Vec<Request> {
        self.server.received_requests().await.expect("recording on").into_iter().filter(|r| r.url.path() == calls_path()).collect()
    }

    /// Posts a status callback for the call created by `create`, signed with `token`.
    async fn callback_with(&self, create: &Request, params: &[(&str, &str)], token: &str, url_key: &str) -> (StatusCode, Value) {
        let form = form(create);
        let url = param(&form, url_key).expect("a callback URL").to_owned();
        let attempt = attempt_of(create);
        let sid = sid_of(&attempt);
        let mut all: Vec<(&str, &str)> = vec![("CallSid", &sid), ("AccountSid", SID), ("From", FROM), ("Direction", "outbound-api")];
        all.extend_from_slice(params);
        let signature = twilio_signature(token, &url, &all);
        self.post_form(&url, &all, Some(&signature)).await
    }

    async fn callback(&self, create: &Request, params: &[(&str, &str)]) -> (StatusCode, Value) {
        self.callback_with(create, params, &self.token, "StatusCallback").await
    }

    async fn callback_ok(&self, create: &Request, params: &[(&str, &str)]) {
        let (status, body) = self.callback(create, params).await;
        assert_eq!(status, StatusCode::OK, "{params:?}: {body}");
    }

    async fn post_form(&self, url: &str, params: &[(&str, &str)], signature: Option<&str>) -> (StatusCode, Value) {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params.iter()).finish();
        let mut request = self.h.client.post(url).header("content-type", "application/x-www-form-urlencoded").body(body);
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Signature", signature);
        }
        let response = request.send().await.expect("sent");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn ok_calls() -> impl Fn(&Request) -> ResponseTemplate + Send + Sync + 'static {
    created
}

#[tokio::test]
async fn a_call_is_created_with_every_twilio_parameter_and_its_callbacks_drive_the_contact() {
    let Some(t) = Twilio::new(json!({ "record": true }), 1, ok_calls()).await else { return };
    let (id, contacts) = t.h.start(json!({}), 1).await;
    assert_eq!(t.h.claims().await, 1);
    let creates = t.creates().await;
    assert_eq!(creates.len(), 1);
    let create = &creates[0];
    let attempt = t.h.attempt_of(id, contacts[0]).await;

    // Basic auth with the account sid and the (opened) token.
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}")));
    assert_eq!(create.headers.get("authorization").and_then(|v| v.to_str().ok()), Some(basic.as_str()));
    assert!(
        create
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
    );
    let form = form(create);
    let callback = format!("{}/api/v1.0/integrations/{}/events?attempt_id={attempt}", t.h.base, t.h.integration);
    assert_eq!(param(&form, "To"), Some("+525520000000"));
    assert_eq!(param(&form, "From"), Some(FROM));
    assert_eq!(param(&form, "Url"), Some(format!("https://agent.example/twiml?lang=es&attempt_id={attempt}").as_str()));
    assert_eq!(param(&form, "StatusCallback"), Some(callback.as_str()));
    assert_eq!(param(&form, "StatusCallbackMethod"), Some("POST"));
    let events: Vec<&str> = form.iter().filter(|(k, _)| k == "StatusCallbackEvent").map(|(_, v)| v.as_str()).collect();
    assert_eq!(events, ["initiated", "ringing", "answered", "completed"]);
    assert_eq!(param(&form, "MachineDetection"), Some("Enable"));
    assert_eq!(param(&form, "AsyncAmd"), Some("true"));
    assert_eq!(param(&form, "AsyncAmdStatusCallback"), Some(callback.as_str()));
    assert_eq!(param(&form, "Timeout"), Some("30"));
    assert_eq!(param(&form, "Record"), Some("true"));

    // Callbacks, one out of order and one repeated.
    t.callback_ok(create, &[("CallStatus", "ringing"), ("SequenceNumber", "0")]).await;
    let sid = sid_of(&attempt);
    let calls = t.h.calls(id, "").await;
    assert_eq!(calls["calls"][0]["provider_id"], sid.as_str(), "the sid is the call's provider_id");
    assert_eq!(calls["calls"][0]["status"], "in-progress");
    t.callback_ok(create, &[("CallStatus", "in-progress"), ("SequenceNumber", "1")]).await;
    t.callback_ok(create, &[("AnsweredBy", "human"), ("MachineDetectionDuration", "1800")]).await;
    let completed = [
        ("CallStatus", "completed"),
        ("CallDuration", "42"),
        ("SequenceNumber", "3"),
        ("Timestamp", "Mon, 08 Jun 2026 18:00:42 +0000"),
        ("RecordingUrl", "https://api.twilio.com/recordings/RE1"),
    ];
    t.callback_ok(create, &completed).await;
    t.callback_ok(create, &[("CallStatus", "ringing"), ("SequenceNumber", "0")]).await;
    t.callback_ok(create, &completed).await;
    let contact = t.h.contact(id, contacts[0]).await;
    assert_eq!(contact["status"], "answered");
    let call = t.h.calls(id, "").await["calls"][0].clone();
    assert_eq!(
        [&call["status"], &call["answered_by"], &call["duration"], &call["ended_reason"], &call["recording_url"]],
        [&json!("ended"), &json!("human"), &json!(42), &json!("completed"), &json!("https://api.twilio.com/recordings/RE1")],
        "{call}"
    );
    assert_eq!(call["ended_at"], "2026-06-08T18:00:42Z");
    assert_eq!(t.h.detail(id).await["analytics"]["calls"], 1, "the repeat counted once");
    assert_eq!(t.creates().await.len(), 1, "one call for one attempt");
}

#[tokio::test]
async fn every_twilio_outcome_row_maps_onto_the_contact() {
    let completed = |by: &'static str| vec![("CallStatus", "completed"), ("CallDuration", "30"), ("AnsweredBy", by)];
    // (callbacks after ringing, AMD on, contact status, call status, answered_by)
    type Row = (Vec<Vec<(&'static str, &'static str)>>, bool, &'static str, &'static str, Value);
    let mut rows: Vec<Row> = vec![
        (vec![completed("human")], true, "answered", "ended", json!("human")),
        (vec![completed("unknown")], true, "answered", "ended", json!("unknown")),
        // AMD's verdict in its own callback, before the call completes without one.
        (
            vec![vec![("AnsweredBy", "machine_start")], vec![("CallStatus", "completed"), ("CallDuration", "9")]],
            true,
            "voicemail",
            "ended",
            json!("machine"),
        ),
        // AMD off: a connected call with a duration was answered by a person; without one, by nobody.
        (vec![vec![("CallStatus", "completed"), ("CallDuration", "30")]], false, "answered", "ended", json!("human")),
        (vec![vec![("CallStatus", "completed"), ("CallDuration", "0")]], false, "failed", "ended", Value::Null),
        (vec![vec![("CallStatus", "busy")]], true, "failed", "busy", Value::Null),
        (vec![vec![("CallStatus", "no-answer")]], true, "failed", "no-answer", Value::Null),
        (vec![vec![("CallStatus", "failed")]], true, "failed", "failed", Value::Null),
        (vec![vec![("CallStatus", "canceled")]], true, "failed", "failed", Value::Null),
    ];
    for machine in ["machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"] {
        rows.push((vec![completed(machine)], true, "voicemail", "ended", json!("machine")));
    }
    for (callbacks, amd, contact_status, call_status, answered_by) in rows {
        let extra = if amd { json!({}) } else { json!({ "machine_detection": null }) };
        let Some(t) = Twilio::new(extra, 0, ok_calls()).await else { return };
        let (id, contacts) = t.h.start(json!({ "retries": 0 }), 1).await;
        t.h.settle().await;
        let create = &t.creates().await[0];
        if amd {
            assert_eq!(param(&form(create), "MachineDetection"), Some("Enable"));
        } else {
            assert_eq!(param(&form(create), "MachineDetection"), None, "AMD off sends no MachineDetection");
        }
        t.callback_ok(create, &[("CallStatus", "ringing")]).await;
        for callback in &callbacks {
            t.callback_ok(create, callback).await;
        }
        let contact = t.h.contact(id, contacts[0]).await;
        let call = t.h.calls(id, "").await["calls"][0].clone();
        let label = format!("{callbacks:?} amd={amd}");
        assert_eq!(contact["status"], contact_status, "{label}: {contact}");
        assert_eq!(call["status"], call_status, "{label}: {call}");
        assert_eq!(call.get("answered_by").cloned().unwrap_or(Value::Null), answered_by, "{label}: {call}");
        if callbacks.iter().flatten().any(|p| *p == ("CallStatus", "canceled")) {
            assert_eq!(call["ended_reason"], "canceled", "{call}");
        }
    }
}

#[tokio::test]
async fn bad_twilio_signatures_are_refused_and_change_nothing() {
    let Some(t) = Twilio::new(json!({}), 1, ok_calls()).await else { return };
    let (id, contacts) = t.h.start(json!({}), 1).await;
    t.h.settle().await;
    let create = &t.creates().await[0];
    let completed = [("CallStatus", "completed"), ("CallDuration", "30"), ("AnsweredBy", "human")];
    let (status, body) = t.callback_with(create, &completed, "not-the-token", "StatusCallback").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "UNAUTHORIZED");
    let form = form(create);
    let url = param(&form, "StatusCallback").expect("url").to_owned();
    let (status, _) = t.post_form(&url, &completed, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no signature");
    // Signed, then tampered with (the status changed on the way).
    let signature = twilio_signature(TOKEN, &url, &[("CallStatus", "busy")]);
    let (status, _) = t.post_form(&url, &[("CallStatus", "completed")], Some(&signature)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "tampered");
    // Signed for another attempt's URL.
    let other = url.replace("attempt_id=", "attempt_id=cll_other");
    let signature = twilio_signature(TOKEN, &other, &completed);
    let (status, _) = t.post_form(&url, &completed, Some(&signature)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "signed for another URL");
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "sending", "nothing changed");
    assert_eq!(t.h.calls(id, "").await["calls"][0]["status"], "in-progress");
}

#[tokio::test]
async fn the_customers_agent_reports_conversion_and_data_on_the_same_route_after_the_call_ended() {
    let Some(t) = Twilio::new(json!({}), 1, ok_calls()).await else { return };
    let (id, contacts) = t.h.start(json!({}), 1).await;
    t.h.settle().await;
    let create = &t.creates().await[0];
    let attempt = t.h.attempt_of(id, contacts[0]).await;
    t.callback_ok(create, &[("CallStatus", "completed"), ("CallDuration", "60"), ("AnsweredBy", "human")]).await;
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "answered");
    let transcript = json!([{ "sent_by": "assistant", "sent_at": "2026-06-08T18:00:05Z", "content": "Hola" }]);
    t.h.event_ok(
        &attempt,
        "ended",
        json!({ "converted": true, "extracted_data": { "plan": "gold" }, "tags": ["promise"], "transcript": transcript }),
    )
    .await;
    let contact = t.h.contact(id, contacts[0]).await;
    assert_eq!(contact["status"], "converted", "{contact}");
    assert_eq!(contact["extracted_data"]["plan"], "gold");
    assert_eq!(contact["tags"], json!(["promise"]));
    let call = t.h.calls(id, "").await["calls"][0].clone();
    assert_eq!((&call["status"], &call["duration"]), (&json!("ended"), &json!(60)), "the final status stays: {call}");
    assert_eq!(call["transcript"], transcript);
    assert_eq!(call["extracted_data"]["plan"], "gold");
    let analytics = t.h.detail(id).await["analytics"].clone();
    assert_eq!((&analytics["contactsConverted"], &analytics["calls"]), (&json!(1), &json!(1)), "{analytics}");
}

#[tokio::test]
async fn invalid_numbers_fail_the_contact_at_once_and_other_refusals_follow_the_failed_retry_policy() {
    for code in [21211, 21214, 21217] {
        let Some(t) = Twilio::new(json!({}), 1, move |_: &Request| twilio_error(400, code)).await else { return };
        let (id, contacts) = t.h.start(json!({}), 1).await;
        t.h.settle().await;
        let contact = t.h.contact(id, contacts[0]).await;
        assert_eq!((&contact["status"], &contact["failed_reason"]), (&json!("failed"), &json!("invalid_number")), "{code}: {contact}");
        t.h.advance_mins(60);
        assert_eq!(t.h.claims().await, 0, "{code}: never retried");
        let call = t.h.calls(id, "").await["calls"][0].clone();
        assert_eq!((&call["status"], &call["ended_reason"]), (&json!("failed"), &json!(format!("twilio_{code}"))), "{call}");
        assert_eq!(t.h.status(id).await, "finished");
    }
    let Some(t) = Twilio::new(json!({}), 1, |_: &Request| twilio_error(400, 21216)).await else { return };
    let (id, contacts) = t.h.start(json!({}), 1).await;
    t.h.settle().await;
    let contact = t.h.contact(id, contacts[0]).await;
    assert_eq!((&contact["status"], &contact["failed_reason"]), (&json!("retrying"), &Value::Null), "{contact}");
    t.h.advance_mins(30);
    assert_eq!(t.h.claims().await, 1, "retried as a new attempt");
    assert_eq!(t.creates().await.len(), 2);
}

#[tokio::test]
async fn throttled_hand_offs_back_off_keep_their_attempt_and_honour_retry_after() {
    let sends = Arc::new(AtomicUsize::new(0));
    let counter = sends.clone();
    // 429 with Retry-After: 7, then 429 without it, then Twilio's 20429 code, then accepted.
    let Some(t) = Twilio::new(json!({}), 1, move |request: &Request| match counter.fetch_add(1, Ordering::SeqCst) {
        0 => ResponseTemplate::new(429).insert_header("retry-after", "7").set_body_json(json!({ "code": 20429, "status": 429 })),
        1 => ResponseTemplate::new(429),
        2 => twilio_error(429, 20429),
        _ => created(request),
    })
    .await
    else {
        return;
    };
    let (id, contacts) = t.h.start(json!({ "message_limit": 1 }), 1).await;
    t.h.settle().await;
    t.h.clock.advance(SignedDuration::from_millis(6999));
    assert_eq!(t.h.settle().await.resent, 0, "not before Retry-After");
    t.h.clock.advance(SignedDuration::from_millis(1));
    assert_eq!(t.h.settle().await.resent, 1, "at Retry-After");
    // Without Retry-After, the back-off doubles from 1 s: 2 s after the second try, 4 s after the third.
    t.h.clock.advance(SignedDuration::from_secs(1));
    assert_eq!(t.h.settle().await.resent, 0);
    t.h.clock.advance(SignedDuration::from_secs(1));
    assert_eq!(t.h.settle().await.resent, 1);
    t.h.clock.advance(SignedDuration::from_secs(3));
    assert_eq!(t.h.settle().await.resent, 0);
    t.h.clock.advance(SignedDuration::from_secs(1));
    assert_eq!(t.h.settle().await.resent, 1);
    let creates = t.creates().await;
    assert_eq!(creates.len(), 4);
    let attempt = t.h.attempt_of(id, contacts[0]).await;
    assert!(creates.iter().all(|c| attempt_of(c) == attempt), "the same attempt each time");
    assert_eq!(t.h.calls(id, "").await["total_count"], 1);
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "sending");
    assert_eq!(t.h.calls(id, "").await["calls"][0]["provider_id"], sid_of(&attempt).as_str());
}

#[tokio::test]
async fn every_throttling_code_is_re_sent_and_every_integration_fault_stops_dispatch() {
    for code in [20429, 22005, 10004] {
        let sends = Arc::new(AtomicUsize::new(0));
        let counter = sends.clone();
        let Some(t) =
            Twilio::new(
                json!({}),
                1,
                move |request: &Request| {
                    if counter.fetch_add(1, Ordering::SeqCst) == 0 { twilio_error(400, code) } else { created(request) }
                },
            )
            .await
        else {
            return;
        };
        let (id, contacts) = t.h.start(json!({}), 1).await;
        t.h.settle().await;
        t.h.clock.advance(SignedDuration::from_secs(1));
        assert_eq!(t.h.settle().await.resent, 1, "{code}: re-sent after 1 s");
        assert_eq!(attempt_of(&t.creates().await[1]), t.h.attempt_of(id, contacts[0]).await, "{code}: the same attempt");
    }
    for (status, code) in [(401, Some(20003)), (400, Some(21210)), (400, Some(21215)), (401, None), (403, None)] {
        let answer = move |_: &Request| match code {
            Some(code) => twilio_error(status, code),
            None => ResponseTemplate::new(status),
        };
        let Some(t) = Twilio::new(json!({}), 1, answer).await else { return };
        let (id, contacts) = t.h.start(json!({}), 1).await;
        t.h.settle().await;
        let (_, shown) = t.h.get(&format!("/integrations/{}", t.h.integration)).await;
        assert_eq!(shown["integration"]["health"]["status"], "failing", "{status} {code:?}: {shown}");
        assert_eq!(t.h.contact(id, contacts[0]).await["status"], "sending", "{status} {code:?}: put back, not failed");
    }
}

#[tokio::test]
async fn an_unknown_outcome_is_closed_never_re_sent() {
    // A 5xx after the request was written, then a timeout: Twilio may have placed the call.
    for slow in [false, true] {
        let answer = move |_: &Request| {
            if slow { ResponseTemplate::new(201).set_delay(std::time::Duration::from_millis(1500)) } else { twilio_error(500, 20500) }
        };
        let Some(t) = Twilio::new(json!({ "timeout_ms": 200 }), 1, answer).await else { return };
        let (id, contacts) = t.h.start(json!({}), 1).await;
        t.h.settle().await;
        let call = t.h.calls(id, "").await["calls"][0].clone();
        assert_eq!((&call["status"], &call["ended_reason"]), (&json!("failed"), &json!("provider_unknown")), "slow={slow}: {call}");
        assert_eq!(t.h.contact(id, contacts[0]).await["status"], "retrying", "the failed-retry policy applies");
        t.h.clock.advance(SignedDuration::from_mins(5));
        assert_eq!(t.h.settle().await.resent, 0, "never re-sent");
        assert_eq!(t.creates().await.len(), 1);
        t.h.advance_mins(30);
        assert_eq!(t.h.claims().await, 1, "retried later as a new attempt");
        let calls = t.h.calls(id, "").await;
        assert_eq!(calls["total_count"], 2);
    }
}

#[tokio::test]
async fn a_broken_credential_stops_dispatch_without_failing_contacts_until_a_patch_rotates_it() {
    let rotated = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fixed = rotated.clone();
    let Some(mut t) = Twilio::new(json!({}), 1, move |request: &Request| {
        let auth = request.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let good = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{SID}:new-token-9999")));
        if fixed.load(Ordering::SeqCst) && auth == good { created(request) } else { twilio_error(401, 20003) }
    })
    .await
    else {
        return;
    };
    let (id, contacts) = t.h.start(json!({}), 3).await;
    t.h.settle().await;
    let integration_path = format!("/integrations/{}", t.h.integration);
    let (_, shown) = t.h.get(&integration_path).await;
    let health = &shown["integration"]["health"];
    assert_eq!(health["status"], "failing", "{shown}");
    assert!(health["reason"].as_str().is_some_and(|r| r.contains("20003")), "{health}");
    assert_eq!(health["since"], "2026-06-08T18:00:00Z");
    let broken_sends = t.creates().await.len();
    assert!(broken_sends >= 1);
    t.h.advance_mins(60);
    t.h.settle().await;
    assert_eq!(t.creates().await.len(), broken_sends, "nothing handed off while failing");
    assert_eq!(t.h.status(id).await, "active", "its campaigns stay active");
    for contact in &contacts {
        let status = t.h.contact(id, *contact).await["status"].clone();
        assert!(status == "sending" || status == "queue", "no contact failed for the integration's fault: {status}");
    }
    let put_back: Vec<String> = t.creates().await.iter().map(attempt_of).collect();

    // Rotation: PATCH the new token (the rest unchanged); health resets and the same attempts go again.
    rotated.store(true, Ordering::SeqCst);
    let mut new_config = config(&t.server, json!({}));
    new_config["auth_token"] = json!("new-token-9999");
    let (status, body) = t.h.patch(&integration_path, json!({ "config": new_config })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["integration"]["health"], json!({ "status": "ok", "reason": null, "since": null }));
    t.h.settle().await;
    let creates = t.creates().await;
    let resent: Vec<String> = creates[broken_sends..].iter().map(attempt_of).collect();
    for attempt in &put_back {
        assert!(resent.contains(attempt), "{attempt} handed off again with the same id");
    }
    assert_eq!(t.h.calls(id, "").await["total_count"], 3, "one attempt per contact");
    // Callbacks are now verified with the new token; the old one no longer signs.
    t.token = "new-token-9999".to_owned();
    let last = creates.last().expect("a create");
    t.callback_ok(last, &[("CallStatus", "ringing")]).await;
    let (status, _) = t.callback_with(last, &[("CallStatus", "in-progress")], TOKEN, "StatusCallback").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn max_per_second_paces_hand_offs_across_campaigns() {
    let Some(t) = Twilio::new(json!({ "max_per_second": 2 }), 1, ok_calls()).await else { return };
    t.h.start(json!({ "concurrency_limit": 10 }), 3).await;
    t.h.start(json!({ "concurrency_limit": 10 }), 3).await;
    assert_eq!(t.h.claims().await, 1, "one hand-off now");
    // The first slot used a quarter second of credit: the next comes 250 ms later, then every 500 ms.
    t.h.clock.advance(SignedDuration::from_millis(249));
    assert_eq!(t.h.claims().await, 0);
    t.h.clock.advance(SignedDuration::from_millis(1));
    assert_eq!(t.h.claims().await, 1);
    t.h.clock.advance(SignedDuration::from_millis(499));
    assert_eq!(t.h.claims().await, 0, "the next one 500 ms later");
    t.h.clock.advance(SignedDuration::from_millis(1));
    assert_eq!(t.h.claims().await, 1);
    t.h.clock.advance(SignedDuration::from_secs(10));
    assert_eq!(t.h.claims().await, 1, "an idle integration builds no burst beyond a quarter second");
    assert_eq!(t.creates().await.len(), 4);
}

#[tokio::test]
async fn credentials_sealed_under_another_key_fail_their_attempts_as_unreadable() {
    let Some(t) = Twilio::new(json!({}), 0, ok_calls()).await else { return };
    let (id, contacts) = t.h.start(json!({}), 1).await;
    // An engine whose key is not the one that sealed the token (the key was lost or changed).
    let settings = EngineSettings {
        public_url: t.h.base.clone(),
        keyring: Arc::new(Keyring::with_key(SecretKey::generate())),
        retry: outbound::domain::attempt::RetrySettings { failed_retry_limit: 0, ..Default::default() },
        ..EngineSettings::default()
    };
    let engine = Engine::new(t.h.store.clone(), t.h.clock.clone(), settings);
    engine.settle().await.expect("settles");
    assert!(t.creates().await.is_empty(), "nothing sent");
    let call = t.h.calls(id, "").await["calls"][0].clone();
    assert_eq!((&call["status"], &call["ended_reason"]), (&json!("failed"), &json!("credentials_unreadable")), "{call}");
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "failed");
}
