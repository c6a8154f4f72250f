//! Several stores and servers on one PostgreSQL database, as several processes would be: claims
//! of the same campaign take turns on its row and never take a contact twice or exceed its
//! budgets; concurrent duplicates under one Idempotency-Key write once; two delivery workers
//! send a webhook backlog once.

use std::collections::HashSet;

use jiff::SignedDuration;
use outbound::api::ApiSettings;
use outbound::api::rate_limit::RateLimitConfig;
use outbound::server::RunningServer;
use outbound::store::{self, ClaimRequest, Dispatch};
use reqwest::StatusCode;
use serde_json::json;

use super::engine::Harness;
use super::helpers::TestApp;

fn claim(campaign_id: i64, at: jiff::Timestamp, limit: u32) -> ClaimRequest {
    ClaimRequest {
        campaign_id,
        limit,
        at,
        lease_until: at + SignedDuration::from_mins(2),
        deadline: at + SignedDuration::from_hours(2),
        pace: None,
    }
}

/// Claims from both stores at once, `rounds` times; returns every dispatch.
async fn claim_from_both(h: &Harness, campaign_id: i64, limit: u32, rounds: usize) -> Vec<Dispatch> {
    let other = store::open(&h.database_url).await.expect("second store");
    let at = outbound::clock::Clock::now(&*h.clock);
    let mut all = Vec::new();
    for _ in 0..rounds {
        let (mine, theirs) = tokio::join!(
            h.store.claim_attempts(vec![claim(campaign_id, at, limit)]),
            other.claim_attempts(vec![claim(campaign_id, at, limit)])
        );
        all.extend(mine.expect("claims"));
        all.extend(theirs.expect("claims"));
    }
    all
}

fn assert_distinct_contacts(dispatches: &[Dispatch]) {
    let contacts: HashSet<i64> = dispatches.iter().map(|d| d.contact.id).collect();
    assert_eq!(contacts.len(), dispatches.len(), "a contact was claimed twice: {dispatches:#?}");
}

#[tokio::test]
async fn concurrent_claims_of_two_processes_respect_concurrency_limit() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (id, _) = h.start(json!({ "concurrency_limit": 7 }), 40).await;
    let dispatches = claim_from_both(&h, id, 3, 5).await;
    assert_eq!(dispatches.len(), 7, "{dispatches:#?}");
    assert_distinct_contacts(&dispatches);
    assert_eq!(h.detail(id).await["status"], "active");
}

#[tokio::test]
async fn concurrent_claims_of_two_processes_respect_message_limit() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (id, _) = h.start(json!({ "message_limit": 9 }), 40).await;
    let dispatches = claim_from_both(&h, id, 4, 4).await;
    assert_eq!(dispatches.len(), 9, "{dispatches:#?}");
    assert_distinct_contacts(&dispatches);
}

#[tokio::test]
async fn two_processes_share_one_integrations_pace_across_its_campaigns() {
    // A pace of 8 per second builds at most a quarter of a second of credit: 3 hand-offs at one
    // instant (now, and the two slots 125 and 250 ms back), however many processes and campaigns ask.
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (first, _) = h.start(json!({ "concurrency_limit": 100 }), 20).await;
    let (second, _) = h.start(json!({ "concurrency_limit": 100 }), 20).await;
    let other = store::open(&h.database_url).await.expect("second store");
    let at = outbound::clock::Clock::now(&*h.clock);
    let paced = |campaign_id| ClaimRequest {
        pace: Some(outbound::store::Pace { integration_id: h.integration.clone(), per_second: 8.0 }),
        ..claim(campaign_id, at, 10)
    };
    let (mine, theirs) =
        tokio::join!(h.store.claim_attempts(vec![paced(first), paced(second)]), other.claim_attempts(vec![paced(second), paced(first)]));
    let taken = mine.expect("claims").len() + theirs.expect("claims").len();
    assert_eq!(taken, 3, "the pace is shared");
    let later = at + SignedDuration::from_millis(125);
    let (mine, theirs) = tokio::join!(
        h.store.claim_attempts(vec![ClaimRequest { at: later, ..paced(first) }]),
        other.claim_attempts(vec![ClaimRequest { at: later, ..paced(second) }])
    );
    assert_eq!(mine.expect("claims").len() + theirs.expect("claims").len(), 1, "one more 125 ms later");
}

#[tokio::test]
async fn concurrent_claims_of_two_processes_take_every_contact_once() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (id, contacts) = h.start(json!({ "concurrency_limit": 1000 }), 60).await;
    let dispatches = claim_from_both(&h, id, 7, 6).await;
    assert_eq!(dispatches.len(), contacts.len());
    assert_distinct_contacts(&dispatches);
    let statuses = h.statuses(id).await;
    assert!(statuses.iter().all(|s| s == "sending"), "{statuses:?}");
}

#[tokio::test]
async fn due_handoffs_are_taken_by_one_process_each() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (id, contacts) = h.start(json!({ "concurrency_limit": 1000 }), 30).await;
    let at = outbound::clock::Clock::now(&*h.clock);
    // Claimed but never handed off: every lease runs out.
    let claimed = h.store.claim_attempts(vec![claim(id, at, 100)]).await.expect("claims");
    assert_eq!(claimed.len(), contacts.len());
    let other = store::open(&h.database_url).await.expect("second store");
    let later = at + SignedDuration::from_mins(5);
    let lease = later + SignedDuration::from_mins(2);
    let (mine, theirs) = tokio::join!(h.store.take_due_handoffs(later, lease, 20), other.take_due_handoffs(later, lease, 20));
    let (mine, theirs) = (mine.expect("handoffs"), theirs.expect("handoffs"));
    let mut taken: Vec<&str> = mine.iter().chain(&theirs).map(|d| d.attempt_id.as_str()).collect();
    taken.sort_unstable();
    taken.dedup();
    assert_eq!(taken.len(), mine.len() + theirs.len(), "an attempt was taken twice");
    assert_eq!(taken.len(), contacts.len().min(40));
    // Taken again only when the new lease runs out.
    assert!(other.take_due_handoffs(later, lease, 100).await.expect("handoffs").is_empty());
}

#[tokio::test]
async fn events_and_claims_of_two_processes_on_two_campaigns_keep_the_counters() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (first, _) = h.start(json!({ "concurrency_limit": 1000 }), 50).await;
    let (second, _) = h.start(json!({ "concurrency_limit": 1000 }), 50).await;
    let other = store::open(&h.database_url).await.expect("second store");
    let at = outbound::clock::Clock::now(&*h.clock);
    let retry = outbound::domain::attempt::RetrySettings::default();
    let mut open: Vec<Dispatch> = h.store.claim_attempts(vec![claim(second, at, 10), claim(first, at, 10)]).await.expect("claims");
    let mut closed = 0;
    for _ in 0..4 {
        // Events for both campaigns, the second campaign's first, while the same campaigns are claimed.
        let events: Vec<_> =
            open.iter().rev().map(|d| outbound::domain::attempt::AttemptEvent::failed(d.attempt_id.clone(), "test")).collect();
        closed += events.len();
        let (claimed, applied) =
            tokio::join!(h.store.claim_attempts(vec![claim(second, at, 10), claim(first, at, 10)]), other.apply_events(events, at, retry),);
        let applied = applied.expect("events applied");
        assert!(applied.iter().all(|o| *o == outbound::store::EventOutcome::Applied), "{applied:?}");
        open = claimed.expect("claims");
    }
    for id in [first, second] {
        let running = h.store.running_campaign(id).await.expect("read").expect("campaign");
        assert_eq!(running.in_flight, 10, "campaign {id}");
    }
    assert_eq!(closed, 80);
}

/// 50 identical POSTs under one Idempotency-Key, spread over three servers (as three processes:
/// each holds its running keys in its own memory) on one database, create one campaign; every
/// other answer is the replay of its response or a 409 to retry.
#[tokio::test]
async fn fifty_identical_posts_over_three_processes_create_one_campaign() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let mut others = Vec::new();
    for _ in 0..2 {
        let store = store::open(&app.database_url).await.expect("another store");
        let settings = ApiSettings { rate_limit_rps: None, ..ApiSettings::default() };
        let server = RunningServer::start_with("127.0.0.1:0", store, app.clock.clone(), settings, RateLimitConfig::default())
            .await
            .expect("another server");
        others.push(server);
    }
    let bases: Vec<String> = std::iter::once(app.base.clone()).chain(others.iter().map(|s| format!("http://{}", s.addr))).collect();
    let body = setup.phone(json!({ "name": "Spread" }));
    let sends = (0..50).map(|i| {
        app.client
            .post(format!("{}/api/v1.0/campaigns", bases[i % bases.len()]))
            .header("Authorization", format!("api-key {}", app.key))
            .header("Idempotency-Key", "spread-key")
            .json(&body)
            .send()
    });
    let mut created = Vec::new();
    let mut replays = Vec::new();
    for response in futures::future::join_all(sends).await {
        let response = response.expect("sent");
        let status = response.status();
        let replayed = response.headers().get("idempotent-replayed").is_some();
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = response.bytes().await.expect("body");
        match (status, replayed) {
            (StatusCode::CREATED, false) => created.push(bytes),
            (StatusCode::CREATED, true) => replays.push(bytes),
            (StatusCode::CONFLICT, false) => {
                let error: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
                assert_eq!(error["error"], "IDEMPOTENCY_KEY_IN_USE");
                assert_eq!(retry_after.as_deref(), Some("1"));
            }
            other => panic!("unexpected answer {other:?}: {}", String::from_utf8_lossy(&bytes)),
        }
    }
    assert_eq!(created.len(), 1, "exactly one request's writes were kept");
    assert!(replays.iter().all(|r| *r == created[0]), "replays are byte-identical");
    let (_, list) = app.get("/campaigns?archived=true").await;
    assert_eq!(list["total_count"], 1);
    for server in others {
        server.shutdown().await.expect("server stops");
    }
}

/// Webhook deliveries (§8.2) from two processes: each subscription is delivered by one of them at
/// a time (its lease), so every event of a shared backlog arrives once, none twice at once.
#[tokio::test]
async fn two_processes_deliver_one_webhook_backlog_once() {
    use outbound::webhooks::Deliveries;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let Some(app) = TestApp::spawn().await else { return };
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&receiver).await;
    let mut expected = HashSet::new();
    for subscription in 0..3 {
        let url = format!("{}/hook/{subscription}", receiver.uri());
        let (status, created) = app.post("/webhooks", json!({ "url": url, "events": ["webhook.test"] })).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["webhook"]["id"].as_str().expect("id").to_owned();
        for _ in 0..40 {
            let (status, body) = app.post(&format!("/webhooks/{id}/test"), json!({})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            expected.insert(body["event_id"].as_str().expect("event id").to_owned());
        }
    }
    let other_store = store::open(&app.database_url).await.expect("second store");
    let other = Deliveries::new(other_store, app.clock.clone(), super::helpers::local_webhooks()).expect("client");
    let (mine, theirs) = tokio::join!(app.deliveries.settle(), other.settle());
    let (mine, theirs) = (mine.expect("delivers"), theirs.expect("delivers"));
    // What one left for the other (a subscription leased when it looked) is sent now.
    let rest = app.deliver().await + other.settle().await.expect("delivers");
    assert_eq!(mine + theirs + rest, expected.len(), "every event sent once ({mine} + {theirs} + {rest})");

    let received = receiver.received_requests().await.expect("recorded");
    let ids: Vec<String> =
        received.iter().map(|r| r.headers.get("webhook-id").and_then(|v| v.to_str().ok()).expect("webhook-id").to_owned()).collect();
    let distinct: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), distinct.len(), "no event was sent twice");
    assert_eq!(distinct, expected);
}

#[tokio::test]
async fn a_number_listed_while_another_process_is_claiming_its_contact_is_never_sent() {
    use outbound::engine::{Engine, EngineSettings};
    use sqlx::Connection;

    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (id, contacts) = h.start(json!({}), 1).await;
    let number = super::engine::numbers(1)[0]["contact"].as_str().expect("number").to_owned();
    // Another process's engine on the same database, with the same provider.
    let other_store = store::open(&h.database_url).await.expect("second store");
    let settings = EngineSettings { public_url: h.base.clone(), ..EngineSettings::default() };
    let other = std::sync::Arc::new(Engine::new(other_store, h.clock.clone(), settings));

    // Its claim is held half-way, after it took the contact and before it commits: a lock on the
    // campaign's status counts, which it updates last.
    let mut holder = sqlx::PgConnection::connect(&h.database_url).await.expect("connect");
    let mut held = holder.begin().await.expect("begin");
    sqlx::query("SELECT count FROM campaign_contact_counts WHERE campaign_id = $1 FOR UPDATE")
        .bind(id)
        .fetch_all(&mut *held)
        .await
        .expect("lock the counts");
    let claiming = tokio::spawn({
        let other = other.clone();
        async move { other.tick().await }
    });
    let mut watcher = sqlx::PgConnection::connect(&h.database_url).await.expect("connect");
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%campaign_contact_counts%'",
        )
        .fetch_one(&mut watcher)
        .await
        .expect("activity");
        if waiting > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }

    // Meanwhile the number is listed through this process's API; then the claim goes on.
    let (status, body) = h.post("/dnc", json!({ "entries": [{ "contact": number, "channel": "phone_call" }] })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    held.commit().await.expect("release");
    let report = claiming.await.expect("joined").expect("tick");
    assert_eq!(report.claimed, 1, "the claim took the contact before the number was listed");

    assert!(h.received().await.is_empty(), "nothing was sent to the provider");
    let contact = h.contact(id, contacts[0]).await;
    assert_eq!((&contact["status"], &contact["failed_reason"]), (&json!("failed"), &json!("suppressed")));
}
