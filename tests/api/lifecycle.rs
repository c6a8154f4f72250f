//! Lifecycle actions (§2.8) and the status machine transitions that need no contacts (§2.9).

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::helpers::{TestApp, assert_error, assert_matches_altur};

async fn act(app: &TestApp, id: i64, action: &str) -> (StatusCode, Value) {
    let (status, body) = app.post(&format!("/campaigns/{id}/{action}"), json!({})).await;
    if status == StatusCode::OK {
        assert_matches_altur("CampaignDetailResponse", &body);
    }
    (status, body)
}

#[track_caller]
fn assert_conflict(status: StatusCode, body: &Value, current: &str, valid: &[&str]) {
    assert_error(status, body, 409, "INVALID_STATUS_TRANSITION", None);
    assert_eq!(body["current_status"], json!(current), "{body}");
    assert_eq!(body["valid_targets"], json!(valid), "{body}");
}

#[tokio::test]
async fn activation_starts_the_first_iteration_and_analytics() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let campaign = app.create_campaign(setup.phone(json!({}))).await;
    let id = campaign["id"].as_i64().expect("id");
    assert_eq!(campaign["status"], "pending");
    assert_eq!(campaign["analytics"], Value::Null);
    assert_eq!(campaign["cycles"]["current_iteration"], 0);
    assert_eq!(campaign["started_at"], Value::Null);

    app.clock.advance(jiff::SignedDuration::from_mins(5));
    let (status, body) = act(&app, id, "activate").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let campaign = &body["campaign"];
    assert_eq!(campaign["status"], "active");
    assert_eq!(campaign["started_at"], "2026-06-08T18:05:00Z");
    assert_eq!(campaign["cycles"]["current_iteration"], 1);
    assert_eq!(campaign["cycles"]["last_iteration_at"], "2026-06-08T18:05:00Z");
    assert_eq!(campaign["analytics"]["contacts"], 0);
    assert_eq!(campaign["analytics"]["contactsConvertedRate"], 0.0);
    assert!(campaign["analytics"].get("callsAnsweredByHumanRate").is_some());
}

#[tokio::test]
async fn every_transition_allowed_and_refused() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = app.create_campaign(setup.phone(json!({}))).await["id"].as_i64().expect("id");

    // pending: activate and archive only.
    let (status, body) = act(&app, id, "pause").await;
    assert_conflict(status, &body, "pending", &["activate", "archive"]);
    let (status, body) = act(&app, id, "resume").await;
    assert_conflict(status, &body, "pending", &["activate", "archive"]);

    let (status, body) = act(&app, id, "activate").await;
    assert_eq!((status, body["campaign"]["status"].clone()), (StatusCode::OK, json!("active")));
    let started = body["campaign"]["started_at"].clone();
    // active: activate again and resume are no-ops (§2.8): every action answers 200.
    let (status, again) = act(&app, id, "activate").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!((&again["campaign"]["status"], &again["campaign"]["started_at"]), (&json!("active"), &started));
    assert_eq!(again["campaign"]["cycles"]["current_iteration"], 1, "a no-op starts no iteration");
    let (status, body) = act(&app, id, "resume").await;
    assert_eq!((status, body["campaign"]["status"].clone()), (StatusCode::OK, json!("active")));

    let (status, body) = act(&app, id, "pause").await;
    assert_eq!((status, body["campaign"]["status"].clone()), (StatusCode::OK, json!("inactive")));
    // inactive: pause is a no-op, activate refused.
    let (status, body) = act(&app, id, "pause").await;
    assert_eq!((status, body["campaign"]["status"].clone()), (StatusCode::OK, json!("inactive")));
    let (status, body) = act(&app, id, "activate").await;
    assert_conflict(status, &body, "inactive", &["pause", "resume", "archive"]);

    let (status, body) = act(&app, id, "resume").await;
    assert_eq!((status, body["campaign"]["status"].clone()), (StatusCode::OK, json!("active")));
    // Resuming a campaign paused mid-iteration stays in the same iteration.
    assert_eq!(body["campaign"]["cycles"]["current_iteration"], 1);

    let (status, body) = act(&app, id, "archive").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["campaign"]["archived"], true);
    assert_eq!(body["campaign"]["status"], "active", "archive keeps the status");
    // archived: only archive (a no-op).
    for action in ["activate", "pause", "resume"] {
        let (status, body) = act(&app, id, action).await;
        assert_conflict(status, &body, "active", &["archive"]);
    }
    let (status, body) = act(&app, id, "archive").await;
    assert_eq!((status, body["campaign"]["archived"].clone()), (StatusCode::OK, json!(true)));
}

#[tokio::test]
async fn archive_from_pending_and_archived_campaigns_stay_readable_and_patchable() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = app.create_campaign(setup.phone(json!({}))).await["id"].as_i64().expect("id");
    let (status, body) = act(&app, id, "archive").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["campaign"]["status"], "pending");
    let (status, body) = act(&app, id, "activate").await;
    assert_conflict(status, &body, "pending", &["archive"]);
    let (status, body) = app.get(&format!("/campaigns/{id}")).await;
    assert_eq!((status, body["campaign"]["archived"].clone()), (StatusCode::OK, json!(true)));
    let (status, body) = app.patch(&format!("/campaigns/{id}"), json!({ "name": "Renamed" })).await;
    assert_eq!((status, body["campaign"]["name"].clone()), (StatusCode::OK, json!("Renamed")));
}

#[tokio::test]
async fn unknown_action_and_unknown_campaign() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = app.create_campaign(setup.phone(json!({}))).await["id"].as_i64().expect("id");
    let (status, body) = act(&app, id, "launch").await;
    assert_error(status, &body, 400, "UNKNOWN_ACTION", Some("action"));
    let (status, body) = act(&app, 999_999, "activate").await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
}

#[tokio::test]
async fn whatsapp_activation_needs_a_template() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let mut body = setup.whatsapp(json!({}));
    body.as_object_mut().expect("object").remove("template");
    let id = app.create_campaign(body).await["id"].as_i64().expect("id");
    let (status, body) = act(&app, id, "activate").await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("template"));
    let (status, body) = app.get(&format!("/campaigns/{id}")).await;
    assert_eq!((status, body["campaign"]["status"].clone()), (StatusCode::OK, json!("pending")), "a refused action changes nothing");

    let (status, _) = app.patch(&format!("/campaigns/{id}"), json!({ "template": "promo_v2" })).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = act(&app, id, "activate").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["campaign"]["analytics"]["sentRate"], 0.0);
    assert_eq!(body["campaign"]["concurrency_limit"], Value::Null);
}
