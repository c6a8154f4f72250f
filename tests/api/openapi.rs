//! The OpenAPI document generated from the code: served publicly and snapshot-tested, so an
//! accidental change of the contract shows up as a diff.

use reqwest::StatusCode;
use serde_json::{Value, json};

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

/// §0.3: every operation documents every status it can answer, and the bounds the server
/// enforces on the parameters every endpoint shares.
#[tokio::test]
async fn every_operation_documents_its_answers_and_shared_bounds() {
    let Some(app) = TestApp::spawn().await else { return };
    let document: Value = app.client.get(app.url("/api/v1.0/openapi.json")).send().await.expect("sent").json().await.expect("json");
    let paths = document["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            let answers = operation["responses"].as_object().expect("responses");
            let keyed = path != "/integrations/{id}/events";
            let mut expected = vec!["400", "405", "500"];
            if keyed {
                expected.extend(["401", "429"]);
            }
            if operation.get("requestBody").is_some() {
                expected.extend(["413", "415"]);
            }
            if keyed && method == "post" {
                expected.extend(["409", "422"]);
            }
            for status in expected {
                assert!(answers.contains_key(status), "{method} {path} does not document {status}");
            }
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let schema = &parameter["schema"];
                match (parameter["in"].as_str(), parameter["name"].as_str()) {
                    (Some("path"), Some("id" | "contact_id")) if schema["type"] == "integer" => assert_eq!(schema["minimum"], 1),
                    (Some("query"), Some("pageSize")) => assert_eq!((&schema["minimum"], &schema["maximum"]), (&json!(1), &json!(100))),
                    (Some("query"), Some("pageIndex")) => assert_eq!((&schema["minimum"], &schema["maximum"]), (&json!(0), &json!(25_000))),
                    (Some("header"), Some("Idempotency-Key")) => assert_eq!(schema["maxLength"], 255),
                    _ => {}
                }
            }
        }
    }
    assert_eq!(
        document["components"]["schemas"]["CampaignCreate"]["oneOf"][0]["required"],
        json!(["name", "agent_id", "integration_id", "integration_type"])
    );
    assert_eq!(document["components"]["schemas"]["ContactBatchInput"]["properties"]["contacts"]["maxItems"], 1000);
}
