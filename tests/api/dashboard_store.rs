//! The dashboard's part of the store (contract §11), called directly: sessions, an organization's
//! own API keys and the attempts-per-hour chart, each scoped to its organization.

use jiff::{SignedDuration, Timestamp};
use outbound::domain::ids::{NewApiKey, api_key_prefix};
use outbound::store::{ApiKeyRecord, NewSession};
use serde_json::json;

use super::engine::{Harness, numbers, numbers_from};
use super::helpers::{TestApp, start_time};

/// The stored record of a key the app handed out (its organization and id).
async fn key_record(app: &TestApp, key: &str) -> ApiKeyRecord {
    let prefix = api_key_prefix(key).expect("a well-formed key");
    app.store.find_api_key(prefix).await.expect("lookup").expect("key stored")
}

fn session(id_hash: &str, key: &ApiKeyRecord, created_at: Timestamp) -> NewSession {
    NewSession { id_hash: id_hash.to_owned(), org_id: key.org_id, key_id: key.id, created_at }
}

fn prefixes(keys: &[outbound::store::ApiKeyInfo]) -> Vec<&str> {
    keys.iter().map(|key| key.prefix.as_str()).collect()
}

#[tokio::test]
async fn a_session_is_created_found_touched_and_deleted() {
    let Some(app) = TestApp::spawn().await else { return };
    let key = key_record(&app, &app.key).await;
    let t0 = start_time();
    app.store.create_session(&session("hash-1", &key, t0)).await.expect("create");

    let found = app.store.find_session("hash-1").await.expect("find").expect("session stored");
    assert_eq!((found.org_id, found.organization.as_str(), found.key_id), (key.org_id, "acme", key.id));
    assert_eq!((found.created_at, found.last_seen_at, found.key_revoked), (t0, t0, false), "last seen when created");

    let later = t0 + SignedDuration::from_mins(5);
    app.store.touch_session("hash-1", later).await.expect("touch");
    let found = app.store.find_session("hash-1").await.expect("find").expect("session stored");
    assert_eq!((found.created_at, found.last_seen_at), (t0, later));

    assert!(app.store.find_session("hash-2").await.expect("find").is_none(), "another id finds nothing");
    app.store.delete_session("hash-1").await.expect("delete");
    assert!(app.store.find_session("hash-1").await.expect("find").is_none());
    app.store.delete_session("hash-1").await.expect("deleting a session that is gone is no error");
}

#[tokio::test]
async fn revoking_the_sessions_key_shows_in_the_session_and_keeps_the_first_revocation() {
    let Some(app) = TestApp::spawn().await else { return };
    let org = key_record(&app, &app.key).await.org_id;
    let t0 = start_time();
    let key = NewApiKey::generate();
    app.store.create_org_api_key(org, &key, t0).await.expect("create key");
    let record = key_record(&app, &key.key).await;
    assert_eq!((record.org_id, record.hash.as_str(), record.revoked), (org, key.hash.as_str(), false), "stored as the CLI stores keys");
    app.store.create_session(&session("hash-1", &record, t0)).await.expect("create");

    let revoked_at = t0 + SignedDuration::from_mins(1);
    assert!(app.store.revoke_org_api_key(org, &key.prefix, revoked_at).await.expect("revoke"));
    let found = app.store.find_session("hash-1").await.expect("find").expect("the session stays, marked");
    assert!(found.key_revoked);
    assert!(key_record(&app, &key.key).await.revoked);

    // Again, later: still found (true), and revoked when it first was, as `keys revoke` does.
    assert!(app.store.revoke_org_api_key(org, &key.prefix, revoked_at + SignedDuration::from_hours(1)).await.expect("revoke"));
    let listed = app.store.list_org_api_keys(org).await.expect("list");
    let info = listed.iter().find(|info| info.prefix == key.prefix).expect("listed");
    assert_eq!(info.revoked_at, Some(revoked_at));
    assert!(!app.store.revoke_org_api_key(org, "Zz9Zz9Zz", revoked_at).await.expect("revoke"), "no such key");
}

/// A session goes when last seen strictly before `idle_before`, or created strictly before
/// `created_before`: one at either bound is kept, one a millisecond before it is removed (stored
/// times are whole seconds, so a millisecond before a whole-second bound is a second before it).
#[tokio::test]
async fn purging_removes_sessions_idle_or_old_strictly_before_the_bounds() {
    let Some(app) = TestApp::spawn().await else { return };
    let key = key_record(&app, &app.key).await;
    let t0 = start_time();
    let (created_before, idle_before) = (t0 + SignedDuration::from_hours(1), t0 + SignedDuration::from_hours(2));
    let ms = SignedDuration::from_millis(1);
    let cases = [
        // (id, created, last seen, kept)
        ("at-both-bounds", created_before, idle_before, true),
        ("idle-a-ms-too-long", created_before, idle_before - ms, false),
        ("created-a-ms-too-early", created_before - ms, idle_before + SignedDuration::from_hours(1), false),
        ("young-and-active", created_before + SignedDuration::from_secs(1), idle_before + SignedDuration::from_hours(1), true),
    ];
    for (id, created, last_seen, _) in cases {
        app.store.create_session(&session(id, &key, created)).await.expect("create");
        app.store.touch_session(id, last_seen).await.expect("touch");
    }

    assert_eq!(app.store.purge_sessions(idle_before, created_before).await.expect("purge"), 2);
    for (id, _, _, kept) in cases {
        assert_eq!(app.store.find_session(id).await.expect("find").is_some(), kept, "{id}");
    }
    assert_eq!(app.store.purge_sessions(idle_before, created_before).await.expect("purge"), 0, "nothing more to remove");
}

#[tokio::test]
async fn an_organization_lists_and_revokes_only_its_own_keys_newest_first() {
    let Some(app) = TestApp::spawn().await else { return };
    let acme = key_record(&app, &app.key).await.org_id;
    let globex_key = app.new_key("globex").await;
    let globex = key_record(&app, &globex_key).await.org_id;
    assert_ne!(acme, globex);
    let first = api_key_prefix(&app.key).expect("prefix").to_owned();

    // Two more keys in the same second: the later one is listed first.
    let later = start_time() + SignedDuration::from_mins(1);
    let (second, third) = (NewApiKey::generate(), NewApiKey::generate());
    app.store.create_org_api_key(acme, &second, later).await.expect("create");
    app.store.create_org_api_key(acme, &third, later).await.expect("create");

    let listed = app.store.list_org_api_keys(acme).await.expect("list");
    assert_eq!(prefixes(&listed), [third.prefix.as_str(), second.prefix.as_str(), first.as_str()]);
    assert!(listed.iter().all(|key| key.organization == "acme" && key.revoked_at.is_none()));
    assert_eq!((listed[0].created_at, listed[2].created_at), (later, start_time()));
    let globex_listed = app.store.list_org_api_keys(globex).await.expect("list");
    assert_eq!(prefixes(&globex_listed), [api_key_prefix(&globex_key).expect("prefix")]);

    assert!(!app.store.revoke_org_api_key(globex, &first, later).await.expect("revoke"), "not globex's key");
    assert!(!key_record(&app, &app.key).await.revoked);
    assert!(app.store.list_org_api_keys(acme).await.expect("list").iter().all(|key| key.revoked_at.is_none()));
}

#[tokio::test]
async fn attempts_per_hour_sums_the_campaigns_minutes_by_hour_for_its_organization_only() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let org = key_record(&h, &h.key).await.org_id;
    let t0 = start_time(); // 18:00:00Z, the start of an hour
    let at = |mins: i64, secs: i64| t0 + SignedDuration::from_mins(mins) + SignedDuration::from_secs(secs);

    // Claims at 18:00 (2), 18:59:30 (3), 20:10 (1) and 20:40 (1); each batch is added before the
    // one before it ends, so that the campaign keeps running, and ended before its attempts time out.
    let id = h.campaign(json!({})).await;
    let mut batch = h.add(id, numbers(2)).await;
    h.action(id, "activate").await;
    assert_eq!(h.claims().await, 2);
    for (first, count, when) in [(2, 3, at(59, 30)), (5, 1, at(130, 0)), (6, 1, at(160, 0))] {
        let next = h.add(id, numbers_from(first, count)).await;
        for contact in batch {
            h.finish(id, contact, "ended", json!({ "answered_by": "human" })).await;
        }
        h.clock.set(when);
        assert_eq!(h.claims().await, count, "at {when}");
        batch = next;
    }

    let hour = |hours: i64| t0 + SignedDuration::from_hours(hours);
    let per_hour = |since: Timestamp| h.store.attempts_per_hour(org, id, since);
    assert_eq!(per_hour(t0).await.expect("read"), [(hour(0), 5), (hour(2), 2)], "19:00 started nothing and is left out");
    assert_eq!(per_hour(at(30, 0)).await.expect("read"), [(hour(0), 3), (hour(2), 2)], "minutes before `since` are not counted");
    assert_eq!(per_hour(at(59, 59)).await.expect("read"), [(hour(0), 3), (hour(2), 2)], "the minute of `since` counts whole");
    assert_eq!(per_hour(at(131, 0)).await.expect("read"), [(hour(2), 1)]);
    assert_eq!(per_hour(at(161, 0)).await.expect("read"), []);

    // Another organization, another campaign and an unknown one see nothing.
    let globex = key_record(&h, &h.new_key("globex").await).await.org_id;
    assert_eq!(h.store.attempts_per_hour(globex, id, t0).await.expect("read"), []);
    let idle = h.campaign(json!({})).await;
    assert_eq!(h.store.attempts_per_hour(org, idle, t0).await.expect("read"), []);
    assert_eq!(h.store.attempts_per_hour(org, idle + 1000, t0).await.expect("read"), []);
}
