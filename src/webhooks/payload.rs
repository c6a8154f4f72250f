//! Attempts' events (§8.3), rendered from the attempt, its contact, campaign and agent each time
//! they are sent or shown in the log: `on_call_end` in Altur's flat shape and
//! `message.status_changed` in the envelope.

use serde_json::json;

use crate::api::attempts::{CallEndedBy, CallStatus, MessageView};
use crate::api::views::format_time;
use crate::domain::attempt::MessageStatus;
use crate::domain::webhook::{EventType, envelope, format_occurred_at};
use crate::store::{AttemptReport, EventHeader, EventSource, EventSubject};

/// The event `header` names about the attempt of `report`, as compact JSON.
pub fn attempt_event(header: &EventHeader, subject: &EventSubject, report: AttemptReport) -> String {
    match header.event_type {
        EventType::MessageStatusChanged => message_status_changed(header, subject, report),
        _ => on_call_end(report),
    }
}

/// Altur's `on_call_end`: no envelope; `end_user` (deprecated by Altur) and `campaign_user`
/// both show the contact. Values the provider did not give are `null` (`transcript`: `[]`).
fn on_call_end(report: AttemptReport) -> String {
    let AttemptReport { attempt, contact, campaign_id, campaign_name, agent_id, agent_name, caller_number, .. } = report;
    let phone = contact.phone.as_str().to_owned();
    json!({
        "event_type": "on_call_end",
        "id": attempt.id,
        "type": "outbound",
        "status": CallStatus::from(attempt.status),
        "phone_number_from": caller_number,
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
fn message_status_changed(header: &EventHeader, subject: &EventSubject, report: AttemptReport) -> String {
    let AttemptReport { mut attempt, campaign_id, campaign_name, timezone, .. } = report;
    attempt.status = subject.status;
    let data = json!({
        "message": MessageView::from(attempt),
        "campaign": { "id": campaign_id, "name": campaign_name },
        "previous_status": subject.previous.map(MessageStatus::from),
    });
    let occurred_at = format_occurred_at(header.occurred_at, timezone);
    envelope(&header.event_id, header.event_type, &occurred_at, &header.project_id, &data)
}

/// The body of an event: as stored, or rendered from its attempt; `None` when the attempt no
/// longer exists.
pub fn body(header: &EventHeader, source: &EventSource) -> Option<String> {
    match source {
        EventSource::Stored(body) => Some(body.clone()),
        EventSource::Attempt { subject, report } => report.as_ref().map(|report| attempt_event(header, subject, (**report).clone())),
    }
}
