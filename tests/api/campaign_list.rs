//! GET /campaigns (§2.4): newest first, filters, cursor paging both ways, bad parameters.

use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::helpers::{TestApp, assert_error, assert_matches_altur};

async fn list(app: &TestApp, query: &str) -> Value {
    let (status, body) = app.get(&format!("/campaigns{query}")).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    assert_matches_altur("CampaignsResponse", &body);
    body
}

fn ids(body: &Value) -> Vec<i64> {
    body["campaigns"].as_array().expect("campaigns").iter().map(|c| c["id"].as_i64().expect("id")).collect()
}

#[tokio::test]
async fn cursor_paging_covers_every_campaign_once_in_both_directions() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let mut created = Vec::new();
    for i in 0..7 {
        // Two campaigns share each second, so the id breaks ties.
        if i % 2 == 0 {
            app.clock.advance(SignedDuration::from_secs(1));
        }
        created.push(app.create_campaign(setup.phone(json!({ "name": format!("c{i}") }))).await["id"].as_i64().expect("id"));
    }
    let newest_first: Vec<i64> = created.iter().rev().copied().collect();

    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut query = "?pageSize=3".to_owned();
    loop {
        let page = list(&app, &query).await;
        assert_eq!(page["total_count"], 7);
        seen.extend(ids(&page));
        pages.push(page.clone());
        if page["pagination"]["has_next"] == json!(false) {
            assert_eq!(page["pagination"]["next_cursor"], Value::Null);
            break;
        }
        query = format!("?pageSize=3&cursor={}", page["pagination"]["next_cursor"].as_str().expect("next cursor"));
    }
    assert_eq!(seen, newest_first);
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[0]["pagination"]["has_previous"], false);
    assert_eq!(pages[0]["pagination"]["previous_cursor"], Value::Null);
    assert_eq!(pages[2]["pagination"]["has_previous"], true);

    // Walk back from the last page to the first.
    let back = list(&app, &format!("?pageSize=3&cursor={}", pages[2]["pagination"]["previous_cursor"].as_str().expect("prev"))).await;
    assert_eq!(ids(&back), ids(&pages[1]));
    assert_eq!(back["pagination"]["has_next"], true);
    let first = list(&app, &format!("?pageSize=3&cursor={}", back["pagination"]["previous_cursor"].as_str().expect("prev"))).await;
    assert_eq!(ids(&first), ids(&pages[0]));
    assert_eq!(first["pagination"]["has_previous"], false);

    // pageSize edges.
    assert_eq!(ids(&list(&app, "?pageSize=1").await).len(), 1);
    assert_eq!(ids(&list(&app, "?pageSize=100").await).len(), 7);
    assert_eq!(ids(&list(&app, "").await).len(), 7);
}

#[tokio::test]
async fn filters_select_exactly_the_matching_campaigns() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let other_agent = app.create_agent("Other").await;
    let other_phone = app.create_integration(&other_agent, "phone_call").await;

    let phone = app.create_campaign(setup.phone(json!({}))).await["id"].as_i64().expect("id");
    app.clock.advance(SignedDuration::from_hours(1));
    let whatsapp = app.create_campaign(setup.whatsapp(json!({}))).await["id"].as_i64().expect("id");
    app.clock.advance(SignedDuration::from_hours(1));
    let other = app
        .create_campaign(json!({ "name": "o", "agent_id": other_agent, "integration_id": other_phone, "integration_type": "phone_call" }))
        .await["id"]
        .as_i64()
        .expect("id");
    app.clock.advance(SignedDuration::from_hours(1));
    let (status, _) = app.post(&format!("/campaigns/{phone}/activate"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let archived = app.create_campaign(setup.phone(json!({ "name": "old" }))).await["id"].as_i64().expect("id");
    let (status, _) = app.post(&format!("/campaigns/{archived}/archive"), json!({})).await;
    assert_eq!(status, StatusCode::OK);

    assert_eq!(ids(&list(&app, "").await), vec![other, whatsapp, phone], "archived left out by default");
    assert_eq!(ids(&list(&app, "?archived=true").await), vec![archived, other, whatsapp, phone]);
    assert_eq!(ids(&list(&app, "?archived=false").await), vec![other, whatsapp, phone]);
    // Generated clients send booleans as `True`, `TRUE` or `1` (§0.2).
    for yes in ["True", "TRUE", "1"] {
        assert_eq!(ids(&list(&app, &format!("?archived={yes}")).await), vec![archived, other, whatsapp, phone], "{yes}");
    }
    for no in ["False", "fALSE", "0"] {
        assert_eq!(ids(&list(&app, &format!("?archived={no}")).await), vec![other, whatsapp, phone], "{no}");
    }
    assert_eq!(ids(&list(&app, &format!("?agentId={other_agent}")).await), vec![other]);
    assert_eq!(ids(&list(&app, "?status=active").await), vec![phone]);
    assert_eq!(ids(&list(&app, "?status=pending").await), vec![other, whatsapp]);
    assert_eq!(ids(&list(&app, "?integration=whatsapp").await), vec![whatsapp]);
    assert_eq!(ids(&list(&app, "?integration=phone_call").await), vec![other, phone]);
    // created_at: 18:00, 19:00, 20:00 (inclusive bounds), and the startDate/endDate aliases.
    assert_eq!(ids(&list(&app, "?createdAfter=2026-06-08T19:00:00Z").await), vec![other, whatsapp]);
    assert_eq!(ids(&list(&app, "?createdBefore=2026-06-08T19:00:00Z").await), vec![whatsapp, phone]);
    assert_eq!(ids(&list(&app, "?startDate=2026-06-08T19:00:01Z").await), vec![other]);
    assert_eq!(ids(&list(&app, "?endDate=2026-06-08T17:59:59Z").await), Vec::<i64>::new());
    // An alias beside its name: both bounds hold.
    assert_eq!(ids(&list(&app, "?createdAfter=2026-06-08T18:30:00Z&startDate=2026-06-08T19:00:01Z").await), vec![other]);
    assert_eq!(ids(&list(&app, "?createdBefore=2026-06-08T20:00:00Z&endDate=2026-06-08T18:00:00Z").await), vec![phone]);
    assert_eq!(ids(&list(&app, "?createdAfter=2026-06-08T20:00:00%2B01:00").await), vec![other, whatsapp], "offsets are honoured");
    assert_eq!(ids(&list(&app, "?createdAfter=2026-06-09").await), Vec::<i64>::new());
    // A bare date is the start of that day in UTC (§0.2).
    assert_eq!(ids(&list(&app, "?createdAfter=2026-06-08").await), vec![other, whatsapp, phone]);
    assert_eq!(ids(&list(&app, "?createdBefore=2026-06-08").await), Vec::<i64>::new());
    // started_at: only the activated campaign has one (21:00); ended_at: none yet.
    assert_eq!(ids(&list(&app, "?startedAfter=2026-06-08T21:00:00Z").await), vec![phone]);
    assert_eq!(ids(&list(&app, "?startedBefore=2026-06-08T20:59:59Z").await), Vec::<i64>::new());
    assert_eq!(ids(&list(&app, "?endedBefore=2030-01-01T00:00:00Z").await), Vec::<i64>::new());
    assert_eq!(ids(&list(&app, "?endedAfter=2020-01-01T00:00:00Z").await), Vec::<i64>::new());
    let page = list(&app, "?status=pending&integration=phone_call").await;
    assert_eq!((ids(&page), page["total_count"].clone()), (vec![other], json!(1)));

    let item = &list(&app, &format!("?agentId={other_agent}")).await["campaigns"][0];
    assert_eq!(item["cycle_enabled"], false);
    assert_eq!(item["cycle_filter_tags"], json!([]));
    assert_eq!(item["integration"], json!({ "id": other_phone, "type": "phone_call" }));
}

#[tokio::test]
async fn bad_query_parameters_are_400() {
    let Some(app) = TestApp::spawn().await else { return };
    let cases = [
        ("?pageSize=0", "pageSize"),
        ("?pageSize=101", "pageSize"),
        ("?pageSize=ten", "pageSize"),
        ("?status=running", "status"),
        ("?integration=sms", "integration"),
        ("?agentId=42", "agentId"),
        ("?archived=yes", "archived"),
        ("?archived=2", "archived"),
        ("?archived=", "archived"),
        ("?createdAfter=yesterday", "createdAfter"),
        ("?createdBefore=2026-06-08T18:00:00", "createdBefore"),
        ("?startedAfter=2026-13-01", "startedAfter"),
        ("?cursor=abc", "cursor"),
        ("?page_size=10", "page_size"),
        ("?status=active&status=pending", "status"),
    ];
    for (query, field) in cases {
        let (status, body) = app.get(&format!("/campaigns{query}")).await;
        assert_error(status, &body, 400, "INVALID_REQUEST", Some(field));
    }
}

#[tokio::test]
async fn a_tampered_cursor_is_refused() {
    use base64::Engine;
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    for _ in 0..3 {
        app.create_campaign(setup.phone(json!({}))).await;
    }
    let page = list(&app, "?pageSize=1").await;
    let cursor = page["pagination"]["next_cursor"].as_str().expect("cursor");
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let text = String::from_utf8(engine.decode(cursor).expect("cursor is base64url")).expect("utf8");
    let mut parts: Vec<String> = text.split('.').map(str::to_owned).collect();
    parts[2] = (parts[2].parse::<i64>().expect("id") + 1).to_string();
    let tampered = engine.encode(parts.join("."));
    let (status, body) = app.get(&format!("/campaigns?cursor={tampered}")).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("cursor"));
    // The untouched cursor works.
    assert_eq!(ids(&list(&app, &format!("?pageSize=1&cursor={cursor}")).await).len(), 1);
}
