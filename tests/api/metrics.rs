//! `GET /metrics` while the engine works: each engine metric moves by what the engine did. The
//! metric names are written out here (not taken from the crate): they are what dashboards and
//! alerts use (README, "Metrics"), so a rename must fail a test. Each test compares scrapes taken
//! before and after, as differences.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::engine::{Harness, Provider, accepting_provider, retry_settings};
use super::helpers::TestApp;

/// One scrape of `GET /metrics`: every sample, by metric name, with its labels.
struct Scrape(Vec<(String, BTreeMap<String, String>, f64)>);

impl Scrape {
    async fn of(app: &TestApp) -> Scrape {
        let response = app.client.get(app.url("/metrics")).send().await.expect("scraped");
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.expect("body");
        Scrape(text.lines().filter(|line| !line.starts_with('#') && !line.trim().is_empty()).map(sample).collect())
    }

    /// The sum of the samples of `name` whose labels include `labels` (0 when there is none).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(sample, have, _)| sample == name && labels.iter().all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, _, value)| value)
            .sum()
    }

    /// How much `name` (with `labels`) grew since `before`.
    fn since(&self, before: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels) - before.get(name, labels)
    }
}

/// A line of the Prometheus text format: `name{label="value",…} value`. Label values may hold
/// `}` and spaces (route patterns), so they are read quote by quote.
fn sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample line {line:?}"));
    let value: f64 = value.parse().unwrap_or_else(|_| panic!("sample value in {line:?}"));
    let Some((name, mut rest)) = series.split_once('{') else { return (series.to_owned(), BTreeMap::new(), value) };
    let mut labels = BTreeMap::new();
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut text = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => text.push('\n'),
                    Some((_, escaped)) => text.push(escaped),
                    None => panic!("escape at the end of {line:?}"),
                },
                Some((at, '"')) => break at,
                Some((_, c)) => text.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        labels.insert(key.trim_start_matches(',').to_owned(), text);
        rest = &after[end + 1..];
    }
    assert_eq!(rest, "}", "labels of {line:?}");
    (name.to_owned(), labels, value)
}

const DISPATCHED: &str = "outbound_attempts_dispatched_total";
const FINISHED: &str = "outbound_attempts_finished_total";
const HANDOFFS: &str = "outbound_provider_handoff_seconds_count";
const HANDOFF_FAILURES: &str = "outbound_provider_handoff_failures_total";
const EVENTS: &str = "outbound_provider_events_total";
const TICK_CLAIMS: &str = "outbound_engine_tick_claims";
const WAITING: &str = "outbound_contacts_waiting";

#[tokio::test]
async fn simulated_calls_are_claimed_dispatched_handed_off_and_finished() {
    let Some(h) = Harness::simulator("phone_call", json!({ "answer_rate": 1.0, "machine_rate": 0.0 })).await else { return };
    let before = Scrape::of(&h).await;
    h.start(json!({ "concurrency_limit": 2 }), 3).await;
    h.settle().await;
    let after = Scrape::of(&h).await;

    assert_eq!(after.since(&before, DISPATCHED, &[("channel", "phone_call")]), 3.0);
    assert_eq!(after.since(&before, DISPATCHED, &[("channel", "whatsapp")]), 0.0);
    assert_eq!(after.since(&before, FINISHED, &[("channel", "phone_call"), ("outcome", "ended")]), 3.0);
    assert_eq!(after.since(&before, FINISHED, &[]), 3.0, "each attempt finishes once");
    assert_eq!(after.since(&before, HANDOFFS, &[("provider", "simulator")]), 3.0);
    assert_eq!(after.since(&before, EVENTS, &[("source", "simulator"), ("result", "applied")]), 3.0);
    // Two claims of at most two (the concurrency limit), whatever the idle ticks between them.
    assert_eq!(after.since(&before, &format!("{TICK_CLAIMS}_sum"), &[]), 3.0);
    assert_eq!(after.since(&before, &format!("{TICK_CLAIMS}_count"), &[]), 2.0);
    assert_eq!(after.since(&before, &format!("{TICK_CLAIMS}_bucket"), &[("le", "2")]), 2.0);
}

#[tokio::test]
async fn simulated_messages_finish_at_their_first_report_and_count_every_event() {
    let config = json!({ "delivery_rate": 1.0, "read_rate": 1.0, "accept_rate": 1.0 });
    let Some(h) = Harness::simulator("whatsapp", config).await else { return };
    let before = Scrape::of(&h).await;
    h.start(json!({}), 4).await;
    h.settle().await;
    let after = Scrape::of(&h).await;

    assert_eq!(after.since(&before, DISPATCHED, &[("channel", "whatsapp")]), 4.0);
    // Sent, delivered, read, accepted: four events per message, which closes at `sent`.
    assert_eq!(after.since(&before, EVENTS, &[("source", "simulator"), ("result", "applied")]), 16.0);
    assert_eq!(after.since(&before, FINISHED, &[("channel", "whatsapp"), ("outcome", "sent")]), 4.0);
    assert_eq!(after.since(&before, FINISHED, &[]), 4.0);
}

#[tokio::test]
async fn provider_events_over_http_are_counted_by_result() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (id, c) = h.start(json!({}), 1).await;
    let before = Scrape::of(&h).await;
    assert_eq!(h.claims().await, 1);
    let attempt = h.attempt_of(id, c[0]).await;
    let handed_off = Scrape::of(&h).await;
    assert_eq!(handed_off.since(&before, HANDOFFS, &[("provider", "webhook")]), 1.0);
    assert_eq!(handed_off.since(&before, DISPATCHED, &[("channel", "phone_call")]), 1.0);
    assert_eq!(handed_off.since(&before, FINISHED, &[]), 0.0, "accepted, not finished");

    h.event_ok(&attempt, "ringing", json!({})).await;
    h.event_ok(&attempt, "ringing", json!({})).await;
    h.event_ok(&attempt, "busy", json!({})).await;
    let (status, _) = h.event("cll_unknown", "ended", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h.event(&attempt, "delivered", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not a phone status");
    let body = serde_json::to_vec(&json!({ "attempt_id": attempt, "status": "ended" })).expect("json");
    let (status, _) = h.post_event_raw(&h.integration, &body, Some("bm90IGEgc2lnbmF0dXJl"), Some("application/json")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = h.post_event_raw("int_unknown", &body, Some("bm90IGEgc2lnbmF0dXJl"), Some("application/json")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let after = Scrape::of(&h).await;

    let http = |result| after.since(&handed_off, EVENTS, &[("source", "http"), ("result", result)]);
    assert_eq!(
        [http("applied"), http("ignored"), http("unknown_attempt"), http("invalid"), http("bad_signature")],
        [2.0, 1.0, 1.0, 1.0, 2.0]
    );
    assert_eq!(after.since(&handed_off, FINISHED, &[("channel", "phone_call"), ("outcome", "busy")]), 1.0);
    assert_eq!(after.since(&handed_off, FINISHED, &[]), 1.0);
}

#[tokio::test]
async fn an_attempt_without_a_final_event_finishes_as_a_timeout() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    h.start(json!({}), 2).await;
    assert_eq!(h.claims().await, 2);
    let before = Scrape::of(&h).await;
    // The engine's attempt timeout (EngineSettings' default): 2 hours.
    h.clock.advance(SignedDuration::from_hours(2) + SignedDuration::from_secs(1));
    assert_eq!(h.settle().await.timed_out, 2);
    let after = Scrape::of(&h).await;

    assert_eq!(after.since(&before, FINISHED, &[("channel", "phone_call"), ("outcome", "timeout")]), 2.0);
    assert_eq!(after.since(&before, FINISHED, &[("outcome", "failed")]), 0.0, "a timeout is not counted as a provider's failure");
}

#[tokio::test]
async fn handoff_failures_are_counted_by_reason() {
    let refusing = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(422)).mount(&refusing).await;
    let Some(h) = Harness::new(retry_settings(30, 0), "phone_call", Provider::Webhook(refusing)).await else { return };
    let before = Scrape::of(&h).await;
    h.start(json!({}), 1).await;
    assert_eq!(h.claims().await, 1);
    let after = Scrape::of(&h).await;
    assert_eq!(after.since(&before, HANDOFF_FAILURES, &[("provider", "webhook"), ("reason", "rejected")]), 1.0);
    assert_eq!(after.since(&before, FINISHED, &[("channel", "phone_call"), ("outcome", "failed")]), 1.0);

    let down = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).mount(&down).await;
    let Some(h) = Harness::new(retry_settings(30, 0), "phone_call", Provider::Webhook(down)).await else { return };
    let before = Scrape::of(&h).await;
    h.start(json!({}), 1).await;
    assert_eq!(h.claims().await, 1);
    for wait in [1, 2, 4, 8, 16] {
        h.clock.advance(SignedDuration::from_secs(wait));
        assert_eq!(h.settle().await.resent, 1, "re-sent after {wait} s");
    }
    let after = Scrape::of(&h).await;
    let failures = |reason| after.since(&before, HANDOFF_FAILURES, &[("provider", "webhook"), ("reason", reason)]);
    // Five re-sends, then the sixth send fails the attempt.
    assert_eq!([failures("unavailable"), failures("rejected")], [5.0, 1.0]);
    assert_eq!(after.since(&before, HANDOFFS, &[("provider", "webhook")]), 6.0, "every send is timed");
    assert_eq!(after.since(&before, DISPATCHED, &[]), 1.0, "re-sends are the same attempt");
    assert_eq!(after.since(&before, FINISHED, &[("channel", "phone_call"), ("outcome", "failed")]), 1.0);
}

/// The gauge is the database's figure, read every 15 s of the engine's clock.
#[tokio::test]
async fn contacts_waiting_follow_the_campaigns_through_queue_and_retries() {
    // No one answers: each contact is retried once (failed_retry_limit 1), then fails.
    let Some(h) = Harness::simulator("phone_call", json!({ "answer_rate": 0.0 })).await else { return };
    let waiting = |scrape: &Scrape, status| scrape.get(WAITING, &[("campaign_status", status)]);
    let id = h.campaign(json!({})).await;
    h.add(id, super::engine::numbers(4)).await;
    h.settle().await;
    assert_eq!(h.status(id).await, "ready");
    let ready = Scrape::of(&h).await;
    assert_eq!((waiting(&ready, "ready"), waiting(&ready, "active")), (4.0, 0.0));

    h.action(id, "activate").await;
    h.clock.advance(SignedDuration::from_secs(15));
    assert_eq!(h.claims().await, 4);
    let queued = Scrape::of(&h).await;
    assert_eq!((waiting(&queued, "ready"), waiting(&queued, "active")), (0.0, 4.0), "read before the tick's claims");

    h.clock.advance(SignedDuration::from_secs(15));
    h.settle().await;
    assert_eq!(h.statuses(id).await, ["retrying"; 4]);
    let retrying = Scrape::of(&h).await;
    assert_eq!(waiting(&retrying, "active"), 4.0, "retrying contacts wait too");

    h.clock.advance(SignedDuration::from_mins(30));
    assert_eq!(h.claims().await, 4);
    h.clock.advance(SignedDuration::from_secs(15));
    h.settle().await;
    assert_eq!(h.status(id).await, "finished");
    let done = Scrape::of(&h).await;
    assert_eq!(["ready", "active", "finished"].map(|status| waiting(&done, status)), [0.0; 3]);
}

/// On SQLite, while another connection holds the database's write lock, writes (the engine's
/// claim among them) wait in the writer's queue, and the gauge shows them; once it lets go, they
/// commit and the queue is empty again. PostgreSQL commits from a pool: it has no writer queue,
/// and shows none.
#[tokio::test]
async fn writes_wait_in_the_sqlite_writer_queue_while_the_database_is_locked() {
    const QUEUE: &str = "outbound_store_writer_queue_depth";
    const COMMITS: &str = "outbound_store_commit_seconds_count";
    let Some(h) = Harness::simulator("phone_call", json!({})).await else { return };
    h.start(json!({}), 2).await;
    let Some(path) = h.database_url.strip_prefix("sqlite://").map(str::to_owned) else {
        assert_eq!(h.settle().await.claimed, 2);
        let scrape = Scrape::of(&h).await;
        assert!(scrape.0.iter().all(|(name, ..)| !name.starts_with("outbound_store_")), "no SQLite writer metrics on PostgreSQL");
        return;
    };
    let before = Scrape::of(&h).await;

    let lock = rusqlite::Connection::open(&path).expect("open the database");
    lock.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    lock.execute_batch("BEGIN IMMEDIATE").expect("the write lock");
    let engine = h.engine.clone();
    let settled = tokio::spawn(async move { engine.settle().await });
    let mut writes = Vec::new();
    // Waits for a state, not for time: once the writer has taken a batch it cannot begin, every
    // later write stays queued.
    let queued = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            let (client, url) = (h.client.clone(), h.url("/api/v1.0/agents"));
            let key = h.key.clone();
            writes.push(tokio::spawn(async move {
                client.post(url).header("Authorization", format!("api-key {key}")).json(&json!({ "name": "queued" })).send().await
            }));
            let scrape = Scrape::of(&h).await;
            if scrape.get(QUEUE, &[]) >= 2.0 {
                return scrape;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("writes queue while the database is locked");
    lock.execute_batch("COMMIT").expect("lock released");

    for write in writes {
        assert_eq!(write.await.expect("joined").expect("answered").status(), StatusCode::CREATED);
    }
    assert_eq!(settled.await.expect("joined").expect("settled").claimed, 2, "the engine's claim waited its turn");
    let after = Scrape::of(&h).await;
    assert_eq!(after.get(QUEUE, &[]), 0.0);
    assert!(after.since(&before, COMMITS, &[]) >= 1.0);
    assert!(after.since(&before, "outbound_store_commit_seconds_sum", &[]) > 0.0);
    assert!(after.since(&before, "outbound_store_commit_batch_size_sum", &[]) >= queued.get(QUEUE, &[]));
}

#[tokio::test]
async fn webhook_deliveries_are_counted_by_type_and_result_with_their_delay_and_backlog() {
    const DELIVERIES: &str = "outbound_webhook_deliveries_total";
    const BACKLOG: &str = "outbound_webhook_backlog";
    let Some(app) = TestApp::spawn().await else { return };
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).up_to_n_times(1).mount(&receiver).await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&receiver).await;
    let (status, created) = app.post("/webhooks", json!({ "url": receiver.uri(), "events": ["webhook.test"] })).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["webhook"]["id"].as_str().expect("id").to_owned();
    let before = Scrape::of(&app).await;
    app.post(&format!("/webhooks/{id}/test"), json!({})).await;

    assert_eq!(app.deliver().await, 1);
    let failed_once = Scrape::of(&app).await;
    let test = ("event_type", "webhook.test");
    assert_eq!(failed_once.since(&before, DELIVERIES, &[test, ("result", "retrying")]), 1.0);
    assert_eq!(failed_once.since(&before, DELIVERIES, &[("result", "delivered")]), 0.0);
    assert_eq!(failed_once.get(BACKLOG, &[]), 1.0, "waiting for its second attempt");

    app.clock.advance(SignedDuration::from_secs(60));
    assert_eq!(app.deliver().await, 1);
    let delivered = Scrape::of(&app).await;
    assert_eq!(delivered.since(&failed_once, DELIVERIES, &[test, ("result", "delivered")]), 1.0);
    assert_eq!(delivered.since(&before, "outbound_webhook_delivery_seconds_count", &[test]), 1.0);
    assert_eq!(delivered.since(&before, "outbound_webhook_delivery_seconds_sum", &[test]), 60.0, "from the event to its delivery");
    assert_eq!(delivered.get(BACKLOG, &[]), 0.0);
}

#[tokio::test]
async fn every_metric_has_help_text() {
    let Some(h) = Harness::new(retry_settings(30, 1), "phone_call", Provider::Webhook(accepting_provider().await)).await else { return };
    let (id, c) = h.start(json!({}), 1).await;
    h.settle().await;
    h.finish(id, c[0], "ended", json!({ "answered_by": "human" })).await;
    let text = h.client.get(h.url("/metrics")).send().await.expect("scraped").text().await.expect("body");
    let types: Vec<&str> = text.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    for name in [DISPATCHED, FINISHED, "outbound_provider_handoff_seconds", EVENTS, TICK_CLAIMS, WAITING] {
        assert!(types.contains(&name), "{name} in:\n{text}");
    }
    for name in types {
        assert!(text.contains(&format!("# HELP {name} ")), "help for {name} in:\n{text}");
    }
}
