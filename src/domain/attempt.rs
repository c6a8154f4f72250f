//! Attempts (calls and messages) and what their events do to a contact (contract §5.4, §5.5).
//! Pure: the store applies these rules inside the transaction that records the event.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::campaign::{Channel, ContactStatus};
use super::ids::random_base62;
use super::integration::SimulatorConfig;
use super::validation::{WholeNumber, optional_objects};

/// `cll_…` for calls, `msg_…` for WhatsApp messages: created once, before the provider sees it,
/// and sent as the provider's idempotency key on every re-send. Twenty base62 characters: a
/// per-process sequence (from a random start) then randomness, so that ids are unique and new
/// ones land next to each other in the attempts index instead of at random pages.
pub fn new_attempt_id(channel: Channel) -> String {
    static SEQUENCE: OnceLock<AtomicU64> = OnceLock::new();
    let sequence = SEQUENCE.get_or_init(|| AtomicU64::new(rand::random::<u64>() >> 4)).fetch_add(1, Ordering::Relaxed);
    let marker = match channel {
        Channel::PhoneCall => "cll_",
        Channel::Whatsapp => "msg_",
    };
    format!("{marker}{}{}", base62_fixed(sequence, 11), random_base62(9))
}

/// `value` in base62, most significant digit first, padded to `width` characters.
fn base62_fixed(mut value: u64, width: usize) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Who answered a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnsweredBy {
    Human,
    Machine,
    Unknown,
}

impl AnsweredBy {
    pub fn as_str(self) -> &'static str {
        match self {
            AnsweredBy::Human => "human",
            AnsweredBy::Machine => "machine",
            AnsweredBy::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> Option<AnsweredBy> {
        [AnsweredBy::Human, AnsweredBy::Machine, AnsweredBy::Unknown].into_iter().find(|a| a.as_str() == text)
    }
}

/// An attempt's status as providers report it and `/calls` and `/messages` show it. Phone and
/// WhatsApp statuses share one ordered lattice per channel: an attempt only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptStatus {
    /// Recorded, not yet reported on by the provider.
    Queued,
    // Phone.
    Ringing,
    InProgress,
    Ended,
    Busy,
    NoAnswer,
    // WhatsApp.
    Sent,
    Delivered,
    Read,
    Accepted,
    Rejected,
    // Both.
    Failed,
}

impl AttemptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Queued => "queued",
            AttemptStatus::Ringing => "ringing",
            AttemptStatus::InProgress => "in-progress",
            AttemptStatus::Ended => "ended",
            AttemptStatus::Busy => "busy",
            AttemptStatus::NoAnswer => "no-answer",
            AttemptStatus::Sent => "sent",
            AttemptStatus::Delivered => "delivered",
            AttemptStatus::Read => "read",
            AttemptStatus::Accepted => "accepted",
            AttemptStatus::Rejected => "rejected",
            AttemptStatus::Failed => "failed",
        }
    }

    const ALL: [AttemptStatus; 12] = [
        AttemptStatus::Queued,
        AttemptStatus::Ringing,
        AttemptStatus::InProgress,
        AttemptStatus::Ended,
        AttemptStatus::Busy,
        AttemptStatus::NoAnswer,
        AttemptStatus::Sent,
        AttemptStatus::Delivered,
        AttemptStatus::Read,
        AttemptStatus::Accepted,
        AttemptStatus::Rejected,
        AttemptStatus::Failed,
    ];

    pub fn parse(text: &str) -> Option<AttemptStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The statuses a provider may report on `channel` (§5.4).
    pub fn parse_event(channel: Channel, text: &str) -> Option<AttemptStatus> {
        let status = Self::parse(text).filter(|s| *s != AttemptStatus::Queued)?;
        let phone = matches!(
            status,
            AttemptStatus::Ringing
                | AttemptStatus::InProgress
                | AttemptStatus::Ended
                | AttemptStatus::Busy
                | AttemptStatus::NoAnswer
                | AttemptStatus::Failed
        );
        let whatsapp = matches!(
            status,
            AttemptStatus::Sent
                | AttemptStatus::Delivered
                | AttemptStatus::Read
                | AttemptStatus::Accepted
                | AttemptStatus::Rejected
                | AttemptStatus::Failed
        );
        match channel {
            Channel::PhoneCall => phone.then_some(status),
            Channel::Whatsapp => whatsapp.then_some(status),
        }
    }

    /// Position in the channel's lattice; an event never moves an attempt to a lower rank.
    fn rank(self) -> u8 {
        match self {
            AttemptStatus::Queued => 0,
            AttemptStatus::Ringing | AttemptStatus::Sent => 1,
            AttemptStatus::InProgress | AttemptStatus::Delivered => 2,
            AttemptStatus::Read => 3,
            AttemptStatus::Accepted | AttemptStatus::Rejected => 4,
            AttemptStatus::Ended | AttemptStatus::Busy | AttemptStatus::NoAnswer => 5,
            AttemptStatus::Failed => 5,
        }
    }

    /// The statuses a `/calls` or `/messages` status filter stands for: `in_progress` covers a
    /// call not yet ended, `read` a message read whether or not its buttons were pressed.
    pub fn filter_members(self) -> &'static [AttemptStatus] {
        use AttemptStatus::*;
        match self {
            InProgress => &[Queued, Ringing, InProgress],
            Read => &[Read, Accepted, Rejected],
            Queued => &[Queued],
            Ended => &[Ended],
            Busy => &[Busy],
            NoAnswer => &[NoAnswer],
            Failed => &[Failed],
            Sent => &[Sent],
            Delivered => &[Delivered],
            Ringing => &[Ringing],
            Accepted => &[Accepted],
            Rejected => &[Rejected],
        }
    }

    /// A call is finished by `ended`, `busy`, `no-answer` or `failed` (§5.5).
    pub fn is_final_call(self) -> bool {
        matches!(self, AttemptStatus::Ended | AttemptStatus::Busy | AttemptStatus::NoAnswer | AttemptStatus::Failed)
    }

    /// Whether an attempt at `self` takes an event reporting `next`. A finished call takes
    /// nothing more; a message moves up its funnel, and fails only before it was delivered.
    pub fn accepts(self, next: AttemptStatus) -> bool {
        if self.is_final_call() {
            return false;
        }
        match next {
            AttemptStatus::Failed => self <= AttemptStatus::Sent,
            _ => next.rank() > self.rank(),
        }
    }
}

/// An event as a provider posts it to `/integrations/{id}/events` (§5.4).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    pub attempt_id: String,
    pub status: String,
    #[serde(default)]
    pub answered_by: Option<AnsweredBy>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub duration: Option<WholeNumber>,
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub billed_duration: Option<WholeNumber>,
    #[serde(default)]
    pub ended_by: Option<String>,
    #[serde(default)]
    pub ended_reason: Option<String>,
    #[serde(default)]
    pub converted: Option<bool>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub extracted_data: Option<Map<String, Value>>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Where the call's recording can be fetched (kept as given; the latest one wins).
    #[serde(default)]
    pub recording_url: Option<String>,
    /// The conversation so far; a later transcript replaces an earlier one.
    #[serde(default, deserialize_with = "optional_objects")]
    pub transcript: Option<Vec<TranscriptEntry>>,
    /// The contact asked not to be contacted again: its number joins the organization's
    /// do-not-contact list for the attempt's channel (§12.1, source `provider`). The outcome
    /// itself is applied as usual.
    #[serde(default)]
    pub opt_out: Option<bool>,
}

/// Who said a line of a transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Assistant,
    User,
}

/// One line of a call's transcript, as events report it and calls show it (§5.4).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TranscriptEntry {
    pub sent_by: Speaker,
    #[schema(value_type = String, format = DateTime)]
    pub sent_at: Timestamp,
    pub content: String,
}

/// A validated event, ready for the store. Serialized only to keep a provider's provisional
/// outcome with its attempt until it becomes final (PROVIDERS.md §4, §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptEvent {
    pub attempt_id: String,
    pub status: AttemptStatus,
    pub answered_by: Option<AnsweredBy>,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub duration: Option<i64>,
    pub billed_duration: Option<i64>,
    pub ended_by: Option<String>,
    pub ended_reason: Option<String>,
    pub converted: bool,
    pub extracted_data: Option<Map<String, Value>>,
    pub tags: Option<Vec<String>>,
    pub recording_url: Option<String>,
    pub transcript: Option<Vec<TranscriptEntry>>,
    /// The provider said the number is invalid or unreachable: the contact fails at once with
    /// `failed_reason` `invalid_number`, never retried (PROVIDERS.md §1).
    pub invalid_number: bool,
    /// The provider never placed the call for lack of capacity (a concurrency limit reported
    /// after the hand-off): the contact is tried again after [`THROTTLED_WAIT`], and this attempt
    /// does not count against its retries (reference providers.md §5).
    #[serde(default)]
    pub throttled: bool,
    /// The provider's own final report of a call (Retell's `call_analyzed`, Vapi's
    /// `end-of-call-report`). Coming after a held outcome already became final, it still adds
    /// its recording, transcript and data but no longer converts the call (PROVIDERS.md §5).
    #[serde(default)]
    pub final_report: bool,
    /// The number was put on the do-not-contact list after the attempt was claimed and before it
    /// was handed off: it is closed unsent and the contact fails with `failed_reason`
    /// `suppressed` (contract §12.1).
    #[serde(default)]
    pub suppressed: bool,
    /// The contact asked not to be contacted again (§5.4 `opt_out`): its number joins the
    /// organization's do-not-contact list for the attempt's channel (source `provider`).
    #[serde(default)]
    pub opt_out: bool,
}

/// How long a contact whose call a provider throttled waits before it is tried again.
pub const THROTTLED_WAIT: SignedDuration = SignedDuration::from_mins(1);

/// The `ended_reason` of an attempt the engine closed because no final event came within
/// `OUTBOUND_ATTEMPT_TIMEOUT`.
pub const TIMEOUT_REASON: &str = "timeout";

impl AttemptEvent {
    /// The event that closes an attempt that a provider refused (or, with [`TIMEOUT_REASON`], one
    /// nobody reported on in time: see [`AttemptEvent::timed_out`]).
    pub fn failed(attempt_id: String, reason: &str) -> AttemptEvent {
        AttemptEvent {
            attempt_id,
            status: AttemptStatus::Failed,
            answered_by: None,
            started_at: None,
            ended_at: None,
            duration: None,
            billed_duration: None,
            ended_by: Some("system".to_owned()),
            ended_reason: Some(reason.to_owned()),
            converted: false,
            extracted_data: None,
            tags: None,
            recording_url: None,
            transcript: None,
            invalid_number: false,
            throttled: false,
            final_report: false,
            suppressed: false,
            opt_out: false,
        }
    }

    /// The event that closes, unsent, an attempt whose number was suppressed after its claim.
    pub fn suppressed(attempt_id: String) -> AttemptEvent {
        AttemptEvent { suppressed: true, ..AttemptEvent::failed(attempt_id, FailedReason::Suppressed.as_str()) }
    }

    /// Why this event makes its contact fail for good, if it does.
    pub fn failed_for_good(&self) -> Option<FailedReason> {
        if self.suppressed { Some(FailedReason::Suppressed) } else { self.invalid_number.then_some(FailedReason::InvalidNumber) }
    }

    /// The event that closes an attempt nobody reported on within `OUTBOUND_ATTEMPT_TIMEOUT`.
    pub fn timed_out(attempt_id: String) -> AttemptEvent {
        AttemptEvent::failed(attempt_id, TIMEOUT_REASON)
    }

    /// Whether this is [`AttemptEvent::timed_out`]'s event (as `/calls` shows it: failed, ended by
    /// the system for `timeout`).
    pub fn is_timeout(&self) -> bool {
        self.status == AttemptStatus::Failed
            && self.ended_by.as_deref() == Some("system")
            && self.ended_reason.as_deref() == Some(TIMEOUT_REASON)
    }
}

/// The server-wide retry settings (§5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    pub retry_interval: SignedDuration,
    pub failed_retry_limit: i64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings { retry_interval: SignedDuration::from_mins(30), failed_retry_limit: 1 }
    }
}

/// The part of a contact an event can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactProgress {
    pub status: ContactStatus,
    pub retries: i64,
    pub failed_retries: i64,
    /// When a `retrying` contact is due again.
    pub next_attempt_at: Option<Timestamp>,
    /// Why a `failed` contact failed for good; such a contact is never attempted again.
    pub failed_reason: Option<FailedReason>,
}

/// Why a contact failed for good (`failed_reason` on contacts, ext).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailedReason {
    /// The provider said the number is invalid or unreachable (PROVIDERS.md §1).
    InvalidNumber,
    /// The number is on the organization's do-not-contact list for the campaign's channel
    /// (contract §12.1).
    Suppressed,
}

impl FailedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailedReason::InvalidNumber => "invalid_number",
            FailedReason::Suppressed => "suppressed",
        }
    }

    pub fn parse(text: &str) -> Option<FailedReason> {
        [FailedReason::InvalidNumber, FailedReason::Suppressed].into_iter().find(|reason| reason.as_str() == text)
    }
}

impl AnsweredBy {
    /// The verdict to keep when a call's events disagree: a definite one (human, machine) wins
    /// over `unknown`, whichever came first; otherwise the latest.
    pub fn merge(kept: Option<AnsweredBy>, reported: Option<AnsweredBy>) -> Option<AnsweredBy> {
        match (kept, reported) {
            (Some(kept), Some(AnsweredBy::Unknown)) => Some(kept),
            (kept, reported) => reported.or(kept),
        }
    }
}

/// What an event on the contact's current attempt makes of the contact. `voicemail_retries` is
/// the campaign's `retries`. Returns `None` when the event leaves the contact as it is.
pub fn progress_contact(
    channel: Channel,
    contact: ContactProgress,
    event: &AttemptEvent,
    voicemail_retries: i64,
    settings: RetrySettings,
    at: Timestamp,
) -> Option<ContactProgress> {
    let retry_at = at.saturating_add(settings.retry_interval).ok();
    let failed = |contact: ContactProgress| {
        if event.throttled {
            ContactProgress { status: ContactStatus::Retrying, next_attempt_at: at.saturating_add(THROTTLED_WAIT).ok(), ..contact }
        } else if let Some(reason) = event.failed_for_good() {
            ContactProgress { status: ContactStatus::Failed, next_attempt_at: None, failed_reason: Some(reason), ..contact }
        } else if contact.failed_retries < settings.failed_retry_limit {
            ContactProgress {
                status: ContactStatus::Retrying,
                failed_retries: contact.failed_retries + 1,
                next_attempt_at: retry_at,
                ..contact
            }
        } else {
            ContactProgress { status: ContactStatus::Failed, next_attempt_at: None, ..contact }
        }
    };
    let with = |status| ContactProgress { status, next_attempt_at: None, ..contact };
    match channel {
        Channel::PhoneCall => {
            if contact.status != ContactStatus::Sending || !event.status.is_final_call() {
                return None;
            }
            Some(match (event.status, event.answered_by) {
                (AttemptStatus::Ended, Some(AnsweredBy::Human)) if event.converted => with(ContactStatus::Converted),
                (AttemptStatus::Ended, Some(AnsweredBy::Human | AnsweredBy::Unknown)) => with(ContactStatus::Answered),
                (AttemptStatus::Ended, Some(AnsweredBy::Machine)) if contact.retries < voicemail_retries => {
                    ContactProgress { status: ContactStatus::Retrying, retries: contact.retries + 1, next_attempt_at: retry_at, ..contact }
                }
                (AttemptStatus::Ended, Some(AnsweredBy::Machine)) => with(ContactStatus::Voicemail),
                // Busy, no answer, failed, or "ended" with nobody answering.
                _ => failed(contact),
            })
        }
        Channel::Whatsapp => {
            let next = match event.status {
                // Undelivered: a failed send, also when the provider had first reported it sent.
                AttemptStatus::Failed if matches!(contact.status, ContactStatus::Sending | ContactStatus::Sent) => {
                    return Some(failed(contact));
                }
                AttemptStatus::Sent => ContactStatus::Sent,
                AttemptStatus::Delivered => ContactStatus::Delivered,
                AttemptStatus::Read => ContactStatus::Read,
                AttemptStatus::Accepted if event.converted => ContactStatus::Converted,
                AttemptStatus::Accepted => ContactStatus::Accepted,
                AttemptStatus::Rejected => ContactStatus::Rejected,
                _ => return None,
            };
            let next = if event.converted && next != ContactStatus::Converted && funnel_rank(next) >= funnel_rank(ContactStatus::Read) {
                ContactStatus::Converted
            } else {
                next
            };
            (funnel_rank(next) > funnel_rank(contact.status)).then(|| with(next))
        }
    }
}

/// A WhatsApp contact's place in the funnel; statuses outside it rank lowest.
fn funnel_rank(status: ContactStatus) -> u8 {
    match status {
        ContactStatus::Sending => 1,
        ContactStatus::Sent => 2,
        ContactStatus::Delivered => 3,
        ContactStatus::Read => 4,
        ContactStatus::Accepted | ContactStatus::Rejected => 5,
        ContactStatus::Converted => 6,
        _ => 0,
    }
}

/// The simulator's outcome for an attempt: a pure function of its id and config, so that a
/// re-send after a crash reports exactly what the first send would have.
pub fn simulate(attempt_id: &str, channel: Channel, config: &SimulatorConfig, at: Timestamp) -> Vec<AttemptEvent> {
    let digest = Sha256::digest(attempt_id.as_bytes());
    let mut draws = digest.chunks_exact(4).map(|c| f64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])) / (f64::from(u32::MAX) + 1.0));
    let mut draw = || draws.next().unwrap_or(0.0);
    let event = |status| AttemptEvent { status, ended_by: None, ended_reason: None, ..AttemptEvent::failed(attempt_id.to_owned(), "") };
    match channel {
        Channel::PhoneCall => {
            let [low, high] = config.duration_s;
            let (low, high) = (i64::from(low.min(high)), i64::from(low.max(high)));
            let duration = low + ((high - low + 1) as f64 * draw()) as i64;
            let answered = draw() < config.answer_rate;
            let by_machine = draw() < config.machine_rate;
            let converted = draw() < config.convert_rate;
            let mut ended = event(AttemptStatus::Ended);
            ended.started_at = Some(at);
            ended.ended_at = at.saturating_add(SignedDuration::from_secs(if answered { duration } else { 0 })).ok();
            if answered {
                ended.answered_by = Some(if by_machine { AnsweredBy::Machine } else { AnsweredBy::Human });
                ended.converted = !by_machine && converted;
                ended.duration = Some(duration);
                ended.billed_duration = Some(duration);
                ended.ended_by = Some(if by_machine { "agent" } else { "user" }.to_owned());
                ended.ended_reason = Some(if by_machine { "voicemail" } else { "user_hangup" }.to_owned());
            } else {
                ended.status = AttemptStatus::NoAnswer;
                ended.duration = Some(0);
                ended.billed_duration = Some(0);
                ended.ended_reason = Some("no_answer".to_owned());
            }
            vec![ended]
        }
        Channel::Whatsapp => {
            let delivered = draw() < config.delivery_rate;
            let read = draw() < config.read_rate;
            let accepted = draw() < config.accept_rate;
            let converted = draw() < config.convert_rate;
            if !delivered {
                let mut failed = event(AttemptStatus::Failed);
                failed.ended_reason = Some("undelivered".to_owned());
                return vec![failed];
            }
            let mut events = vec![event(AttemptStatus::Sent), event(AttemptStatus::Delivered)];
            if read {
                events.push(event(AttemptStatus::Read));
                let mut answer = event(if accepted { AttemptStatus::Accepted } else { AttemptStatus::Rejected });
                answer.converted = accepted && converted;
                events.push(answer);
            }
            events
        }
    }
}

/// A message's status as `/messages` shows it: accepted and rejected messages were read.
#[derive(Debug, Serialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Queued,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl From<AttemptStatus> for MessageStatus {
    fn from(status: AttemptStatus) -> Self {
        match status {
            AttemptStatus::Sent => MessageStatus::Sent,
            AttemptStatus::Delivered => MessageStatus::Delivered,
            AttemptStatus::Read | AttemptStatus::Accepted | AttemptStatus::Rejected => MessageStatus::Read,
            AttemptStatus::Failed => MessageStatus::Failed,
            _ => MessageStatus::Queued,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_filter_covers_itself_and_what_it_stands_for() {
        for status in AttemptStatus::ALL {
            assert!(status.filter_members().contains(&status), "{status:?}");
        }
        assert_eq!(AttemptStatus::InProgress.filter_members(), [AttemptStatus::Queued, AttemptStatus::Ringing, AttemptStatus::InProgress]);
        assert_eq!(AttemptStatus::Read.filter_members(), [AttemptStatus::Read, AttemptStatus::Accepted, AttemptStatus::Rejected]);
        assert_eq!(AttemptStatus::Ended.filter_members(), [AttemptStatus::Ended]);
    }

    fn at() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("valid")
    }

    fn contact(status: ContactStatus) -> ContactProgress {
        ContactProgress { status, retries: 0, failed_retries: 0, next_attempt_at: None, failed_reason: None }
    }

    fn ended(answered_by: Option<AnsweredBy>, converted: bool) -> AttemptEvent {
        AttemptEvent { answered_by, converted, ..AttemptEvent::failed("cll_x".into(), "") }.with_status(AttemptStatus::Ended)
    }

    impl AttemptEvent {
        fn with_status(mut self, status: AttemptStatus) -> Self {
            self.status = status;
            self
        }
    }

    #[test]
    fn phone_outcomes_and_retries() {
        let settings = RetrySettings::default();
        let sending = contact(ContactStatus::Sending);
        let human = progress_contact(Channel::PhoneCall, sending, &ended(Some(AnsweredBy::Human), false), 1, settings, at());
        assert_eq!(human.map(|c| c.status), Some(ContactStatus::Answered));
        let converted = progress_contact(Channel::PhoneCall, sending, &ended(Some(AnsweredBy::Human), true), 1, settings, at());
        assert_eq!(converted.map(|c| c.status), Some(ContactStatus::Converted));

        // Voicemail retries while retries < campaign retries, then stays voicemail.
        let machine = ended(Some(AnsweredBy::Machine), false);
        let retried = progress_contact(Channel::PhoneCall, sending, &machine, 1, settings, at()).expect("changes");
        assert_eq!((retried.status, retried.retries), (ContactStatus::Retrying, 1));
        assert_eq!(retried.next_attempt_at, at().checked_add(SignedDuration::from_mins(30)).ok());
        let again = ContactProgress { status: ContactStatus::Sending, ..retried };
        assert_eq!(
            progress_contact(Channel::PhoneCall, again, &machine, 1, settings, at()).map(|c| c.status),
            Some(ContactStatus::Voicemail)
        );
        assert_eq!(
            progress_contact(Channel::PhoneCall, sending, &machine, 0, settings, at()).map(|c| c.status),
            Some(ContactStatus::Voicemail)
        );

        // Failed outcomes retry up to the server's limit.
        let busy = AttemptEvent::failed("cll_x".into(), "").with_status(AttemptStatus::Busy);
        let retried = progress_contact(Channel::PhoneCall, sending, &busy, 1, settings, at()).expect("changes");
        assert_eq!((retried.status, retried.failed_retries), (ContactStatus::Retrying, 1));
        let again = ContactProgress { status: ContactStatus::Sending, ..retried };
        assert_eq!(progress_contact(Channel::PhoneCall, again, &busy, 1, settings, at()).map(|c| c.status), Some(ContactStatus::Failed));

        // Non-final events and contacts no longer sending are left alone.
        let ringing = AttemptEvent::failed("cll_x".into(), "").with_status(AttemptStatus::Ringing);
        assert_eq!(progress_contact(Channel::PhoneCall, sending, &ringing, 1, settings, at()), None);
        assert_eq!(progress_contact(Channel::PhoneCall, contact(ContactStatus::Answered), &busy, 1, settings, at()), None);
    }

    #[test]
    fn a_throttled_call_is_tried_again_soon_without_using_a_retry() {
        let settings = RetrySettings { failed_retry_limit: 0, ..RetrySettings::default() };
        let sending = ContactProgress { failed_retries: 3, ..contact(ContactStatus::Sending) };
        let throttled = AttemptEvent { throttled: true, ..AttemptEvent::failed("cll_x".into(), "concurrency_limit_reached") };
        let next = progress_contact(Channel::PhoneCall, sending, &throttled, 0, settings, at()).expect("changes");
        assert_eq!((next.status, next.failed_retries, next.retries), (ContactStatus::Retrying, 3, 0));
        assert_eq!(next.next_attempt_at, at().checked_add(THROTTLED_WAIT).ok());
        // Without the flag the same failure, with no retry left, fails the contact.
        let plain = AttemptEvent::failed("cll_x".into(), "concurrency_limit_reached");
        assert_eq!(progress_contact(Channel::PhoneCall, sending, &plain, 0, settings, at()).map(|c| c.status), Some(ContactStatus::Failed));
    }

    #[test]
    fn an_event_survives_its_stored_form() {
        let event = AttemptEvent {
            answered_by: Some(AnsweredBy::Machine),
            started_at: Some(at()),
            duration: Some(20),
            extracted_data: Some(serde_json::from_value(serde_json::json!({ "summary": "left a message" })).expect("an object")),
            throttled: true,
            ..AttemptEvent::failed("cll_x".into(), "voicemail_reached")
        }
        .with_status(AttemptStatus::Ended);
        let stored = serde_json::to_string(&event).expect("serializes");
        assert_eq!(serde_json::from_str::<AttemptEvent>(&stored).expect("reads back"), event);
    }

    #[test]
    fn whatsapp_funnel_only_moves_forward() {
        let settings = RetrySettings::default();
        let event = |s| AttemptEvent::failed("msg_x".into(), "").with_status(s);
        let read = progress_contact(Channel::Whatsapp, contact(ContactStatus::Sending), &event(AttemptStatus::Read), 0, settings, at());
        assert_eq!(read.map(|c| c.status), Some(ContactStatus::Read));
        // A late `delivered` after `read` does not move the contact back.
        assert_eq!(
            progress_contact(Channel::Whatsapp, contact(ContactStatus::Read), &event(AttemptStatus::Delivered), 0, settings, at()),
            None
        );
        // A failure after delivery is ignored; before, it retries like a phone failure.
        assert_eq!(
            progress_contact(Channel::Whatsapp, contact(ContactStatus::Delivered), &event(AttemptStatus::Failed), 0, settings, at()),
            None
        );
        let failed = progress_contact(Channel::Whatsapp, contact(ContactStatus::Sending), &event(AttemptStatus::Failed), 0, settings, at());
        assert_eq!(failed.map(|c| c.status), Some(ContactStatus::Retrying));
        let converted = AttemptEvent { converted: true, ..event(AttemptStatus::Accepted) };
        assert_eq!(
            progress_contact(Channel::Whatsapp, contact(ContactStatus::Read), &converted, 0, settings, at()).map(|c| c.status),
            Some(ContactStatus::Converted)
        );
    }

    #[test]
    fn attempt_ids_have_the_contract_shape_and_follow_each_other() {
        let (first, second) = (new_attempt_id(Channel::PhoneCall), new_attempt_id(Channel::PhoneCall));
        assert!(first.starts_with("cll_") && first.len() == 24 && first[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(first[4..15] < second[4..15], "{first} then {second}");
        assert!(new_attempt_id(Channel::Whatsapp).starts_with("msg_"));
        assert_eq!(base62_fixed(61, 3), "00z");
        assert_eq!(base62_fixed(62, 3), "010");
    }

    #[test]
    fn attempt_lattice() {
        use AttemptStatus::*;
        assert!(Queued.accepts(Ringing) && Ringing.accepts(InProgress) && InProgress.accepts(Ended));
        assert!(!InProgress.accepts(Ringing) && !Ended.accepts(Failed) && !Busy.accepts(Ended));
        assert!(Queued.accepts(Failed) && Sent.accepts(Failed) && !Delivered.accepts(Failed));
        assert!(Delivered.accepts(Read) && !Read.accepts(Delivered) && !Accepted.accepts(Rejected));
        assert_eq!(AttemptStatus::parse_event(Channel::PhoneCall, "sent"), None);
        assert_eq!(AttemptStatus::parse_event(Channel::Whatsapp, "queued"), None);
        assert_eq!(AttemptStatus::parse_event(Channel::Whatsapp, "failed"), Some(Failed));
    }

    #[test]
    fn simulator_is_deterministic_and_follows_its_rates() {
        let config = SimulatorConfig::default();
        assert_eq!(simulate("cll_abc", Channel::PhoneCall, &config, at()), simulate("cll_abc", Channel::PhoneCall, &config, at()));
        let never = SimulatorConfig { answer_rate: 0.0, ..config.clone() };
        assert_eq!(simulate("cll_abc", Channel::PhoneCall, &never, at())[0].status, AttemptStatus::NoAnswer);
        let always = SimulatorConfig { answer_rate: 1.0, machine_rate: 0.0, convert_rate: 1.0, ..config.clone() };
        let events = simulate("cll_abc", Channel::PhoneCall, &always, at());
        assert_eq!((events[0].answered_by, events[0].converted), (Some(AnsweredBy::Human), true));
        let answered =
            (0..2000).filter(|i| simulate(&format!("cll_{i}"), Channel::PhoneCall, &config, at())[0].answered_by.is_some()).count();
        assert!((900..1100).contains(&answered), "answer rate 0.5 gave {answered}/2000");
        let undelivered = SimulatorConfig { delivery_rate: 0.0, ..config };
        assert_eq!(simulate("msg_a", Channel::Whatsapp, &undelivered, at())[0].status, AttemptStatus::Failed);
    }
}
