//! The engine through HTTP with a controlled clock: campaigns run to the end.

use jiff::SignedDuration;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_matches_altur};

/// `count` valid Mexican mobile numbers.
pub fn numbers(count: usize) -> Vec<Value> {
    (0..count).map(|i| json!({ "contact": format!("+5255{:08}", 20_000_000 + i), "name": format!("Contact {i}") })).collect()
}

#[tokio::test]
async fn a_phone_campaign_runs_to_finished_with_exact_analytics() {
    let app = TestApp::spawn().await;
    let setup = app.setup().await;
    let campaign = app.create_campaign(setup.phone(json!({ "concurrency_limit": 5, "message_limit": 10000 }))).await;
    let id = campaign["id"].as_i64().expect("id");
    let (status, body) = app.post(&format!("/campaigns/{id}/contacts"), json!({ "contacts": numbers(40) })).await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = app.post(&format!("/campaigns/{id}/activate"), json!({})).await;
    assert_eq!(status, 200);
    for _ in 0..10 {
        app.settle().await;
        app.clock.advance(SignedDuration::from_mins(31));
    }
    let (status, body) = app.get(&format!("/campaigns/{id}")).await;
    assert_eq!(status, 200);
    assert_matches_altur("CampaignDetailResponse", &body);
    let campaign = &body["campaign"];
    assert_eq!(campaign["status"], "finished", "{campaign:#}");
    let analytics = &campaign["analytics"];
    assert_eq!(analytics["contacts"], 40);
    let (status, calls) = app.get(&format!("/campaigns/{id}/calls?pageSize=100")).await;
    assert_eq!(status, 200, "{calls}");
    assert_matches_altur("CampaignCallsResponse", &calls);
    assert_eq!(calls["total_count"], analytics["calls"], "{analytics:#}");
    println!("{analytics:#}");
}
