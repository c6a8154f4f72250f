//! Per-key rate limit (§6) through HTTP, with a controlled clock.

use std::num::NonZeroU32;

use jiff::SignedDuration;
use outbound::api::ApiSettings;
use reqwest::StatusCode;

use super::helpers::{TestApp, assert_error};

async fn get(app: &TestApp, key: &str) -> reqwest::Response {
    app.client.get(app.url("/api/v1.0/agents")).header("Authorization", format!("api-key {key}")).send().await.expect("sent")
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

#[tokio::test]
async fn admits_the_burst_then_the_steady_rate_with_standard_headers() {
    let Some(app) = TestApp::spawn_with(ApiSettings { rate_limit_rps: NonZeroU32::new(12), ..ApiSettings::default() }).await else {
        return;
    };
    for remaining in (0..12).rev() {
        let response = get(&app, &app.key).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "ratelimit-policy").as_deref(), Some("\"default\";q=12;w=1"));
        assert_eq!(header(&response, "ratelimit"), Some(format!("\"default\";r={remaining};t=1")));
    }
    let limited = get(&app, &app.key).await;
    assert_eq!(header(&limited, "retry-after").as_deref(), Some("1"));
    assert_eq!(header(&limited, "ratelimit").as_deref(), Some("\"default\";r=0;t=1"));
    let status = limited.status();
    assert_error(status, &limited.json().await.expect("json"), 429, "RATE_LIMITED", None);

    // Another key is not affected.
    let other = app.new_key("acme").await;
    assert_eq!(get(&app, &other).await.status(), StatusCode::OK);

    // One request comes back every 1/12 s, and no more.
    app.clock.advance(SignedDuration::from_millis(84));
    assert_eq!(get(&app, &app.key).await.status(), StatusCode::OK);
    assert_eq!(get(&app, &app.key).await.status(), StatusCode::TOO_MANY_REQUESTS);
    app.clock.advance(SignedDuration::from_secs(1));
    for _ in 0..12 {
        assert_eq!(get(&app, &app.key).await.status(), StatusCode::OK);
    }
    assert_eq!(get(&app, &app.key).await.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_limit_is_checked_before_the_body_is_read_and_only_for_authenticated_requests() {
    let Some(app) = TestApp::spawn_with(ApiSettings { rate_limit_rps: NonZeroU32::new(1), ..ApiSettings::default() }).await else { return };
    assert_eq!(get(&app, &app.key).await.status(), StatusCode::OK);
    // Over the limit, even a malformed body gets 429, not 400.
    let response = app
        .client
        .post(app.url("/api/v1.0/campaigns"))
        .header("Authorization", format!("api-key {}", app.key))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);

    // Unauthenticated requests carry no rate-limit fields; public routes neither.
    let anonymous = app.client.get(app.url("/api/v1.0/agents")).send().await.expect("sent");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&anonymous, "ratelimit").is_none());
    let document = app.client.get(app.url("/api/v1.0/openapi.json")).send().await.expect("sent");
    assert_eq!(document.status(), StatusCode::OK);
    assert!(header(&document, "ratelimit").is_none());
}
