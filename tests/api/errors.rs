//! The error envelope (§0.1) on malformed input and on errors produced outside handlers.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::helpers::{TestApp, assert_error};

async fn raw_post(app: &TestApp, path: &str, content_type: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
    let mut request =
        app.client.post(app.url(&format!("/api/v1.0{path}"))).header("Authorization", format!("api-key {}", app.key)).body(body);
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    let response = request.send().await.expect("sent");
    let status = response.status();
    (status, response.json().await.expect("JSON body"))
}

#[tokio::test]
async fn malformed_json_missing_content_type_and_unknown_fields() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let (status, body) = raw_post(&app, "/campaigns", Some("application/json"), b"{\"name\": ".to_vec()).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", None);
    assert!(body["message"].as_str().expect("message").contains("malformed JSON"), "{body}");

    let valid = serde_json::to_vec(&setup.phone(json!({}))).expect("json");
    let (status, body) = raw_post(&app, "/campaigns", None, valid.clone()).await;
    assert_error(status, &body, 415, "UNSUPPORTED_MEDIA_TYPE", None);
    let (status, body) = raw_post(&app, "/campaigns", Some("text/plain"), valid.clone()).await;
    assert_error(status, &body, 415, "UNSUPPORTED_MEDIA_TYPE", None);
    // Parameters on the media type are fine.
    let (status, _) = raw_post(&app, "/campaigns", Some("application/json; charset=utf-8"), valid).await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, body) = app.post("/campaigns", setup.phone(json!({ "nickname": "x" }))).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("nickname"));
    let (status, body) = app.post("/campaigns", setup.phone(json!({ "cycles": { "enabled": true, "colour": "red" } }))).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("cycles.colour"));
    let (status, body) = app
        .post("/campaigns", setup.phone(json!({ "scheduling": { "mon": { "startTime": "09:00", "stopTime": "18:00", "open": true } } })))
        .await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("scheduling.mon.open"));
    let (status, body) = app.post("/campaigns", setup.phone(json!({ "retries": "two" }))).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("retries"));
    let (status, body) = app.post("/campaigns", json!([1, 2])).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", None);
    // Trailing garbage after the object.
    let (status, body) = raw_post(&app, "/campaigns", Some("application/json"), b"{} {}".to_vec()).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", None);

    let (status, body) = app.get("/campaigns").await;
    assert_eq!((status, body["total_count"].clone()), (StatusCode::OK, json!(1)), "only the valid request created a campaign");
}

#[tokio::test]
async fn body_over_five_mib_is_413_and_just_under_is_read() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let limit = 5 * 1024 * 1024;
    let mut under = serde_json::to_string(&setup.phone(json!({ "description": "" }))).expect("json");
    let padding = limit - under.len();
    // Whitespace pads the body to exactly the limit; it is still valid JSON.
    under.push_str(&" ".repeat(padding));
    assert_eq!(under.len(), limit);
    let (status, body) = raw_post(&app, "/campaigns", Some("application/json"), under.into_bytes()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let over = vec![b' '; limit + 1];
    let (status, body) = raw_post(&app, "/campaigns", Some("application/json"), over).await;
    assert_error(status, &body, 413, "PAYLOAD_TOO_LARGE", None);
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_bad_ids_get_the_envelope() {
    let Some(app) = TestApp::spawn().await else { return };
    let response = app.client.get(app.url("/nowhere")).send().await.expect("sent");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_error(status, &body, 404, "NOT_FOUND", None);

    // A 405 lists the methods of that path in `Allow` (§0.3), with or without an API key.
    for (method, path, allow) in [
        (reqwest::Method::DELETE, "/api/v1.0/campaigns", "GET,HEAD,POST"),
        (reqwest::Method::PUT, "/api/v1.0/campaigns/7", "GET,HEAD,PATCH"),
        (reqwest::Method::GET, "/api/v1.0/campaigns/7/activate", "POST"),
        (reqwest::Method::PATCH, "/api/v1.0/campaigns/7/contacts", "GET,HEAD,POST"),
        (reqwest::Method::POST, "/api/v1.0/campaigns/7/contacts/9", "GET,HEAD,DELETE"),
        (reqwest::Method::PUT, "/api/v1.0/integrations/iph_x/events", "GET,HEAD,POST"),
        (reqwest::Method::POST, "/api/v1.0/openapi.json", "GET,HEAD"),
        (reqwest::Method::DELETE, "/healthz", "GET,HEAD"),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .header("Authorization", format!("api-key {}", app.key))
            .send()
            .await
            .expect("sent");
        let status = response.status();
        assert_eq!(response.headers().get("allow").and_then(|v| v.to_str().ok()), Some(allow), "{method} {path}");
        let body: Value = response.json().await.expect("json");
        assert_error(status, &body, 405, "METHOD_NOT_ALLOWED", None);
        assert!(body["message"].as_str().is_some_and(|m| m.ends_with(allow)), "{body}");
    }

    let (status, body) = app.get("/campaigns/abc").await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("id"));
    let (status, body) = app.get("/campaigns/0").await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("id"));
    let (status, body) = app.get("/campaigns/1").await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_ops_endpoints_answer() {
    let Some(app) = TestApp::spawn().await else { return };
    let response = app.client.get(app.url("/healthz")).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("x-request-id").is_some_and(|v| !v.is_empty()));
    let response = app.client.get(app.url("/readyz")).header("x-request-id", "trace-me-42").send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("trace-me-42"));
    let _ = app.get("/campaigns").await;
    let metrics = app.client.get(app.url("/metrics")).send().await.expect("sent").text().await.expect("text");
    assert!(metrics.contains("outbound_http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/api/v1.0/campaigns\""), "{metrics}");
}

/// U+0000 cannot be stored in PostgreSQL text: text fields refuse it alike on every backend (400
/// naming the field); JSON kept as JSON (`extracted_data`, tags) takes it and gives it back. An id
/// in a path that cannot be one is not looked up.
#[tokio::test]
async fn the_nul_character_is_refused_in_text_kept_in_json_and_never_breaks_the_database() {
    let Some(app) = TestApp::spawn().await else { return };
    let (status, body) = app.post("/agents", json!({ "name": "Sales\u{0}bot" })).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("name"));
    let setup = app.setup().await;
    let (status, body) = app.post("/campaigns", setup.phone(json!({ "description": "a\u{0}" }))).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("description"));
    let campaign = app.create_campaign(setup.phone(json!({}))).await;
    let id = campaign["id"].as_i64().expect("id");
    let (status, body) =
        app.post(&format!("/campaigns/{id}/contacts"), json!({ "contacts": [{ "contact": "+14155552671", "name": "A\u{0}" }] })).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("contacts[0].name"));

    let kept = json!({ "contact": "+14155552671", "tags": ["a\u{0}"], "extracted_data": { "k\u{0}": "v\u{0}" } });
    let (status, body) = app.post(&format!("/campaigns/{id}/contacts"), json!({ "contacts": [kept] })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let contact_id = body["results"][0]["id"].as_str().expect("id");
    let (_, stored) = app.get(&format!("/campaigns/{id}/contacts/{contact_id}")).await;
    assert_eq!((&stored["contact"]["tags"], &stored["contact"]["extracted_data"]), (&kept["tags"], &kept["extracted_data"]));

    let (status, body) = app.get("/integrations/%00").await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
    let (status, body) = app.post_event_raw("%00", b"{}", Some("c2ln"), Some("application/json")).await;
    assert_error(status, &body, 401, "UNAUTHORIZED", None);
}

/// Sends `request` as raw bytes on a new connection; returns the whole answer.
async fn raw_exchange(app: &TestApp, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    stream.write_all(request).await.expect("send");
    let mut answer = Vec::new();
    // A guard, not a wait: the server closes at once after these answers.
    tokio::time::timeout(std::time::Duration::from_secs(60), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .expect("read until the server closes");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Requests the HTTP parser refuses before any route (§0.3: a raw non-UTF-8 byte in a query
/// string) get the envelope too, with the parser's status; the connection is then closed.
#[tokio::test]
async fn requests_the_http_parser_refuses_get_the_envelope() {
    let Some(app) = TestApp::spawn().await else { return };
    let key = app.key.clone();
    let cases: [(Vec<u8>, &str, &str); 2] = [
        (
            [
                &b"GET /api/v1.0/campaigns?status="[..],
                &[0xFF],
                format!(" HTTP/1.1\r\nHost: x\r\nAuthorization: api-key {key}\r\n\r\n").as_bytes(),
            ]
            .concat(),
            "400",
            "INVALID_REQUEST",
        ),
        (format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(512 * 1024)).into_bytes(), "431", "HEADERS_TOO_LARGE"),
    ];
    for (request, status, key) in cases {
        let answer = raw_exchange(&app, &request).await;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("an answer: {answer:?}"));
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let body: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("an envelope: {body:?}"));
        assert_error(StatusCode::from_bytes(status.as_bytes()).expect("status"), &body, status.parse().expect("code"), key, None);
    }
    // Raw UTF-8 (not valid in a URI either, but taken by the parser) reaches the route.
    let raw_utf8 = [
        &b"GET /api/v1.0/campaigns?archived=tr"[..],
        &[0xC3, 0xA9],
        format!("e HTTP/1.1\r\nHost: x\r\nAuthorization: api-key {}\r\nConnection: close\r\n\r\n", app.key).as_bytes(),
    ]
    .concat();
    let answer = raw_exchange(&app, &raw_utf8).await;
    assert!(answer.starts_with("HTTP/1.1 400 ") && answer.contains("\"field\":\"archived\""), "{answer}");
    // The same query percent-encoded reaches the route, which names the parameter.
    let (status, body) = app.get("/campaigns?status=%FF").await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("status"));
    // A routed 400 keeps its own answer on a kept-alive connection.
    let answer = raw_exchange(
        &app,
        format!("GET /api/v1.0/campaigns/abc HTTP/1.1\r\nHost: x\r\nAuthorization: api-key {}\r\nConnection: close\r\n\r\n", app.key)
            .as_bytes(),
    )
    .await;
    assert!(answer.contains("\"field\":\"id\""), "{answer}");
}
