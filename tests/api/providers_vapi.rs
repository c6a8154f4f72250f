//! The `vapi` provider through HTTP (PROVIDERS.md §4, reference/providers.md §3, §5): a wiremock
//! server plays Vapi's API (`POST /call`, `GET /call/{id}`), the test plays Vapi's server
//! messages, authenticated as Vapi would (`X-Vapi-Secret`, a Bearer token, or an HMAC computed
//! here, independently of the server's code). Checks every field of the call creation, every row
//! of the outcome table, repeated and out-of-order messages, bad credentials, a missing report
//! reconciled with `GET /call/{id}` (or closed by the held status update when that fails),
//! throttling at hand-off, account failures, and a property: any order and duplication of one
//! call's messages comes to what they come to once in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use hmac::Mac;
use jiff::SignedDuration;
use outbound::clock::Clock;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::engine::{Harness, Provider, retry_settings};
use super::helpers::merge;

const API_KEY: &str = "vapi-private-key-1234";
const SECRET: &str = "vapi-server-secret-5678";
const ASSISTANT: &str = "4a170597-a0c2-4657-8c32-cb93f080cead";
const PHONE_NUMBER: &str = "c6ea6cb0-0dfb-4a65-918f-6a33abb54b64";

struct Answers(Arc<dyn Fn(&Request) -> ResponseTemplate + Send + Sync>);

impl Respond for Answers {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        (self.0)(request)
    }
}

/// The call id the mock gives an attempt: a UUID-shaped digest of the attempt id.
fn call_id_of(attempt_id: &str) -> String {
    use sha2::Digest;
    let hex: String = sha2::Sha256::digest(attempt_id.as_bytes())[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

fn body_of(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("a JSON body")
}

fn attempt_of(request: &Request) -> String {
    body_of(request)["assistantOverrides"]["metadata"]["attempt_id"].as_str().unwrap_or_default().to_owned()
}

/// Vapi's answer to a created call (reference §3.3).
fn created(request: &Request) -> ResponseTemplate {
    let attempt = attempt_of(request);
    ResponseTemplate::new(201).set_body_json(json!({
        "id": call_id_of(&attempt), "orgId": "org_1", "type": "outboundPhoneCall", "status": "queued",
        "createdAt": "2026-06-08T18:00:00.000Z", "updatedAt": "2026-06-08T18:00:00.000Z",
        "assistantOverrides": { "metadata": { "attempt_id": attempt } }, "name": attempt,
        "subscriptionLimits": { "concurrencyBlocked": false, "concurrencyLimit": 10, "remainingConcurrentCalls": 9 }
    }))
}

/// A NestJS-style refusal (the shape is unconfirmed: reference §3.4).
fn refusal(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({ "message": [message], "error": "Bad Request", "statusCode": status }))
}

/// The Call as Vapi echoes it in messages.
fn call(attempt: &str, status: &str) -> Value {
    json!({ "id": call_id_of(attempt), "orgId": "org_1", "type": "outboundPhoneCall", "status": status, "name": attempt,
            "assistantId": ASSISTANT, "assistantOverrides": { "metadata": { "attempt_id": attempt } } })
}

fn status_update(attempt: &str, status: &str, ended_reason: Option<&str>) -> Value {
    let mut message =
        json!({ "type": "status-update", "status": status, "timestamp": 1_780_941_600_000_i64, "call": call(attempt, status) });
    if let Some(reason) = ended_reason {
        message["endedReason"] = json!(reason);
        message["call"]["endedReason"] = json!(reason);
    }
    json!({ "message": message })
}

/// What a finished call carries, on the report and on the Call alike (reference §3.5).
fn outcome_fields(reason: &str, analysis: Value) -> Value {
    json!({
        "endedReason": reason, "startedAt": "2026-06-08T18:00:05.000Z", "endedAt": "2026-06-08T18:01:30.000Z",
        "analysis": analysis,
        "artifact": {
            "transcript": "AI: Hola Asha\nUser: Sí, confirmo",
            "recordingUrl": "https://storage.vapi.ai/rec-mono.wav",
            "messages": [
                { "role": "system", "message": "You are Sales bot", "time": 1_780_941_604_000_i64, "secondsFromStart": 0 },
                { "role": "bot", "message": "Hola Asha", "time": 1_780_941_606_000_i64, "secondsFromStart": 1.0 },
                { "role": "user", "message": "Sí, confirmo", "time": 1_780_941_610_000_i64, "secondsFromStart": 5.0 },
            ],
        },
    })
}

fn report(attempt: &str, reason: &str, analysis: Value) -> Value {
    let mut message =
        merge(json!({ "type": "end-of-call-report", "timestamp": 1_780_941_690_456_i64, "cost": 0.11 }), outcome_fields(reason, analysis));
    message["call"] = merge(call(attempt, "ended"), json!({ "endedReason": reason }));
    json!({ "message": message })
}

/// The Call `GET /call/{id}` answers once it ended.
fn ended_call(attempt: &str, reason: &str, analysis: Value) -> Value {
    merge(call(attempt, "ended"), outcome_fields(reason, analysis))
}

fn converted_analysis() -> Value {
    json!({ "summary": "Confirmed the order for Friday.", "structuredData": { "confirmed": true, "day": "friday" }, "successEvaluation": "true" })
}

/// `x-signature`: hex HMAC-SHA256(secret, `{timestamp}.{body}`).
fn hmac_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

struct Vapi {
    h: Harness,
    server: MockServer,
}

fn config(server: &MockServer, extra: Value) -> Value {
    merge(
        json!({
            "api_key": API_KEY, "assistant_id": ASSISTANT, "phone_number_id": PHONE_NUMBER, "server_secret": SECRET,
            "api_base": server.uri(), "max_per_second": 1000, "timeout_ms": 2000
        }),
        extra,
    )
}

impl Vapi {
    /// A harness whose integration is `vapi` on a mock answering `POST /call` with `answer`; the
    /// failed retry limit is `failed_retries`.
    async fn new(extra: Value, failed_retries: i64, answer: impl Fn(&Request) -> ResponseTemplate + Send + Sync + 'static) -> Option<Vapi> {
        let server = MockServer::start().await;
        Mock::given(method("POST")).and(path("/call")).respond_with(Answers(Arc::new(answer))).mount(&server).await;
        let config = config(&server, extra);
        let h = Harness::new(retry_settings(30, failed_retries), "phone_call", Provider::Config("vapi", config)).await?;
        Some(Vapi { h, server })
    }

    async fn accepting(extra: Value, failed_retries: i64) -> Option<Vapi> {
        Self::new(extra, failed_retries, created).await
    }

    /// Answers `GET /call/{id}` with `answer`.
    async fn mount_get(&self, answer: impl Fn(&Request) -> ResponseTemplate + Send + Sync + 'static) {
        Mock::given(method("GET")).and(path_regex("^/call/[^/]+$")).respond_with(Answers(Arc::new(answer))).mount(&self.server).await;
    }

    async fn requests(&self, verb: &str) -> Vec<Request> {
        let all = self.server.received_requests().await.expect("recording on");
        all.into_iter().filter(|r| r.method.as_str() == verb && r.url.path().starts_with("/call")).collect()
    }

    /// The call creations Vapi received, oldest first.
    async fn creates(&self) -> Vec<Request> {
        self.requests("POST").await
    }

    /// The `GET /call/{id}` requests Vapi received.
    async fn gets(&self) -> Vec<Request> {
        self.requests("GET").await
    }

    fn events_url(&self) -> String {
        format!("{}/api/v1.0/integrations/{}/events", self.h.base, self.h.integration)
    }

    async fn post(&self, body: &Value, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut request = self.h.client.post(self.events_url()).header("content-type", "application/json").body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("sent");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Posts a server message with the shared secret, as Vapi sends it (`X-Vapi-Secret`).
    async fn send(&self, body: &Value) -> (StatusCode, Value) {
        self.post(body, &[("X-Vapi-Secret", SECRET)]).await
    }

    async fn send_ok(&self, body: &Value) {
        let (status, answer) = self.send(body).await;
        assert_eq!(status, StatusCode::OK, "{body}: {answer}");
    }

    /// Posts a message signed with the HMAC credential at `timestamp`.
    async fn send_hmac(&self, body: &Value, timestamp: &str, secret: &str) -> (StatusCode, Value) {
        let signature = hmac_signature(secret, timestamp, body.to_string().as_bytes());
        self.post(body, &[("x-timestamp", timestamp), ("x-signature", &signature)]).await
    }

    /// The only call of a campaign.
    async fn the_call(&self, id: i64) -> Value {
        let calls = self.h.calls(id, "").await;
        assert_eq!(calls["total_count"], 1, "{calls}");
        calls["calls"][0].clone()
    }
}

#[tokio::test]
async fn a_call_is_created_with_every_vapi_field_and_its_messages_drive_the_contact() {
    let Some(t) = Vapi::accepting(json!({}), 1).await else { return };
    let id = t.h.campaign(json!({})).await;
    let contact = json!({ "contact": "+525520000000", "name": "Asha Rao", "context": "Order 9271", "f_id": "F-1",
                          "extracted_data": { "order_id": "ORD-9271", "total": 12.5 } });
    let contacts = t.h.add(id, vec![contact]).await;
    t.h.action(id, "activate").await;
    assert_eq!(t.h.claims().await, 1);
    let creates = t.creates().await;
    assert_eq!(creates.len(), 1);
    let create = &creates[0];
    let attempt = t.h.attempt_of(id, contacts[0]).await;
    assert_eq!(create.headers.get("authorization").and_then(|v| v.to_str().ok()), Some(format!("Bearer {API_KEY}").as_str()));
    assert!(create.headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json")));
    assert_eq!(
        body_of(create),
        json!({
            "assistantId": ASSISTANT,
            "phoneNumberId": PHONE_NUMBER,
            "customer": { "number": "+525520000000", "name": "Asha Rao" },
            "name": attempt,
            "assistantOverrides": {
                "variableValues": { "name": "Asha Rao", "contact": "+525520000000", "context": "Order 9271", "f_id": "F-1",
                                    "order_id": "ORD-9271", "total": 12.5 },
                "metadata": { "attempt_id": attempt, "campaign_id": id },
                "server": { "url": t.events_url(), "headers": { "X-Vapi-Secret": SECRET } },
                "serverMessages": ["status-update", "end-of-call-report"],
            },
        })
    );

    // Messages: progress, the final report, then repeats and a late progress message.
    t.send_ok(&status_update(&attempt, "ringing", None)).await;
    let call = t.the_call(id).await;
    assert_eq!(call["provider_id"], call_id_of(&attempt).as_str(), "the Vapi id is the call's provider_id");
    assert_eq!(call["status"], "in-progress");
    t.send_ok(&status_update(&attempt, "in-progress", None)).await;
    t.send_ok(&report(&attempt, "customer-ended-call", converted_analysis())).await;
    t.send_ok(&status_update(&attempt, "ringing", None)).await;
    t.send_ok(&report(&attempt, "customer-ended-call", converted_analysis())).await;
    t.send_ok(&status_update(&attempt, "ended", Some("customer-ended-call"))).await;
    let contact = t.h.contact(id, contacts[0]).await;
    assert_eq!(contact["status"], "converted", "{contact}");
    assert_eq!(contact["extracted_data"]["day"], "friday", "{contact}");
    assert_eq!(contact["extracted_data"]["summary"], "Confirmed the order for Friday.");
    let call = t.the_call(id).await;
    assert_eq!(
        [&call["status"], &call["answered_by"], &call["duration"], &call["ended_reason"], &call["ended_by"], &call["recording_url"]],
        [
            &json!("ended"),
            &json!("human"),
            &json!(85),
            &json!("customer-ended-call"),
            &json!("user"),
            &json!("https://storage.vapi.ai/rec-mono.wav")
        ],
        "{call}"
    );
    assert_eq!((&call["started_at"], &call["ended_at"]), (&json!("2026-06-08T18:00:05Z"), &json!("2026-06-08T18:01:30Z")), "{call}");
    assert_eq!(
        call["transcript"],
        json!([
            { "sent_by": "assistant", "sent_at": "2026-06-08T18:00:06Z", "content": "Hola Asha" },
            { "sent_by": "user", "sent_at": "2026-06-08T18:00:10Z", "content": "Sí, confirmo" },
        ]),
        "{call}"
    );
    assert_eq!(call["extracted_data"]["confirmed"], true, "{call}");
    let analytics = t.h.detail(id).await["analytics"].clone();
    assert_eq!((&analytics["calls"], &analytics["contactsConverted"]), (&json!(1), &json!(1)), "the repeats counted once: {analytics}");
    t.h.clock.advance(SignedDuration::from_mins(10));
    t.h.settle().await;
    assert!(t.gets().await.is_empty(), "a reported call is not asked about");
    assert_eq!(t.creates().await.len(), 1, "one call for one attempt");
}

#[tokio::test]
async fn every_vapi_outcome_row_maps_onto_the_contact() {
    // (endedReason, analysis, contact status, call status, answered_by, failed_reason)
    type Row = (&'static str, Value, &'static str, &'static str, Value, Value);
    let rows: Vec<Row> = vec![
        ("customer-ended-call", json!({}), "answered", "ended", json!("human"), Value::Null),
        ("assistant-said-end-call-phrase", json!({ "successEvaluation": "true" }), "converted", "ended", json!("human"), Value::Null),
        ("customer-ended-call-during-transfer", json!({}), "answered", "ended", json!("human"), Value::Null),
        ("call.in-progress.twilio-completed-call", json!({}), "answered", "ended", json!("human"), Value::Null),
        ("exceeded-max-duration", json!({ "successEvaluation": "false" }), "answered", "ended", json!("human"), Value::Null),
        ("voicemail", json!({ "successEvaluation": "true" }), "voicemail", "ended", json!("machine"), Value::Null),
        ("customer-busy", json!({}), "failed", "busy", Value::Null, Value::Null),
        (
            "call.in-progress.error-providerfault-outbound-sip-503-service-unavailable",
            json!({}),
            "failed",
            "busy",
            Value::Null,
            Value::Null,
        ),
        ("customer-did-not-answer", json!({}), "failed", "no-answer", Value::Null, Value::Null),
        (
            "call.in-progress.error-providerfault-outbound-sip-408-request-timeout",
            json!({}),
            "failed",
            "no-answer",
            Value::Null,
            Value::Null,
        ),
        (
            "call.in-progress.error-providerfault-outbound-sip-480-temporarily-unavailable",
            json!({}),
            "failed",
            "no-answer",
            Value::Null,
            Value::Null,
        ),
        ("twilio-reported-customer-misdialed", json!({}), "failed", "failed", Value::Null, json!("invalid_number")),
        // Never placed for lack of capacity: back to retrying, not counted (the failed retry limit is 0).
        ("call.start.error-subscription-concurrency-limit-reached", json!({}), "retrying", "failed", Value::Null, Value::Null),
        ("call.start.error-vapi-number-outbound-daily-limit", json!({}), "retrying", "failed", Value::Null, Value::Null),
        ("twilio-failed-to-connect-call", json!({}), "failed", "failed", Value::Null, Value::Null),
        ("call.start.error-get-assistant", json!({}), "failed", "failed", Value::Null, Value::Null),
        ("assistant-not-found", json!({}), "failed", "failed", Value::Null, Value::Null),
        ("call.start.error-fraud-check-failed", json!({}), "failed", "failed", Value::Null, Value::Null),
        ("pipeline-error-openai-llm-failed", json!({}), "failed", "failed", Value::Null, Value::Null),
        ("call.in-progress.error-vapifault-openai-voice-failed", json!({}), "failed", "failed", Value::Null, Value::Null),
        ("worker-shutdown", json!({}), "failed", "failed", Value::Null, Value::Null),
        ("manually-canceled", json!({}), "failed", "failed", Value::Null, Value::Null),
        ("hangup", json!({}), "failed", "failed", Value::Null, Value::Null),
    ];
    let Some(t) = Vapi::accepting(json!({}), 0).await else { return };
    for (reason, analysis, contact_status, call_status, answered_by, failed_reason) in rows {
        let (id, contacts) = t.h.start(json!({ "retries": 0 }), 1).await;
        t.h.settle().await;
        let attempt = t.h.attempt_of(id, contacts[0]).await;
        assert!(t.creates().await.iter().any(|c| attempt_of(c) == attempt), "{reason}: handed off");
        t.send_ok(&status_update(&attempt, "ringing", None)).await;
        t.send_ok(&report(&attempt, reason, analysis)).await;
        let contact = t.h.contact(id, contacts[0]).await;
        let call = t.the_call(id).await;
        assert_eq!(contact["status"], contact_status, "{reason}: {contact}");
        assert_eq!(contact.get("failed_reason").cloned().unwrap_or(Value::Null), failed_reason, "{reason}: {contact}");
        assert_eq!(call["status"], call_status, "{reason}: {call}");
        assert_eq!(call["ended_reason"], reason, "{reason}: {call}");
        assert_eq!(call.get("answered_by").cloned().unwrap_or(Value::Null), answered_by, "{reason}: {call}");
    }
    let (_, shown) = t.h.get(&format!("/integrations/{}", t.h.integration)).await;
    assert_eq!(shown["integration"]["health"]["status"], "ok", "no row broke the integration: {shown}");
}

#[tokio::test]
async fn the_shared_secret_authenticates_and_anything_else_is_refused_changing_nothing() {
    let Some(t) = Vapi::accepting(json!({}), 1).await else { return };
    let (id, contacts) = t.h.start(json!({}), 1).await;
    t.h.settle().await;
    let attempt = t.h.attempt_of(id, contacts[0]).await;
    let ended = report(&attempt, "customer-ended-call", converted_analysis());
    let timestamp = t.h.clock.now().as_second().to_string();
    let bearer_wrong = "Bearer not-the-secret".to_owned();
    for headers in [
        vec![],
        vec![("X-Vapi-Secret", "not-the-secret")],
        vec![("X-Vapi-Secret", "vapi-server-secret-567")],
        vec![("Authorization", bearer_wrong.as_str())],
        vec![("Authorization", SECRET)],
    ] {
        let (status, body) = t.post(&ended, &headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}: {body}");
        assert_eq!(body["error"], "UNAUTHORIZED");
    }
    // An HMAC is no credential unless the integration takes one.
    let (status, _) = t.send_hmac(&ended, &timestamp, SECRET).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "server_hmac is off");
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "sending", "nothing changed");
    assert_eq!(t.the_call(id).await["status"], "in-progress");

    // The secret as a Bearer token is taken too.
    let bearer = format!("Bearer {SECRET}");
    let (status, body) = t.post(&ended, &[("Authorization", bearer.as_str())]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "converted");
}

#[tokio::test]
async fn an_hmac_signature_authenticates_when_fresh_and_a_bad_or_stale_one_changes_nothing() {
    let Some(t) = Vapi::accepting(json!({ "server_hmac": true }), 1).await else { return };
    let (id, contacts) = t.h.start(json!({}), 2).await;
    t.h.settle().await;
    let (first, second) = (t.h.attempt_of(id, contacts[0]).await, t.h.attempt_of(id, contacts[1]).await);
    let now = t.h.clock.now();
    let seconds = now.as_second().to_string();
    let ended = report(&first, "customer-ended-call", json!({}));

    let (status, _) = t.send_hmac(&ended, &seconds, "another-secret").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "signed with another secret");
    let stale = (now.as_second() - 301).to_string();
    let (status, _) = t.send_hmac(&ended, &stale, SECRET).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "stale by 301 s");
    let stale_ms = (now.as_millisecond() - 301_000).to_string();
    let (status, _) = t.send_hmac(&ended, &stale_ms, SECRET).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "stale by 301 s, in milliseconds");
    let signature = hmac_signature(SECRET, &seconds, ended.to_string().as_bytes());
    let tampered = report(&first, "customer-busy", json!({}));
    let (status, _) = t.post(&tampered, &[("x-timestamp", seconds.as_str()), ("x-signature", signature.as_str())]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "tampered");
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "sending", "nothing changed");

    // Fresh, in seconds or in milliseconds (the unit is unconfirmed), with or without `sha256=`.
    let (status, body) = t.send_hmac(&ended, &(now.as_second() - 299).to_string(), SECRET).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "answered");
    let busy = report(&second, "customer-busy", json!({}));
    let millis = now.as_millisecond().to_string();
    let signature = format!("sha256={}", hmac_signature(SECRET, &millis, busy.to_string().as_bytes()));
    let (status, body) = t.post(&busy, &[("x-timestamp", millis.as_str()), ("x-signature", signature.as_str())]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(t.h.contact(id, contacts[1]).await["status"], "retrying");
    // The shared secret still works beside it.
    let (status, _) = t.send(&status_update(&second, "ringing", None)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_missing_report_is_reconciled_with_get_call_at_the_status_updates_deadline() {
    let Some(t) = Vapi::accepting(json!({}), 1).await else { return };
    let (id, contacts) = t.h.start(json!({}), 1).await;
    t.h.settle().await;
    let attempt = t.h.attempt_of(id, contacts[0]).await;
    let call_body = ended_call(&attempt, "customer-ended-call", converted_analysis());
    Mock::given(method("GET"))
        .and(path(format!("/call/{}", call_id_of(&attempt))))
        .respond_with(ResponseTemplate::new(200).set_body_json(call_body))
        .mount(&t.server)
        .await;

    t.send_ok(&status_update(&attempt, "in-progress", None)).await;
    t.send_ok(&status_update(&attempt, "ended", Some("customer-ended-call"))).await;
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "sending", "the status update is provisional");
    assert_eq!(t.the_call(id).await["status"], "in-progress");
    t.h.clock.advance(SignedDuration::from_secs(299));
    t.h.settle().await;
    assert!(t.gets().await.is_empty(), "not before the report's wait");
    t.h.clock.advance(SignedDuration::from_secs(1));
    let tick = t.h.settle().await;
    assert_eq!(tick.timed_out, 1, "{tick:?}");
    let gets = t.gets().await;
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].url.path(), format!("/call/{}", call_id_of(&attempt)));
    assert_eq!(gets[0].headers.get("authorization").and_then(|v| v.to_str().ok()), Some(format!("Bearer {API_KEY}").as_str()));
    let contact = t.h.contact(id, contacts[0]).await;
    assert_eq!(contact["status"], "converted", "the Call's outcome: {contact}");
    let call = t.the_call(id).await;
    assert_eq!((&call["status"], &call["duration"], &call["ended_by"]), (&json!("ended"), &json!(85), &json!("user")), "{call}");
    assert_eq!(call["transcript"].as_array().map(Vec::len), Some(2), "{call}");
    assert_eq!(call["recording_url"], "https://storage.vapi.ai/rec-mono.wav");
    // A report arriving after all changes nothing.
    t.send_ok(&report(&attempt, "customer-busy", json!({}))).await;
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "converted");
}

/// An account failure learnt only from `GET /call` stops the integration as a report would.
#[tokio::test]
async fn an_account_failure_found_by_get_call_stops_dispatch() {
    let Some(t) = Vapi::accepting(json!({}), 0).await else { return };
    let (id, contacts) = t.h.start(json!({ "concurrency_limit": 1 }), 2).await;
    t.h.settle().await;
    let attempt = t.h.attempt_of(id, contacts[0]).await;
    let call_body = ended_call(&attempt, "call.start.error-subscription-insufficient-credits", json!({}));
    Mock::given(method("GET"))
        .and(path(format!("/call/{}", call_id_of(&attempt))))
        .respond_with(ResponseTemplate::new(200).set_body_json(call_body))
        .mount(&t.server)
        .await;
    t.send_ok(&status_update(&attempt, "ended", None)).await;
    t.h.clock.advance(SignedDuration::from_mins(5));
    t.h.settle().await;
    assert_eq!(t.gets().await.len(), 1);
    let (_, shown) = t.h.get(&format!("/integrations/{}", t.h.integration)).await;
    let health = &shown["integration"]["health"];
    assert_eq!(health["status"], "failing", "{shown}");
    assert!(health["reason"].as_str().is_some_and(|r| r.contains("insufficient-credits")), "{health}");
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "retrying", "not failed for the account's fault");
    t.h.advance_mins(60);
    t.h.settle().await;
    assert_eq!(t.creates().await.len(), 1, "nothing handed off while failing");
}

#[tokio::test]
async fn a_missing_report_whose_get_fails_is_closed_with_the_held_status_update() {
    let Some(t) = Vapi::accepting(json!({}), 1).await else { return };
    t.mount_get(|_: &Request| ResponseTemplate::new(500)).await;
    let (id, contacts) = t.h.start(json!({}), 2).await;
    t.h.settle().await;
    let (first, second) = (t.h.attempt_of(id, contacts[0]).await, t.h.attempt_of(id, contacts[1]).await);
    t.send_ok(&status_update(&first, "ringing", None)).await;
    t.send_ok(&status_update(&first, "ended", Some("customer-did-not-answer"))).await;
    t.send_ok(&status_update(&second, "ended", Some("customer-ended-call"))).await;
    t.h.clock.advance(SignedDuration::from_mins(5));
    assert_eq!(t.h.settle().await.timed_out, 2);
    assert_eq!(t.gets().await.len(), 2, "Vapi was asked about both");
    let calls = t.h.calls(id, "").await["calls"].as_array().expect("calls").clone();
    let of = |attempt: &str| calls.iter().find(|c| c["id"] == attempt).cloned().expect("a call");
    let (no_answer, answered) = (of(&first), of(&second));
    assert_eq!((&no_answer["status"], &no_answer["ended_reason"]), (&json!("no-answer"), &json!("customer-did-not-answer")), "{no_answer}");
    assert_eq!((&answered["status"], &answered["answered_by"]), (&json!("ended"), &json!("human")), "{answered}");
    assert_eq!(t.h.statuses(id).await, ["retrying", "answered"]);
    // The report, late after all: its data and transcript are added, the closed call is not converted.
    t.send_ok(&report(&second, "customer-ended-call", converted_analysis())).await;
    assert_eq!(t.h.statuses(id).await, ["retrying", "answered"]);
    let late = t.h.calls(id, "").await["calls"].as_array().expect("calls").iter().find(|c| c["id"] == second.as_str()).cloned();
    let late = late.expect("a call");
    assert_eq!(late["transcript"].as_array().map(Vec::len), Some(2), "{late}");
    assert_eq!(late["extracted_data"]["day"], "friday", "{late}");
}

#[tokio::test]
async fn a_report_after_the_ended_status_update_wins_and_vapi_is_not_asked() {
    let Some(t) = Vapi::accepting(json!({}), 1).await else { return };
    t.mount_get(|_: &Request| ResponseTemplate::new(500)).await;
    let (id, contacts) = t.h.start(json!({}), 1).await;
    t.h.settle().await;
    let attempt = t.h.attempt_of(id, contacts[0]).await;
    t.send_ok(&status_update(&attempt, "ended", Some("customer-ended-call"))).await;
    t.h.clock.advance(SignedDuration::from_mins(2));
    t.send_ok(&report(&attempt, "customer-ended-call", converted_analysis())).await;
    t.h.clock.advance(SignedDuration::from_mins(10));
    assert_eq!(t.h.settle().await.timed_out, 0);
    assert!(t.gets().await.is_empty(), "no GET /call");
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "converted");
    let call = t.the_call(id).await;
    assert_eq!((&call["status"], &call["duration"]), (&json!("ended"), &json!(85)), "{call}");
}

#[tokio::test]
async fn throttled_hand_offs_back_off_keep_their_attempt_and_honour_retry_after() {
    let sends = Arc::new(AtomicUsize::new(0));
    let counter = sends.clone();
    // 429 with Retry-After: 7, 429 without it, a 400 naming the concurrency limit, then created.
    let Some(t) = Vapi::new(json!({}), 1, move |request: &Request| match counter.fetch_add(1, Ordering::SeqCst) {
        0 => ResponseTemplate::new(429).insert_header("retry-after", "7"),
        1 => ResponseTemplate::new(429),
        2 => refusal(400, "Over Concurrency Limit."),
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
    assert!(creates.iter().all(|c| attempt_of(c) == attempt && body_of(c)["name"] == attempt.as_str()), "the same attempt each time");
    assert_eq!(t.h.calls(id, "").await["total_count"], 1, "not counted: the message limit of 1 still let it through");
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "sending");
    assert_eq!(t.the_call(id).await["provider_id"], call_id_of(&attempt).as_str());
}

#[tokio::test]
async fn refusals_fail_the_attempt_and_server_errors_are_never_re_sent() {
    let Some(t) =
        Vapi::new(json!({}), 1, |_: &Request| refusal(400, "customer.number must be a valid phone number in the E.164 format")).await
    else {
        return;
    };
    let (id, contacts) = t.h.start(json!({}), 1).await;
    t.h.settle().await;
    let call = t.the_call(id).await;
    assert_eq!(call["status"], "failed", "{call}");
    assert!(call["ended_reason"].as_str().is_some_and(|r| r.starts_with("vapi_http_400: customer.number")), "{call}");
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "retrying", "the failed-retry policy applies");

    let Some(t) = Vapi::new(json!({}), 1, |_: &Request| refusal(500, "Internal server error")).await else { return };
    let (id, contacts) = t.h.start(json!({}), 1).await;
    t.h.settle().await;
    let call = t.the_call(id).await;
    assert_eq!((&call["status"], &call["ended_reason"]), (&json!("failed"), &json!("provider_unknown")), "{call}");
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "retrying");
    t.h.clock.advance(SignedDuration::from_mins(5));
    assert_eq!(t.h.settle().await.resent, 0, "never re-sent");
    assert_eq!(t.creates().await.len(), 1);
}

#[tokio::test]
async fn an_account_failure_reported_by_vapi_stops_dispatch_until_a_patch() {
    let Some(t) = Vapi::accepting(json!({}), 0).await else { return };
    let (id, contacts) = t.h.start(json!({ "concurrency_limit": 1 }), 2).await;
    t.h.settle().await;
    assert_eq!(t.creates().await.len(), 1, "one at a time");
    let attempt = t.h.attempt_of(id, contacts[0]).await;
    t.send_ok(&report(&attempt, "call.start.error-subscription-insufficient-credits", json!({}))).await;
    let integration_path = format!("/integrations/{}", t.h.integration);
    let (_, shown) = t.h.get(&integration_path).await;
    let health = &shown["integration"]["health"];
    assert_eq!(health["status"], "failing", "{shown}");
    assert!(health["reason"].as_str().is_some_and(|r| r.contains("insufficient-credits")), "{health}");
    let contact = t.h.contact(id, contacts[0]).await;
    assert_eq!(contact["status"], "retrying", "not failed for the account's fault, not counted: {contact}");
    t.h.advance_mins(60);
    t.h.settle().await;
    assert_eq!(t.creates().await.len(), 1, "nothing handed off while failing");
    assert_eq!(t.h.status(id).await, "active");
    for contact in &contacts {
        let status = t.h.contact(id, *contact).await["status"].clone();
        assert!(status != "failed", "no contact failed for the integration's fault: {status}");
    }

    let mut new_config = config(&t.server, json!({}));
    new_config["api_key"] = json!("vapi-private-key-9999");
    let (status, body) = t.h.patch(&integration_path, json!({ "config": new_config })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["integration"]["health"], json!({ "status": "ok", "reason": null, "since": null }));
    t.h.settle().await;
    let creates = t.creates().await;
    assert_eq!(creates.len(), 2, "dispatch resumed");
    let last = creates.last().expect("a create");
    assert_eq!(last.headers.get("authorization").and_then(|v| v.to_str().ok()), Some("Bearer vapi-private-key-9999"));
}

#[tokio::test]
async fn a_broken_key_at_hand_off_stops_dispatch_without_failing_contacts_until_a_patch_rotates_it() {
    let rotated = Arc::new(AtomicBool::new(false));
    let fixed = rotated.clone();
    let Some(t) = Vapi::new(json!({}), 1, move |request: &Request| {
        let auth = request.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        if fixed.load(Ordering::SeqCst) && auth == "Bearer vapi-private-key-9999" {
            created(request)
        } else {
            ResponseTemplate::new(401).set_body_json(json!({ "message": "Invalid Key.", "error": "Unauthorized", "statusCode": 401 }))
        }
    })
    .await
    else {
        return;
    };
    let (id, contacts) = t.h.start(json!({}), 2).await;
    t.h.settle().await;
    let integration_path = format!("/integrations/{}", t.h.integration);
    let (_, shown) = t.h.get(&integration_path).await;
    let health = &shown["integration"]["health"];
    assert_eq!(health["status"], "failing", "{shown}");
    assert!(health["reason"].as_str().is_some_and(|r| r.contains("vapi_http_401") && r.contains("Invalid Key")), "{health}");
    let broken_sends = t.creates().await.len();
    t.h.advance_mins(60);
    t.h.settle().await;
    assert_eq!(t.creates().await.len(), broken_sends, "nothing handed off while failing");
    let put_back: Vec<String> = t.creates().await.iter().map(attempt_of).collect();
    for contact in &contacts {
        let status = t.h.contact(id, *contact).await["status"].clone();
        assert!(status == "sending" || status == "queue", "no contact failed for the integration's fault: {status}");
    }

    rotated.store(true, Ordering::SeqCst);
    let mut new_config = config(&t.server, json!({}));
    new_config["api_key"] = json!("vapi-private-key-9999");
    new_config.as_object_mut().expect("object").remove("server_secret");
    let (status, body) = t.h.patch(&integration_path, json!({ "config": new_config })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["integration"]["health"]["status"], "ok");
    t.h.settle().await;
    let resent: Vec<String> = t.creates().await[broken_sends..].iter().map(attempt_of).collect();
    for attempt in &put_back {
        assert!(resent.contains(attempt), "{attempt} handed off again with the same id");
    }
    assert_eq!(t.h.calls(id, "").await["total_count"], 2, "one attempt per contact");
    // The kept server secret still authenticates.
    t.send_ok(&status_update(&resent[0], "ringing", None)).await;
}

/// One call's messages, in the order Vapi sends them, for an outcome kind.
fn messages(kind: usize, attempt: &str) -> Vec<Value> {
    match kind {
        0 => vec![
            status_update(attempt, "ringing", None),
            status_update(attempt, "in-progress", None),
            status_update(attempt, "ended", Some("customer-ended-call")),
            report(attempt, "customer-ended-call", converted_analysis()),
        ],
        _ => vec![
            status_update(attempt, "ringing", None),
            status_update(attempt, "ended", Some("customer-did-not-answer")),
            report(attempt, "customer-did-not-answer", json!({})),
        ],
    }
}

/// What a campaign of one contact came to: the contact's status and the campaign's analytics.
async fn outcome_of(t: &Vapi, id: i64, contact: i64) -> (Value, Value, Value) {
    let contact = t.h.contact(id, contact).await;
    let call = t.the_call(id).await;
    let detail = t.h.detail(id).await;
    let call_outcome = json!([call["status"], call["answered_by"], call["duration"], call["ended_reason"], call["transcript"]]);
    (contact["status"].clone(), call_outcome, detail["analytics"].clone())
}

/// Hands a one-contact campaign off, posts `order` of its call's messages, lets the held wait
/// pass and settles; returns what it came to.
async fn run_case(t: &Vapi, kind: usize, order: &[usize]) -> (Value, Value, Value) {
    let (id, contacts) = t.h.start(json!({ "retries": 0 }), 1).await;
    t.h.settle().await;
    let attempt = t.h.attempt_of(id, contacts[0]).await;
    let messages = messages(kind, &attempt);
    for &index in order {
        t.send_ok(&messages[index]).await;
    }
    t.h.clock.advance(SignedDuration::from_mins(6));
    t.h.settle().await;
    outcome_of(t, id, contacts[0]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn any_order_and_duplication_of_a_calls_messages_comes_to_the_same_outcome() {
    let Some(t) = Vapi::accepting(json!({}), 0).await else { return };
    t.mount_get(|_: &Request| ResponseTemplate::new(404)).await;
    let mut expected = Vec::new();
    for kind in 0..2 {
        let in_order: Vec<usize> = (0..messages(kind, "x").len()).collect();
        expected.push(run_case(&t, kind, &in_order).await);
    }
    assert_eq!(expected[0].0, "converted");
    assert_eq!(expected[1].0, "failed");

    let handle = tokio::runtime::Handle::current();
    let orders = (0..2usize).prop_flat_map(|kind| {
        let count = messages(kind, "x").len();
        proptest::collection::vec(0..count, 0..=3)
            .prop_flat_map(move |extra| {
                let mut all: Vec<usize> = (0..count).collect();
                all.extend(extra);
                Just(all).prop_shuffle()
            })
            .prop_map(move |order| (kind, order))
    });
    let mut runner = TestRunner::new(Config { cases: 20, failure_persistence: None, ..Config::default() });
    let result = runner.run(&orders, |(kind, order)| {
        let got = tokio::task::block_in_place(|| handle.block_on(run_case(&t, kind, &order)));
        prop_assert_eq!(&got, &expected[kind], "kind {} in the order {:?}", kind, order);
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}
