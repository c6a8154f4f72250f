//! Idempotency-Key (§7): replays, concurrency, mismatches, scope, expiry, crashed requests.

use std::num::NonZeroU32;

use jiff::SignedDuration;
use outbound::api::ApiSettings;
use outbound::store::{CreateCampaignOutcome, IdempotencyClaim, ResponseRecorder, StoreError, StoredResponse};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::helpers::{Setup, TestApp, assert_error, post_with_key};

async fn campaign_count(app: &TestApp, api_key: &str) -> i64 {
    let (status, body) = app.call_with_key(reqwest::Method::GET, "/campaigns?archived=true", None, Some(api_key)).await;
    assert_eq!(status, StatusCode::OK);
    body["total_count"].as_i64().expect("total_count")
}

async fn setup(app: &TestApp) -> Setup {
    app.setup().await
}

/// The organization of the app's key, for tests that call the store directly.
async fn org_of_key(app: &TestApp) -> i64 {
    app.store.find_api_key(&app.key[3..11]).await.expect("lookup").expect("key").org_id
}

/// A server with an agent and integration, its key's organization and the time, for tests that
/// call the store directly.
async fn store_case() -> Option<(TestApp, Setup, i64, jiff::Timestamp)> {
    let app = TestApp::spawn().await?;
    let setup = setup(&app).await;
    let org = org_of_key(&app).await;
    let now = outbound::clock::Clock::now(app.clock.as_ref());
    Some((app, setup, org, now))
}

/// A recorder for a create-campaign store call under `key`, made at `at` (records older than a
/// day before it have expired), that keeps `status` and an empty JSON body.
fn recorder(org_id: i64, key: &str, at: jiff::Timestamp, status: u16) -> ResponseRecorder<CreateCampaignOutcome> {
    ResponseRecorder {
        claim: IdempotencyClaim {
            org_id,
            key: key.to_owned(),
            fingerprint: [7; 32],
            at,
            expired_before: at - SignedDuration::from_hours(24),
        },
        render: Box::new(move |_| Some(StoredResponse { status, body: b"{}".to_vec() })),
    }
}

fn new_campaign(setup: &Setup) -> outbound::domain::campaign::NewCampaign {
    outbound::domain::campaign::parse_new_campaign(&serde_json::from_value(setup.phone(json!({}))).expect("input")).expect("valid")
}

#[tokio::test]
async fn a_replay_returns_the_same_bytes_and_creates_nothing() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = setup(&app).await;
    let body = setup.phone(json!({}));
    let first = post_with_key(&app, "6f0b2c8c-2a7e-4f5e-9b6a-3a2e8b9c4d10", &app.key, "/campaigns", &body).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(!first.replayed);
    // Time moves on: a re-run would show a new created_at; a replay does not.
    app.clock.advance(SignedDuration::from_mins(5));
    let second = post_with_key(&app, "6f0b2c8c-2a7e-4f5e-9b6a-3a2e8b9c4d10", &app.key, "/campaigns", &body).await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert!(second.replayed);
    assert_eq!(second.body, first.body, "byte-identical replay");
    assert_eq!(campaign_count(&app, &app.key).await, 1);

    // Every POST takes a key: agents, integrations and lifecycle actions too.
    let id = first.json()["campaign"]["id"].as_i64().expect("id");
    let activate = post_with_key(&app, "act-1", &app.key, &format!("/campaigns/{id}/activate"), &json!({})).await;
    assert_eq!(activate.status, StatusCode::OK);
    let again = post_with_key(&app, "act-1", &app.key, &format!("/campaigns/{id}/activate"), &json!({})).await;
    assert_eq!((again.status, again.replayed), (StatusCode::OK, true), "a replay, not a 409 for activating an active campaign");
    assert_eq!(again.body, activate.body);
    let agent = post_with_key(&app, "agent-1", &app.key, "/agents", &json!({ "name": "A" })).await;
    let agent_again = post_with_key(&app, "agent-1", &app.key, "/agents", &json!({ "name": "A" })).await;
    assert!(agent_again.replayed && agent_again.body == agent.body);
    let (_, agents) = app.get("/agents").await;
    assert_eq!(agents["total_count"], 2, "the setup agent and one more");
}

#[tokio::test]
async fn fifty_concurrent_identical_posts_create_one_campaign() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = setup(&app).await;
    let body = setup.phone(json!({ "name": "Concurrent" }));
    let sends = (0..50).map(|_| post_with_key(&app, "same-key", &app.key, "/campaigns", &body));
    let results = futures::future::join_all(sends).await;
    let mut created = Vec::new();
    for sent in &results {
        match (sent.status, sent.replayed) {
            (StatusCode::CREATED, false) => created.push(sent.body.clone()),
            (StatusCode::CREATED, true) => {}
            (StatusCode::CONFLICT, false) => {
                assert_eq!(sent.json()["error"], "IDEMPOTENCY_KEY_IN_USE");
                assert_eq!(sent.retry_after.as_deref(), Some("1"));
            }
            other => panic!("unexpected answer {other:?}: {}", String::from_utf8_lossy(&sent.body)),
        }
    }
    assert_eq!(created.len(), 1, "exactly one request ran");
    for sent in results.iter().filter(|s| s.replayed) {
        assert_eq!(sent.body, created[0]);
    }
    assert_eq!(campaign_count(&app, &app.key).await, 1);
}

#[tokio::test]
async fn a_different_request_under_the_same_key_is_422() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = setup(&app).await;
    let first = post_with_key(&app, "k1", &app.key, "/campaigns", &setup.phone(json!({}))).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let other_body = post_with_key(&app, "k1", &app.key, "/campaigns", &setup.phone(json!({ "name": "Other" }))).await;
    assert_error(other_body.status, &other_body.json(), 422, "IDEMPOTENCY_KEY_REUSED", Some("Idempotency-Key"));
    let other_path = post_with_key(&app, "k1", &app.key, "/agents", &json!({ "name": "x" })).await;
    assert_eq!(other_path.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(campaign_count(&app, &app.key).await, 1);
    // Input validation comes first (§7: only a request that passed it is matched to a record).
    let invalid = post_with_key(&app, "k1", &app.key, "/campaigns", &setup.phone(json!({ "retries": 6 }))).await;
    assert_error(invalid.status, &invalid.json(), 400, "INVALID_REQUEST", Some("retries"));
    let (_, agents) = app.get("/agents").await;
    assert_eq!(agents["total_count"], 1, "the 422 for /agents created no agent");
    let again = post_with_key(&app, "k1", &app.key, "/campaigns", &setup.phone(json!({}))).await;
    assert_eq!((again.status, again.replayed, &again.body), (StatusCode::CREATED, true, &first.body));
}

#[tokio::test]
async fn keys_are_scoped_per_organization() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = setup(&app).await;
    let other_key = app.new_key("globex").await;
    let (_, agent) = app.call_with_key(reqwest::Method::POST, "/agents", Some(json!({ "name": "G" })), Some(&other_key)).await;
    let agent = agent["agent"]["id"].as_str().expect("agent").to_owned();
    let (_, integration) = app
        .call_with_key(
            reqwest::Method::POST,
            "/integrations",
            Some(json!({ "agent_id": agent, "type": "phone_call", "provider": "simulator" })),
            Some(&other_key),
        )
        .await;
    let integration = integration["integration"]["id"].as_str().expect("integration").to_owned();

    let ours = post_with_key(&app, "shared", &app.key, "/campaigns", &setup.phone(json!({}))).await;
    let theirs_body = json!({ "name": "G", "agent_id": agent, "integration_id": integration, "integration_type": "phone_call" });
    let theirs = post_with_key(&app, "shared", &other_key, "/campaigns", &theirs_body).await;
    assert_eq!((ours.status, theirs.status), (StatusCode::CREATED, StatusCode::CREATED));
    assert!(!theirs.replayed);
    assert_eq!(campaign_count(&app, &app.key).await, 1);
    assert_eq!(campaign_count(&app, &other_key).await, 1);
}

#[tokio::test]
async fn rejected_input_stores_nothing_but_refusals_are_kept() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = setup(&app).await;
    let bad = post_with_key(&app, "fix-me", &app.key, "/campaigns", &setup.phone(json!({ "retries": 9 }))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let fixed = post_with_key(&app, "fix-me", &app.key, "/campaigns", &setup.phone(json!({ "retries": 5 }))).await;
    assert_eq!((fixed.status, fixed.replayed), (StatusCode::CREATED, false), "a corrected request may reuse the key");

    let unknown_agent = setup.phone(json!({ "agent_id": uuid::Uuid::new_v4() }));
    let refused = post_with_key(&app, "refused", &app.key, "/campaigns", &unknown_agent).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    let again = post_with_key(&app, "refused", &app.key, "/campaigns", &unknown_agent).await;
    assert_eq!((again.status, again.replayed), (StatusCode::NOT_FOUND, true));
    assert_eq!(again.body, refused.body);

    let bad_key = post_with_key(&app, "", &app.key, "/campaigns", &setup.phone(json!({}))).await;
    assert_error(bad_key.status, &bad_key.json(), 400, "INVALID_REQUEST", Some("Idempotency-Key"));
    let long = post_with_key(&app, &"k".repeat(256), &app.key, "/campaigns", &setup.phone(json!({}))).await;
    assert_error(long.status, &long.json(), 400, "INVALID_REQUEST", Some("Idempotency-Key"));
    let longest = post_with_key(&app, &"k".repeat(255), &app.key, "/campaigns", &setup.phone(json!({}))).await;
    assert_eq!(longest.status, StatusCode::CREATED);
    assert_eq!(campaign_count(&app, &app.key).await, 2);
}

#[tokio::test]
async fn keys_expire_after_the_ttl() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = setup(&app).await;
    let first = post_with_key(&app, "daily", &app.key, "/campaigns", &setup.phone(json!({}))).await;
    assert_eq!(first.status, StatusCode::CREATED);
    app.clock.advance(SignedDuration::from_hours(24) - SignedDuration::from_secs(1));
    let within = post_with_key(&app, "daily", &app.key, "/campaigns", &setup.phone(json!({ "name": "new" }))).await;
    assert_eq!(within.status, StatusCode::UNPROCESSABLE_ENTITY, "still kept just before 24 h");
    app.clock.advance(SignedDuration::from_secs(2));
    let after = post_with_key(&app, "daily", &app.key, "/campaigns", &setup.phone(json!({ "name": "new" }))).await;
    assert_eq!((after.status, after.replayed), (StatusCode::CREATED, false), "a key older than 24 h is free again");
    let again = post_with_key(&app, "daily", &app.key, "/campaigns", &setup.phone(json!({ "name": "new" }))).await;
    assert_eq!((again.status, again.replayed, &again.body), (StatusCode::CREATED, true, &after.body), "the new record replaces the old");

    // The periodic cleanup deletes what has expired, and only that.
    let now = outbound::clock::Clock::now(app.clock.as_ref());
    assert_eq!(app.store.purge_idempotency_keys(now - SignedDuration::from_hours(24)).await.expect("purge"), 0);
    assert_eq!(app.store.purge_idempotency_keys(now + SignedDuration::from_secs(1)).await.expect("purge"), 1);
}

#[tokio::test]
async fn the_response_is_recorded_in_the_same_transaction_as_the_writes() {
    let Some((app, setup, org, now)) = store_case().await else { return };
    let new = || new_campaign(&setup);
    // The record cannot be written (no such organization): the campaign is rolled back with it
    // (on SQLite, records are inserted after the batch's jobs, so the whole commit is refused).
    let outcome = app.store.create_campaign(org, new(), now, Some(recorder(999_999, "atomic", now, 201))).await;
    if app.database_url.starts_with("sqlite:") {
        assert!(matches!(outcome, Err(StoreError::CommitFailed)), "{outcome:?}");
    } else {
        assert!(matches!(outcome, Err(StoreError::Database { .. })), "{outcome:?}");
    }
    assert_eq!(campaign_count(&app, &app.key).await, 0, "the write was rolled back with the record");
    let expired_before = now - SignedDuration::from_hours(24);
    assert_eq!(app.store.find_idempotency_record(org, "atomic", expired_before).await.expect("read"), None);

    // Both are written together.
    let outcome = app.store.create_campaign(org, new(), now, Some(recorder(org, "atomic", now, 201))).await.expect("created");
    assert!(matches!(outcome, CreateCampaignOutcome::Created(_)));
    assert_eq!(campaign_count(&app, &app.key).await, 1);
    let record = app.store.find_idempotency_record(org, "atomic", expired_before).await.expect("read").expect("record kept");
    assert_eq!(record.response, StoredResponse { status: 201, body: b"{}".to_vec() });
}

/// A duplicate that ran beside the first one (on another process, past the in-memory hold) finds
/// a live record in the store: it is refused and its campaign is not kept. An expired
/// record is replaced.
#[tokio::test]
async fn a_live_record_refuses_a_concurrent_duplicate_and_keeps_none_of_its_writes() {
    let Some((app, setup, org, now)) = store_case().await else { return };
    let new = || new_campaign(&setup);
    let first = app.store.create_campaign(org, new(), now, Some(recorder(org, "raced", now, 201))).await.expect("first");
    assert!(matches!(first, CreateCampaignOutcome::Created(_)));
    let duplicate = app.store.create_campaign(org, new(), now, Some(recorder(org, "raced", now, 201))).await;
    assert!(matches!(duplicate, Err(StoreError::IdempotencyKeyTaken)), "{duplicate:?}");
    assert_eq!(campaign_count(&app, &app.key).await, 1, "the duplicate's campaign was not kept");
    // Also when the repeat's own response would not be kept (an input error now): the first wins.
    let keeps_nothing = ResponseRecorder { render: Box::new(|_| None), ..recorder(org, "raced", now, 201) };
    let duplicate = app.store.create_campaign(org, new(), now, Some(keeps_nothing)).await;
    assert!(matches!(duplicate, Err(StoreError::IdempotencyKeyTaken)), "{duplicate:?}");
    assert_eq!(campaign_count(&app, &app.key).await, 1);
    let kept = app.store.find_idempotency_record(org, "raced", now - SignedDuration::from_hours(24)).await.expect("read");
    assert_eq!(kept.map(|r| r.response.status), Some(201), "the first record stays");

    // 24 hours and a second later the record has expired: a new request replaces it.
    let later = now + SignedDuration::from_secs(24 * 3600 + 1);
    let again = app.store.create_campaign(org, new(), later, Some(recorder(org, "raced", later, 202))).await.expect("after expiry");
    assert!(matches!(again, CreateCampaignOutcome::Created(_)));
    let kept = app.store.find_idempotency_record(org, "raced", later - SignedDuration::from_hours(24)).await.expect("read");
    assert_eq!(kept.map(|r| r.response.status), Some(202));
}

/// The cleanup deletes expired records oldest first: every one of them in the end, also one
/// written after a younger record (the clock stepped back), which is never served once expired.
#[tokio::test]
async fn the_cleanup_removes_every_expired_record_and_nothing_live() {
    let Some((app, _setup, org, now)) = store_case().await else { return };
    let at = |seconds: i64| now + SignedDuration::from_secs(seconds);
    for (key, seconds) in [("first", 0), ("younger", 10), ("written-last-dated-earlier", 5)] {
        app.store
            .complete_idempotency_key(&recorder(org, key, at(seconds), 201).claim, StoredResponse { status: 201, body: b"{}".to_vec() })
            .await
            .expect("recorded");
    }
    assert_eq!(app.store.purge_idempotency_keys(at(0)).await.expect("purge"), 0, "nothing is older than the first");
    assert_eq!(app.store.purge_idempotency_keys(at(1)).await.expect("purge"), 1);
    let record = |key: &'static str, expired_before| app.store.find_idempotency_record(org, key, expired_before);
    assert!(record("younger", at(6)).await.expect("read").is_some());
    let purged = app.store.purge_idempotency_keys(at(6)).await.expect("purge");
    assert_eq!(record("written-last-dated-earlier", at(6)).await.expect("read"), None, "an expired record is never served");
    assert!(record("younger", at(6)).await.expect("read").is_some(), "a live record is kept");
    let purged = purged + app.store.purge_idempotency_keys(at(11)).await.expect("purge");
    assert_eq!(purged, 2, "both later records are gone once both have expired");
    assert_eq!(app.store.purge_idempotency_keys(at(100)).await.expect("purge"), 0, "an empty table purges nothing");
}

#[tokio::test]
async fn duplicates_sent_to_the_store_at_once_keep_one_campaign_and_one_record() {
    let Some((app, setup, org, now)) = store_case().await else { return };
    // Sent together, these usually share one commit of the SQLite writer, where the second must
    // see the first one's record before that record is in the database.
    let attempts = (0..8).map(|_| app.store.create_campaign(org, new_campaign(&setup), now, Some(recorder(org, "together", now, 201))));
    let outcomes = futures::future::join_all(attempts).await;
    let created = outcomes.iter().filter(|o| matches!(o, Ok(CreateCampaignOutcome::Created(_)))).count();
    let taken = outcomes.iter().filter(|o| matches!(o, Err(StoreError::IdempotencyKeyTaken))).count();
    assert_eq!((created, taken), (1, 7), "{outcomes:?}");
    assert_eq!(campaign_count(&app, &app.key).await, 1);
    let kept = app.store.find_idempotency_record(org, "together", now - SignedDuration::from_hours(24)).await.expect("read");
    assert_eq!(kept.map(|r| r.response.status), Some(201));
}

/// A record that cannot be stored, sent beside requests that can: on SQLite it may take its
/// batch down with it, but every caller hears the truth, so each campaign that exists was
/// answered as created, and each answered as created exists with its record.
#[tokio::test]
async fn a_record_that_cannot_be_stored_never_leaves_an_answer_untrue() {
    let Some((app, setup, org, now)) = store_case().await else { return };
    let keyed =
        |i: usize| if i == 3 { recorder(999_999, "no-such-org", now, 201) } else { recorder(org, &format!("beside-{i}"), now, 201) };
    let attempts = (0..8).map(|i| app.store.create_campaign(org, new_campaign(&setup), now, Some(keyed(i))));
    let outcomes = futures::future::join_all(attempts).await;
    assert!(outcomes[3].is_err(), "{:?}", outcomes[3]);
    let mut created = 0;
    for (i, outcome) in outcomes.iter().enumerate() {
        let record = app.store.find_idempotency_record(org, &format!("beside-{i}"), now - SignedDuration::from_hours(24)).await;
        match outcome {
            Ok(CreateCampaignOutcome::Created(_)) => {
                created += 1;
                assert!(record.expect("read").is_some(), "request {i} was answered as created: its record is kept");
            }
            failed => {
                assert!(matches!(failed, Err(StoreError::CommitFailed | StoreError::Database { .. })), "{failed:?}");
                assert_eq!(record.expect("read"), None, "request {i} failed: its key stays free");
            }
        }
    }
    assert_eq!(campaign_count(&app, &app.key).await, created, "{outcomes:?}");
}

#[tokio::test]
async fn idempotency_and_the_rate_limit_work_together() {
    let Some(app) = TestApp::spawn_with(ApiSettings { rate_limit_rps: NonZeroU32::new(3), ..ApiSettings::default() }).await else { return };
    let body = json!({ "name": "Bot" });
    for _ in 0..3 {
        let sent = post_with_key(&app, "agent", &app.key, "/agents", &body).await;
        assert_eq!(sent.status, StatusCode::CREATED);
    }
    let limited = post_with_key(&app, "agent", &app.key, "/agents", &body).await;
    assert_error(limited.status, &limited.json(), 429, "RATE_LIMITED", None);
    let (_, agents) = app.call_with_key(reqwest::Method::GET, "/agents", None, Some(&app.new_key("other").await)).await;
    assert_eq!(agents["total_count"], 0);
}

/// Every value replaced by its type, so that two bodies compare by shape: keys, their order,
/// array lengths and the kinds of value.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Array(map.iter().map(|(key, value)| json!([key, shape(value)])).collect()),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => Value::Null,
    }
}

/// Stored responses are compressed against a dictionary of typical bodies (store/shared.rs): it
/// pays only while those are what the API sends. Each document of the dictionary has the shape of
/// a body the server answers now (a campaign created with the defaults, a batch with one contact
/// created and one failed, a refused action), and the same error code.
#[tokio::test]
async fn the_response_dictionary_holds_bodies_the_api_sends() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = setup(&app).await;
    let created =
        post_with_key(&app, "dictionary-campaign", &app.key, "/campaigns", &setup.phone(json!({"name": "Q2 Reactivation"}))).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.json()["campaign"]["id"].as_i64().expect("id");
    let batch = json!({"contacts": [{"contact": "+525512345678"}, {"contact": "bad"}]});
    let added = post_with_key(&app, "dictionary-batch", &app.key, &format!("/campaigns/{id}/contacts"), &batch).await;
    let refused = post_with_key(&app, "dictionary-refused", &app.key, &format!("/campaigns/{id}/resume"), &json!({})).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);

    let dictionary: Vec<Value> = include_str!("../../src/store/response_dictionary_v4.json")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line of the dictionary is a JSON body"))
        .collect();
    let live = [added.json(), refused.json(), created.json()];
    assert_eq!(dictionary.len(), live.len());
    for (kept, sent) in dictionary.iter().zip(&live) {
        assert_eq!(shape(kept), shape(sent), "dictionary document {kept}\n  differs in shape from the body sent: {sent}");
    }
    assert_eq!(dictionary[1]["error"], live[1]["error"], "the error code is one the API sends");
}
