//! The `whatsapp_cloud` provider through HTTP (PROVIDERS.md §3, reference/providers.md §2): a
//! wiremock server plays the Graph API, the test plays Meta's webhooks, signed as Meta signs
//! them (computed here, independently of the server's code). Checks every field of the template
//! send, the GET handshake, statuses (out of order, `read` without `delivered`, repeats, failures),
//! quick-reply buttons, inbound texts, bad signatures, and each error code at send.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hmac::Mac;
use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::engine::{Harness, Provider, retry_settings};
use super::helpers::merge;

const PHONE_NUMBER_ID: &str = "106540352242922";
const ACCESS_TOKEN: &str = "EAAG-access-token-4321";
const APP_SECRET: &str = "app-secret-8765";
const VERIFY_TOKEN: &str = "meatyhamhock";

fn messages_path() -> String {
    format!("/v21.0/{PHONE_NUMBER_ID}/messages")
}

struct Answers(Arc<dyn Fn(&Request) -> ResponseTemplate + Send + Sync>);

impl Respond for Answers {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        (self.0)(request)
    }
}

/// The wamid the mock gives a message: derived from its attempt id.
fn wamid_of(attempt_id: &str) -> String {
    format!("wamid.{attempt_id}")
}

fn body_of(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("a JSON body")
}

fn attempt_of(request: &Request) -> String {
    body_of(request)["biz_opaque_callback_data"].as_str().unwrap_or_default().to_owned()
}

fn accepted(request: &Request) -> ResponseTemplate {
    let body = body_of(request);
    let attempt = attempt_of(request);
    ResponseTemplate::new(200).set_body_json(json!({
        "messaging_product": "whatsapp", "contacts": [{ "input": body["to"], "wa_id": body["to"] }],
        "messages": [{ "id": wamid_of(&attempt), "message_status": "accepted" }]
    }))
}

fn graph_error(status: u16, code: i64) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": { "message": format!("(#{code}) error"), "type": "OAuthException", "code": code,
                   "error_data": { "messaging_product": "whatsapp", "details": "details" }, "fbtrace_id": "Az8or2yhqkZfEZ" }
    }))
}

/// `X-Hub-Signature-256`: `sha256=` and the lowercase hex HMAC-SHA256 of the raw body.
fn hub_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(body);
    format!("sha256={}", mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A webhook of Meta's shape carrying `value` (statuses, messages).
fn webhook(value: Value) -> Value {
    json!({ "object": "whatsapp_business_account", "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages",
        "value": merge(json!({ "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID } }), value) }] }] })
}

fn status(attempt_id: &str, status: &str, echo: bool) -> Value {
    let mut item = json!({ "id": wamid_of(attempt_id), "status": status, "timestamp": "1750857384", "recipient_id": "525520000000" });
    if echo {
        item["biz_opaque_callback_data"] = json!(attempt_id);
    }
    item
}

struct WhatsApp {
    h: Harness,
    server: MockServer,
}

impl WhatsApp {
    async fn new(
        extra: Value,
        failed_retries: i64,
        answer: impl Fn(&Request) -> ResponseTemplate + Send + Sync + 'static,
    ) -> Option<WhatsApp> {
        let server = MockServer::start().await;
        Mock::given(method("POST")).and(path(messages_path())).respond_with(Answers(Arc::new(answer))).mount(&server).await;
        let config = merge(
            json!({
                "phone_number_id": PHONE_NUMBER_ID, "access_token": ACCESS_TOKEN, "app_secret": APP_SECRET,
                "verify_token": VERIFY_TOKEN, "api_base": server.uri(), "max_per_second": 1000,
                "parameters": ["name", "extracted_data.order"], "convert_payloads": ["PAY"]
            }),
            extra,
        );
        let h = Harness::new(retry_settings(30, failed_retries), "whatsapp", Provider::Config("whatsapp_cloud", config)).await?;
        Some(WhatsApp { h, server })
    }

    async fn sends(&self) -> Vec<Request> {
        self.server.received_requests().await.expect("recording on").into_iter().filter(|r| r.url.path() == messages_path()).collect()
    }

    fn callback_url(&self) -> String {
        self.h.url(&format!("/api/v1.0/integrations/{}/events", self.h.integration))
    }

    async fn post_signed(&self, body: &Value, secret: &str) -> (StatusCode, Value) {
        let raw = serde_json::to_vec(body).expect("serializes");
        let response = self
            .h
            .client
            .post(self.callback_url())
            .header("content-type", "application/json")
            .header("X-Hub-Signature-256", hub_signature(secret, &raw))
            .body(raw)
            .send()
            .await
            .expect("sent");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn statuses_ok(&self, statuses: Vec<Value>) {
        let (code, body) = self.post_signed(&webhook(json!({ "statuses": statuses })), APP_SECRET).await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }

    /// A campaign of `contacts` with a name and an order number each, started and dispatched.
    async fn start(&self, extra: Value, contacts: usize) -> (i64, Vec<i64>) {
        let id = self.h.campaign(merge(json!({ "template_alt": "promo_june_v2" }), extra)).await;
        let numbers: Vec<Value> = (0..contacts)
            .map(|i| json!({ "contact": format!("+5255{:08}", 20_000_000 + i), "name": format!("Ana {i}"), "extracted_data": { "order": format!("ORD-{i}"), "n": i } }))
            .collect();
        let ids = self.h.add(id, numbers).await;
        self.h.action(id, "activate").await;
        self.h.settle().await;
        (id, ids)
    }
}

#[tokio::test]
async fn a_template_is_sent_with_every_field_and_statuses_move_the_message_forward_only() {
    let Some(w) = WhatsApp::new(json!({}), 1, accepted).await else { return };
    let (id, contacts) = w.start(json!({}), 1).await;
    let sends = w.sends().await;
    assert_eq!(sends.len(), 1);
    let send = &sends[0];
    let attempt = w.h.attempt_of(id, contacts[0]).await;
    assert_eq!(send.headers.get("authorization").and_then(|v| v.to_str().ok()), Some(format!("Bearer {ACCESS_TOKEN}").as_str()));
    assert_eq!(
        body_of(send),
        json!({
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": "525520000000", "type": "template",
            "biz_opaque_callback_data": attempt,
            "template": { "name": "promo_june_v1", "language": { "code": "es_MX" },
                "components": [{ "type": "body", "parameters": [{ "type": "text", "text": "Ana 0" }, { "type": "text", "text": "ORD-0" }] }] }
        })
    );
    let message = w.h.messages(id, "").await["messages"][0].clone();
    assert_eq!(message["provider_id"], wamid_of(&attempt).as_str());

    // `read` before `delivered`: both count; the late `delivered` and a repeat change nothing.
    w.statuses_ok(vec![status(&attempt, "sent", true)]).await;
    w.statuses_ok(vec![status(&attempt, "read", false)]).await;
    w.statuses_ok(vec![status(&attempt, "delivered", true), status(&attempt, "read", true)]).await;
    let contact = w.h.contact(id, contacts[0]).await;
    assert_eq!(contact["status"], "read");
    let message = w.h.messages(id, "").await["messages"][0].clone();
    assert_eq!(message["status"], "read");
    assert!(message["delivered_at"].is_string() && message["read_at"].is_string(), "{message}");
    let analytics = w.h.detail(id).await["analytics"].clone();
    assert_eq!([&analytics["sent"], &analytics["delivered"], &analytics["read"]], [&json!(1), &json!(1), &json!(1)], "{analytics}");
    // A `failed` after delivery does not undo it.
    w.statuses_ok(vec![merge(
        status(&attempt, "failed", true),
        json!({ "errors": [{ "code": 131026, "title": "Message undeliverable" }] }),
    )])
    .await;
    assert_eq!(w.h.contact(id, contacts[0]).await["status"], "read");
}

#[tokio::test]
async fn meta_checks_the_callback_url_with_the_verify_token() {
    let Some(w) = WhatsApp::new(json!({}), 1, accepted).await else { return };
    let url = |query: &str| format!("{}?{query}", w.callback_url());
    let response =
        w.h.client.get(url("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock")).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/plain")));
    assert_eq!(response.text().await.expect("text"), "1158201444");
    for query in [
        "hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong",
        "hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=meatyhamhock",
        "hub.challenge=1",
    ] {
        let response = w.h.client.get(url(query)).send().await.expect("sent");
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{query}");
        let body: Value = response.json().await.expect("the envelope");
        assert_eq!(body["success"], false);
    }
}

#[tokio::test]
async fn bad_hub_signatures_are_refused_and_change_nothing() {
    let Some(w) = WhatsApp::new(json!({}), 1, accepted).await else { return };
    let (id, contacts) = w.start(json!({}), 1).await;
    let attempt = w.h.attempt_of(id, contacts[0]).await;
    let body = webhook(json!({ "statuses": [status(&attempt, "read", true)] }));
    let (code, reply) = w.post_signed(&body, "another-secret").await;
    assert_eq!((code, &reply["error"]), (StatusCode::UNAUTHORIZED, &json!("UNAUTHORIZED")), "{reply}");
    let raw = serde_json::to_vec(&body).expect("serializes");
    let unsigned =
        w.h.client.post(w.callback_url()).header("content-type", "application/json").body(raw.clone()).send().await.expect("sent");
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    // Signed over other bytes (re-serialized) than those sent.
    let tampered =
        w.h.client
            .post(w.callback_url())
            .header("content-type", "application/json")
            .header("X-Hub-Signature-256", hub_signature(APP_SECRET, &raw))
            .body(serde_json::to_vec_pretty(&body).expect("serializes"))
            .send()
            .await
            .expect("sent");
    assert_eq!(tampered.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(w.h.contact(id, contacts[0]).await["status"], "sending", "nothing changed");
}

#[tokio::test]
async fn buttons_accept_reject_or_convert_and_texts_are_kept() {
    let Some(w) = WhatsApp::new(json!({}), 1, accepted).await else { return };
    let (id, contacts) = w.start(json!({}), 4).await;
    let mut attempts = Vec::new();
    for contact in &contacts {
        let attempt = w.h.attempt_of(id, *contact).await;
        w.statuses_ok(vec![status(&attempt, "read", true)]).await;
        attempts.push(attempt);
    }
    let button = |attempt: &str, payload: &str| {
        json!({ "from": "525520000000", "id": format!("wamid.reply-{payload}"), "timestamp": "1750857400", "type": "button",
                "button": { "payload": payload, "text": payload }, "context": { "from": "15550783881", "id": wamid_of(attempt) } })
    };
    for (attempt, payload) in attempts.iter().zip(["accept", "reject", "PAY", "something-else"]) {
        let (code, body) = w.post_signed(&webhook(json!({ "messages": [button(attempt, payload)] })), APP_SECRET).await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    assert_eq!(w.h.statuses(id).await, ["accepted", "rejected", "converted", "read"]);
    let analytics = w.h.detail(id).await["analytics"].clone();
    // The funnel counts a converted contact as accepted too.
    assert_eq!([&analytics["accepted"], &analytics["rejected"], &analytics["converted"]], [&json!(2), &json!(1), &json!(1)], "{analytics}");

    let text = json!({ "from": "525520000001", "id": "wamid.text", "timestamp": "1750857500", "type": "text",
        "text": { "body": "BAJA" }, "context": { "from": "15550783881", "id": wamid_of(&attempts[1]) } });
    let (code, body) = w
        .post_signed(
            &webhook(json!({ "contacts": [{ "profile": { "name": "Ana" }, "wa_id": "525520000001" }], "messages": [text] })),
            APP_SECRET,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    if w.h.database_url.starts_with("sqlite") {
        let path = outbound::store::sqlite_file(&w.h.database_url).expect("a file");
        let conn = rusqlite::Connection::open(path).expect("open");
        let kept: (String, String, Option<String>) = conn
            .query_row("SELECT sender, body, attempt_id FROM inbound_messages", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("one text kept");
        assert_eq!(kept, ("525520000001".to_owned(), "BAJA".to_owned(), Some(attempts[1].clone())));
    }
}

#[tokio::test]
async fn failed_statuses_retry_with_template_alt_and_an_undeliverable_number_fails_at_once() {
    let Some(w) = WhatsApp::new(json!({}), 1, accepted).await else { return };
    let (id, contacts) = w.start(json!({}), 2).await;
    let first = w.h.attempt_of(id, contacts[0]).await;
    let second = w.h.attempt_of(id, contacts[1]).await;
    let failed = |attempt: &str, code: i64| {
        merge(status(attempt, "failed", true), json!({ "errors": [{ "code": code, "title": "t", "message": "m" }] }))
    };
    w.statuses_ok(vec![failed(&first, 131026), failed(&second, 131049)]).await;
    let undeliverable = w.h.contact(id, contacts[0]).await;
    assert_eq!(
        (&undeliverable["status"], &undeliverable["failed_reason"]),
        (&json!("failed"), &json!("invalid_number")),
        "{undeliverable}"
    );
    assert_eq!(w.h.contact(id, contacts[1]).await["status"], "retrying");
    let messages = w.h.messages(id, "").await;
    assert_eq!(messages["messages"][1]["status"], "failed");
    w.h.advance_mins(30);
    assert_eq!(w.h.claims().await, 1, "only the retryable contact goes again");
    let sends = w.sends().await;
    assert_eq!(sends.len(), 3);
    assert_eq!(body_of(&sends[2])["template"]["name"], "promo_june_v2", "a retry uses template_alt");
}

#[tokio::test]
async fn each_send_error_code_is_handled_as_the_reference_says() {
    // Throttled: re-sent later with the same attempt; 131056 makes that contact wait 6 s.
    let day = 24 * 3600;
    for (code, wait_secs) in
        [(130429, 1), (80007, 1), (4, 1), (131048, 1), (131000, 1), (131016, 1), (1, 1), (2, 1), (131056, 6), (131049, day)]
    {
        let tries = Arc::new(AtomicUsize::new(0));
        let counter = tries.clone();
        let Some(w) = WhatsApp::new(json!({}), 1, move |request: &Request| {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 { graph_error(400, code) } else { accepted(request) }
        })
        .await
        else {
            return;
        };
        let (id, contacts) = w.start(json!({}), 1).await;
        assert_eq!(w.h.contact(id, contacts[0]).await["status"], "sending", "{code}");
        w.h.clock.advance(SignedDuration::from_secs(wait_secs) - SignedDuration::from_millis(1));
        assert_eq!(w.h.settle().await.resent, 0, "{code}: not before {wait_secs} s");
        w.h.clock.advance(SignedDuration::from_millis(1));
        assert_eq!(w.h.settle().await.resent, 1, "{code}: after {wait_secs} s");
        let sends = w.sends().await;
        assert_eq!(attempt_of(&sends[0]), attempt_of(&sends[1]), "{code}: the same attempt");
        assert_eq!(w.h.messages(id, "").await["total_count"], 1);
    }
    // An undeliverable number at send: failed at once, never retried.
    let Some(w) = WhatsApp::new(json!({}), 1, |_: &Request| graph_error(400, 131026)).await else { return };
    let (id, contacts) = w.start(json!({}), 1).await;
    assert_eq!(w.h.contact(id, contacts[0]).await["failed_reason"], "invalid_number");
    // A template problem: the attempt fails and follows the failed-retry policy.
    for code in [132000, 132001, 132012, 131047] {
        let Some(w) = WhatsApp::new(json!({}), 1, move |_: &Request| graph_error(400, code)).await else { return };
        let (id, contacts) = w.start(json!({}), 1).await;
        assert_eq!(w.h.contact(id, contacts[0]).await["status"], "retrying", "{code}");
        assert_eq!(w.h.messages(id, "").await["messages"][0]["status"], "failed");
    }
    // An expired token, a blocked or locked account: the integration is failing, the contact waits.
    for (status, code) in [(401, 190), (400, 368), (400, 131031)] {
        let Some(w) = WhatsApp::new(json!({}), 1, move |_: &Request| graph_error(status, code)).await else { return };
        let (id, contacts) = w.start(json!({}), 1).await;
        assert_eq!(w.h.contact(id, contacts[0]).await["status"], "sending", "{code}");
        let (_, integration) = w.h.get(&format!("/integrations/{}", w.h.integration)).await;
        assert_eq!(integration["integration"]["health"]["status"], "failing", "{code}: {integration}");
    }
    // A 5xx without a retry code after the request was written: unknown, never re-sent.
    let Some(w) = WhatsApp::new(json!({}), 1, |_: &Request| ResponseTemplate::new(502)).await else { return };
    let (id, _) = w.start(json!({}), 1).await;
    w.h.clock.advance(SignedDuration::from_mins(5));
    assert_eq!(w.h.settle().await.resent, 0);
    assert_eq!(w.sends().await.len(), 1);
    let message = w.h.messages(id, "").await["messages"][0].clone();
    assert_eq!(message["status"], "failed", "{message}");
}

#[tokio::test]
async fn a_contact_missing_a_template_parameter_is_not_sent() {
    let Some(w) = WhatsApp::new(json!({ "parameters": ["name", "context"] }), 0, accepted).await else { return };
    let (id, contacts) = w.start(json!({}), 1).await;
    assert!(w.sends().await.is_empty(), "nothing sent to Meta");
    assert_eq!(w.h.contact(id, contacts[0]).await["status"], "failed");
}

/// An inbound reply whose whole text is an opt-out keyword (trimmed, any case, accents or not)
/// lists its sender for `whatsapp` (source `opt_out_reply`); any other text lists nothing.
#[tokio::test]
async fn an_opt_out_reply_lists_its_sender_for_whatsapp_and_other_texts_do_not() {
    let Some(w) = WhatsApp::new(json!({}), 1, accepted).await else { return };
    let text = |from: &str, body: &str| {
        webhook(json!({ "contacts": [{ "profile": { "name": "Ana" }, "wa_id": from }],
            "messages": [{ "from": from, "id": format!("wamid.in-{from}"), "timestamp": "1750857500", "type": "text", "text": { "body": body } }] }))
    };
    for (from, body) in [("525520000001", " Cancelár "), ("525520000002", "please stop"), ("525520000003", "hola")] {
        let (code, reply) = w.post_signed(&text(from, body), APP_SECRET).await;
        assert_eq!(code, StatusCode::OK, "{reply}");
    }
    let (status, listed) = w.h.get("/dnc").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["total_count"], 1, "{listed}");
    let entry = &listed["entries"][0];
    assert_eq!(
        (&entry["contact"], &entry["channel"], &entry["source"]),
        (&json!("+525520000001"), &json!("whatsapp"), &json!("opt_out_reply"))
    );
    let (_, history) = w.h.get("/dnc/%2B525520000001/history").await;
    assert_eq!((&history["history"][0]["source"], &history["history"][0]["key_prefix"]), (&json!("opt_out_reply"), &Value::Null));

    // The organization's own keywords replace the defaults.
    let (status, _) = w.h.call(reqwest::Method::PUT, "/settings/opt-out-keywords", Some(json!({ "keywords": ["hola"] }))).await;
    assert_eq!(status, StatusCode::OK);
    w.post_signed(&text("525520000004", "BAJA"), APP_SECRET).await;
    w.post_signed(&text("525520000005", "Hola"), APP_SECRET).await;
    let (_, listed) = w.h.get("/dnc").await;
    let numbers: Vec<&Value> = listed["entries"].as_array().expect("entries").iter().map(|e| &e["contact"]).collect();
    assert_eq!(numbers, [&json!("+525520000005"), &json!("+525520000001")]);
}
