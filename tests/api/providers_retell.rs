//! The `retell` provider through HTTP (PROVIDERS.md §5, reference/providers.md §4, §5): a
//! wiremock server plays Retell's create-phone-call API, the test plays Retell's webhooks, signed
//! as Retell signs them (computed here, independently of the server's code). Checks every field
//! of the call creation, every row of the outcome table, `call_ended` held until `call_analyzed`
//! or ten minutes, out-of-order and repeated webhooks, bad and stale signatures, each answer
//! class at hand-off, throttling, account failures at hand-off and in a webhook, and a property:
//! any order and repetition of one call's webhooks ends as the webhooks delivered once in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use hmac::Mac;
use jiff::SignedDuration;
use outbound::clock::Clock;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::engine::{Harness, Provider, retry_settings};

const KEY: &str = "key_retell_1234";
const FROM: &str = "+14157774444";
const AGENT: &str = "oBeDLoLOeuAbiuaMFXRtDOLriTJ5tSxD";
const CREATE: &str = "/v2/create-phone-call";
/// The call's start and end as the webhooks give them (epoch milliseconds).
const START_MS: i64 = 1_780_941_605_000;
const END_MS: i64 = 1_780_941_647_400;

/// Retell's answer to a call creation: 201 with a `call_id` derived from the attempt id (so a
/// test can tell which call it is), or what `answer` says.
struct Answers(Arc<dyn Fn(&Request) -> ResponseTemplate + Send + Sync>);

impl Respond for Answers {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        (self.0)(request)
    }
}

fn body_of(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("a JSON body")
}

fn attempt_of(request: &Request) -> String {
    body_of(request)["metadata"]["attempt_id"].as_str().unwrap_or_default().to_owned()
}

/// The call id the mock gives an attempt.
fn call_id_of(attempt_id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(attempt_id.as_bytes());
    format!("call_{}", digest[..12].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn created(request: &Request) -> ResponseTemplate {
    let body = body_of(request);
    let call_id = call_id_of(body["metadata"]["attempt_id"].as_str().unwrap_or_default());
    ResponseTemplate::new(201).set_body_json(json!({
        "call_type": "phone_call", "call_id": call_id, "agent_id": AGENT, "agent_version": 1, "call_status": "registered",
        "direction": "outbound", "from_number": body["from_number"], "to_number": body["to_number"], "metadata": body["metadata"],
    }))
}

fn retell_error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({ "status": "error", "message": message }))
}

/// `x-retell-signature`: `v=<ms>,d=<hex HMAC-SHA256(api key, raw body + ms)>`.
fn retell_signature(key: &str, body: &[u8], millis: i64) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("any key");
    mac.update(body);
    mac.update(millis.to_string().as_bytes());
    let digest: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("v={millis},d={digest}")
}

/// The call of `create` as Retell's webhooks describe it, ended for `reason` (`None`: still going).
fn call(create: &Request, reason: Option<&str>) -> Value {
    let sent = body_of(create);
    let mut call = json!({
        "call_type": "phone_call", "call_id": call_id_of(&attempt_of(create)), "agent_id": AGENT, "agent_version": 1,
        "call_status": "ongoing", "direction": "outbound", "from_number": sent["from_number"], "to_number": sent["to_number"],
        "metadata": sent["metadata"], "retell_llm_dynamic_variables": sent["retell_llm_dynamic_variables"],
        "start_timestamp": START_MS,
    });
    let Some(reason) = reason else { return call };
    let connected = matches!(
        reason,
        "user_hangup"
            | "agent_hangup"
            | "call_transfer"
            | "inactivity"
            | "max_duration_reached"
            | "transfer_bridged"
            | "transfer_cancelled"
            | "manual_stopped"
            | "call_take_over"
            | "voicemail_reached"
            | "ivr_reached"
    );
    call["disconnection_reason"] = json!(reason);
    call["end_timestamp"] = json!(END_MS);
    if connected {
        call["call_status"] = json!("ended");
        call["duration_ms"] = json!(END_MS - START_MS);
        call["recording_url"] = json!("https://dxc03zgurdly9.cloudfront.net/rec/recording.wav");
        call["transcript_object"] = json!([
            { "role": "agent", "content": "Hola, ¿hablo con Asha?", "words": [{ "word": "Hola", "start": 0.5, "end": 0.9 }] },
            { "role": "user", "content": "Sí, soy yo.", "words": [{ "word": "Sí", "start": 2.0, "end": 2.2 }] },
        ]);
    } else {
        call["call_status"] = json!("not_connected");
        call.as_object_mut().expect("an object").remove("start_timestamp");
        call["duration_ms"] = json!(0);
    }
    call
}

/// `call` with its `call_analysis`.
fn analyzed(mut call: Value, successful: bool, in_voicemail: bool) -> Value {
    call["call_analysis"] = json!({
        "call_summary": "The customer confirmed the order.", "in_voicemail": in_voicemail, "user_sentiment": "Positive",
        "call_successful": successful, "custom_analysis_data": { "confirmed": successful, "plan": "gold" },
    });
    call
}

fn config(server: &MockServer, extra: Value) -> Value {
    super::helpers::merge(
        json!({ "api_key": KEY, "from_number": FROM, "agent_id": AGENT, "api_base": server.uri(), "max_per_second": 1000, "timeout_ms": 2000 }),
        extra,
    )
}

struct Retell {
    h: Harness,
    server: MockServer,
    key: String,
}

impl Retell {
    /// A harness whose integration is `retell` on a mock answering with `answer`; the failed
    /// retry limit is `failed_retries`.
    async fn new(
        extra: Value,
        failed_retries: i64,
        answer: impl Fn(&Request) -> ResponseTemplate + Send + Sync + 'static,
    ) -> Option<Retell> {
        let server = MockServer::start().await;
        Mock::given(method("POST")).and(path(CREATE)).respond_with(Answers(Arc::new(answer))).mount(&server).await;
        let config = config(&server, extra);
        let h = Harness::new(retry_settings(30, failed_retries), "phone_call", Provider::Config("retell", config)).await?;
        Some(Retell { h, server, key: KEY.to_owned() })
    }

    /// The call creations Retell received, oldest first.
    async fn creates(&self) -> Vec<Request> {
        self.server.received_requests().await.expect("recording on").into_iter().filter(|r| r.url.path() == CREATE).collect()
    }

    /// The latest call creation of campaign `id`.
    async fn create_of(&self, id: i64) -> Request {
        let creates = self.creates().await;
        creates.into_iter().rev().find(|c| body_of(c)["metadata"]["campaign_id"] == id).expect("a call creation of the campaign")
    }

    /// Posts a webhook `{event, call}` signed with `key`, timestamped `skew` from the clock.
    async fn webhook_with(&self, event: &str, call: &Value, key: &str, skew: SignedDuration) -> (StatusCode, Value) {
        let body = serde_json::to_vec(&json!({ "event": event, "call": call })).expect("JSON");
        let millis = self.h.clock.now().as_millisecond() + skew.as_millis() as i64;
        self.post_raw(&body, Some(&retell_signature(key, &body, millis))).await
    }

    async fn webhook(&self, event: &str, call: &Value) -> (StatusCode, Value) {
        self.webhook_with(event, call, &self.key, SignedDuration::ZERO).await
    }

    async fn webhook_ok(&self, event: &str, call: &Value) {
        let (status, body) = self.webhook(event, call).await;
        assert_eq!((status, &body), (StatusCode::OK, &json!({ "success": true })), "{event}: {call}");
    }

    async fn post_raw(&self, body: &[u8], signature: Option<&str>) -> (StatusCode, Value) {
        let url = self.h.url(&format!("/api/v1.0/integrations/{}/events", self.h.integration));
        let mut request = self.h.client.post(url).header("content-type", "application/json").body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("x-retell-signature", signature);
        }
        let response = request.send().await.expect("sent");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn health(&self) -> Value {
        let (status, shown) = self.h.get(&format!("/integrations/{}", self.h.integration)).await;
        assert_eq!(status, StatusCode::OK, "{shown}");
        shown["integration"]["health"].clone()
    }
}

fn ok_calls() -> impl Fn(&Request) -> ResponseTemplate + Send + Sync + 'static {
    created
}

#[tokio::test]
async fn a_call_is_created_with_every_retell_field_and_its_webhooks_drive_the_contact() {
    let Some(t) = Retell::new(json!({}), 1, ok_calls()).await else { return };
    let id = t.h.campaign(json!({})).await;
    let contact = json!({
        "contact": "+525520000000", "name": "Asha", "f_id": "F-1", "context": "Ordered on Monday",
        "extracted_data": { "order_id": "ORD-9271", "total": 12.5, "vip": true, "none": null, "address": { "city": "CDMX" } },
    });
    let contacts = t.h.add(id, vec![contact]).await;
    t.h.action(id, "activate").await;
    assert_eq!(t.h.claims().await, 1);
    let creates = t.creates().await;
    assert_eq!(creates.len(), 1);
    let create = &creates[0];
    let attempt = t.h.attempt_of(id, contacts[0]).await;

    let header = |name: &str| create.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(header("authorization").as_deref(), Some(format!("Bearer {KEY}").as_str()));
    assert!(header("content-type").is_some_and(|v| v.starts_with("application/json")));
    assert_eq!(
        body_of(create),
        json!({
            "from_number": FROM,
            "to_number": "+525520000000",
            "override_agent_id": AGENT,
            "retell_llm_dynamic_variables": {
                "name": "Asha", "contact": "+525520000000", "context": "Ordered on Monday", "f_id": "F-1",
                "order_id": "ORD-9271", "total": "12.5", "vip": "true", "address": "{\"city\":\"CDMX\"}",
            },
            "metadata": { "attempt_id": attempt, "campaign_id": id },
        })
    );

    // call_started: in progress, under Retell's call id.
    t.webhook_ok("call_started", &call(create, None)).await;
    let shown = t.h.calls(id, "").await["calls"][0].clone();
    assert_eq!((&shown["provider_id"], &shown["status"]), (&json!(call_id_of(&attempt)), &json!("in-progress")), "{shown}");
    assert_eq!(shown["started_at"], "2026-06-08T18:00:05Z");
    // call_ended: held until its analysis comes.
    t.webhook_ok("call_ended", &call(create, Some("user_hangup"))).await;
    assert_eq!(t.h.calls(id, "").await["calls"][0]["status"], "in-progress");
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "sending");
    // call_analyzed: final, converted; then Retell's retries of it change nothing.
    let analyzed = analyzed(call(create, Some("user_hangup")), true, false);
    for _ in 0..3 {
        t.webhook_ok("call_analyzed", &analyzed).await;
    }
    let shown = t.h.contact(id, contacts[0]).await;
    assert_eq!(shown["status"], "converted", "{shown}");
    assert_eq!(shown["extracted_data"]["summary"], "The customer confirmed the order.");
    assert_eq!((&shown["extracted_data"]["plan"], &shown["extracted_data"]["order_id"]), (&json!("gold"), &json!("ORD-9271")));
    let shown = t.h.calls(id, "").await["calls"][0].clone();
    assert_eq!(
        [
            &shown["status"],
            &shown["answered_by"],
            &shown["duration"],
            &shown["billed_duration"],
            &shown["ended_by"],
            &shown["ended_reason"]
        ],
        [&json!("ended"), &json!("human"), &json!(42), &json!(42), &json!("user"), &json!("user_hangup")],
        "{shown}"
    );
    assert_eq!((&shown["started_at"], &shown["ended_at"]), (&json!("2026-06-08T18:00:05Z"), &json!("2026-06-08T18:00:47Z")));
    assert_eq!(shown["recording_url"], "https://dxc03zgurdly9.cloudfront.net/rec/recording.wav");
    assert_eq!(
        shown["transcript"],
        json!([
            { "sent_by": "assistant", "sent_at": "2026-06-08T18:00:05.5Z", "content": "Hola, ¿hablo con Asha?" },
            { "sent_by": "user", "sent_at": "2026-06-08T18:00:07Z", "content": "Sí, soy yo." },
        ])
    );
    assert_eq!(
        shown["extracted_data"],
        json!({ "summary": "The customer confirmed the order.", "user_sentiment": "Positive", "confirmed": true, "plan": "gold" })
    );
    // The held call_ended never applies once the analysis closed the call.
    t.h.advance_mins(11);
    t.h.settle().await;
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "converted");
    let analytics = t.h.detail(id).await["analytics"].clone();
    assert_eq!((&analytics["calls"], &analytics["contactsConverted"]), (&json!(1), &json!(1)), "{analytics}");
    assert_eq!(t.creates().await.len(), 1, "one call for one attempt");
}

#[tokio::test]
async fn every_retell_outcome_row_maps_onto_the_contact() {
    // (reason, successful, in_voicemail, contact status, call status, answered_by, ended_by, failed_reason)
    type Row = (&'static str, bool, bool, &'static str, &'static str, Value, &'static str, Value);
    let human = || json!("human");
    let machine = || json!("machine");
    let mut rows: Vec<Row> = vec![
        ("user_hangup", true, false, "converted", "ended", human(), "user", Value::Null),
        ("user_hangup", false, false, "answered", "ended", human(), "user", Value::Null),
        ("agent_hangup", true, false, "converted", "ended", human(), "agent", Value::Null),
        // The analysis heard a voicemail: a machine, whatever the ending and success say.
        ("agent_hangup", true, true, "voicemail", "ended", machine(), "agent", Value::Null),
        ("user_hangup", false, true, "voicemail", "ended", machine(), "user", Value::Null),
        ("call_transfer", false, false, "answered", "ended", human(), "system", Value::Null),
        ("inactivity", false, false, "answered", "ended", human(), "agent", Value::Null),
        ("max_duration_reached", false, false, "answered", "ended", human(), "agent", Value::Null),
        ("transfer_bridged", false, false, "answered", "ended", human(), "system", Value::Null),
        ("transfer_cancelled", false, false, "answered", "ended", human(), "system", Value::Null),
        ("manual_stopped", false, false, "answered", "ended", human(), "system", Value::Null),
        ("call_take_over", false, false, "answered", "ended", human(), "system", Value::Null),
        ("voicemail_reached", true, false, "voicemail", "ended", machine(), "agent", Value::Null),
        ("ivr_reached", false, false, "voicemail", "ended", machine(), "agent", Value::Null),
        ("dial_busy", false, false, "failed", "busy", Value::Null, "", Value::Null),
        ("user_declined", false, false, "failed", "busy", Value::Null, "", Value::Null),
        ("dial_no_answer", false, false, "failed", "no-answer", Value::Null, "", Value::Null),
        ("invalid_destination", false, false, "failed", "failed", Value::Null, "", json!("invalid_number")),
        // Never placed for lack of capacity: back to retrying, no retry used.
        ("concurrency_limit_reached", false, false, "retrying", "failed", Value::Null, "", Value::Null),
        ("no_concurrency_fallback", false, false, "retrying", "failed", Value::Null, "", Value::Null),
        ("telephony_provider_unavailable", false, false, "retrying", "failed", Value::Null, "", Value::Null),
    ];
    for reason in [
        "dial_failed",
        "telephony_provider_permission_denied",
        "sip_routing_error",
        "marked_as_spam",
        "scam_detected",
        "error_asr",
        "error_llm_websocket_open",
        "registered_call_timeout",
        "a_reason_retell_adds_later",
    ] {
        rows.push((reason, false, false, "failed", "failed", Value::Null, "", Value::Null));
    }
    // One integration, a campaign per row (no voicemail retries, no failed retries).
    let Some(t) = Retell::new(json!({}), 0, ok_calls()).await else { return };
    for (reason, successful, in_voicemail, contact_status, call_status, answered_by, ended_by, failed_reason) in rows {
        let (id, contacts) = t.h.start(json!({ "retries": 0 }), 1).await;
        t.h.settle().await;
        let create = t.create_of(id).await;
        let ended = call(&create, Some(reason));
        t.webhook_ok("call_ended", &ended).await;
        t.webhook_ok("call_analyzed", &analyzed(ended, successful, in_voicemail)).await;
        let label = format!("{reason} successful={successful} in_voicemail={in_voicemail}");
        let contact = t.h.contact(id, contacts[0]).await;
        assert_eq!(contact["status"], contact_status, "{label}: {contact}");
        assert_eq!(contact["failed_reason"], failed_reason, "{label}: {contact}");
        assert_eq!((&contact["retries"], &contact["failed_retries"]), (&json!(0), &json!(0)), "{label}: {contact}");
        let shown = t.h.calls(id, "").await["calls"][0].clone();
        assert_eq!(shown["status"], call_status, "{label}: {shown}");
        assert_eq!(shown.get("answered_by").cloned().unwrap_or(Value::Null), answered_by, "{label}: {shown}");
        assert_eq!((&shown["ended_by"], &shown["ended_reason"]), (&json!(ended_by), &json!(reason)), "{label}: {shown}");
    }
    assert_eq!(t.health().await["status"], "ok", "no row broke the integration");
}

#[tokio::test]
async fn a_call_ended_alone_becomes_final_ten_minutes_later_without_conversion() {
    let Some(t) = Retell::new(json!({}), 1, ok_calls()).await else { return };
    let (id, contacts) = t.h.start(json!({}), 1).await;
    t.h.settle().await;
    let create = &t.creates().await[0];
    t.webhook_ok("call_started", &call(create, None)).await;
    t.webhook_ok("call_ended", &call(create, Some("user_hangup"))).await;
    t.h.clock.advance(SignedDuration::from_secs(9 * 60 + 59));
    t.h.settle().await;
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "sending", "still waiting for the analysis");
    assert_eq!(t.h.calls(id, "").await["calls"][0]["status"], "in-progress");
    t.h.clock.advance(SignedDuration::from_secs(1));
    t.h.settle().await;
    let contact = t.h.contact(id, contacts[0]).await;
    assert_eq!(contact["status"], "answered", "the held outcome, not converted: {contact}");
    let shown = t.h.calls(id, "").await["calls"][0].clone();
    assert_eq!(
        [&shown["status"], &shown["answered_by"], &shown["duration"], &shown["ended_by"], &shown["ended_reason"], &shown["provider_id"]],
        [&json!("ended"), &json!("human"), &json!(42), &json!("user"), &json!("user_hangup"), &json!(call_id_of(&attempt_of(create)))],
        "{shown}"
    );
    assert_eq!(shown["transcript"].as_array().map(Vec::len), Some(2), "{shown}");
    assert_eq!(shown["extracted_data"], json!({}), "no analysis, no data");
    let analytics = t.h.detail(id).await["analytics"].clone();
    assert_eq!((&analytics["calls"], &analytics["contactsAnswered"], &analytics["contactsConverted"]), (&json!(1), &json!(1), &json!(0)));
    // An analysis arriving after that adds its data but converts nothing (PROVIDERS.md §5).
    t.webhook_ok("call_analyzed", &analyzed(call(create, Some("user_hangup")), true, false)).await;
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "answered");
    let shown = t.h.calls(id, "").await["calls"][0].clone();
    assert_eq!(shown["extracted_data"]["summary"], "The customer confirmed the order.", "{shown}");
    assert_eq!(t.h.detail(id).await["analytics"]["contactsConverted"], 0);
}

/// A webhook that arrives while its hand-off's answer is still on its way keeps its wait: the
/// answer, recorded after it, does not push the attempt's deadline back to the attempt timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_ended_before_its_create_was_answered_still_becomes_final_ten_minutes_later() {
    let (seen, creates) = std::sync::mpsc::channel::<Request>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (seen, released) = (std::sync::Mutex::new(seen), std::sync::Mutex::new(released));
    // The mock holds its answer until the test has posted the webhook.
    let answer = move |request: &Request| {
        let _ = seen.lock().expect("lock").send(request.clone());
        let _ = released.lock().expect("lock").recv();
        created(request)
    };
    let Some(t) = Retell::new(json!({}), 1, answer).await else { return };
    let (id, contacts) = t.h.start(json!({}), 1).await;
    let engine = t.h.engine.clone();
    let handing_off = tokio::spawn(async move { engine.settle().await.expect("engine settles") });
    let create = tokio::task::spawn_blocking(move || creates.recv().expect("a create")).await.expect("joined");
    t.webhook_ok("call_ended", &call(&create, Some("user_hangup"))).await;
    release.send(()).expect("the mock waits");
    handing_off.await.expect("joined");
    t.h.clock.advance(SignedDuration::from_secs(10 * 60));
    t.h.settle().await;
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "answered", "the held outcome, at its wait");
}

#[tokio::test]
async fn call_analyzed_before_call_ended_and_retried_webhooks_change_nothing() {
    let Some(t) = Retell::new(json!({}), 1, ok_calls()).await else { return };
    let (id, contacts) = t.h.start(json!({ "retries": 0 }), 1).await;
    t.h.settle().await;
    let create = &t.creates().await[0];
    // The analysis says voicemail; the late call_ended alone would have said a person.
    t.webhook_ok("call_analyzed", &analyzed(call(create, Some("agent_hangup")), false, true)).await;
    let before =
        (t.h.contact(id, contacts[0]).await, t.h.calls(id, "").await["calls"][0].clone(), t.h.detail(id).await["analytics"].clone());
    assert_eq!(before.0["status"], "voicemail", "{}", before.0);
    assert_eq!(before.1["answered_by"], "machine");
    for _ in 0..3 {
        t.webhook_ok("call_ended", &call(create, Some("agent_hangup"))).await;
        t.webhook_ok("call_started", &call(create, None)).await;
        t.webhook_ok("call_analyzed", &analyzed(call(create, Some("agent_hangup")), false, true)).await;
    }
    t.h.advance_mins(11);
    t.h.settle().await;
    let after =
        (t.h.contact(id, contacts[0]).await, t.h.calls(id, "").await["calls"][0].clone(), t.h.detail(id).await["analytics"].clone());
    assert_eq!(after, before);
    assert_eq!(after.2["calls"], 1);
}

#[tokio::test]
async fn other_events_are_acknowledged_and_unknown_calls_dropped() {
    let Some(t) = Retell::new(json!({}), 1, ok_calls()).await else { return };
    let (id, contacts) = t.h.start(json!({}), 1).await;
    t.h.settle().await;
    let create = &t.creates().await[0];
    for event in ["transcript_updated", "transfer_started", "transfer_bridged", "transfer_ended"] {
        t.webhook_ok(event, &call(create, None)).await;
    }
    assert_eq!(t.h.calls(id, "").await["calls"][0]["status"], "in-progress");
    // A call this integration never placed: acknowledged (Retell would retry it), nothing changes.
    let mut stranger = analyzed(call(create, Some("user_hangup")), true, false);
    stranger["call_id"] = json!("call_stranger");
    stranger["metadata"] = json!({ "attempt_id": "cll_notours" });
    t.webhook_ok("call_analyzed", &stranger).await;
    stranger.as_object_mut().expect("an object").remove("metadata");
    t.webhook_ok("call_analyzed", &stranger).await;
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "sending");
    // Signed, but not a Retell webhook.
    let body = br#"{"event":"call_ended"}"#;
    let millis = t.h.clock.now().as_millisecond();
    let (status, shown) = t.post_raw(body, Some(&retell_signature(KEY, body, millis))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{shown}");
}

#[tokio::test]
async fn bad_and_stale_retell_signatures_are_refused_and_change_nothing() {
    let Some(t) = Retell::new(json!({}), 1, ok_calls()).await else { return };
    let (id, contacts) = t.h.start(json!({}), 1).await;
    t.h.settle().await;
    let create = &t.creates().await[0];
    let analyzed = analyzed(call(create, Some("user_hangup")), true, false);
    let refused = |(status, body): (StatusCode, Value), label: &str| {
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{label}: {body}");
        assert_eq!(body["error"], "UNAUTHORIZED", "{label}");
    };
    refused(t.webhook_with("call_analyzed", &analyzed, "another_key", SignedDuration::ZERO).await, "another key");
    let five_minutes = SignedDuration::from_mins(5);
    let just_over = five_minutes + SignedDuration::from_millis(1);
    refused(t.webhook_with("call_analyzed", &analyzed, KEY, -just_over).await, "stale");
    refused(t.webhook_with("call_analyzed", &analyzed, KEY, just_over).await, "from the future");
    let body = serde_json::to_vec(&json!({ "event": "call_analyzed", "call": analyzed })).expect("JSON");
    refused(t.post_raw(&body, None).await, "no signature");
    let millis = t.h.clock.now().as_millisecond();
    let tampered = String::from_utf8(body.clone()).expect("UTF-8").replace("user_hangup", "dial_busy");
    refused(t.post_raw(tampered.as_bytes(), Some(&retell_signature(KEY, &body, millis))).await, "tampered");
    refused(t.post_raw(&body, Some(&format!("v={millis},d=abcd"))).await, "short digest");
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "sending", "nothing changed");
    assert_eq!(t.h.calls(id, "").await["calls"][0]["status"], "in-progress");
    // Five minutes either way is still on time.
    let (status, _) = t.webhook_with("call_started", &call(create, None), KEY, -five_minutes).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = t.webhook_with("call_analyzed", &analyzed, KEY, five_minutes).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "converted");
}

#[tokio::test]
async fn throttled_hand_offs_are_re_sent_with_the_same_attempt_and_not_counted() {
    let sends = Arc::new(AtomicUsize::new(0));
    let counter = sends.clone();
    // 429 with Retry-After: 7 (not documented by Retell, honoured when given), then 429 without
    // it, then accepted.
    let Some(t) = Retell::new(json!({}), 1, move |request: &Request| match counter.fetch_add(1, Ordering::SeqCst) {
        0 => retell_error(429, "Account rate limited, please throttle your requests.").insert_header("retry-after", "7"),
        1 => retell_error(429, "Account rate limited, please throttle your requests."),
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
    // Without Retry-After, the back-off doubles from 1 s: 2 s after the second try.
    t.h.clock.advance(SignedDuration::from_secs(1));
    assert_eq!(t.h.settle().await.resent, 0);
    t.h.clock.advance(SignedDuration::from_secs(1));
    assert_eq!(t.h.settle().await.resent, 1);
    let creates = t.creates().await;
    assert_eq!(creates.len(), 3);
    let attempt = t.h.attempt_of(id, contacts[0]).await;
    assert!(creates.iter().all(|c| attempt_of(c) == attempt), "the same attempt each time");
    assert!(creates.iter().all(|c| body_of(c) == body_of(&creates[0])), "the same request each time");
    let calls = t.h.calls(id, "").await;
    assert_eq!(calls["total_count"], 1, "not counted against message_limit");
    assert_eq!(calls["calls"][0]["provider_id"], call_id_of(&attempt).as_str());
    assert_eq!(t.h.contact(id, contacts[0]).await["status"], "sending");
}

#[tokio::test]
async fn a_throttled_call_is_tried_again_a_minute_later_without_using_a_retry() {
    let Some(t) = Retell::new(json!({}), 0, ok_calls()).await else { return };
    let (id, contacts) = t.h.start(json!({ "retries": 0 }), 1).await;
    t.h.settle().await;
    let first = t.creates().await[0].clone();
    t.webhook_ok("call_analyzed", &analyzed(call(&first, Some("concurrency_limit_reached")), false, false)).await;
    let contact = t.h.contact(id, contacts[0]).await;
    assert_eq!((&contact["status"], &contact["failed_retries"]), (&json!("retrying"), &json!(0)), "{contact}");
    t.h.clock.advance(SignedDuration::from_secs(59));
    assert_eq!(t.h.claims().await, 0);
    t.h.clock.advance(SignedDuration::from_secs(1));
    assert_eq!(t.h.claims().await, 1, "tried again after THROTTLED_WAIT");
    let second = t.creates().await[1].clone();
    assert_ne!(attempt_of(&second), attempt_of(&first), "a new attempt");
    t.webhook_ok("call_analyzed", &analyzed(call(&second, Some("user_hangup")), false, false)).await;
    let contact = t.h.contact(id, contacts[0]).await;
    assert_eq!((&contact["status"], &contact["failed_retries"], &contact["retries"]), (&json!("answered"), &json!(0), &json!(0)));
}

#[tokio::test]
async fn refusals_fail_the_attempt_and_unknown_outcomes_are_never_re_sent() {
    // A 400 follows the failed-retry policy; the config has no agent: no override is sent.
    let Some(t) = Retell::new(json!({ "agent_id": null }), 1, |_: &Request| retell_error(400, "to_number is not valid")).await else {
        return;
    };
    let (id, contacts) = t.h.start(json!({}), 1).await;
    t.h.settle().await;
    assert!(body_of(&t.creates().await[0]).get("override_agent_id").is_none());
    let shown = t.h.calls(id, "").await["calls"][0].clone();
    assert_eq!((&shown["status"], &shown["ended_reason"]), (&json!("failed"), &json!("retell_http_400")), "{shown}");
    let contact = t.h.contact(id, contacts[0]).await;
    assert_eq!((&contact["status"], &contact["failed_reason"]), (&json!("retrying"), &Value::Null), "{contact}");
    t.h.advance_mins(30);
    assert_eq!(t.h.claims().await, 1, "retried as a new attempt");
    assert_eq!(t.h.calls(id, "").await["total_count"], 2);

    // A 5xx after the request was written, then a timeout: Retell may have placed the call.
    for slow in [false, true] {
        let answer = move |_: &Request| {
            if slow {
                ResponseTemplate::new(201).set_delay(std::time::Duration::from_millis(1500))
            } else {
                retell_error(500, "Internal server error")
            }
        };
        let Some(t) = Retell::new(json!({ "timeout_ms": 200 }), 1, answer).await else { return };
        let (id, contacts) = t.h.start(json!({}), 1).await;
        t.h.settle().await;
        let shown = t.h.calls(id, "").await["calls"][0].clone();
        assert_eq!((&shown["status"], &shown["ended_reason"]), (&json!("failed"), &json!("provider_unknown")), "slow={slow}: {shown}");
        assert_eq!(t.h.contact(id, contacts[0]).await["status"], "retrying", "the failed-retry policy applies");
        t.h.clock.advance(SignedDuration::from_mins(5));
        assert_eq!(t.h.settle().await.resent, 0, "never re-sent");
        assert_eq!(t.creates().await.len(), 1);
    }
}

#[tokio::test]
async fn account_failures_at_hand_off_stop_dispatch_until_a_patch() {
    for (status, message) in [
        (401, "API key is missing or invalid."),
        (402, "Trial has ended, please add payment method."),
        (422, "Cannot find requested asset under given api key."),
    ] {
        let fixed = Arc::new(AtomicBool::new(false));
        let fixed_now = fixed.clone();
        let Some(t) = Retell::new(json!({}), 1, move |request: &Request| {
            let auth = request.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            if fixed_now.load(Ordering::SeqCst) && auth == "Bearer key_new_9999" { created(request) } else { retell_error(status, message) }
        })
        .await
        else {
            return;
        };
        let (id, contacts) = t.h.start(json!({}), 2).await;
        t.h.settle().await;
        let health = t.health().await;
        assert_eq!(health["status"], "failing", "{status}: {health}");
        assert_eq!(health["reason"], format!("retell_http_{status}: {message}"), "{status}");
        let broken_sends = t.creates().await.len();
        t.h.advance_mins(60);
        t.h.settle().await;
        assert_eq!(t.creates().await.len(), broken_sends, "{status}: nothing handed off while failing");
        assert_eq!(t.h.status(id).await, "active");
        for contact in &contacts {
            let shown = t.h.contact(id, *contact).await["status"].clone();
            assert!(shown == "sending" || shown == "queue", "{status}: no contact failed for the integration's fault: {shown}");
        }
        let put_back: Vec<String> = t.creates().await.iter().map(attempt_of).collect();

        // The config is fixed (a new key); health resets and the same attempts go again.
        fixed.store(true, Ordering::SeqCst);
        let integration_path = format!("/integrations/{}", t.h.integration);
        let (code, body) = t.h.patch(&integration_path, json!({ "config": config(&t.server, json!({ "api_key": "key_new_9999" })) })).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert_eq!(body["integration"]["health"], json!({ "status": "ok", "reason": null, "since": null }));
        t.h.settle().await;
        let resent: Vec<String> = t.creates().await[broken_sends..].iter().map(attempt_of).collect();
        for attempt in &put_back {
            assert!(resent.contains(attempt), "{status}: {attempt} handed off again with the same id");
        }
        assert_eq!(t.h.calls(id, "").await["total_count"], 2, "{status}: one attempt per contact");
        // Webhooks are now verified with the new key.
        let last = t.creates().await.last().cloned().expect("a create");
        let (code, _) = t.webhook("call_started", &call(&last, None)).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{status}: the old key no longer signs");
        let (code, _) = t.webhook_with("call_started", &call(&last, None), "key_new_9999", SignedDuration::ZERO).await;
        assert_eq!(code, StatusCode::OK);
    }
}

#[tokio::test]
async fn no_valid_payment_in_a_webhook_stops_dispatch_without_failing_the_contact() {
    let Some(t) = Retell::new(json!({}), 0, ok_calls()).await else { return };
    let (id, _) = t.h.start(json!({ "concurrency_limit": 1, "retries": 0 }), 2).await;
    t.h.settle().await;
    let first = t.creates().await[0].clone();
    t.webhook_ok("call_ended", &call(&first, Some("no_valid_payment"))).await;
    let health = t.health().await;
    assert_eq!(health["status"], "failing", "{health}");
    assert!(health["reason"].as_str().is_some_and(|r| r.contains("no_valid_payment")), "{health}");
    t.webhook_ok("call_analyzed", &analyzed(call(&first, Some("no_valid_payment")), false, false)).await;
    let owner = body_of(&first)["to_number"].clone();
    let called = t.h.contacts(id).await.into_iter().find(|c| c["contact"] == owner).expect("the called contact");
    assert_eq!((&called["status"], &called["failed_retries"]), (&json!("retrying"), &json!(0)), "{called}");
    t.h.advance_mins(60);
    t.h.settle().await;
    assert_eq!(t.creates().await.len(), 1, "nothing handed off while failing");
    assert!(t.h.statuses(id).await.iter().all(|s| s != "failed"), "no contact failed");

    let integration_path = format!("/integrations/{}", t.h.integration);
    let (code, body) = t.h.patch(&integration_path, json!({ "config": config(&t.server, json!({})) })).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["integration"]["health"]["status"], "ok");
    assert_eq!(t.h.claims().await, 1, "dispatch resumes");
}

// --- Property: order and repetition do not matter ---

/// The webhooks of one call kind, in Retell's order.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Answered by a person, successful: started, ended, analyzed.
    Converted,
    /// Never answered: ended, analyzed (no call_started for an unconnected call).
    NoAnswer,
}

impl Kind {
    /// How many webhooks a call of this kind gets.
    fn count(self) -> usize {
        match self {
            Kind::Converted => 3,
            Kind::NoAnswer => 2,
        }
    }

    fn webhooks(self, create: &Request) -> Vec<(&'static str, Value)> {
        match self {
            Kind::Converted => vec![
                ("call_started", call(create, None)),
                ("call_ended", call(create, Some("user_hangup"))),
                ("call_analyzed", analyzed(call(create, Some("user_hangup")), true, false)),
            ],
            Kind::NoAnswer => vec![
                ("call_ended", call(create, Some("dial_no_answer"))),
                ("call_analyzed", analyzed(call(create, Some("dial_no_answer")), false, false)),
            ],
        }
    }
}

const KINDS: [Kind; 2] = [Kind::Converted, Kind::NoAnswer];

impl Retell {
    /// A campaign of one contact whose call gets the webhooks of `kind` at the indices of
    /// `sequence`; the clock then passes the analysis wait and the engine settles.
    async fn run(&self, kind: Kind, sequence: &[usize]) -> (i64, i64) {
        let (id, contacts) = self.h.start(json!({ "retries": 0 }), 1).await;
        self.h.settle().await;
        let webhooks = kind.webhooks(&self.create_of(id).await);
        for &index in sequence {
            let (event, call) = &webhooks[index];
            self.webhook_ok(event, call).await;
        }
        self.h.advance_mins(11);
        self.h.settle().await;
        (id, contacts[0])
    }

    /// What the webhooks made of a campaign: its contact, its call and its analytics.
    async fn outcome(&self, id: i64, contact: i64) -> Value {
        let contact = self.h.contact(id, contact).await;
        let call = self.h.calls(id, "").await["calls"][0].clone();
        let detail = self.h.detail(id).await;
        json!({
            "contact": [&contact["status"], &contact["retries"], &contact["failed_retries"], &contact["failed_reason"],
                &contact["billed_duration"], &contact["call_count"], &contact["extracted_data"]],
            "call": [&call["status"], &call["answered_by"], &call["duration"], &call["ended_by"], &call["ended_reason"],
                &call["started_at"], &call["ended_at"], &call["recording_url"], &call["transcript"], &call["extracted_data"]],
            "campaign": [&detail["status"], &detail["analytics"]],
        })
    }
}

/// Every index below `len` at least once, some repeated, shuffled.
fn sequence(len: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0..len, 0..4).prop_flat_map(move |repeats| {
        let mut all: Vec<usize> = (0..len).collect();
        all.extend(repeats);
        Just(all).prop_shuffle()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn any_order_and_repetition_of_a_calls_webhooks_ends_as_once_in_order() {
    let Some(t) = Retell::new(json!({}), 0, ok_calls()).await else { return };
    let mut references = Vec::new();
    for kind in KINDS {
        let in_order: Vec<usize> = (0..kind.count()).collect();
        let (id, contact) = t.run(kind, &in_order).await;
        references.push(t.outcome(id, contact).await);
    }
    assert_eq!(references[0]["contact"][0], "converted", "{}", references[0]);
    assert_eq!(references[1]["contact"][0], "failed", "{}", references[1]);
    let handle = tokio::runtime::Handle::current();
    let strategy = (0..KINDS.len()).prop_flat_map(|kind| sequence(KINDS[kind].count()).prop_map(move |sequence| (kind, sequence)));
    let mut runner = TestRunner::new(Config { cases: 20, failure_persistence: None, ..Config::default() });
    let result = runner.run(&strategy, |(kind, sequence)| {
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                let (id, contact) = t.run(KINDS[kind], &sequence).await;
                let outcome = t.outcome(id, contact).await;
                prop_assert_eq!(&outcome, &references[kind], "{:?} {:?}", KINDS[kind], sequence);
                Ok(())
            })
        })
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
