//! Webhooks out (contract §8): subscriptions, the events they receive, how events are signed and
//! when a failed delivery is tried again. Events are recorded by the stores in the transaction of
//! the change that causes them; this module decides what they say.

use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::analytics::Analytics;
use super::attempt::{AttemptStatus, MessageStatus};
use super::campaign::{Campaign, CampaignStatus, Channel};
use super::ids::random_base62;
use super::integration::{MAX_URL_CHARS, is_http_url};
use super::timezone::TimeZone;
use super::validation::{Field, Violation, Violations, no_nul};

/// The events a subscription may ask for (§8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "campaign.status_changed")]
    CampaignStatusChanged,
    #[serde(rename = "campaign.cycle_completed")]
    CampaignCycleCompleted,
    #[serde(rename = "on_call_end")]
    OnCallEnd,
    #[serde(rename = "message.status_changed")]
    MessageStatusChanged,
    #[serde(rename = "webhook.test")]
    WebhookTest,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::CampaignStatusChanged,
        EventType::CampaignCycleCompleted,
        EventType::OnCallEnd,
        EventType::MessageStatusChanged,
        EventType::WebhookTest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CampaignStatusChanged => "campaign.status_changed",
            EventType::CampaignCycleCompleted => "campaign.cycle_completed",
            EventType::OnCallEnd => "on_call_end",
            EventType::MessageStatusChanged => "message.status_changed",
            EventType::WebhookTest => "webhook.test",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// A delivery's state in the log (§8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [DeliveryStatus::Pending, DeliveryStatus::Delivered, DeliveryStatus::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Only a failed delivery is sent again by hand (§8.2): a pending one will be anyway, a
    /// delivered one is done.
    pub fn may_retry(self) -> bool {
        self == DeliveryStatus::Failed
    }
}

/// `filters` of a subscription: `status` narrows `campaign.status_changed` to these new statuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookFilters {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Vec<CampaignStatus>>,
}

/// A subscription as the API shows it (the secret only at creation and rotation).
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<EventType>,
    pub filters: Option<WebhookFilters>,
    pub description: Option<String>,
    pub enabled: bool,
    pub secret: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What an event needs of a subscription to decide whether it goes there.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub events: Vec<EventType>,
    pub filters: Option<WebhookFilters>,
}

impl Subscription {
    pub fn wants(&self, event: &NewEvent) -> bool {
        if !self.events.contains(&event.event_type) {
            return false;
        }
        match (&event.event_type, self.filters.as_ref().and_then(|f| f.status.as_ref()), event.campaign_status) {
            (EventType::CampaignStatusChanged, Some(statuses), Some(status)) => statuses.contains(&status),
            _ => true,
        }
    }
}

/// The body of `POST /webhooks` (§8.1).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    #[serde(default)]
    #[schema(value_type = String, required = true, max_length = 2000)]
    pub url: Field<String>,
    #[serde(default)]
    #[schema(value_type = Vec<EventType>, required = true, min_items = 1)]
    pub events: Field<Vec<String>>,
    /// `null` (the default) or `{}`: every event of the types subscribed to.
    #[serde(default)]
    #[schema(value_type = Option<WebhookFiltersInput>)]
    pub filters: Field<WebhookFiltersInput>,
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 1000)]
    pub description: Field<String>,
    #[serde(default)]
    #[schema(value_type = bool, nullable = false)]
    pub enabled: Field<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookFiltersInput {
    #[serde(default)]
    #[schema(value_type = Option<Vec<CampaignStatus>>)]
    pub status: Field<Vec<String>>,
}

/// The longest description kept.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;

/// A validated subscription, before it has an id and a secret.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    pub events: Vec<EventType>,
    pub filters: Option<WebhookFilters>,
    pub description: Option<String>,
    pub enabled: bool,
}

impl NewWebhook {
    pub fn create(self, at: Timestamp) -> Webhook {
        let at = super::whole_seconds(at);
        Webhook {
            id: format!("whk_{}", random_base62(20)),
            url: self.url,
            events: self.events,
            filters: self.filters,
            description: self.description,
            enabled: self.enabled,
            secret: super::ids::new_signing_secret(),
            created_at: at,
            updated_at: at,
        }
    }
}

/// The fields a `PATCH /webhooks/{id}` sets; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub events: Option<Vec<EventType>>,
    pub filters: Option<Option<WebhookFilters>>,
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

impl WebhookChange {
    pub fn apply(self, webhook: &mut Webhook, at: Timestamp) {
        if let Some(url) = self.url {
            webhook.url = url;
        }
        if let Some(events) = self.events {
            webhook.events = events;
        }
        if let Some(filters) = self.filters {
            webhook.filters = filters;
        }
        if let Some(description) = self.description {
            webhook.description = description;
        }
        if let Some(enabled) = self.enabled {
            webhook.enabled = enabled;
        }
        webhook.updated_at = super::whole_seconds(at);
    }
}

pub fn parse_new_webhook(input: &WebhookInput, allow_private: bool) -> Result<NewWebhook, Vec<Violation>> {
    let mut violations = Violations::default();
    let url = match &input.url {
        Field::Value(url) => violations.check(check_url(url, allow_private)),
        _ => violations.check(Err(Violation::new("url", "url is required"))),
    };
    let events = match &input.events {
        Field::Value(events) => violations.check(check_events(events)),
        _ => violations.check(Err(Violation::new("events", "events is required: a non-empty list of event types"))),
    };
    let filters = check_filters(&input.filters, &mut violations);
    let description = check_description(&input.description, &mut violations);
    let enabled = match input.enabled {
        Field::Value(enabled) => enabled,
        Field::Null => {
            violations.push("enabled", "enabled must be true or false");
            true
        }
        Field::Absent => true,
    };
    violations.into_result()?;
    match (url, events) {
        (Some(url), Some(events)) => Ok(NewWebhook { url, events, filters, description, enabled }),
        _ => Err(vec![Violation::new("url", "invalid webhook")]),
    }
}

pub fn parse_webhook_change(input: &WebhookInput, allow_private: bool) -> Result<WebhookChange, Vec<Violation>> {
    let mut violations = Violations::default();
    let url = match &input.url {
        Field::Value(url) => violations.check(check_url(url, allow_private)),
        Field::Null => violations.check(Err(Violation::new("url", "url cannot be null"))),
        Field::Absent => None,
    };
    let events = match &input.events {
        Field::Value(events) => violations.check(check_events(events)),
        Field::Null => violations.check(Err(Violation::new("events", "events cannot be null"))),
        Field::Absent => None,
    };
    let filters = input.filters.is_present().then(|| check_filters(&input.filters, &mut violations));
    let description = input.description.is_present().then(|| check_description(&input.description, &mut violations));
    let enabled = match input.enabled {
        Field::Value(enabled) => Some(enabled),
        Field::Null => {
            violations.push("enabled", "enabled must be true or false");
            None
        }
        Field::Absent => None,
    };
    violations.into_result()?;
    Ok(WebhookChange { url, events, filters, description, enabled })
}

/// A URL Outbound posts to ([`is_http_url`]); a literal private address only when allowed (a name
/// is checked when it is resolved, at delivery).
fn check_url(text: &str, allow_private: bool) -> Result<String, Violation> {
    let Some(parsed) = url::Url::parse(text).ok().filter(|_| is_http_url(text)) else {
        return Err(Violation::new("url", format!("url must be an http(s) URL of at most {MAX_URL_CHARS} characters, got {text:?}")));
    };
    let literal = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    if !allow_private && literal.is_some_and(is_private_address) {
        return Err(Violation::new(
            "url",
            format!(
                "url {text:?} names a loopback, private, link-local or unspecified address; the server refuses these unless started with --webhook-allow-private"
            ),
        ));
    }
    Ok(text.to_owned())
}

fn check_events(events: &[String]) -> Result<Vec<EventType>, Violation> {
    if events.is_empty() {
        return Err(Violation::new("events", "events must list at least one event type"));
    }
    let mut types = Vec::with_capacity(events.len());
    for (i, name) in events.iter().enumerate() {
        let Some(event_type) = EventType::parse(name) else {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            return Err(Violation::new(format!("events[{i}]"), format!("unknown event type {name:?}; one of {}", known.join(", "))));
        };
        if !types.contains(&event_type) {
            types.push(event_type);
        }
    }
    Ok(types)
}

fn check_filters(input: &Field<WebhookFiltersInput>, violations: &mut Violations) -> Option<WebhookFilters> {
    let Field::Value(filters) = input else { return None };
    let status = match &filters.status {
        Field::Value(names) => {
            let mut statuses = Vec::with_capacity(names.len());
            for (i, name) in names.iter().enumerate() {
                match CampaignStatus::parse(name) {
                    Some(status) if !statuses.contains(&status) => statuses.push(status),
                    Some(_) => {}
                    None => violations.push(format!("filters.status[{i}]"), format!("unknown campaign status {name:?}")),
                }
            }
            Some(statuses)
        }
        _ => None,
    };
    Some(WebhookFilters { status })
}

fn check_description(input: &Field<String>, violations: &mut Violations) -> Option<String> {
    let Field::Value(text) = input else { return None };
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        violations.push("description", format!("description must be at most {MAX_DESCRIPTION_CHARS} characters"));
    } else {
        violations.check(no_nul("description", text));
    }
    Some(text.clone())
}

/// Addresses a webhook may not reach unless private targets are allowed (§8.1): loopback, private,
/// link-local, unspecified (and the IPv6 forms of each, IPv4-mapped included).
pub fn is_private_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_address(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                // fc00::/7 unique local, fe80::/10 link-local.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// An event recorded with the change that causes it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: String,
    pub event_type: EventType,
    pub occurred_at: Timestamp,
    /// The status a campaign moved to (what `filters.status` selects).
    pub campaign_status: Option<CampaignStatus>,
    pub body: EventBody,
}

#[derive(Debug, Clone)]
pub enum EventBody {
    /// The envelope's `data`, known when the event happens; `occurred_at` is shown in this zone.
    Data { data: Value, timezone: TimeZone },
    /// An attempt's event, rendered from the attempt when first sent (its transcript, recording
    /// and contact as they are then): the status it reached, and the one before.
    Attempt { attempt_id: String, status: AttemptStatus, previous: Option<AttemptStatus> },
}

/// Whether `text` has the shape of a subscription id, `whk_` + 20 base62 (what is looked up must be).
pub fn is_webhook_id(text: &str) -> bool {
    text.strip_prefix("whk_").is_some_and(|rest| rest.len() == 20 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

pub fn new_event_id() -> String {
    format!("evt_{}", random_base62(20))
}

/// `campaign.status_changed` when `campaign` moved from `previous`, with its analytics when it
/// finished; `None` when it did not move.
pub fn status_changed(campaign: &Campaign, previous: CampaignStatus, at: Timestamp) -> Option<NewEvent> {
    let settings = &campaign.settings;
    let mut event = status_changed_of(campaign.id, &settings.name, settings.timezone.clone(), campaign.status, previous, at)?;
    if let (CampaignStatus::Finished, EventBody::Data { data, .. }) = (campaign.status, &mut event.body) {
        data["analytics"] = serde_json::to_value(Analytics::from_counters(campaign.integration.channel, &campaign.counters)).ok()?;
    }
    Some(event)
}

/// `campaign.status_changed` for a campaign known by id, name and zone (adding contacts moves
/// `pending` to `ready` without reading the whole campaign); `None` when the status did not move.
pub fn status_changed_of(
    id: i64,
    name: &str,
    timezone: TimeZone,
    status: CampaignStatus,
    previous: CampaignStatus,
    at: Timestamp,
) -> Option<NewEvent> {
    (status != previous).then(|| NewEvent {
        event_id: new_event_id(),
        event_type: EventType::CampaignStatusChanged,
        occurred_at: at,
        campaign_status: Some(status),
        body: EventBody::Data {
            data: json!({ "campaign": { "id": id, "name": name, "status": status, "previous_status": previous } }),
            timezone,
        },
    })
}

/// `campaign.cycle_completed` when iteration `ended` of a cycles campaign ended (§8.3).
pub fn cycle_completed(campaign: &Campaign, ended: i64, at: Timestamp) -> Option<NewEvent> {
    if !campaign.settings.cycles.enabled {
        return None;
    }
    let data = json!({
        "campaign": { "id": campaign.id, "name": campaign.settings.name, "status": campaign.status, "previous_status": null },
        "cycle_iteration": ended,
        "next_cycle_at": campaign.next_cycle_at.map(|t| super::whole_seconds(t).to_string()),
    });
    Some(NewEvent {
        event_id: new_event_id(),
        event_type: EventType::CampaignCycleCompleted,
        occurred_at: at,
        campaign_status: None,
        body: EventBody::Data { data, timezone: campaign.settings.timezone.clone() },
    })
}

/// The events of an iteration's end: the status change, then `campaign.cycle_completed`.
pub fn iteration_ended(campaign: &Campaign, previous: CampaignStatus, ended: i64, at: Timestamp) -> Vec<NewEvent> {
    status_changed(campaign, previous, at).into_iter().chain(cycle_completed(campaign, ended, at)).collect()
}

/// Events grouped by the organization they belong to, in order.
pub fn by_organization(events: Vec<(i64, NewEvent)>) -> Vec<(i64, Vec<NewEvent>)> {
    let mut grouped: Vec<(i64, Vec<NewEvent>)> = Vec::new();
    for (org, event) in events {
        match grouped.iter_mut().find(|(o, _)| *o == org) {
            Some((_, list)) => list.push(event),
            None => grouped.push((org, vec![event])),
        }
    }
    grouped
}

/// The event an attempt's change of status makes, if any: `on_call_end` when a call reaches a
/// final status, `message.status_changed` when a message's shown status (§4) changes.
pub fn attempt_changed(
    attempt_id: &str,
    channel: Channel,
    previous: AttemptStatus,
    status: AttemptStatus,
    at: Timestamp,
) -> Option<NewEvent> {
    let event_type = match channel {
        Channel::PhoneCall if status.is_final_call() && !previous.is_final_call() => EventType::OnCallEnd,
        Channel::Whatsapp if MessageStatus::from(status) != MessageStatus::from(previous) => EventType::MessageStatusChanged,
        _ => return None,
    };
    Some(NewEvent {
        event_id: new_event_id(),
        event_type,
        occurred_at: at,
        campaign_status: None,
        body: EventBody::Attempt { attempt_id: attempt_id.to_owned(), status, previous: Some(previous) },
    })
}

/// `webhook.test` for one subscription.
pub fn test_event(webhook_id: &str, at: Timestamp) -> NewEvent {
    NewEvent {
        event_id: new_event_id(),
        event_type: EventType::WebhookTest,
        occurred_at: at,
        campaign_status: None,
        body: EventBody::Data { data: json!({ "webhook_id": webhook_id }), timezone: TimeZone::utc() },
    }
}

/// `occurred_at` (§8.3): RFC 3339 with microseconds and the offset of the campaign's zone.
pub fn format_occurred_at(at: Timestamp, timezone: TimeZone) -> String {
    let zoned = at.to_zoned(timezone.zone().clone());
    format!("{}{}", zoned.strftime("%Y-%m-%dT%H:%M:%S%.6f"), zoned.strftime("%:z"))
}

/// Altur's versioned envelope around `data`, as compact JSON.
pub fn envelope(event_id: &str, event_type: EventType, occurred_at: &str, project_id: &str, data: &Value) -> String {
    json!({
        "event_id": event_id,
        "event_type": event_type,
        "occurred_at": occurred_at,
        "api_version": "1.0",
        "project_id": project_id,
        "data": data,
    })
    .to_string()
}

/// The signature headers of one delivery (§8.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signatures {
    /// `X-Altur-Signature`: base64(HMAC-SHA256(key, body)).
    pub altur: String,
    /// `webhook-signature` (Standard Webhooks): `v1,` + base64(HMAC-SHA256(key, "{id}.{ts}.{body}")).
    pub standard: String,
}

/// Signs `body` with a subscription's secret (base64 of the key); `None` for a secret that is not
/// base64 (never one Outbound made).
pub fn sign(secret: &str, event_id: &str, timestamp: i64, body: &[u8]) -> Option<Signatures> {
    let altur = super::ids::sign(secret, body)?;
    let mut signed = Vec::with_capacity(event_id.len() + body.len() + 24);
    signed.extend_from_slice(event_id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(timestamp.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    let standard = format!("v1,{}", super::ids::sign(secret, &signed)?);
    Some(Signatures { altur, standard })
}

/// Altur's delivery policy (§8.2): five attempts, at 0 s, 60 s, 2 min, 4 min and 8 min after the
/// event. A schedule's length is its number of attempts.
pub fn default_retry_delays() -> Vec<SignedDuration> {
    [0, 60, 120, 240, 480].into_iter().map(SignedDuration::from_secs).collect()
}

/// Reads a schedule such as `0s,60s,2m,4m,8m`: at least one delay, none negative, none shorter
/// than the one before.
pub fn parse_retry_delays(text: &str) -> Result<Vec<SignedDuration>, String> {
    let mut delays: Vec<SignedDuration> = Vec::new();
    for part in text.split(',').map(str::trim) {
        let delay: SignedDuration = part.parse().map_err(|err| format!("{part:?} is not a duration such as 0s, 60s or 2m: {err}"))?;
        if delay.is_negative() {
            return Err(format!("{part:?} must not be negative"));
        }
        if delays.last().is_some_and(|last| delay < *last) {
            return Err(format!("delays must not decrease: {part:?} comes after a longer one"));
        }
        delays.push(delay);
    }
    Ok(delays)
}

/// When the attempt after `made` attempts is due (never before `now`), or `None` when the
/// schedule has none left; a manual retry's extra attempt is therefore never retried.
pub fn next_attempt(delays: &[SignedDuration], occurred_at: Timestamp, made: i64, now: Timestamp) -> Option<Timestamp> {
    let delay = delays.get(usize::try_from(made).ok()?)?;
    Some(occurred_at.saturating_add(*delay).unwrap_or(occurred_at).max(now))
}

/// A delivery's public id (`dlv_` + its row id) and back.
pub fn delivery_public_id(id: i64) -> String {
    format!("dlv_{id}")
}

pub fn parse_delivery_id(text: &str) -> Option<i64> {
    text.strip_prefix("dlv_").filter(|digits| digits.bytes().all(|b| b.is_ascii_digit())).and_then(|digits| digits.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_those_a_public_webhook_must_not_reach() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.0.9",
            "0.0.0.0",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private_address(private.parse().expect("ip")), "{private}");
        }
        for public in ["8.8.8.8", "172.32.0.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"] {
            assert!(!is_private_address(public.parse().expect("ip")), "{public}");
        }
    }

    #[test]
    fn occurred_at_has_microseconds_and_the_zone_offset() {
        let at: Timestamp = "2026-06-09T00:00:00.123456789Z".parse().expect("time");
        let zone = TimeZone::parse("America/Mexico_City").expect("zone");
        assert_eq!(format_occurred_at(at, zone), "2026-06-08T18:00:00.123456-06:00");
        assert_eq!(format_occurred_at(at, TimeZone::utc()), "2026-06-09T00:00:00.123456+00:00");
    }

    #[test]
    fn signatures_follow_both_schemes() {
        // Standard Webhooks' published example: id, timestamp, body and secret (without `whsec_`).
        let secret = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signed = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).expect("base64 secret");
        assert_eq!(signed.standard, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(Some(signed.altur), super::super::ids::sign(secret, body));
    }

    #[test]
    fn the_schedule_counts_from_the_event() {
        let delays = default_retry_delays();
        let at: Timestamp = "2026-06-08T18:00:00Z".parse().expect("time");
        assert_eq!(next_attempt(&delays, at, 0, at), Some(at));
        assert_eq!(next_attempt(&delays, at, 2, at), Some(at + SignedDuration::from_mins(2)));
        assert_eq!(next_attempt(&delays, at, 4, at), Some(at + SignedDuration::from_mins(8)));
        assert_eq!(next_attempt(&delays, at, 5, at), None);
        let late = at + SignedDuration::from_mins(30);
        assert_eq!(next_attempt(&delays, at, 1, late), Some(late), "never in the past");
        assert_eq!(parse_retry_delays("0s,60s,2m,4m,8m"), Ok(delays));
        assert!(parse_retry_delays("0s,2m,1m").is_err());
        assert!(parse_retry_delays("-1s").is_err());
        assert!(parse_retry_delays("soon").is_err());
        assert!(parse_retry_delays("").is_err());
        assert_eq!(parse_retry_delays("0s").map(|d| d.len()), Ok(1));
    }

    #[test]
    fn urls_events_and_filters_are_checked_field_by_field() {
        let input: WebhookInput = serde_json::from_value(json!({
            "url": "ftp://example.com", "events": ["on_call_end", "nope"], "filters": { "status": ["finished", "done"] }
        }))
        .expect("input");
        let fields: Vec<String> = parse_new_webhook(&input, false).err().unwrap_or_default().into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["url", "events[1]", "filters.status[1]"]);
        let edge = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS - 20));
        assert_eq!(edge.chars().count(), MAX_URL_CHARS);
        let input: WebhookInput = serde_json::from_value(json!({ "url": edge, "events": ["webhook.test"] })).expect("input");
        let new = parse_new_webhook(&input, false).expect("accepted");
        assert!(new.enabled && new.filters.is_none() && new.description.is_none());
        let input: WebhookInput =
            serde_json::from_value(json!({ "url": "http://127.0.0.1:9/x", "events": ["webhook.test"] })).expect("input");
        assert!(parse_new_webhook(&input, false).is_err());
        assert!(parse_new_webhook(&input, true).is_ok());
    }
}
