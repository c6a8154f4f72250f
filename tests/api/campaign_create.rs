//! POST /campaigns (§2.1): the seed examples, defaults, and every validation rule with an
//! accepted edge value and a rejected one.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_matches_altur};

#[tokio::test]
async fn seed_examples_create_and_retrieve() {
    let app = TestApp::spawn().await;
    let setup = app.setup().await;
    // Altur's phone example, ids replaced by ours.
    let phone = json!({
        "name": "Q2 Reactivation",
        "agent_id": setup.agent,
        "integration_id": setup.phone,
        "integration_type": "phone_call",
        "timezone": "America/Mexico_City",
        "first_message": "Hi, am I speaking with {name}?",
        "cycles": { "enabled": true, "mode": "cooldown", "max_iterations": 3, "cooldown_minutes": 30, "filter_statuses": ["converted"] }
    });
    let created = app.create_campaign(phone).await;
    assert_eq!(created["status"], "pending");
    assert_eq!(created["archived"], false);
    assert_eq!(created["integration"], json!({ "id": setup.phone, "type": "phone_call" }));
    assert_eq!(created["agent"], json!({ "id": setup.agent, "name": "Sales bot" }));
    assert_eq!(created["created_at"], "2026-06-08T18:00:00Z");
    assert_eq!(created["retries"], 1);
    assert_eq!(created["message_limit"], 250);
    assert_eq!(created["concurrency_limit"], 10);
    assert_eq!(created["template"], Value::Null);
    assert_eq!(created["scheduling"]["mon"], json!({ "startTime": "09:00", "stopTime": "18:00", "active": true }));
    assert_eq!(created["scheduling"]["sun"]["active"], false);
    assert_eq!(
        created["cycles"],
        json!({ "enabled": true, "mode": "cooldown", "max_iterations": 3, "cooldown_minutes": 30, "filter_statuses": ["converted"],
                "schedule": null, "schedule_start_date": null, "schedule_end_date": null,
                "current_iteration": 0, "last_iteration_at": null, "next_cycle_at": null })
    );
    let (status, fetched) = app.get(&format!("/campaigns/{}", created["id"])).await;
    assert_eq!(status, StatusCode::OK);
    assert_matches_altur("CampaignDetailResponse", &fetched);
    assert_eq!(fetched["campaign"], created);

    // Altur's WhatsApp example.
    let whatsapp = json!({
        "name": "Promo June",
        "agent_id": setup.agent,
        "integration_id": setup.whatsapp,
        "integration_type": "whatsapp",
        "template": "promo_june_v1"
    });
    let created = app.create_campaign(whatsapp).await;
    assert_eq!(created["template"], "promo_june_v1");
    assert_eq!(created["concurrency_limit"], Value::Null);
    assert_eq!(created["first_message"], Value::Null);
    assert_eq!(created["cycles"]["enabled"], false);
    assert_eq!(created["timezone"], "America/Mexico_City");
    let (status, fetched) = app.get(&format!("/campaigns/{}", created["id"])).await;
    assert_eq!(status, StatusCode::OK);
    assert_matches_altur("CampaignDetailResponse", &fetched);
    assert_eq!(fetched["campaign"], created);
}
