//! The mock webhook provider of the crash and scale-out scenarios (`crash.rs`, `scaleout.rs`): an
//! axum server inside the harness that records every attempt the engine POSTs to it, answers 200, then reports
//! the call's outcome by POSTing a signed event to the attempt's `callback_url`, retrying until it
//! gets a 2xx or a 404. The outcome is a pure function of the attempt id (60% answered by a human,
//! 20% by a machine, 20% no answer), so a re-sent attempt gets the same outcome again.
//!
//! It also keeps, per campaign, how many attempts it holds at once: an attempt is held from the
//! first POST of its id until its outcome report got a 2xx (a re-send while held counts once; a
//! re-send after that is counted apart and not held again). [`Mock::peaks`] gives the most held at
//! once, either over that whole time or only until the accepted report was *sent*: that part lies
//! inside the time the server counts the attempt in flight (it is claimed before it is POSTed, and
//! closed only once the event arrives), whereas the 2xx may still be on its way back while the
//! server has already claimed the slot it freed for another attempt. A report whose try failed
//! after its connection was made (its server killed while answering) may have been recorded by
//! that server: the hold then ends at that try.
//!
//! [`Mock::swallow_from`] makes it stop answering one server: its POSTs are kept open without an
//! answer and not recorded as attempts (as if lost on the way), only listed in `swallowed`, so
//! that a server killed meanwhile leaves handoffs that nobody confirmed. (Both scenarios do it
//! before a kill.)
//!
//! It is also a webhook receiver (`POST /webhooks`, [`Mock::webhook_url`]; contract §8): it records
//! every delivery it gets, as its `webhook-id` header (the event id of every type), its event type
//! and its subject ([`Subject`]: the call id of an `on_call_end`, the campaign id and the change of
//! a `campaign.status_changed`), checks its `X-Altur-Signature` once [`Mock::webhook_secret`] is set,
//! and answers 200. While it swallows a server's POSTs it swallows every webhook delivery too (they
//! carry no sender; the crash scenario runs one server): kept open without an answer, listed in
//! [`WebhookRecord::swallowed`], not in `received`.
//!
//! Where outcomes go: to `callback_url` first. When that fails (connection error, or any status
//! other than 2xx and 404) and [`Mock::set_servers`] gave a list of live servers, the next try goes
//! to the same path on the next server of that list (round-robin), so a report whose server was
//! killed still reaches the deployment; with no list it retries `callback_url` itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use outbound::domain::ids::{sign, verify_signature};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Shares of the mock's outcomes.
pub const HUMAN: f64 = 0.6;
pub const MACHINE: f64 = 0.2;
/// How long the mock keeps trying to report one outcome.
const REPORT_FOR: Duration = Duration::from_secs(300);
/// The pause between two tries of one report.
const REPORT_PAUSE: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    Human,
    Machine,
    NoAnswer,
}

pub fn digest_u32(attempt_id: &str, word: usize) -> u32 {
    let digest = Sha256::digest(attempt_id.as_bytes());
    u32::from_le_bytes([digest[4 * word], digest[4 * word + 1], digest[4 * word + 2], digest[4 * word + 3]])
}

/// The outcome of an attempt: a pure function of its id.
pub fn outcome(attempt_id: &str) -> Outcome {
    let draw = f64::from(digest_u32(attempt_id, 0)) / (f64::from(u32::MAX) + 1.0);
    if draw < HUMAN {
        Outcome::Human
    } else if draw < HUMAN + MACHINE {
        Outcome::Machine
    } else {
        Outcome::NoAnswer
    }
}

/// The event body the mock posts for an attempt (the same bytes on every report).
pub fn event_body(attempt_id: &str, outcome: Outcome) -> Vec<u8> {
    let event = match outcome {
        Outcome::Human => json!({
            "attempt_id": attempt_id, "status": "ended", "answered_by": "human", "duration": 60, "billed_duration": 60,
            "ended_by": "user", "ended_reason": "user_hangup", "converted": false,
        }),
        Outcome::Machine => json!({
            "attempt_id": attempt_id, "status": "ended", "answered_by": "machine", "duration": 20, "billed_duration": 20,
            "ended_by": "agent", "ended_reason": "voicemail", "converted": false,
        }),
        Outcome::NoAnswer => json!({
            "attempt_id": attempt_id, "status": "no-answer", "answered_by": null, "duration": 0, "billed_duration": 0,
            "ended_reason": "no_answer", "converted": false,
        }),
    };
    serde_json::to_vec(&event).expect("JSON")
}

/// The call's `status` and `answered_by` the server should show after an outcome.
pub fn call_fields(outcome: Outcome) -> (&'static str, Value) {
    match outcome {
        Outcome::Human => ("ended", json!("human")),
        Outcome::Machine => ("ended", json!("machine")),
        Outcome::NoAnswer => ("no-answer", Value::Null),
    }
}

/// An attempt as the mock saw it.
pub struct Seen {
    pub campaign: i64,
    pub contact: i64,
    pub iteration: i64,
    pub outcome: Outcome,
    pub posts: u32,
    /// The server that first sent it (`callback_url` up to `/api/`).
    pub sender: String,
    /// Held: first POSTed and its outcome not yet accepted (nor given up on).
    pub held: bool,
    /// When its first POST arrived.
    pub received: Instant,
    /// When the report that ended the hold was sent, and when its answer came.
    pub released: Option<(Instant, Instant)>,
    /// Its outcome report got a 2xx.
    pub reported: bool,
}

/// POSTs from one server (told apart by the start of their `callback_url`).
#[derive(Default, Clone, Copy)]
pub struct Sends {
    /// First POSTs of an id.
    pub first: u64,
    /// POSTs of an id seen before.
    pub resends: u64,
    /// Re-sends of an id another server sent first.
    pub takeovers: u64,
}

/// Attempts of one campaign the mock holds at once.
#[derive(Default, Clone, Copy)]
pub struct Held {
    pub now: usize,
    pub peak: usize,
}

#[derive(Default)]
pub struct Record {
    pub attempts: HashMap<String, Seen>,
    /// Contact id → its attempt ids in the order the mock first saw them.
    pub by_contact: HashMap<i64, Vec<String>>,
    pub resends: u64,
    /// Re-sends of an id whose outcome had already been accepted.
    pub resends_after_outcome: u64,
    /// Campaign id → attempts held now and at the peak.
    pub held: HashMap<i64, Held>,
    /// Server (`http://HOST:PORT`) → its POSTs.
    pub senders: BTreeMap<String, Sends>,
    pub problems: Vec<String>,
}

impl Record {
    /// Checks that every handoff the mock swallowed (`swallowed`: attempt id → its campaign,
    /// contact and iteration) was sent again since with the same id, campaign, contact and
    /// iteration; `what` names those handoffs in the violations, `never` what it is when one was
    /// not sent again. Returns how many were.
    pub fn check_resent(
        &self,
        swallowed: &HashMap<String, (i64, i64, i64)>,
        what: &str,
        never: &str,
        violations: &mut super::Violations,
    ) -> usize {
        let mut resent = 0;
        for (attempt_id, (campaign, contact, iteration)) in swallowed {
            match self.attempts.get(attempt_id) {
                Some(seen) if (seen.campaign, seen.contact, seen.iteration) == (*campaign, *contact, *iteration) => resent += 1,
                Some(seen) => violations.add(
                    &format!("{what} was re-sent changed"),
                    format!(
                        "attempt {attempt_id}: first sent for campaign {campaign} contact {contact} iteration {iteration}, re-sent for \
                         campaign {} contact {} iteration {}",
                        seen.campaign, seen.contact, seen.iteration
                    ),
                ),
                None => violations.add(
                    &format!("{what} {never}"),
                    format!("attempt {attempt_id} (campaign {campaign}, contact {contact}) was never sent again"),
                ),
            }
        }
        resent
    }

    /// Per campaign: distinct attempt ids, and of them answered by a human, by a machine, not answered.
    pub fn counts_by_campaign(&self) -> HashMap<i64, [i64; 4]> {
        let mut per_campaign: HashMap<i64, [i64; 4]> = HashMap::new();
        for seen in self.attempts.values() {
            let counts = per_campaign.entry(seen.campaign).or_default();
            counts[0] += 1;
            counts[match seen.outcome {
                Outcome::Human => 1,
                Outcome::Machine => 2,
                Outcome::NoAnswer => 3,
            }] += 1;
        }
        per_campaign
    }

    /// The server's calls (id → campaign, call) against what the provider got: every attempt id
    /// is a call of the same campaign and contact with the reported outcome, every call reached
    /// the provider.
    pub fn check_calls<V: std::borrow::Borrow<Value>>(&self, server_calls: &HashMap<String, (i64, V)>, violations: &mut super::Violations) {
        for (attempt_id, seen) in &self.attempts {
            let Some((campaign, call)) = server_calls.get(attempt_id).map(|(campaign, call)| (campaign, call.borrow())) else {
                violations.add(
                    "attempt id not created by the server",
                    format!("attempt {attempt_id} (campaign {}, contact {}) is not in /calls", seen.campaign, seen.contact),
                );
                continue;
            };
            if *campaign != seen.campaign || call["contact"]["id"].as_i64() != Some(seen.contact) {
                violations.add(
                    "call differs from what the provider got",
                    format!(
                        "call {attempt_id}: server says campaign {campaign} contact {}, mock got campaign {} contact {}",
                        call["contact"]["id"], seen.campaign, seen.contact
                    ),
                );
            }
            let (status, answered_by) = call_fields(seen.outcome);
            if call["status"] != status || call["answered_by"] != answered_by {
                violations.add(
                    "call outcome differs from the report",
                    format!(
                        "call {attempt_id}: status {} answered_by {}, reported {status} {answered_by}",
                        call["status"], call["answered_by"]
                    ),
                );
            }
        }
        for (call_id, (campaign, _)) in server_calls {
            if !self.attempts.contains_key(call_id) {
                violations.add("call never reached the provider", format!("call {call_id} of campaign {campaign}"));
            }
        }
    }
}

/// What a webhook delivery tells of: one subject is one event, so every delivery of it must carry
/// the same `webhook-id`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Subject {
    /// `on_call_end` of this call id.
    CallEnd(String),
    /// `campaign.status_changed`: campaign id, `previous_status`, `status`.
    StatusChanged(i64, String, String),
    /// Any other event type (the scenarios subscribe to none).
    Other(String),
}

impl Subject {
    /// The event type it belongs to.
    pub fn event_type(&self) -> &str {
        match self {
            Subject::CallEnd(_) => "on_call_end",
            Subject::StatusChanged(..) => "campaign.status_changed",
            Subject::Other(event_type) => event_type,
        }
    }
}

/// The webhook deliveries the mock got.
#[derive(Default)]
pub struct WebhookRecord {
    /// Every delivery answered 200, in order of arrival: its `webhook-id` and subject.
    pub received: Vec<(String, Subject)>,
    /// Every delivery left without an answer while swallowing (before a kill).
    pub swallowed: Vec<(String, Subject)>,
    /// Deliveries without a `webhook-id`, with a body it cannot read or a wrong signature.
    pub problems: Vec<String>,
}

/// The mock provider.
pub struct Mock {
    pub secret: OnceLock<String>,
    pub record: Mutex<Record>,
    pub posts: AtomicU64,
    pub distinct: AtomicU64,
    /// Outcome reports not yet answered 2xx or 404.
    pub pending: AtomicI64,
    pub delivered: AtomicU64,
    /// Reports accepted by another server than the one in `callback_url`.
    pub delivered_elsewhere: AtomicU64,
    pub not_found: AtomicU64,
    pub connection_errors: AtomicU64,
    pub other_statuses: Mutex<BTreeMap<u16, u64>>,
    /// Live servers (`http://HOST:PORT`) to fail over to; empty: retry `callback_url`.
    servers: Mutex<Vec<String>>,
    /// POSTs from this server (`http://HOST:PORT`) are swallowed.
    swallow: Mutex<Option<String>>,
    /// Attempt id → (campaign, contact, iteration) of every swallowed POST.
    pub swallowed: Mutex<HashMap<String, (i64, i64, i64)>>,
    /// The webhook deliveries received; `webhooks_received` counts `webhooks.received` (progress).
    pub webhooks: Mutex<WebhookRecord>,
    pub webhooks_received: AtomicU64,
    /// The subscription's secret, to check `X-Altur-Signature` (unset: not checked).
    pub webhook_secret: OnceLock<String>,
    /// `http://127.0.0.1:PORT`, once it listens.
    address: OnceLock<String>,
    client: reqwest::Client,
    /// The mock waits `min_call_ms..=max_call_ms` (drawn from the attempt id) before reporting.
    min_call_ms: u64,
    max_call_ms: u64,
}

impl Mock {
    pub fn new(min_call_ms: u64, max_call_ms: u64) -> Arc<Mock> {
        assert!(min_call_ms <= max_call_ms, "call time {min_call_ms}..={max_call_ms} ms is empty");
        Arc::new(Mock {
            secret: OnceLock::new(),
            record: Mutex::new(Record::default()),
            posts: AtomicU64::new(0),
            distinct: AtomicU64::new(0),
            pending: AtomicI64::new(0),
            delivered: AtomicU64::new(0),
            delivered_elsewhere: AtomicU64::new(0),
            not_found: AtomicU64::new(0),
            connection_errors: AtomicU64::new(0),
            other_statuses: Mutex::new(BTreeMap::new()),
            servers: Mutex::new(Vec::new()),
            swallow: Mutex::new(None),
            swallowed: Mutex::new(HashMap::new()),
            webhooks: Mutex::new(WebhookRecord::default()),
            webhooks_received: AtomicU64::new(0),
            webhook_secret: OnceLock::new(),
            address: OnceLock::new(),
            client: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client"),
            min_call_ms,
            max_call_ms,
        })
    }

    /// Once every campaign is finished: waits (60 s at most) for the outcome reports still on their
    /// way, then one lease and a second for late re-sends; returns how many POSTs came meanwhile
    /// and records the reports never accepted.
    pub async fn drain(&self, lease: Duration, violations: &mut super::Violations) -> u64 {
        let posts_at_finish = self.posts.load(Ordering::Relaxed);
        let waiting = Instant::now();
        while self.pending.load(Ordering::Relaxed) > 0 && waiting.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(lease + Duration::from_secs(1)).await;
        let pending = self.pending.load(Ordering::Relaxed);
        if pending > 0 {
            violations.add("outcome reports still pending", format!("{pending} reports still not accepted"));
        }
        self.posts.load(Ordering::Relaxed) - posts_at_finish
    }

    /// What shows the servers are moving: POSTs received and outcome reports accepted, so far.
    pub fn progress(&self) -> (u64, u64) {
        (self.posts.load(Ordering::Relaxed), self.delivered.load(Ordering::Relaxed))
    }

    /// A watch on a run that waits for its campaigns to finish (see [`Watch`]).
    pub fn watch(&self, started: Instant, timeout: Duration, stall: Duration) -> Watch {
        Watch::new(started, timeout, stall, self.progress())
    }

    /// Listens on a free port of 127.0.0.1; returns the URL to configure as the webhook provider's
    /// `url` (the webhook receiver is at [`Mock::webhook_url`]).
    pub async fn serve(self: &Arc<Self>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("mock listens");
        let address = format!("http://{}", listener.local_addr().expect("address"));
        let url = format!("{address}/attempts");
        let _ = self.address.set(address);
        let app = Router::new().route("/attempts", post(receive)).route("/webhooks", post(receive_webhook)).with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("mock serves") });
        url
    }

    /// The URL of its webhook receiver, for a subscription (once it serves).
    pub fn webhook_url(&self) -> String {
        format!("{}/webhooks", self.address.get().expect("the mock serves"))
    }

    /// The servers reports fail over to (replaces the list).
    pub fn set_servers(&self, servers: Vec<String>) {
        *self.servers.lock().expect("servers") = servers;
    }

    /// From now on, POSTs from `server` (`http://HOST:PORT`; `None`: from nobody) are swallowed.
    pub fn swallow_from(&self, server: Option<String>) {
        *self.swallow.lock().expect("swallow") = server;
    }

    pub fn problem(&self, problem: String) {
        self.record.lock().expect("record").problems.push(problem);
    }

    /// Campaign id → (attempts held now, peak), live, an attempt held until its report's 2xx.
    pub fn held(&self) -> BTreeMap<i64, Held> {
        self.record.lock().expect("record").held.iter().map(|(id, held)| (*id, *held)).collect()
    }

    /// Campaign id → the most attempts held at once, each from its first POST until the report that
    /// ended its hold was sent (`until_answer` false) or was answered (true). An attempt never
    /// released counts as held to the end.
    pub fn peaks(&self, until_answer: bool) -> BTreeMap<i64, usize> {
        let record = self.record.lock().expect("record");
        let mut changes: HashMap<i64, Vec<(Instant, i32)>> = HashMap::new();
        for seen in record.attempts.values() {
            let changes = changes.entry(seen.campaign).or_default();
            changes.push((seen.received, 1));
            if let Some((sent, answered)) = seen.released {
                changes.push((if until_answer { answered } else { sent }, -1));
            }
        }
        changes
            .into_iter()
            .map(|(campaign, mut changes)| {
                // At the same instant a release goes first.
                changes.sort_unstable();
                let (mut now, mut peak) = (0_i64, 0_i64);
                for (_, change) in changes {
                    now += i64::from(change);
                    peak = peak.max(now);
                }
                (campaign, usize::try_from(peak).unwrap_or(0))
            })
            .collect()
    }

    /// Where try number `tries` (0 first) of a report goes.
    fn report_url(&self, callback: &str, tries: usize) -> String {
        let servers = self.servers.lock().expect("servers");
        match (tries, callback.find("/api/")) {
            (1.., Some(path)) if !servers.is_empty() => format!("{}{}", servers[tries % servers.len()], &callback[path..]),
            _ => callback.to_owned(),
        }
    }

    /// The attempt's outcome was accepted (or will never be) by the report sent at `sent`: it is
    /// no longer held.
    fn release(&self, attempt_id: &str, reported: bool, sent: Instant) {
        let answered = Instant::now();
        let mut guard = self.record.lock().expect("record");
        let record = &mut *guard;
        if let Some(seen) = record.attempts.get_mut(attempt_id) {
            seen.reported |= reported;
            if seen.held {
                seen.held = false;
                seen.released = Some((sent, answered));
                if let Some(held) = record.held.get_mut(&seen.campaign) {
                    held.now -= 1;
                }
            }
        }
    }
}

/// `POST /attempts`: an attempt handed over by the engine.
async fn receive(State(mock): State<Arc<Mock>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let received = Instant::now();
    mock.posts.fetch_add(1, Ordering::Relaxed);
    let signature = headers.get("x-outbound-signature").and_then(|v| v.to_str().ok());
    let signed = matches!((mock.secret.get(), signature), (Some(secret), Some(signature)) if verify_signature(secret, &body, signature));
    let payload: Value = match serde_json::from_slice(&body) {
        Ok(payload) => payload,
        Err(err) => {
            mock.problem(format!("an attempt POST is not JSON ({err}): {}", String::from_utf8_lossy(&body)));
            return StatusCode::BAD_REQUEST;
        }
    };
    let (Some(attempt_id), Some(campaign), Some(contact), Some(iteration), Some(callback)) = (
        payload["attempt_id"].as_str(),
        payload["campaign"]["id"].as_i64(),
        payload["contact"]["id"].as_i64(),
        payload["iteration"].as_i64(),
        payload["callback_url"].as_str(),
    ) else {
        mock.problem(format!("an attempt POST lacks attempt_id, campaign.id, contact.id, iteration or callback_url: {payload}"));
        return StatusCode::BAD_REQUEST;
    };
    if !signed {
        mock.problem(format!("attempt {attempt_id}: X-Outbound-Signature missing or wrong"));
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    if key != Some(attempt_id) {
        mock.problem(format!("attempt {attempt_id}: Idempotency-Key is {key:?}"));
    }
    let outcome = outcome(attempt_id);
    let sender = callback.find("/api/").map_or(callback, |path| &callback[..path]);
    if mock.swallow.lock().expect("swallow").as_deref() == Some(sender) {
        mock.swallowed.lock().expect("swallowed").insert(attempt_id.to_owned(), (campaign, contact, iteration));
        // No answer for as long as the sender could wait (it is killed meanwhile).
        tokio::time::sleep(Duration::from_secs(60)).await;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    {
        let mut guard = mock.record.lock().expect("record");
        let record = &mut *guard;
        let sends = record.senders.entry(sender.to_owned()).or_default();
        match record.attempts.get_mut(attempt_id) {
            Some(seen) => {
                seen.posts += 1;
                record.resends += 1;
                sends.resends += 1;
                if seen.sender != sender {
                    sends.takeovers += 1;
                }
                if seen.reported {
                    record.resends_after_outcome += 1;
                }
                if (seen.campaign, seen.contact, seen.iteration) != (campaign, contact, iteration) {
                    record.problems.push(format!(
                        "attempt {attempt_id} re-sent for campaign {campaign} contact {contact} iteration {iteration}, first sent for \
                         campaign {} contact {} iteration {}",
                        seen.campaign, seen.contact, seen.iteration
                    ));
                }
            }
            None => {
                sends.first += 1;
                let seen = Seen {
                    campaign,
                    contact,
                    iteration,
                    outcome,
                    posts: 1,
                    sender: sender.to_owned(),
                    held: true,
                    received,
                    released: None,
                    reported: false,
                };
                record.attempts.insert(attempt_id.to_owned(), seen);
                record.by_contact.entry(contact).or_default().push(attempt_id.to_owned());
                let held = record.held.entry(campaign).or_default();
                held.now += 1;
                held.peak = held.peak.max(held.now);
                mock.distinct.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    mock.pending.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(report(mock.clone(), attempt_id.to_owned(), callback.to_owned(), outcome));
    StatusCode::OK
}

/// `POST /webhooks`: a webhook delivery (§8.2), recorded and answered 200, or swallowed.
async fn receive_webhook(State(mock): State<Arc<Mock>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(event_id) = header("webhook-id").map(str::to_owned) else {
        mock.webhooks.lock().expect("webhooks").problems.push(format!("a delivery without webhook-id: {}", String::from_utf8_lossy(&body)));
        return StatusCode::BAD_REQUEST;
    };
    let event: Value = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(err) => {
            mock.webhooks.lock().expect("webhooks").problems.push(format!("delivery {event_id} is not JSON ({err})"));
            return StatusCode::BAD_REQUEST;
        }
    };
    let event_type = event["event_type"].as_str().unwrap_or_default();
    let campaign = &event["data"]["campaign"];
    let subject = match (
        event_type,
        event["id"].as_str(),
        campaign["id"].as_i64(),
        campaign["previous_status"].as_str(),
        campaign["status"].as_str(),
    ) {
        ("on_call_end", Some(call), ..) => Subject::CallEnd(call.to_owned()),
        ("campaign.status_changed", _, Some(id), Some(previous), Some(status)) => {
            Subject::StatusChanged(id, previous.to_owned(), status.to_owned())
        }
        ("on_call_end" | "campaign.status_changed", ..) => {
            mock.webhooks.lock().expect("webhooks").problems.push(format!("delivery {event_id} lacks its subject: {event}"));
            return StatusCode::BAD_REQUEST;
        }
        (other, ..) => Subject::Other(other.to_owned()),
    };
    let signed =
        mock.webhook_secret.get().is_none_or(|secret| header("x-altur-signature").is_some_and(|s| verify_signature(secret, &body, s)));
    if mock.swallow.lock().expect("swallow").is_some() {
        mock.webhooks.lock().expect("webhooks").swallowed.push((event_id, subject));
        // No answer for as long as the sender could wait (it is killed meanwhile).
        tokio::time::sleep(Duration::from_secs(60)).await;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let mut record = mock.webhooks.lock().expect("webhooks");
    if !signed {
        record.problems.push(format!("delivery {event_id} ({event_type}): X-Altur-Signature missing or wrong"));
    }
    record.received.push((event_id, subject));
    mock.webhooks_received.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

/// Reports an attempt's outcome to the server, until it answers 2xx or 404.
async fn report(mock: Arc<Mock>, attempt_id: String, callback: String, outcome: Outcome) {
    let spread = mock.max_call_ms - mock.min_call_ms;
    let delay = mock.min_call_ms + u64::from(digest_u32(&attempt_id, 1)) % (spread + 1);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let body = event_body(&attempt_id, outcome);
    let secret = mock.secret.get().expect("secret set before activation");
    let signature = sign(secret, &body).expect("a base64 secret");
    let started = Instant::now();
    // A try that failed after its connection was made (a server killed while answering) may have
    // been recorded: the attempt counts as released from the first such try on.
    let mut maybe_delivered = None;
    for tries in 0.. {
        let url = mock.report_url(&callback, tries);
        let sending = Instant::now();
        let sent = mock
            .client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-outbound-signature", &signature)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                mock.delivered.fetch_add(1, Ordering::Relaxed);
                if url != callback {
                    mock.delivered_elsewhere.fetch_add(1, Ordering::Relaxed);
                }
                mock.release(&attempt_id, true, maybe_delivered.unwrap_or(sending));
                break;
            }
            Ok(response) if response.status() == StatusCode::NOT_FOUND => {
                mock.not_found.fetch_add(1, Ordering::Relaxed);
                mock.problem(format!("the outcome of attempt {attempt_id} was answered 404 (unknown attempt) by {url}"));
                mock.release(&attempt_id, false, sending);
                break;
            }
            Ok(response) => *mock.other_statuses.lock().expect("statuses").entry(response.status().as_u16()).or_default() += 1,
            Err(err) => {
                mock.connection_errors.fetch_add(1, Ordering::Relaxed);
                if !err.is_connect() {
                    maybe_delivered.get_or_insert(sending);
                }
            }
        }
        if started.elapsed() > REPORT_FOR {
            mock.problem(format!("gave up reporting the outcome of attempt {attempt_id} after {} s", REPORT_FOR.as_secs()));
            mock.release(&attempt_id, false, sending);
            break;
        }
        tokio::time::sleep(REPORT_PAUSE).await;
    }
    mock.pending.fetch_sub(1, Ordering::Relaxed);
}

/// The two ways waiting for a run's campaigns ends badly: past the overall deadline, or no progress
/// (no POST nor accepted outcome report at the mock) for `stall`. Progress is any pair of counters
/// that only grow (the providers' mock, `providers_mock.rs`, gives its own).
pub struct Watch {
    started: Instant,
    timeout: Duration,
    stall: Duration,
    moved: ((u64, u64), Instant),
}

impl Watch {
    pub fn new(started: Instant, timeout: Duration, stall: Duration, progress: (u64, u64)) -> Watch {
        Watch { started, timeout, stall, moved: (progress, Instant::now()) }
    }

    /// Why waiting for `campaign` (its JSON, not yet finished) must stop now, if it must.
    pub fn verdict(&mut self, mock: &Mock, campaign: &Value) -> Option<String> {
        self.verdict_at(mock.progress(), campaign)
    }

    /// [`Watch::verdict`] given the progress counters now.
    pub fn verdict_at(&mut self, progress: (u64, u64), campaign: &Value) -> Option<String> {
        let (id, status, analytics) = (&campaign["id"], &campaign["status"], &campaign["analytics"]);
        if self.started.elapsed() > self.timeout {
            return Some(format!("campaign {id} still {status} after {} s: analytics {analytics}", self.timeout.as_secs()));
        }
        if progress != self.moved.0 {
            self.moved = (progress, Instant::now());
        } else if self.moved.1.elapsed() > self.stall {
            return Some(format!(
                "campaign {id} still {status} and no progress at the mock provider for {} s (progress stalled): analytics {analytics}",
                self.stall.as_secs()
            ));
        }
        None
    }
}
