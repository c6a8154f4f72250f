//! Attempts' events rendered when first sent (§8.3): `on_call_end` in Altur's flat shape and
//! `message.status_changed` in the envelope, from the attempt, its contact, campaign and agent.

use serde_json::{Value, json};

use crate::api::attempts::{CallEndedBy, CallStatus, MessageView};
use crate::api::views::format_time;
use crate::domain::attempt::{AttemptStatus, MessageStatus};
use crate::domain::webhook::{EventType, envelope, format_occurred_at};
use crate::store::{AttemptReport, DueDelivery};

/// The event of `delivery` about the attempt of `report`, as compact JSON.
pub fn attempt_event(delivery: &DueDelivery, status: AttemptStatus, previous: Option<AttemptStatus>, report: AttemptReport) -> String {
    match delivery.event_type {
        EventType::MessageStatusChanged => message_status_changed(delivery, status, previous, report),
        _ => on_call_end(report),
    }
}

/// Altur's `on_call_end`: no envelope; `end_user` (deprecated by Altur) and `campaign_user`
/// both show the contact. Values the provider did not give are `null` (`transcript`: `[]`).
fn on_call_end(report: AttemptReport) -> String {
    let AttemptReport { attempt, contact, campaign_id, campaign_name, agent_id, agent_name, .. } = report;
    let phone = contact.phone.as_str().to_owned();
    json!({
        "event_type": "on_call_end",
        "id": attempt.id,
        "type": "outbound",
        "status": CallStatus::from(attempt.status),
        "phone_number_from": Value::Null,
        "phone_number_to": phone,
        "answered_by": attempt.answered_by,
        "created_at": format_time(attempt.created_at),
        "started_at": attempt.started_at.map(format_time),
        "ended_at": attempt.ended_at.map(format_time),
        "ended_by": CallEndedBy::of(attempt.ended_by.as_deref()),
        "ended_reason": attempt.ended_reason.unwrap_or_default(),
        "duration": attempt.duration,
        "billed_duration": attempt.billed_duration,
        "recording_url": attempt.recording_url,
        "transcript": attempt.transcript.unwrap_or_default(),
        "assistant": { "id": agent_id, "nickname": agent_name, "name": agent_name },
        "end_user": {
            "id": contact.id,
            "status": contact.status,
            "display_name": contact.name,
            "phone_number": phone,
            "context": contact.context,
            "extracted_data": contact.extracted_data,
            "tags": contact.tags,
        },
        "campaign_user": {
            "f_id": contact.f_id,
            "name": contact.name,
            "contact": phone,
            "context": contact.context,
            "status": contact.status,
            "failed_retries": contact.failed_retries,
            "voicemail_retries": contact.retries,
            "extracted_data": contact.extracted_data,
            "tags": contact.tags,
        },
        "campaign": { "id": campaign_id, "name": campaign_name },
    })
    .to_string()
}

/// `message.status_changed`: the message as `/messages` shows it, with the status this event
/// reports (a later one may have come since).
fn message_status_changed(delivery: &DueDelivery, status: AttemptStatus, previous: Option<AttemptStatus>, report: AttemptReport) -> String {
    let AttemptReport { mut attempt, campaign_id, campaign_name, timezone, .. } = report;
    attempt.status = status;
    let data = json!({
        "message": MessageView::from(attempt),
        "campaign": { "id": campaign_id, "name": campaign_name },
        "previous_status": previous.map(MessageStatus::from),
    });
    let occurred_at = format_occurred_at(delivery.occurred_at, timezone);
    envelope(&delivery.event_id, delivery.event_type, &occurred_at, &delivery.project_id, &data)
}
