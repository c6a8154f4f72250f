//! What provider events do to attempts, contacts and a campaign's counters (contract §5.4):
//! each store loads the rows an event batch names, lets [`apply_events`] decide, and writes back
//! what changed in its own SQL.

use std::collections::HashMap;

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::attempt::{AnsweredBy, AttemptEvent, AttemptStatus, ContactProgress, RetrySettings, TranscriptEntry, progress_contact};
use super::campaign::{Channel, ContactStatus};
use super::webhook::{NewEvent, attempt_changed};

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    Applied,
    /// A repeat, or a status the attempt has already passed: nothing changed.
    Ignored,
    UnknownAttempt,
}

/// An attempt as events change it. Times are unix milliseconds, as stored.
pub struct AttemptState {
    /// The campaign's organization: whose webhooks hear of the attempt.
    pub org_id: i64,
    pub campaign_id: i64,
    pub contact_id: i64,
    pub channel: Channel,
    pub integration_id: String,
    /// A late event on a finished campaign's attempt retries nothing (nothing would dispatch it).
    pub campaign_finished: bool,
    pub voicemail_retries: i64,
    pub status: AttemptStatus,
    pub open: bool,
    pub changed: bool,
    pub answered_by: Option<AnsweredBy>,
    pub converted: bool,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub sent_at: Option<i64>,
    pub delivered_at: Option<i64>,
    pub read_at: Option<i64>,
    pub duration: Option<i64>,
    pub billed_duration: Option<i64>,
    pub ended_by: Option<String>,
    pub ended_reason: Option<String>,
    pub extracted_data: Option<Map<String, Value>>,
    pub tags: Option<Vec<String>>,
    /// Set only by this batch's events (not read back: the latest one given wins, so the store
    /// writes them when set and keeps what it has otherwise).
    pub new_recording_url: Option<String>,
    pub new_transcript: Option<Vec<TranscriptEntry>>,
}

/// A contact as events change it.
pub struct ContactState {
    pub progress: ContactProgress,
    pub last_attempt_id: Option<String>,
    pub processed: bool,
    pub answered: bool,
    pub billed_duration: i64,
    /// Read (and written back) only when some event of the batch carries data or tags.
    pub data: Option<ContactData>,
    pub changed: bool,
}

pub struct ContactData {
    pub extracted_data: Map<String, Value>,
    pub tags: Vec<String>,
}

/// Counter changes of one campaign.
#[derive(Default)]
pub struct CampaignDelta {
    pub in_flight: i64,
    pub calls: i64,
    pub calls_human: i64,
    pub calls_machine: i64,
    pub calls_unknown: i64,
    pub messages: i64,
    pub contacts_processed: i64,
    pub contacts_answered: i64,
    pub statuses: HashMap<ContactStatus, i64>,
}

/// An attempt an event closed (it stops holding its contact in `sending`): each attempt closes
/// once, so this is what counts finished attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinishedAttempt {
    pub channel: Channel,
    /// The status the closing event reported: a call's final status; a message's first report.
    pub status: AttemptStatus,
    /// Closed by the engine, no final event having come within the attempt timeout.
    pub timed_out: bool,
}

/// What [`apply_events`] decided, for the store to write back.
pub struct EventsApplied {
    /// Each event's outcome, in order.
    pub outcomes: Vec<EventOutcome>,
    /// Counter changes per campaign.
    pub deltas: HashMap<i64, CampaignDelta>,
    /// The attempts these events closed.
    pub finished: Vec<FinishedAttempt>,
    /// Webhook events of the attempts' changes, with their organization (§8.3).
    pub webhook_events: Vec<(i64, NewEvent)>,
    /// Contacts whose events said they opted out, for the do-not-contact list (§12.1).
    pub opt_outs: Vec<OptOut>,
}

/// A contact that opted out, reported on an attempt's event: the store adds its number to the
/// organization's list for the attempt's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptOut {
    pub org_id: i64,
    pub contact_id: i64,
    pub channel: Channel,
}

/// Whether the attempt stops holding its contact in `sending` with this status.
fn closes(channel: Channel, status: AttemptStatus) -> bool {
    match channel {
        Channel::PhoneCall => status.is_final_call(),
        Channel::Whatsapp => status != AttemptStatus::Queued,
    }
}

/// Applies `events` in order to the attempts and contacts loaded for them; returns each event's
/// outcome, the counter changes per campaign and the attempts closed. The caller writes back what
/// `changed`.
pub fn apply_events(
    attempts: &mut HashMap<String, AttemptState>,
    contacts: &mut HashMap<i64, ContactState>,
    integration_id: Option<&str>,
    events: &[AttemptEvent],
    at: Timestamp,
    retry: RetrySettings,
) -> EventsApplied {
    let mut deltas: HashMap<i64, CampaignDelta> = HashMap::new();
    let now = at.as_millisecond();
    let mut outcomes = Vec::with_capacity(events.len());
    let mut finished = Vec::new();
    let mut webhook_events = Vec::new();
    let mut opt_outs = Vec::new();
    for event in events {
        let Some(attempt) = attempts.get_mut(&event.attempt_id).filter(|a| integration_id.is_none_or(|id| id == a.integration_id)) else {
            outcomes.push(EventOutcome::UnknownAttempt);
            continue;
        };
        // Whatever the event does to the attempt (a repeat, a late one), the opt-out stands.
        if event.opt_out {
            let opt_out = OptOut { org_id: attempt.org_id, contact_id: attempt.contact_id, channel: attempt.channel };
            if !opt_outs.contains(&opt_out) {
                opt_outs.push(opt_out);
            }
        }
        if !attempt.status.accepts(event.status) {
            let enriched = enrich(attempt, contacts, event, &mut deltas);
            outcomes.push(if enriched { EventOutcome::Applied } else { EventOutcome::Ignored });
            continue;
        }
        outcomes.push(EventOutcome::Applied);
        if let Some(notice) = attempt_changed(&event.attempt_id, attempt.channel, attempt.status, event.status, at) {
            webhook_events.push((attempt.org_id, notice));
        }
        attempt.status = event.status;
        attempt.changed = true;
        let millis = |t: Option<Timestamp>| t.map(Timestamp::as_millisecond);
        attempt.answered_by = AnsweredBy::merge(attempt.answered_by, event.answered_by);
        attempt.converted |= event.converted;
        attempt.started_at = millis(event.started_at).or(attempt.started_at);
        attempt.ended_at = millis(event.ended_at).or(attempt.ended_at);
        attempt.duration = event.duration.or(attempt.duration);
        attempt.billed_duration = event.billed_duration.or(attempt.billed_duration);
        attempt.ended_by = event.ended_by.clone().or(attempt.ended_by.take());
        attempt.ended_reason = event.ended_reason.clone().or(attempt.ended_reason.take());
        attempt.new_recording_url = event.recording_url.clone().or(attempt.new_recording_url.take());
        attempt.new_transcript = event.transcript.clone().or(attempt.new_transcript.take());
        match event.status {
            AttemptStatus::Sent => attempt.sent_at = attempt.sent_at.or(Some(now)),
            AttemptStatus::Delivered => attempt.delivered_at = attempt.delivered_at.or(Some(now)),
            AttemptStatus::Read | AttemptStatus::Accepted | AttemptStatus::Rejected => attempt.read_at = attempt.read_at.or(Some(now)),
            _ => {}
        }
        add_attempt_data(attempt, event);
        let delta = deltas.entry(attempt.campaign_id).or_default();
        let closing = attempt.open && closes(attempt.channel, event.status);
        if closing {
            attempt.open = false;
            finished.push(FinishedAttempt { channel: attempt.channel, status: event.status, timed_out: event.is_timeout() });
            delta.in_flight -= 1;
            match attempt.channel {
                Channel::PhoneCall => {
                    delta.calls += 1;
                    match attempt.answered_by {
                        Some(AnsweredBy::Human) => delta.calls_human += 1,
                        Some(AnsweredBy::Machine) => delta.calls_machine += 1,
                        Some(AnsweredBy::Unknown) => delta.calls_unknown += 1,
                        None => {}
                    }
                }
                Channel::Whatsapp => delta.messages += 1,
            }
        }
        // Only the contact's current attempt moves it (a late event of an earlier iteration does not).
        let Some(contact) =
            contacts.get_mut(&attempt.contact_id).filter(|c| c.last_attempt_id.as_deref() == Some(event.attempt_id.as_str()))
        else {
            continue;
        };
        add_contact_data(contact, event);
        if closing && attempt.channel == Channel::PhoneCall {
            contact.billed_duration += event.billed_duration.unwrap_or(0).max(0);
            contact.changed = true;
            if !contact.processed {
                contact.processed = true;
                delta.contacts_processed += 1;
            }
            if attempt.answered_by == Some(AnsweredBy::Human) && !contact.answered {
                contact.answered = true;
                delta.contacts_answered += 1;
            }
        }
        let (voicemail_retries, retry) = if attempt.campaign_finished {
            (0, RetrySettings { failed_retry_limit: 0, ..retry })
        } else {
            (attempt.voicemail_retries, retry)
        };
        // The contact's outcome follows the call as every event so far told it (an answering-
        // machine verdict or a conversion may have come before the final status).
        let merged;
        let event = if attempt.answered_by != event.answered_by || attempt.converted != event.converted {
            merged = AttemptEvent { answered_by: attempt.answered_by, converted: attempt.converted, ..event.clone() };
            &merged
        } else {
            event
        };
        if let Some(next) = progress_contact(attempt.channel, contact.progress, event, voicemail_retries, retry, at) {
            *delta.statuses.entry(contact.progress.status).or_default() -= 1;
            *delta.statuses.entry(next.status).or_default() += 1;
            contact.progress = next;
            contact.changed = true;
        }
    }
    EventsApplied { outcomes, deltas, finished, webhook_events, opt_outs }
}

/// Merges the event's `extracted_data` and `tags` into the attempt's; whether it carried any.
fn add_attempt_data(attempt: &mut AttemptState, event: &AttemptEvent) -> bool {
    if let Some(data) = &event.extracted_data {
        attempt.extracted_data.get_or_insert_with(Map::new).extend(data.clone());
    }
    if let Some(tags) = &event.tags {
        let mine = attempt.tags.get_or_insert_with(Vec::new);
        mine.extend(tags.iter().filter(|t| !mine.contains(t)).cloned().collect::<Vec<_>>());
    }
    event.extracted_data.is_some() || event.tags.is_some()
}

/// Merges the event's `extracted_data` and `tags` into the contact's (when they were loaded).
fn add_contact_data(contact: &mut ContactState, event: &AttemptEvent) {
    let Some(data) = contact.data.as_mut() else { return };
    if let Some(extracted) = &event.extracted_data {
        data.extracted_data.extend(extracted.clone());
        contact.changed = true;
    }
    for tag in event.tags.iter().flatten() {
        if !data.tags.contains(tag) {
            data.tags.push(tag.clone());
        }
        contact.changed = true;
    }
}

/// What an event whose status the attempt has passed may still add (PROVIDERS.md §1): a
/// recording or transcript (they often come after the call ended), an answering-machine verdict
/// while the call is open, and what the customer's agent reports (`converted`, data, tags) even
/// after the final status, which stays. Returns whether anything changed.
fn enrich(
    attempt: &mut AttemptState,
    contacts: &mut HashMap<i64, ContactState>,
    event: &AttemptEvent,
    deltas: &mut HashMap<i64, CampaignDelta>,
) -> bool {
    let mut changed = false;
    if event.recording_url.is_some() || event.transcript.is_some() {
        attempt.new_recording_url = event.recording_url.clone().or(attempt.new_recording_url.take());
        attempt.new_transcript = event.transcript.clone().or(attempt.new_transcript.take());
        changed = true;
    }
    let verdict = AnsweredBy::merge(attempt.answered_by, event.answered_by);
    if attempt.open && verdict != attempt.answered_by {
        attempt.answered_by = verdict;
        changed = true;
    }
    changed |= add_attempt_data(attempt, event);
    // A provider's final report converts only the call it closes; the customer's agent may
    // report a conversion at any time.
    let late_report = event.final_report && !attempt.open;
    let converts = event.converted && !attempt.converted && !late_report;
    if converts {
        attempt.converted = true;
        changed = true;
    }
    attempt.changed |= changed;
    let Some(contact) = contacts.get_mut(&attempt.contact_id).filter(|c| c.last_attempt_id.as_deref() == Some(event.attempt_id.as_str()))
    else {
        return changed;
    };
    add_contact_data(contact, event);
    // A conversion reported after the call ended turns an answered contact into a converted one.
    let answered = matches!(contact.progress.status, ContactStatus::Answered | ContactStatus::Accepted | ContactStatus::Read);
    if converts && answered && !attempt.open {
        let delta = deltas.entry(attempt.campaign_id).or_default();
        *delta.statuses.entry(contact.progress.status).or_default() -= 1;
        *delta.statuses.entry(ContactStatus::Converted).or_default() += 1;
        contact.progress.status = ContactStatus::Converted;
        contact.changed = true;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("a time")
    }

    fn call(status: AttemptStatus) -> AttemptState {
        AttemptState {
            org_id: 1,
            campaign_id: 7,
            contact_id: 70,
            channel: Channel::PhoneCall,
            integration_id: "iph_1".to_owned(),
            campaign_finished: false,
            voicemail_retries: 1,
            status,
            open: true,
            changed: false,
            answered_by: None,
            converted: false,
            started_at: None,
            ended_at: None,
            sent_at: None,
            delivered_at: None,
            read_at: None,
            duration: None,
            billed_duration: None,
            ended_by: None,
            ended_reason: None,
            extracted_data: None,
            tags: None,
            new_recording_url: None,
            new_transcript: None,
        }
    }

    fn sending(current_attempt: &str) -> ContactState {
        ContactState {
            progress: ContactProgress {
                status: ContactStatus::Sending,
                retries: 0,
                failed_retries: 0,
                next_attempt_at: None,
                failed_reason: None,
            },
            last_attempt_id: Some(current_attempt.to_owned()),
            processed: false,
            answered: false,
            billed_duration: 0,
            data: None,
            changed: false,
        }
    }

    fn ended(attempt_id: &str, by: AnsweredBy) -> AttemptEvent {
        AttemptEvent {
            status: AttemptStatus::Ended,
            answered_by: Some(by),
            billed_duration: Some(30),
            ..AttemptEvent::failed(attempt_id.to_owned(), "unused")
        }
    }

    #[test]
    fn a_call_answered_by_a_person_closes_once_and_counts_once() {
        let mut attempts = HashMap::from([("a1".to_owned(), call(AttemptStatus::Ringing))]);
        let mut contacts = HashMap::from([(70, sending("a1"))]);
        let events = [ended("a1", AnsweredBy::Human), ended("a1", AnsweredBy::Human)];
        let EventsApplied { outcomes, deltas, finished, .. } =
            apply_events(&mut attempts, &mut contacts, None, &events, at(), RetrySettings::default());

        assert_eq!(outcomes, [EventOutcome::Applied, EventOutcome::Ignored], "a repeated final event changes nothing");
        assert_eq!(finished, [FinishedAttempt { channel: Channel::PhoneCall, status: AttemptStatus::Ended, timed_out: false }]);
        let delta = &deltas[&7];
        assert_eq!((delta.in_flight, delta.calls, delta.calls_human, delta.contacts_processed, delta.contacts_answered), (-1, 1, 1, 1, 1));
        assert_eq!((delta.statuses[&ContactStatus::Sending], delta.statuses[&ContactStatus::Answered]), (-1, 1));
        let contact = &contacts[&70];
        assert_eq!((contact.progress.status, contact.billed_duration, contact.changed), (ContactStatus::Answered, 30, true));
        assert!(!attempts["a1"].open);
    }

    #[test]
    fn an_attempt_finishes_once_when_it_times_out_or_at_a_messages_first_report() {
        let message = AttemptState { channel: Channel::Whatsapp, contact_id: 71, ..call(AttemptStatus::Queued) };
        let mut attempts = HashMap::from([("a1".to_owned(), call(AttemptStatus::Ringing)), ("m1".to_owned(), message)]);
        let report = |status| AttemptEvent { status, ended_by: None, ended_reason: None, ..AttemptEvent::failed("m1".to_owned(), "") };
        let events = [AttemptEvent::timed_out("a1".to_owned()), report(AttemptStatus::Sent), report(AttemptStatus::Delivered)];
        let applied = apply_events(&mut attempts, &mut HashMap::new(), None, &events, at(), RetrySettings::default());

        assert_eq!(applied.outcomes, [EventOutcome::Applied; 3]);
        assert_eq!(
            applied.finished,
            [
                FinishedAttempt { channel: Channel::PhoneCall, status: AttemptStatus::Failed, timed_out: true },
                FinishedAttempt { channel: Channel::Whatsapp, status: AttemptStatus::Sent, timed_out: false },
            ],
            "a delivered message was already finished when it was sent"
        );
    }

    #[test]
    fn webhook_events_come_once_per_call_end_and_per_shown_message_status() {
        use crate::domain::webhook::{EventBody, EventType};
        let message = AttemptState { org_id: 2, channel: Channel::Whatsapp, contact_id: 71, ..call(AttemptStatus::Queued) };
        let mut attempts = HashMap::from([("a1".to_owned(), call(AttemptStatus::Ringing)), ("m1".to_owned(), message)]);
        let report = |status| AttemptEvent { status, ended_by: None, ended_reason: None, ..AttemptEvent::failed("m1".to_owned(), "") };
        let in_progress = AttemptEvent { status: AttemptStatus::InProgress, ..ended("a1", AnsweredBy::Human) };
        let events = [
            in_progress,
            ended("a1", AnsweredBy::Human),
            ended("a1", AnsweredBy::Human),
            report(AttemptStatus::Sent),
            report(AttemptStatus::Read),
            // Shown as `read` too: no change a receiver could see.
            report(AttemptStatus::Accepted),
        ];
        let applied = apply_events(&mut attempts, &mut HashMap::new(), None, &events, at(), RetrySettings::default());

        let seen: Vec<(i64, EventType, &str, AttemptStatus, Option<AttemptStatus>)> = applied
            .webhook_events
            .iter()
            .map(|(org, event)| match &event.body {
                EventBody::Attempt { attempt_id, status, previous } => (*org, event.event_type, attempt_id.as_str(), *status, *previous),
                EventBody::Data { .. } => panic!("attempts' events are rendered when sent"),
            })
            .collect();
        assert_eq!(
            seen,
            [
                (1, EventType::OnCallEnd, "a1", AttemptStatus::Ended, Some(AttemptStatus::InProgress)),
                (2, EventType::MessageStatusChanged, "m1", AttemptStatus::Sent, Some(AttemptStatus::Queued)),
                (2, EventType::MessageStatusChanged, "m1", AttemptStatus::Read, Some(AttemptStatus::Sent)),
            ],
            "a repeated end and a status shown alike make no event"
        );
        assert!(applied.webhook_events.iter().all(|(_, e)| e.occurred_at == at() && e.event_id.starts_with("evt_")));
    }

    #[test]
    fn an_opted_out_contact_is_reported_once_even_by_a_repeat_and_unknown_attempts_report_none() {
        let mut attempts = HashMap::from([("a1".to_owned(), call(AttemptStatus::Ringing))]);
        let mut contacts = HashMap::from([(70, sending("a1"))]);
        let opting = |id: &str| AttemptEvent { opt_out: true, ..ended(id, AnsweredBy::Human) };
        let events = [opting("a1"), opting("a1"), opting("nope")];
        let applied = apply_events(&mut attempts, &mut contacts, None, &events, at(), RetrySettings::default());
        assert_eq!(applied.outcomes, [EventOutcome::Applied, EventOutcome::Ignored, EventOutcome::UnknownAttempt]);
        assert_eq!(applied.opt_outs, [OptOut { org_id: 1, contact_id: 70, channel: Channel::PhoneCall }]);
        assert_eq!(contacts[&70].progress.status, ContactStatus::Answered, "the outcome applies as usual");
    }

    #[test]
    fn events_of_unknown_or_foreign_attempts_change_nothing() {
        let mut attempts = HashMap::from([("a1".to_owned(), call(AttemptStatus::Queued))]);
        let mut contacts = HashMap::from([(70, sending("a1"))]);
        let events = [ended("nope", AnsweredBy::Human), ended("a1", AnsweredBy::Human)];
        let EventsApplied { outcomes, deltas, finished, .. } =
            apply_events(&mut attempts, &mut contacts, Some("iph_other"), &events, at(), RetrySettings::default());
        assert_eq!(outcomes, [EventOutcome::UnknownAttempt, EventOutcome::UnknownAttempt]);
        assert!(deltas.is_empty() && finished.is_empty());
        assert!(!attempts["a1"].changed && !contacts[&70].changed);
    }

    #[test]
    fn a_late_event_of_an_earlier_attempt_closes_it_but_leaves_the_contact_alone() {
        let mut attempts = HashMap::from([("old".to_owned(), call(AttemptStatus::InProgress))]);
        let mut contacts = HashMap::from([(70, sending("new"))]);
        let EventsApplied { outcomes, deltas, .. } =
            apply_events(&mut attempts, &mut contacts, None, &[ended("old", AnsweredBy::Machine)], at(), RetrySettings::default());
        assert_eq!(outcomes, [EventOutcome::Applied]);
        assert_eq!((deltas[&7].in_flight, deltas[&7].calls_machine), (-1, 1));
        assert!(deltas[&7].statuses.is_empty(), "the contact's status is its current attempt's");
        assert_eq!(contacts[&70].progress.status, ContactStatus::Sending);
    }

    #[test]
    fn data_and_tags_merge_into_the_attempt_and_the_contact_without_repeats() {
        let mut attempts = HashMap::from([("a1".to_owned(), call(AttemptStatus::Ringing))]);
        let mut contact = sending("a1");
        contact.data = Some(ContactData { extracted_data: Map::new(), tags: vec!["vip".to_owned()] });
        let mut contacts = HashMap::from([(70, contact)]);
        let mut event = ended("a1", AnsweredBy::Human);
        event.tags = Some(vec!["vip".to_owned(), "paid".to_owned()]);
        event.extracted_data = Some(Map::from_iter([("amount".to_owned(), Value::from(12))]));
        apply_events(&mut attempts, &mut contacts, None, &[event], at(), RetrySettings::default());
        let data = contacts[&70].data.as_ref().expect("read with data");
        assert_eq!(data.tags, ["vip", "paid"]);
        assert_eq!(data.extracted_data["amount"], 12);
        assert_eq!(attempts["a1"].tags.as_deref(), Some(&["vip".to_owned(), "paid".to_owned()][..]));
    }

    #[test]
    fn a_recording_after_the_end_is_kept_though_the_status_stays() {
        let mut attempts = HashMap::from([("a1".to_owned(), call(AttemptStatus::Ringing))]);
        let mut contacts = HashMap::from([(70, sending("a1"))]);
        let mut late = ended("a1", AnsweredBy::Human);
        late.recording_url = Some("https://media.example/rec/1.mp3".to_owned());
        let repeat = ended("a1", AnsweredBy::Human);
        let events = [ended("a1", AnsweredBy::Human), late, repeat];
        let EventsApplied { outcomes, deltas, finished, .. } =
            apply_events(&mut attempts, &mut contacts, None, &events, at(), RetrySettings::default());
        assert_eq!(outcomes, [EventOutcome::Applied, EventOutcome::Applied, EventOutcome::Ignored]);
        assert_eq!(deltas[&7].calls_human, 1, "the late event counts nothing again");
        assert_eq!(finished.len(), 1, "nor finishes the call again");
        assert_eq!(attempts["a1"].new_recording_url.as_deref(), Some("https://media.example/rec/1.mp3"));
        assert_eq!(attempts["a1"].status, AttemptStatus::Ended);
    }
}
