//! The OpenAPI document generated from the code: served publicly and snapshot-tested, so an
//! accidental change of the contract shows up as a diff.

use reqwest::StatusCode;
use serde_json::Value;

use super::helpers::TestApp;

#[tokio::test]
async fn openapi_document_is_served_without_a_key_and_matches_the_snapshot() {
    let Some(app) = TestApp::spawn().await else { return };
    let response = app.client.get(app.url("/api/v1.0/openapi.json")).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.expect("json");
    assert_eq!(document["servers"][0]["url"], "/api/v1.0");
    let paths = document["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/campaigns", &["get", "post"][..]),
        ("/campaigns/{id}", &["get", "patch"]),
        ("/campaigns/{id}/{action}", &["post"]),
        ("/agents", &["get", "post"]),
        ("/agents/{id}", &["get"]),
        ("/integrations", &["get", "post"]),
        ("/integrations/{id}", &["get"]),
    ] {
        for method in methods {
            assert!(paths.get(path).and_then(|p| p.get(*method)).is_some(), "{method} {path} is not documented");
        }
    }
    // One snapshot for every backend (the document does not depend on the database).
    insta::with_settings!({ prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!("openapi", document);
    });
}
