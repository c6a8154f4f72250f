//! Authentication and tenant isolation (§0, §1).

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::helpers::{TestApp, assert_error};

#[tokio::test]
async fn missing_malformed_unknown_and_revoked_keys_get_401() {
    let Some(app) = TestApp::spawn().await else { return };
    let (status, body) = app.call_with_key(Method::GET, "/campaigns", None, None).await;
    assert_error(status, &body, 401, "UNAUTHORIZED", None);
    for bad in ["nonsense", "ob_short_key", "ob_AAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"] {
        let (status, body) = app.call_with_key(Method::GET, "/campaigns", None, Some(bad)).await;
        assert_error(status, &body, 401, "UNAUTHORIZED", None);
    }
    // Right prefix, wrong secret.
    let forged = format!("{}{}", &app.key[..12], "x".repeat(32));
    let (status, body) = app.call_with_key(Method::GET, "/campaigns", None, Some(&forged)).await;
    assert_error(status, &body, 401, "UNAUTHORIZED", None);
    // A Bearer scheme is not ours.
    let response = app.client.get(app.url("/api/v1.0/campaigns")).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let (status, _) = app.get("/campaigns").await;
    assert_eq!(status, StatusCode::OK);
    let prefix = &app.key[3..11];
    assert!(app.store.revoke_api_key(prefix, jiff::Timestamp::now()).await.expect("revoke"));
    let (status, body) = app.get("/campaigns").await;
    assert_error(status, &body, 401, "UNAUTHORIZED", None);
}

#[tokio::test]
async fn another_organization_sees_404_for_every_resource() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let campaign = app.create_campaign(setup.phone(json!({}))).await;
    let id = campaign["id"].as_i64().expect("id");
    let other = app.new_key("globex").await;

    for path in [format!("/campaigns/{id}"), format!("/agents/{}", setup.agent), format!("/integrations/{}", setup.phone)] {
        let (status, body) = app.call_with_key(Method::GET, &path, None, Some(&other)).await;
        assert_error(status, &body, 404, "NOT_FOUND", None);
    }
    let (status, body) = app.call_with_key(Method::PATCH, &format!("/campaigns/{id}"), Some(json!({ "name": "x" })), Some(&other)).await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
    let (status, body) = app.call_with_key(Method::POST, &format!("/campaigns/{id}/activate"), None, Some(&other)).await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
    let (status, body) = app.call_with_key(Method::GET, "/campaigns", None, Some(&other)).await;
    assert_eq!((status, body["total_count"].clone()), (StatusCode::OK, json!(0)));
    let (status, body) = app.call_with_key(Method::GET, "/agents", None, Some(&other)).await;
    assert_eq!((status, body["agents"].clone()), (StatusCode::OK, json!([])));

    // Another organization cannot build a campaign on our agent or integration.
    let body = setup.phone(json!({}));
    let (status, reply) = app.call_with_key(Method::POST, "/campaigns", Some(body), Some(&other)).await;
    assert_error(status, &reply, 404, "AGENT_NOT_FOUND", Some("agent_id"));

    // Nothing changed for the owner.
    let (status, body) = app.get(&format!("/campaigns/{id}")).await;
    assert_eq!((status, body["campaign"]["name"].clone()), (StatusCode::OK, campaign["name"].clone()));
}
