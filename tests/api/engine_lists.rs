//! `GET /campaigns/{id}/calls` (§4) and `/messages` (ext): status, answeredBy and date filters,
//! paging, bad query values, the other channel's list, and another organization's campaign.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::engine::{Harness, Provider, accepting_provider, numbers, numbers_from, retry_settings};
use super::helpers::assert_error;

/// The contact ids of a list's items, in order.
fn contact_ids(list: &Value, key: &str) -> Vec<i64> {
    list[key].as_array().expect("items").iter().map(|c| c["contact"]["id"].as_i64().expect("contact id")).collect()
}

#[tokio::test]
async fn calls_are_filtered_by_status_answered_by_and_creation_time_and_paged() {
    let Some(h) = Harness::new(retry_settings(30, 0), "phone_call", Provider::Webhook(accepting_provider().await)).await else { return };
    let id = h.campaign(json!({ "retries": 0 })).await;
    let a = h.add(id, numbers(4)).await;
    h.action(id, "activate").await;
    assert_eq!(h.claims().await, 4); // created 2026-06-08T18:00:00Z
    let b = h.add(id, numbers_from(4, 3)).await;
    h.finish(id, a[0], "ended", json!({ "answered_by": "human" })).await;
    h.finish(id, a[1], "ended", json!({ "answered_by": "machine" })).await;
    h.finish(id, a[2], "busy", json!({})).await;
    h.finish(id, a[3], "no-answer", json!({})).await;
    h.clock.set("2026-06-09T01:00:00Z".parse().expect("ts"));
    assert_eq!(h.claims().await, 3); // created 2026-06-09T01:00:00Z
    h.finish(id, b[0], "ended", json!({ "answered_by": "human" })).await;
    h.finish(id, b[1], "ringing", json!({})).await;

    let all = h.calls(id, "").await;
    assert_eq!(all["total_count"], 7);
    assert_eq!(contact_ids(&all, "calls"), [a[0], a[1], a[2], a[3], b[0], b[1], b[2]], "oldest first");
    assert_eq!(
        all["pagination"],
        json!({ "page_index": 0, "page_size": 50, "has_next": false, "has_previous": false, "next_page": null, "previous_page": null })
    );
    for (query, expected) in [
        ("?status=ended", vec![a[0], a[1], b[0]]),
        ("?status=busy", vec![a[2]]),
        ("?status=no-answer", vec![a[3]]),
        ("?status=failed", vec![]),
        ("?status=in-progress", vec![b[1], b[2]]),
        ("?answeredBy=human", vec![a[0], b[0]]),
        ("?answeredBy=machine", vec![a[1]]),
        ("?answeredBy=unknown", vec![]),
        ("?status=ended&answeredBy=machine", vec![a[1]]),
        ("?status=busy&answeredBy=human", vec![]),
        ("?startDate=2026-06-09", vec![b[0], b[1], b[2]]),
        ("?startDate=2026-06-09T01:00:00Z", vec![b[0], b[1], b[2]]),
        ("?startDate=2026-06-09T01:00:01Z", vec![]),
        ("?endDate=2026-06-08T18:00:00Z", vec![a[0], a[1], a[2], a[3]]),
        ("?endDate=2026-06-08T17:59:59Z", vec![]),
        ("?startDate=2026-06-08T18:00:00Z&endDate=2026-06-09T00:59:59Z", vec![a[0], a[1], a[2], a[3]]),
        ("?startDate=2026-06-08&status=ended", vec![a[0], a[1], b[0]]),
    ] {
        let list = h.calls(id, query).await;
        assert_eq!(contact_ids(&list, "calls"), expected, "{query}");
        assert_eq!(list["total_count"], expected.len(), "{query}");
    }

    // Pages of 3: 3 + 3 + 1, then an empty page past the end.
    let mut paged = Vec::new();
    for (page, size, has_next) in [(0, 3, true), (1, 3, true), (2, 1, false), (3, 0, false)] {
        let list = h.calls(id, &format!("?pageSize=3&pageIndex={page}")).await;
        assert_eq!((list["total_count"].clone(), list["calls"].as_array().map(Vec::len)), (json!(7), Some(size)), "page {page}");
        let p = &list["pagination"];
        assert_eq!((&p["page_index"], &p["page_size"], &p["has_next"]), (&json!(page), &json!(3), &json!(has_next)), "page {page}");
        assert_eq!(p["has_previous"], page > 0);
        assert_eq!(p["next_page"], if has_next { json!(page + 1) } else { json!(null) });
        assert_eq!(p["previous_page"], if page > 0 { json!(page - 1) } else { json!(null) });
        paged.extend(contact_ids(&list, "calls"));
    }
    assert_eq!(paged, contact_ids(&all, "calls"));
    assert_eq!(h.calls(id, "?pageSize=100&pageIndex=25000").await["calls"], json!([]));
    assert_eq!(h.calls(id, "?status=ended&pageSize=1&pageIndex=2").await["calls"][0]["contact"]["id"], b[0]);

    for (query, field) in [
        ("status=queued", "status"),
        ("status=ringing", "status"),
        ("status=ENDED", "status"),
        ("status=", "status"),
        ("answeredBy=robot", "answeredBy"),
        ("startDate=yesterday", "startDate"),
        ("endDate=2026-13-01", "endDate"),
        ("pageSize=0", "pageSize"),
        ("pageSize=101", "pageSize"),
        ("pageSize=abc", "pageSize"),
        ("pageIndex=25001", "pageIndex"),
        ("pageIndex=-1", "pageIndex"),
    ] {
        let (status, body) = h.get(&format!("/campaigns/{id}/calls?{query}")).await;
        assert_error(status, &body, 400, "INVALID_REQUEST", Some(field));
    }
    let (status, body) = h.get(&format!("/campaigns/{id}/calls?sort=asc")).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("INVALID_REQUEST")), "unknown parameter: {body}");

    // A phone campaign has no messages; another organization sees no campaign.
    let messages = h.messages(id, "").await;
    assert_eq!((&messages["total_count"], &messages["messages"]), (&json!(0), &json!([])));
    let stranger = h.new_key("globex").await;
    for route in ["calls", "messages"] {
        let (status, body) = h.call_with_key(reqwest::Method::GET, &format!("/campaigns/{id}/{route}"), None, Some(&stranger)).await;
        assert_error(status, &body, 404, "NOT_FOUND", None);
        let (status, body) = h.get(&format!("/campaigns/999999/{route}")).await;
        assert_error(status, &body, 404, "NOT_FOUND", None);
    }
}

#[tokio::test]
async fn messages_are_filtered_by_status_and_paged() {
    let Some(h) = Harness::new(retry_settings(30, 0), "whatsapp", Provider::Webhook(accepting_provider().await)).await else { return };
    let (id, m) = h.start(json!({}), 6).await;
    assert_eq!(h.claims().await, 6);
    h.finish(id, m[1], "sent", json!({})).await;
    h.finish(id, m[2], "delivered", json!({})).await;
    h.finish(id, m[3], "read", json!({})).await;
    h.finish(id, m[4], "accepted", json!({})).await;
    h.finish(id, m[5], "failed", json!({})).await;

    let all = h.messages(id, "").await;
    assert_eq!(all["total_count"], 6);
    let first = &all["messages"][0];
    assert_eq!(
        (&first["status"], &first["template"], &first["created_at"]),
        (&json!("queued"), &json!("promo_june_v1"), &json!("2026-06-08T18:00:00Z"))
    );
    assert_eq!(first["contact"]["id"], m[0]);
    for (query, expected) in [
        ("?status=queued", vec![m[0]]),
        ("?status=sent", vec![m[1]]),
        ("?status=delivered", vec![m[2]]),
        ("?status=read", vec![m[3], m[4]]),
        ("?status=failed", vec![m[5]]),
        ("?startDate=2026-06-08T18:00:01Z", vec![]),
    ] {
        let list = h.messages(id, query).await;
        assert_eq!(contact_ids(&list, "messages"), expected, "{query}");
        assert_eq!(list["total_count"], expected.len(), "{query}");
    }
    let page = h.messages(id, "?pageSize=4&pageIndex=1").await;
    assert_eq!(contact_ids(&page, "messages"), [m[4], m[5]]);
    assert_eq!((&page["pagination"]["has_next"], &page["pagination"]["previous_page"]), (&json!(false), &json!(0)));
    for query in ["status=ended", "status=accepted", "status=in-progress", "pageSize=0"] {
        let (status, body) = h.get(&format!("/campaigns/{id}/messages?{query}")).await;
        let field = query.split('=').next().expect("name");
        assert_error(status, &body, 400, "INVALID_REQUEST", Some(field));
    }
    // A WhatsApp campaign has no calls.
    let calls = h.calls(id, "").await;
    assert_eq!((&calls["total_count"], &calls["calls"]), (&json!(0), &json!([])));
}
