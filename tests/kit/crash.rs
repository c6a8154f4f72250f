//! The crash scenario (issue "Engine"), parametrised by [`Size`]: small in the system test
//! `crash::sqlite_survives_sigkills` (`tests/system/`, every CI run), large in `cargo bench --bench
//! crash` (`benches/crash.rs`, whose knobs fill a [`Size`]).
//!
//! A mock provider (an axum server inside this harness, `mock.rs`) records every attempt the engine
//! POSTs to it, answers 200, then reports the call's outcome by POSTing a signed event to the attempt's
//! `callback_url`, retrying until it gets a 2xx or a 404 (the server may be down). The outcome is a
//! pure function of the attempt id (60% answered by a human, 20% by a machine, 20% no answer), so a
//! re-sent attempt gets the same outcome again.
//!
//! The real `outbound serve` binary runs as its own process on a SQLite file with
//! `--rate-limit-rps 0 --retry-interval 1s --lease 5s`. The harness creates a phone integration
//! with the webhook provider pointed at the mock, `CRASH_CAMPAIGNS` campaigns of `CRASH_CONTACTS`
//! contacts (window always open in UTC, `concurrency_limit` 100, `message_limit` 10000, `retries`
//! 1; the server's failed-retry limit is its default, 1), activates them all, and while they run
//! kills the server with SIGKILL `CRASH_KILLS` times at random points of progress (counted in
//! distinct attempts the mock has seen), restarting it each time on the same database and port.
//! Just before each kill the mock stops answering the server (its POSTs stay open and are not
//! recorded as attempts, as if lost on the way), so that it dies with handoffs nobody confirmed
//! whatever the moment. Once every campaign is `finished` it checks:
//! - every POST carried an attempt id the server created (all appear in `/calls`), a re-send
//!   (an id seen before) carried the same contact, campaign and iteration, a valid signature and
//!   `Idempotency-Key` = attempt id; no outcome event was answered 404; every handoff left
//!   unconfirmed at a kill was re-sent (same id, campaign, contact and iteration);
//! - per contact: at least one attempt (none lost), and exactly as many distinct attempts as the
//!   rules demand given the outcomes the mock returned (a machine answer allows one more while the
//!   contact's voicemail retries < 1, a no-answer one more while its failed retries < 1: at most 3);
//!   the contact's status, `call_count`, `retries` and `failed_retries` as the server reports them
//!   agree with that replay;
//! - per campaign: `/calls` `total_count` = distinct attempt ids the mock saw, every call ended with
//!   the outcome the mock reported, and the analytics agree (`contacts` and `contactsProcessed` =
//!   contacts, `calls`, answered-by counts, `contactsAnswered`, `contactsVoicemail`,
//!   `contactsFailed`).
//!
//! Webhooks out (contract §8): the server runs with `--webhook-allow-private` and
//! `--webhook-retry-delays 0s,1s,2s,4s,8s`, and before the campaigns exist the harness subscribes
//! the mock's webhook receiver (`mock.rs`: it records each delivery's `webhook-id` header, event
//! type and subject, and answers 200) to `campaign.status_changed` and `on_call_end`. Before each
//! kill the mock stops answering deliveries as well (kept open, not recorded), so the server dies
//! with deliveries nobody confirmed. Once the checks above have read the server's view, it waits
//! (same deadline, and no new delivery for the stall time is a violation) until the receiver has
//! every event that follows from that view and the deliveries log shows none `pending`, then checks:
//! - every final call (a `/calls` item whose status is not `in-progress`) has at least one
//!   `on_call_end` with its id, and no `on_call_end` names any other id;
//! - every campaign's pending→ready, ready→active and active→finished were delivered at least once,
//!   and no other status change (nor any event of a type not subscribed) was;
//! - duplicates only under the same event id: all deliveries of one subject (a call's end, a
//!   campaign's change) carry one `webhook-id`, and one `webhook-id` never names two subjects;
//!   every delivery left unconfirmed at a kill was delivered since under the same `webhook-id`.
//!
//! It prints, per event type, the events expected, the distinct events and the deliveries
//! received, the duplicate deliveries and those left unconfirmed at the kills, with the deliveries
//! log's delivered / pending / failed counts.
//!
//! Any violation: the list of problems on stderr, the tail of the server's log and the kept temp
//! dir; [`run`] returns them (the bench exits 1, the test fails). A panic of the harness is
//! caught and returned as a violation too.
//!
//! Bench defaults: 30 campaigns × 3,333 contacts (99,990 contacts). Not 10 × 10,000: a contact may take
//! up to 3 attempts and `message_limit` (at most 10,000) caps the attempts a campaign starts in
//! any 24 h, so a 10,000-contact campaign would stall on its budget before it finishes. [`Size::check`]
//! refuses `CRASH_CONTACTS` × 3 > 10,000.
//!
//! Bench knobs (environment, see `benches/crash.rs`): `CRASH_CAMPAIGNS` (30), `CRASH_CONTACTS` (3333 per campaign),
//! `CRASH_KILLS` (4), `CRASH_SEED` (random; printed, so a run can be repeated),
//! `CRASH_CALL_MS` (50: the mock waits 0..this before reporting an outcome), `CRASH_DOWNTIME_MS`
//! (2000: the server stays down 0..this after a kill), `CRASH_TIMEOUT_SECS` (1800),
//! `CRASH_KEEP` (1: keep the temp dir with the database and the server's log).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::mock::{HUMAN, MACHINE, Mock, Outcome, Subject};
use super::{Api, Violations, all_pages, log_tail, ok, start_server};

/// What one run does: its size, its randomness and its deadlines.
pub struct Size {
    pub campaigns: usize,
    /// Contacts per campaign.
    pub contacts: usize,
    pub kills: usize,
    /// Picks the kill points and the downtimes (the rest depends on timing, so a replay with the
    /// same seed kills at the same progress points, not at the same instants).
    pub seed: u64,
    /// The mock waits 0..=this (drawn from the attempt id) before reporting an outcome.
    pub max_call_ms: u64,
    /// The server stays down 0..=this after a kill.
    pub max_down_ms: u64,
    /// The overall deadline: every campaign must be finished this long after activation.
    pub timeout: Duration,
    /// No new attempt for this long while waiting for a kill point, or no POST nor accepted outcome
    /// report while campaigns are unfinished after the kills, is a violation.
    pub stall: Duration,
    /// Keep the temp dir (database, server log) even when the run passed.
    pub keep: bool,
    /// How to run this again, printed first (with the seed).
    pub command: String,
}

impl Size {
    /// Refuses sizes that cannot finish: `contacts` × the most attempts a contact may take must fit
    /// in `message_limit`.
    pub fn check(&self) -> Result<(), String> {
        let max_attempts = 1 + VOICEMAIL_RETRIES as usize + FAILED_RETRY_LIMIT as usize;
        if self.contacts * max_attempts > MESSAGE_LIMIT || self.contacts == 0 || self.campaigns == 0 {
            return Err(format!(
                "{} contacts per campaign: a contact may take {max_attempts} attempts and message_limit caps a campaign at \
                 {MESSAGE_LIMIT} attempts per 24 h, so such a campaign can stall on its budget; use 1..={} contacts per campaign \
                 (more campaigns instead)",
                self.contacts,
                MESSAGE_LIMIT / max_attempts
            ));
        }
        Ok(())
    }
}
/// The campaigns' `retries` (voicemail retries).
pub const VOICEMAIL_RETRIES: u32 = 1;
/// The server's `--failed-retry-limit` (its default).
pub const FAILED_RETRY_LIMIT: u32 = 1;
pub const MESSAGE_LIMIT: usize = 10_000;
pub const CONCURRENCY_LIMIT: usize = 100;
/// The server's `--lease`: an unconfirmed handoff is re-sent after it.
pub const LEASE: Duration = Duration::from_secs(5);
/// The server's `--webhook-retry-delays`: the default's five attempts, in seconds rather than
/// minutes, so that a delivery that failed (the receiver refuses none; only a timeout could fail
/// one) is tried again within the run.
const WEBHOOK_RETRY_DELAYS: &str = "0s,1s,2s,4s,8s";
/// The campaign status changes a run makes, each to be delivered (`campaign.status_changed`).
const STATUS_CHANGES: [(&str, &str); 3] = [("pending", "ready"), ("ready", "active"), ("active", "finished")];
/// What the rules demand of a contact given the outcomes of its attempts, in order.
pub struct Replay {
    /// Attempts the rules demand; `None` when the last outcome allowed one more that never came.
    pub demanded: Option<usize>,
    pub status: &'static str,
    pub retries: u32,
    pub failed_retries: u32,
}

pub fn replay(outcomes: &[Outcome]) -> Replay {
    let (mut retries, mut failed_retries) = (0, 0);
    for (i, outcome) in outcomes.iter().enumerate() {
        let (retry, status) = match outcome {
            Outcome::Human => (false, "answered"),
            Outcome::Machine if retries < VOICEMAIL_RETRIES => {
                retries += 1;
                (true, "retrying")
            }
            Outcome::Machine => (false, "voicemail"),
            Outcome::NoAnswer if failed_retries < FAILED_RETRY_LIMIT => {
                failed_retries += 1;
                (true, "retrying")
            }
            Outcome::NoAnswer => (false, "failed"),
        };
        if !retry {
            return Replay { demanded: Some(i + 1), status, retries, failed_retries };
        }
    }
    Replay { demanded: None, status: "retrying", retries, failed_retries }
}

/// The expected number of attempts per contact under the rules and the mock's shares.
pub fn expected_attempts(retries: u32, failed_retries: u32) -> f64 {
    let machine = if retries < VOICEMAIL_RETRIES { expected_attempts(retries + 1, failed_retries) } else { 0.0 };
    let no_answer = if failed_retries < FAILED_RETRY_LIMIT { expected_attempts(retries, failed_retries + 1) } else { 0.0 };
    1.0 + MACHINE * machine + (1.0 - HUMAN - MACHINE) * no_answer
}

struct Kill {
    at_distinct: u64,
    at_posts: u64,
    /// POSTs the mock left unanswered just before the kill (handoffs nobody confirmed).
    unconfirmed: usize,
    /// Webhook deliveries the mock left unanswered just before the kill.
    unconfirmed_deliveries: usize,
    at: Duration,
    down: Duration,
    restart: Duration,
}

/// Runs the scenario at `size` and returns the violations found (none: passed). Prints its
/// progress and its report; on a violation also the problems, the tail of the server's log and
/// the temp dir it keeps.
pub fn run(size: &Size) -> Violations {
    if let Err(err) = size.check() {
        let mut violations = Violations::default();
        violations.add("size refused", err);
        return violations;
    }
    let (campaigns, contacts, kills, seed) = (size.campaigns, size.contacts, size.kills, size.seed);
    let (max_call_ms, max_down_ms, timeout, keep) = (size.max_call_ms, size.max_down_ms, size.timeout, size.keep);
    let max_attempts = 1 + VOICEMAIL_RETRIES as usize + FAILED_RETRY_LIMIT as usize;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("server.log");
    let database = format!("sqlite://{}", dir.path().join("crash.db").display());
    let port = super::free_port();
    let listen = format!("127.0.0.1:{port}");
    let args: Vec<String> = [
        "--listen",
        &listen,
        "--public-url",
        &format!("http://{listen}"),
        "--database",
        &database,
        "--rate-limit-rps",
        "0",
        "--retry-interval",
        "1s",
        "--lease",
        &format!("{}s", LEASE.as_secs()),
        "--webhook-allow-private",
        "--webhook-retry-delays",
        WEBHOOK_RETRY_DELAYS,
    ]
    .map(str::to_owned)
    .into();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut violations = Violations::default();
    println!("Crash scenario: `{}` (seed {seed})", size.command);
    println!("Machine: {}", super::machine());

    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(async {
        // The mock provider.
        let mock = Mock::new(0, max_call_ms);
        let mock_url = mock.serve().await;

        // The server and the campaigns.
        let mut server = start_server(&args, &log).await;
        let api = Api::new(&server.address, server.key.as_deref().expect("bootstrap key on a fresh database"));
        let agent = api.create_agent("Crash test").await;
        let (integration, secret) = api.create_integration(&agent, "webhook", json!({ "url": mock_url, "timeout_ms": 5000 })).await;
        mock.secret.set(secret).expect("secret set once");
        // One subscription to the mock's receiver, before the campaigns exist (their first change,
        // pending → ready, is an event too).
        let events = json!(["campaign.status_changed", "on_call_end"]);
        let subscription = api.post("/webhooks", &json!({ "url": mock.webhook_url(), "events": events })).await;
        let webhook = subscription["webhook"]["id"].as_str().expect("webhook id").to_owned();
        mock.webhook_secret.set(subscription["webhook"]["secret"].as_str().expect("webhook secret").to_owned()).expect("set once");
        let settings = json!({ "retries": VOICEMAIL_RETRIES, "concurrency_limit": CONCURRENCY_LIMIT, "message_limit": MESSAGE_LIMIT });
        let mut ids = Vec::with_capacity(campaigns);
        for i in 0..campaigns {
            ids.push(api.create_campaign(&format!("crash {i}"), &agent, &integration, settings.clone()).await);
        }
        eprintln!("loading {campaigns} × {contacts} contacts …");
        api.load_contacts(&ids, contacts).await;

        // Kill points, in distinct attempts seen by the mock.
        let expected_total = (campaigns * contacts) as f64 * expected_attempts(0, 0);
        let mut points: Vec<u64> = (0..kills).map(|_| (expected_total * rng.random_range(0.05..0.9)) as u64).collect();
        points.sort_unstable();

        let started = Instant::now();
        for id in &ids {
            api.post(&format!("/campaigns/{id}/activate"), &json!({})).await;
        }
        eprintln!("activated; about {expected_total:.0} attempts expected; kills at {points:?} distinct attempts");
        let mut kill_log = Vec::new();
        let mut self_exits = Vec::new();
        // Stalled before a kill point: no more kills, and no wait for the campaigns to finish.
        let mut stalled = false;
        for point in points {
            let mut last = (mock.distinct.load(Ordering::Relaxed), Instant::now());
            while mock.distinct.load(Ordering::Relaxed) < point {
                if let Some(status) = server.exited() {
                    self_exits.push(format!("the server exited by itself ({status}) at {} distinct attempts", mock.distinct.load(Ordering::Relaxed)));
                    server = start_server(&args, &log).await;
                }
                let now = mock.distinct.load(Ordering::Relaxed);
                if now != last.0 {
                    last = (now, Instant::now());
                } else if last.1.elapsed() > size.stall || started.elapsed() > timeout {
                    violations.add(
                        "progress stalled",
                        format!(
                            "at {now} distinct attempts (kill point {point}) after {:.0} s: no new attempt for {:.0} s (at most {} s), or past \
                             the deadline of {} s",
                            started.elapsed().as_secs_f64(),
                            last.1.elapsed().as_secs_f64(),
                            size.stall.as_secs(),
                            timeout.as_secs()
                        ),
                    );
                    stalled = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if stalled {
                break;
            }
            let at = started.elapsed();
            let (at_distinct, at_posts) = (mock.distinct.load(Ordering::Relaxed), mock.posts.load(Ordering::Relaxed));
            // Leave it handoffs nobody confirmed, whatever the moment: the mock stops answering it,
            // and it dies with those POSTs in flight (after the first of them, or after 2 s if it
            // sent none), so every kill makes it re-send after the restart.
            // Its webhook deliveries too: it dies with some unconfirmed (after the first, or after
            // 2 s if it sent none).
            let swallowed_before = mock.swallowed.lock().expect("swallowed").len();
            let deliveries_before = mock.webhooks.lock().expect("webhooks").swallowed.len();
            mock.swallow_from(Some(server.address.clone()));
            let swallowing = Instant::now();
            while (mock.swallowed.lock().expect("swallowed").len() == swallowed_before
                || mock.webhooks.lock().expect("webhooks").swallowed.len() == deliveries_before)
                && swallowing.elapsed() < Duration::from_secs(2)
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            server.kill();
            mock.swallow_from(None);
            let unconfirmed = mock.swallowed.lock().expect("swallowed").len() - swallowed_before;
            let unconfirmed_deliveries = mock.webhooks.lock().expect("webhooks").swallowed.len() - deliveries_before;
            let down = Duration::from_millis(rng.random_range(0..=max_down_ms));
            tokio::time::sleep(down).await;
            let restarting = Instant::now();
            server = start_server(&args, &log).await;
            let restart = restarting.elapsed();
            eprintln!(
                "  killed at {at_distinct} distinct attempts ({:.1} s) with {unconfirmed} handoffs and {unconfirmed_deliveries} webhook deliveries \
                 unconfirmed, down {} ms, back in {} ms",
                at.as_secs_f64(),
                down.as_millis(),
                restart.as_millis()
            );
            kill_log.push(Kill { at_distinct, at_posts, unconfirmed, unconfirmed_deliveries, at, down, restart });
        }

        // Wait until every campaign is finished.
        let mut next = 0;
        let mut last_report = Instant::now();
        let mut watch = mock.watch(started, timeout, size.stall);
        while next < ids.len() && !stalled {
            if let Some(status) = server.exited() {
                self_exits.push(format!("the server exited by itself ({status}) at {} distinct attempts", mock.distinct.load(Ordering::Relaxed)));
                server = start_server(&args, &log).await;
            }
            let campaign = api.campaign(ids[next]).await;
            if campaign["status"] == "finished" {
                next += 1;
                continue;
            }
            if let Some(why) = watch.verdict(&mock, &campaign) {
                violations.add("campaign not finished", why);
                break;
            }
            if last_report.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "  … {:.0} s: {next}/{} campaigns finished; {} distinct attempts, {} POSTs",
                    started.elapsed().as_secs_f64(),
                    ids.len(),
                    mock.distinct.load(Ordering::Relaxed),
                    mock.posts.load(Ordering::Relaxed)
                );
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let run_time = started.elapsed();
        let posts_after_finish = mock.drain(LEASE, &mut violations).await;
        for exit in self_exits {
            violations.add("server exited by itself", exit);
        }

        // The server's view.
        eprintln!("reading the server's view (calls, contacts, analytics) …");
        let mut server_calls: HashMap<String, (i64, Value)> = HashMap::new();
        let mut server_contacts: Vec<(i64, Value)> = Vec::new();
        let mut analytics = Vec::new();
        for id in &ids {
            let campaign = api.campaign(*id).await;
            let calls_total = api.get(&format!("/campaigns/{id}/calls?pageSize=1")).await["total_count"].as_i64().unwrap_or(-1);
            for call in all_pages(&api, &format!("/campaigns/{id}/calls"), "calls").await {
                let call_id = call["id"].as_str().unwrap_or_default().to_owned();
                if server_calls.insert(call_id.clone(), (*id, call)).is_some() {
                    violations.add("call listed twice", format!("call {call_id} in campaign {id}"));
                }
            }
            server_contacts.extend(all_pages(&api, &format!("/campaigns/{id}/contacts"), "contacts").await.into_iter().map(|c| (*id, c)));
            analytics.push((*id, campaign["status"].clone(), calls_total, campaign["analytics"].clone()));
        }

        // The webhook events that follow from it: an `on_call_end` per final call, the three
        // status changes per campaign. Wait until the receiver has them all and the server has no
        // delivery pending (then nothing more is on its way).
        let mut expected: BTreeSet<Subject> = server_calls
            .iter()
            .filter(|(_, (_, call))| call["status"] != "in-progress")
            .map(|(call_id, _)| Subject::CallEnd(call_id.clone()))
            .collect();
        for id in &ids {
            expected.extend(STATUS_CHANGES.map(|(from, to)| Subject::StatusChanged(*id, from.to_owned(), to.to_owned())));
        }
        eprintln!("waiting for the {} webhook events that follow …", expected.len());
        let deliveries_log = |status: &'static str| {
            let (api, webhook) = (api.clone(), webhook.clone());
            async move { api.get(&format!("/webhooks/{webhook}/deliveries?status={status}&pageSize=1")).await["total_count"].as_i64().unwrap_or(-1) }
        };
        let waiting = Instant::now();
        let mut moved = (mock.webhooks_received.load(Ordering::Relaxed), Instant::now());
        loop {
            if let Some(status) = server.exited() {
                violations.add("server exited by itself", format!("the server exited by itself ({status}) while webhook deliveries were awaited"));
                server = start_server(&args, &log).await;
            }
            let missing = {
                let record = mock.webhooks.lock().expect("webhooks");
                let seen: HashSet<&Subject> = record.received.iter().map(|(_, subject)| subject).collect();
                expected.iter().filter(|subject| !seen.contains(subject)).count()
            };
            let pending = deliveries_log("pending").await;
            if missing == 0 && pending == 0 {
                break;
            }
            let now = mock.webhooks_received.load(Ordering::Relaxed);
            if now != moved.0 {
                moved = (now, Instant::now());
            } else if moved.1.elapsed() > size.stall || started.elapsed() > timeout {
                violations.add(
                    "webhook deliveries incomplete",
                    format!(
                        "{missing} expected events never received and {pending} deliveries pending at the server {:.0} s after every campaign \
                         was finished: no new delivery for {:.0} s (at most {} s), or past the deadline of {} s",
                        waiting.elapsed().as_secs_f64(),
                        moved.1.elapsed().as_secs_f64(),
                        size.stall.as_secs(),
                        timeout.as_secs()
                    ),
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let deliveries_wait = waiting.elapsed();
        let log_counts = [deliveries_log("delivered").await, deliveries_log("pending").await, deliveries_log("failed").await];
        drop(server);

        // Checks.
        let record = mock.record.lock().expect("record");
        for problem in &record.problems {
            violations.add("mock provider saw a bad request or report", problem.clone());
        }
        for (status, count) in mock.other_statuses.lock().expect("statuses").iter() {
            if *status != 503 && *status != 502 {
                violations.add("outcome report answered other than 2xx/404", format!("{count} reports answered {status}"));
            }
        }
        let resent_ids = record.attempts.values().filter(|seen| seen.posts > 1).count();
        // Handoffs left unconfirmed at a kill (the mock swallowed their POSTs): re-sent since,
        // same id, same campaign, contact and iteration.
        let swallowed = mock.swallowed.lock().expect("swallowed");
        let resent_unconfirmed =
            record.check_resent(&swallowed, "a handoff unconfirmed at a kill", "was never re-sent", &mut violations);
        let unconfirmed_total = swallowed.len();
        drop(swallowed);
        record.check_calls(&server_calls, &mut violations);

        // Per contact.
        let mut attempts_histogram = [0usize; 4];
        let mut max_seen = 0;
        let mut expected_by_campaign: HashMap<i64, [i64; 3]> = HashMap::new(); // answered, voicemail, failed
        let mut known_contacts = HashSet::new();
        for (campaign, contact) in &server_contacts {
            let Some(contact_id) = contact["id"].as_i64() else {
                violations.add("contact without id", contact.to_string());
                continue;
            };
            known_contacts.insert(contact_id);
            let attempt_ids = record.by_contact.get(&contact_id).map(Vec::as_slice).unwrap_or_default();
            let outcomes: Vec<Outcome> = attempt_ids.iter().map(|id| record.attempts[id].outcome).collect();
            max_seen = max_seen.max(outcomes.len());
            attempts_histogram[outcomes.len().min(3)] += 1;
            if outcomes.is_empty() {
                violations.add("contact lost (never attempted)", format!("contact {contact_id} of campaign {campaign}: {contact}"));
                continue;
            }
            if outcomes.len() > max_attempts {
                violations.add("more attempts than the rules allow", format!("contact {contact_id}: {} attempts {attempt_ids:?} {outcomes:?}", outcomes.len()));
            }
            let replayed = replay(&outcomes);
            match replayed.demanded {
                Some(n) if n < outcomes.len() => violations.add(
                    "attempt the rules did not allow",
                    format!("contact {contact_id}: {} attempts {attempt_ids:?} with outcomes {outcomes:?}; the rules allow {n}", outcomes.len()),
                ),
                None => violations.add(
                    "retry the rules demand was not made",
                    format!("contact {contact_id}: attempts {attempt_ids:?} with outcomes {outcomes:?}; the last allows a retry"),
                ),
                _ => {}
            }
            let expect = expected_by_campaign.entry(*campaign).or_default();
            match replayed.status {
                "answered" => expect[0] += 1,
                "voicemail" => expect[1] += 1,
                "failed" => expect[2] += 1,
                _ => {}
            }
            let server_view = (
                contact["status"].as_str().unwrap_or_default(),
                contact["call_count"].as_u64(),
                contact["retries"].as_u64(),
                contact["failed_retries"].as_u64(),
            );
            let replay_view =
                (replayed.status, Some(outcomes.len() as u64), Some(u64::from(replayed.retries)), Some(u64::from(replayed.failed_retries)));
            if server_view != replay_view {
                violations.add(
                    "contact state differs from the replay",
                    format!(
                        "contact {contact_id}: server (status, call_count, retries, failed_retries) = {server_view:?}, replay of {outcomes:?} = {replay_view:?}"
                    ),
                );
            }
            for id in attempt_ids {
                if record.attempts[id].campaign != *campaign {
                    violations.add("attempt for another campaign's contact", format!("attempt {id} of contact {contact_id}"));
                }
            }
        }
        for contact_id in record.by_contact.keys() {
            if !known_contacts.contains(contact_id) {
                violations.add("attempt for an unknown contact", format!("contact {contact_id}"));
            }
        }
        if server_contacts.len() != campaigns * contacts {
            violations.add("contacts listed", format!("{} contacts listed, {} loaded", server_contacts.len(), campaigns * contacts));
        }

        // Per campaign.
        let per_campaign = record.counts_by_campaign();
        let mut rows = Vec::new();
        for (id, status, calls_total, analytics) in &analytics {
            let mock_counts = per_campaign.get(id).copied().unwrap_or_default();
            let expect = expected_by_campaign.get(id).copied().unwrap_or_default();
            if status != "finished" {
                violations.add("campaign not finished", format!("campaign {id}: {status}"));
            }
            if *calls_total != mock_counts[0] {
                violations.add(
                    "/calls total_count ≠ distinct attempts the provider saw",
                    format!("campaign {id}: /calls total_count {calls_total}, provider saw {}", mock_counts[0]),
                );
            }
            let checks = [
                ("contacts", contacts as i64),
                ("contactsProcessed", contacts as i64),
                ("calls", mock_counts[0]),
                ("callsAnsweredByHuman", mock_counts[1]),
                ("callsAnsweredByMachine", mock_counts[2]),
                ("callsAnsweredByUnknown", 0),
                ("contactsAnswered", expect[0]),
                ("contactsVoicemail", expect[1]),
                ("contactsFailed", expect[2]),
                ("contactsConverted", 0),
            ];
            violations.check_analytics(*id, analytics, &checks);
            rows.push(format!(
                "| {id} | {} | {} | {calls_total} | {} | {} | {} / {} / {} | {} / {} / {} |",
                status.as_str().unwrap_or_default(),
                mock_counts[0],
                analytics["calls"],
                analytics["contactsProcessed"],
                mock_counts[1],
                mock_counts[2],
                mock_counts[3],
                analytics["contactsAnswered"],
                analytics["contactsVoicemail"],
                analytics["contactsFailed"],
            ));
        }

        // Webhooks: what the receiver got against the events that follow from the server's view.
        let hooks = mock.webhooks.lock().expect("webhooks");
        for problem in &hooks.problems {
            violations.add("webhook receiver got a bad delivery", problem.clone());
        }
        let mut ids_of: BTreeMap<&Subject, BTreeSet<&str>> = BTreeMap::new();
        let mut subjects_of: BTreeMap<&str, BTreeSet<&Subject>> = BTreeMap::new();
        // Per event type: deliveries received.
        let mut deliveries_by_type: BTreeMap<&str, usize> = BTreeMap::new();
        for (event_id, subject) in &hooks.received {
            ids_of.entry(subject).or_default().insert(event_id);
            subjects_of.entry(event_id).or_default().insert(subject);
            *deliveries_by_type.entry(subject.event_type()).or_default() += 1;
        }
        for subject in &expected {
            if !ids_of.contains_key(subject) {
                match subject {
                    Subject::CallEnd(call) => violations.add("final call without on_call_end", format!("call {call}")),
                    other => violations.add("campaign status change never delivered", format!("{other:?}")),
                }
            }
        }
        for (subject, event_ids) in &ids_of {
            match subject {
                Subject::CallEnd(call) if !expected.contains(*subject) => violations.add(
                    "on_call_end for no final call of the server",
                    format!("call {call} (webhook-id {event_ids:?}): {:?}", server_calls.get(call).map(|(_, c)| &c["status"])),
                ),
                Subject::StatusChanged(..) if !expected.contains(*subject) => {
                    violations.add("campaign status change delivered that did not happen", format!("{subject:?} (webhook-id {event_ids:?})"))
                }
                Subject::Other(event_type) => violations.add("event of a type not subscribed", format!("{event_type} (webhook-id {event_ids:?})")),
                _ => {}
            }
            if event_ids.len() > 1 {
                violations.add("one event delivered under several webhook-ids", format!("{subject:?}: {event_ids:?}"));
            }
        }
        for (event_id, subjects) in &subjects_of {
            if subjects.len() > 1 {
                violations.add("one webhook-id names several events", format!("{event_id}: {subjects:?}"));
            }
        }
        // Deliveries left unconfirmed at a kill: delivered since, under the same id.
        let mut redelivered = 0;
        for (event_id, subject) in &hooks.swallowed {
            if ids_of.get(subject).is_some_and(|event_ids| event_ids.contains(event_id.as_str())) {
                redelivered += 1;
            } else {
                violations.add(
                    "a webhook delivery unconfirmed at a kill was never delivered again",
                    format!("{subject:?} webhook-id {event_id}; delivered under {:?}", ids_of.get(subject)),
                );
            }
        }
        let mut expected_by_type: BTreeMap<&str, usize> = BTreeMap::new();
        for subject in &expected {
            *expected_by_type.entry(subject.event_type()).or_default() += 1;
        }
        let mut distinct_by_type: BTreeMap<&str, usize> = BTreeMap::new();
        for subject in ids_of.keys() {
            *distinct_by_type.entry(subject.event_type()).or_default() += 1;
        }
        let mut swallowed_by_type: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, subject) in &hooks.swallowed {
            *swallowed_by_type.entry(subject.event_type()).or_default() += 1;
        }
        let mut webhook_rows = Vec::new();
        let types: BTreeSet<&str> = expected_by_type.keys().chain(deliveries_by_type.keys()).copied().collect();
        for event_type in types {
            let count = |map: &BTreeMap<&str, usize>| map.get(event_type).copied().unwrap_or(0);
            webhook_rows.push(format!(
                "| {event_type} | {} | {} | {} | {} | {} |",
                count(&expected_by_type),
                count(&distinct_by_type),
                count(&deliveries_by_type),
                count(&deliveries_by_type) - count(&distinct_by_type),
                count(&swallowed_by_type),
            ));
        }
        let total = |map: &BTreeMap<&str, usize>| map.values().sum::<usize>();
        webhook_rows.push(format!(
            "| all | {} | {} | {} | {} | {} |",
            total(&expected_by_type),
            total(&distinct_by_type),
            total(&deliveries_by_type),
            total(&deliveries_by_type) - total(&distinct_by_type),
            total(&swallowed_by_type),
        ));
        let unconfirmed_deliveries = hooks.swallowed.len();
        drop(hooks);

        // Summary.
        let posts = mock.posts.load(Ordering::Relaxed);
        let distinct = record.attempts.len();
        println!("\nRun: {campaigns} campaigns × {contacts} contacts, webhook provider (mock), {} SIGKILLs, all finished in {:.1} s", kill_log.len(), run_time.as_secs_f64());
        println!("\n| kill | at distinct attempts | at POSTs | handoffs unconfirmed | webhook deliveries unconfirmed | at | down | back listening after |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for (i, kill) in kill_log.iter().enumerate() {
            println!(
                "| {} | {} | {} | {} | {} | {:.1} s | {} ms | {} ms |",
                i + 1,
                kill.at_distinct,
                kill.at_posts,
                kill.unconfirmed,
                kill.unconfirmed_deliveries,
                kill.at.as_secs_f64(),
                kill.down.as_millis(),
                kill.restart.as_millis()
            );
        }
        println!("\n| check | result |");
        println!("|---|---|");
        println!("| POSTs received by the provider | {posts} ({posts_after_finish} after every campaign was finished) |");
        println!("| distinct attempt ids | {distinct} (expected about {expected_total:.0}) |");
        println!("| re-sends (POSTs of an id seen before) | {} re-sends of {resent_ids} ids |", record.resends);
        println!(
            "| handoffs left unconfirmed at the kills (POSTs the mock left unanswered) / re-sent after the restart, same id and contact | {unconfirmed_total} / {resent_unconfirmed} ({}) |",
            ok(violations.count("a handoff unconfirmed at a kill was never re-sent") + violations.count("a handoff unconfirmed at a kill was re-sent changed"))
        );
        println!(
            "| every POSTed id was created by the server (in /calls), re-sends unchanged | {} |",
            ok(violations.count("attempt id not created by the server") + violations.count("call differs from what the provider got"))
        );
        println!("| every /calls id reached the provider | {} |", ok(violations.count("call never reached the provider")));
        println!(
            "| outcome reports: accepted / 404 / connection errors (server down) / other statuses | {} / {} / {} / {:?} |",
            mock.delivered.load(Ordering::Relaxed),
            mock.not_found.load(Ordering::Relaxed),
            mock.connection_errors.load(Ordering::Relaxed),
            mock.other_statuses.lock().expect("statuses")
        );
        println!(
            "| contacts with 0 / 1 / 2 / 3 attempts | {} / {} / {} / {} (max {max_seen}, rules allow {max_attempts}) |",
            attempts_histogram[0], attempts_histogram[1], attempts_histogram[2], attempts_histogram[3]
        );
        println!("| no contact lost | {} |", ok(violations.count("contact lost (never attempted)")));
        println!(
            "| attempts per contact = what the rules demand given the outcomes | {} |",
            ok(violations.count("attempt the rules did not allow")
                + violations.count("retry the rules demand was not made")
                + violations.count("more attempts than the rules allow"))
        );
        println!("| contact status, call_count, retries, failed_retries agree | {} |", ok(violations.count("contact state differs from the replay")));
        println!("| calls ended with the reported outcome | {} |", ok(violations.count("call outcome differs from the report")));
        println!(
            "| per campaign: /calls total_count and analytics agree | {} |",
            ok(violations.count("/calls total_count ≠ distinct attempts the provider saw") + violations.count("analytics differ from what happened"))
        );
        println!(
            "| webhooks: every final call has an on_call_end, none for another id | {} |",
            ok(violations.count("final call without on_call_end") + violations.count("on_call_end for no final call of the server"))
        );
        println!(
            "| webhooks: every campaign's pending→ready, ready→active, active→finished delivered, no other change | {} |",
            ok(violations.count("campaign status change never delivered")
                + violations.count("campaign status change delivered that did not happen")
                + violations.count("event of a type not subscribed"))
        );
        println!(
            "| webhooks: duplicates only under the same webhook-id (one id per event, one event per id) | {} |",
            ok(violations.count("one event delivered under several webhook-ids") + violations.count("one webhook-id names several events"))
        );
        println!(
            "| webhooks: deliveries left unconfirmed at the kills / delivered since, same webhook-id | {unconfirmed_deliveries} / {redelivered} ({}) |",
            ok(violations.count("a webhook delivery unconfirmed at a kill was never delivered again"))
        );
        println!(
            "| webhooks: every expected event received, none pending, {:.1} s after every campaign was finished; deliveries log delivered / pending / failed | {} ; {} / {} / {} |",
            deliveries_wait.as_secs_f64(),
            ok(violations.count("webhook deliveries incomplete")),
            log_counts[0],
            log_counts[1],
            log_counts[2]
        );
        println!("\n| webhook event type | events expected | distinct events delivered | deliveries | duplicate deliveries | unconfirmed at the kills |");
        println!("|---|---:|---:|---:|---:|---:|");
        for row in webhook_rows {
            println!("{row}");
        }
        println!("\n| campaign | status | distinct ids (provider) | /calls total | analytics calls | contactsProcessed | human / machine / no-answer calls | contacts answered / voicemail / failed |");
        println!("|---|---|---:|---:|---:|---:|---|---|");
        for row in rows {
            println!("{row}");
        }
    })
    }));
    if let Err(panic) = outcome {
        violations.add("the harness stopped on an error", super::panic_message(panic.as_ref()));
    }
    drop(runtime);

    if violations.is_empty() {
        println!("\nPASSED: no violation.");
        if keep {
            println!("kept {}", dir.keep().display());
        }
        return violations;
    }
    violations.print();
    eprintln!("\nlast lines of the server's log ({}):\n{}", log.display(), log_tail(&log, 20));
    eprintln!("kept {} (database crash.db, server.log)", dir.keep().display());
    violations
}
