//! The crash scenario against a real provider's API (PROVIDERS.md §1–§2): the mock Twilio of
//! `providers_mock.rs` instead of the mock webhook provider of `crash.rs`, whose [`Size`] (and
//! size rules), contact replay and settings it shares. Small in the system test
//! `crash::twilio_survives_sigkills` (`tests/system/`), large in `cargo bench --bench
//! provider_crash` (`benches/provider_crash.rs`).
//!
//! The real `outbound serve` runs on a SQLite file (`--rate-limit-rps 0 --retry-interval 1s
//! --lease 5s`, `--public-url` its own address, the credentials key file created beside the
//! database). The harness creates one `twilio` integration pointed at the mock (`api_base`,
//! `max_per_second` as given, AMD on), `campaigns` campaigns of `contacts` contacts (window always
//! open, `concurrency_limit` 100, `message_limit` 10000, `retries` 1), activates them, and kills
//! the server with SIGKILL `kills` times at random points of progress (distinct attempt ids the
//! mock has seen), restarting it on the same database and port. Just before each kill the mock
//! stops answering creates (it still records and plays them, as a provider that acted but whose
//! answer was lost), so that every kill leaves hand-offs nobody confirmed. A real provider does not
//! dedupe, so the server must never send those again: it closes them `failed` with `ended_reason`
//! `provider_unknown` and retries the contact under a new attempt id.
//!
//! Once every campaign is `finished` (and the mock's callbacks are all delivered) it checks:
//! - no attempt id reached Calls.json twice, and no create came after every campaign finished;
//! - every create was well formed and authenticated, and every callback got a 2xx (the mock
//!   records a 401, 404 or other 4xx as a problem);
//! - every attempt id the mock saw is a call in `/calls` with the outcome the mock reported
//!   (status and `answered_by`) and its `provider_id` the mock's `CA…` sid, except a call the
//!   server may have died with before recording the answer (its create came from a life of the
//!   server that was killed afterwards): that one may show no `provider_id`, or be `failed` with
//!   `ended_reason` `provider_unknown` instead of the outcome, the latter only if that same life
//!   did not acknowledge its final callback (an acknowledged outcome must not be lost). Those are
//!   counted;
//! - every call of `/calls` the mock never saw is `failed` / `provider_unknown` and was created
//!   before the last kill (claimed, then the server died before or while sending it);
//! - per contact: at least one call (none lost); its calls in order of creation replay under the
//!   rules (`crash::replay`: a machine allows one voicemail retry, a no-answer or a
//!   `provider_unknown` one failed retry) to the contact's `status`, `call_count`, `retries` and
//!   `failed_retries` as the server reports them, so none is left in `queue`, `sending` or
//!   `retrying`;
//! - per campaign: `finished`, and its analytics agree with its calls and contacts.
//!
//! It prints the kills, the counts (creates, distinct ids, creates held at the kills, calls ended
//! as reported, calls closed `provider_unknown` after a create or without one, callbacks sent /
//! acknowledged / refused, the most creates in any second against `max_per_second`) and one row
//! per campaign. Any violation: the list on stderr, the tail of the server's log and the kept temp
//! dir; a panic of the harness is a violation too.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::crash::{CONCURRENCY_LIMIT, LEASE, MESSAGE_LIMIT, Size, VOICEMAIL_RETRIES, expected_attempts, replay};
use super::mock::{Outcome, Watch, call_fields};
use super::providers_mock::{ProvidersMock, Reported, hex32, most_within};
use super::{Api, Violations, all_pages, log_tail, ok, start_server};

/// What an ended call of `/calls` says happened, as the replay counts it; `None` while not ended.
fn outcome_of(call: &Value) -> Option<Outcome> {
    match (call["status"].as_str()?, call["answered_by"].as_str()) {
        ("ended", Some("machine")) => Some(Outcome::Machine),
        ("ended", _) => Some(Outcome::Human),
        ("no-answer" | "busy" | "failed", _) => Some(Outcome::NoAnswer),
        _ => None,
    }
}

fn is_provider_unknown(call: &Value) -> bool {
    call["status"] == "failed" && call["ended_reason"] == "provider_unknown"
}

struct Kill {
    at_distinct: u64,
    at_creates: u64,
    /// Creates the mock left unanswered just before the kill.
    held: u64,
    at: Duration,
    down: Duration,
    restart: Duration,
}

/// Runs the scenario at `size` with the integration's `max_per_second`; returns the violations
/// found (none: passed). Prints its progress and its report.
pub fn run(size: &Size, max_per_second: f64) -> Violations {
    if let Err(err) = size.check() {
        let mut violations = Violations::default();
        violations.add("size refused", err);
        return violations;
    }
    let (campaigns, contacts, seed) = (size.campaigns, size.contacts, size.seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("server.log");
    let database = format!("sqlite://{}", dir.path().join("provider-crash.db").display());
    let listen = format!("127.0.0.1:{}", super::free_port());
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
    ]
    .map(str::to_owned)
    .into();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut violations = Violations::default();
    println!("Provider crash scenario (mock Twilio): `{}` (seed {seed})", size.command);
    println!("Machine: {}", super::machine());

    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(async {
            let mock = ProvidersMock::new(size.max_call_ms);
            let mock_url = mock.serve().await;
            let (account_sid, auth_token) = (format!("AC{}", hex32(seed)), hex32(seed ^ 0x5eed));
            mock.add_twilio(&account_sid, &auth_token);

            let mut server = start_server(&args, &log).await;
            let api = Api::new(&server.address, server.key.as_deref().expect("bootstrap key on a fresh database"));
            let agent = api.create_agent("Provider crash test").await;
            let config = json!({
                "account_sid": account_sid, "auth_token": auth_token, "from": "+15005550006",
                "twiml_url": format!("{mock_url}/twiml?agent=crash"), "api_base": mock_url,
                "max_per_second": max_per_second, "machine_detection": "Enable", "record": false,
            });
            let integration = api.create_integration_of(&agent, "phone_call", "twilio", config).await;
            let integration_id = integration["id"].as_str().expect("integration id").to_owned();
            let settings =
                json!({ "retries": VOICEMAIL_RETRIES, "concurrency_limit": CONCURRENCY_LIMIT, "message_limit": MESSAGE_LIMIT });
            let mut ids = Vec::with_capacity(campaigns);
            for i in 0..campaigns {
                ids.push(api.create_campaign(&format!("twilio crash {i}"), &agent, &integration_id, settings.clone()).await);
            }
            eprintln!("loading {campaigns} × {contacts} contacts …");
            api.load_contacts(&ids, contacts).await;

            let expected_total = (campaigns * contacts) as f64 * expected_attempts(0, 0);
            let mut points: Vec<u64> = (0..size.kills).map(|_| (expected_total * rng.random_range(0.05..0.9)) as u64).collect();
            points.sort_unstable();
            let started = Instant::now();
            for id in &ids {
                api.post(&format!("/campaigns/{id}/activate"), &json!({})).await;
            }
            eprintln!("activated; about {expected_total:.0} attempts expected; kills at {points:?} distinct attempts");

            let mut kill_log = Vec::new();
            let mut last_kill: Option<jiff::Timestamp> = None;
            let mut self_exits = Vec::new();
            let mut stalled = false;
            for point in points {
                let mut last = (mock.distinct.load(Ordering::Relaxed), Instant::now());
                while mock.distinct.load(Ordering::Relaxed) < point {
                    if let Some(status) = server.exited() {
                        self_exits.push(format!("the server exited by itself ({status}) at {} distinct attempts", last.0));
                        server = start_server(&args, &log).await;
                    }
                    let now = mock.distinct.load(Ordering::Relaxed);
                    if now != last.0 {
                        last = (now, Instant::now());
                    } else if last.1.elapsed() > size.stall || started.elapsed() > size.timeout {
                        violations.add(
                            "progress stalled",
                            format!("at {now} distinct attempts (kill point {point}) after {:.0} s", started.elapsed().as_secs_f64()),
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
                let (at_distinct, at_creates) = (mock.distinct.load(Ordering::Relaxed), mock.creates.load(Ordering::Relaxed));
                // Leave it hand-offs nobody confirmed: the mock stops answering creates, and the
                // server dies with some in flight (after the first, or after 2 s if none came).
                let held_before = mock.held.load(Ordering::Relaxed);
                mock.hold(true);
                let holding = Instant::now();
                while mock.held.load(Ordering::Relaxed) == held_before && holding.elapsed() < Duration::from_secs(2) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                server.kill();
                last_kill = Some(jiff::Timestamp::now());
                mock.hold(false);
                mock.next_generation();
                let held = mock.held.load(Ordering::Relaxed) - held_before;
                let down = Duration::from_millis(rng.random_range(0..=size.max_down_ms));
                tokio::time::sleep(down).await;
                let restarting = Instant::now();
                server = start_server(&args, &log).await;
                let restart = restarting.elapsed();
                eprintln!(
                    "  killed at {at_distinct} distinct attempts ({:.1} s) with {held} creates unanswered, down {} ms, back in {} ms",
                    at.as_secs_f64(),
                    down.as_millis(),
                    restart.as_millis()
                );
                kill_log.push(Kill { at_distinct, at_creates, held, at, down, restart });
            }

            // Wait until every campaign is finished.
            let (mut next, mut last_report) = (0, Instant::now());
            let mut watch = Watch::new(started, size.timeout, size.stall, mock.progress());
            while next < ids.len() && !stalled {
                if let Some(status) = server.exited() {
                    self_exits.push(format!("the server exited by itself ({status}) while the campaigns ran"));
                    server = start_server(&args, &log).await;
                }
                let campaign = api.campaign(ids[next]).await;
                if campaign["status"] == "finished" {
                    next += 1;
                    continue;
                }
                if let Some(why) = watch.verdict_at(mock.progress(), &campaign) {
                    violations.add("campaign not finished", why);
                    break;
                }
                if last_report.elapsed() > Duration::from_secs(5) {
                    let (creates, acked) = mock.progress();
                    eprintln!(
                        "  … {:.0} s: {next}/{} campaigns finished; {} distinct attempts, {creates} creates, {acked} callbacks acknowledged",
                        started.elapsed().as_secs_f64(),
                        ids.len(),
                        mock.distinct.load(Ordering::Relaxed),
                    );
                    last_report = Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let run_time = started.elapsed();
            let creates_after_finish = mock.drain(LEASE).await;
            for exit in self_exits {
                violations.add("server exited by itself", exit);
            }
            if creates_after_finish > 0 {
                violations.add("creates after every campaign was finished", format!("{creates_after_finish} creates"));
            }

            // The server's view.
            eprintln!("reading the server's view (calls, contacts, analytics) …");
            let mut server_calls: HashMap<String, (i64, Value)> = HashMap::new();
            let mut server_contacts: Vec<(i64, Value)> = Vec::new();
            let mut campaign_views = Vec::new();
            for id in &ids {
                for call in all_pages(&api, &format!("/campaigns/{id}/calls"), "calls").await {
                    let call_id = call["id"].as_str().unwrap_or_default().to_owned();
                    if server_calls.insert(call_id.clone(), (*id, call)).is_some() {
                        violations.add("call listed twice", format!("call {call_id} in campaign {id}"));
                    }
                }
                server_contacts.extend(all_pages(&api, &format!("/campaigns/{id}/contacts"), "contacts").await.into_iter().map(|c| (*id, c)));
                campaign_views.push(api.campaign(*id).await);
            }
            drop(server);

            // The provider's view against the server's.
            let final_generation = mock.generation();
            let record = mock.record.lock().expect("record");
            for problem in &record.problems {
                violations.add("the mock provider saw a bad create or a refused callback", problem.clone());
            }
            let (mut as_reported, mut unknown_after_create, mut unknown_answered, mut without_provider_id) = (0, 0, 0, 0);
            for (attempt_id, seen) in &record.attempts {
                if seen.creates > 1 {
                    violations.add(
                        "attempt id created twice at the provider (a second call placed)",
                        format!("attempt {attempt_id}: {} creates", seen.creates),
                    );
                }
                let Some((campaign, call)) = server_calls.get(attempt_id) else {
                    violations.add("attempt id the provider got is not in /calls", format!("attempt {attempt_id} to {}", seen.to));
                    continue;
                };
                let Reported::Call(reported) = seen.reported else {
                    violations.add("a WhatsApp message in a phone campaign", format!("attempt {attempt_id}"));
                    continue;
                };
                // The server was killed after this create (it may have died before recording
                // the answer), and the life that sent it did not acknowledge its outcome.
                let killed_after = seen.generation < final_generation;
                let died_with_it = killed_after && seen.final_acked != Some(seen.generation);
                let (status, answered_by) = call_fields(reported);
                if call["status"] == status && call["answered_by"] == answered_by {
                    as_reported += 1;
                    match call["provider_id"].as_str() {
                        Some(sid) if sid == seen.provider_id => {}
                        None if killed_after => without_provider_id += 1,
                        other => violations.add(
                            "call's provider_id is not the provider's sid",
                            format!("call {attempt_id} of campaign {campaign}: provider_id {other:?}, the mock answered {}", seen.provider_id),
                        ),
                    }
                } else if is_provider_unknown(call) && died_with_it {
                    unknown_after_create += 1;
                    unknown_answered += usize::from(!seen.held);
                } else if is_provider_unknown(call) {
                    violations.add(
                        "call closed provider_unknown though its server lived on, or after acknowledging its outcome",
                        format!(
                            "call {attempt_id} of campaign {campaign}: created by life {}, final callback acknowledged by {:?}, last life {final_generation}",
                            seen.generation, seen.final_acked
                        ),
                    );
                } else {
                    violations.add(
                        "call outcome differs from what the provider reported",
                        format!(
                            "call {attempt_id} of campaign {campaign}: status {} answered_by {} ended_reason {}, reported {status} {answered_by}",
                            call["status"], call["answered_by"], call["ended_reason"]
                        ),
                    );
                }
            }
            let mut unknown_unsent = 0;
            for (call_id, (campaign, call)) in &server_calls {
                if record.attempts.contains_key(call_id) {
                    continue;
                }
                let created: Option<jiff::Timestamp> = call["created_at"].as_str().and_then(|t| t.parse().ok());
                let before_a_kill = matches!((created, last_kill), (Some(created), Some(kill)) if created <= kill);
                if is_provider_unknown(call) && before_a_kill {
                    unknown_unsent += 1;
                } else {
                    violations.add(
                        "call never reached the provider",
                        format!("call {call_id} of campaign {campaign}: status {} ended_reason {}", call["status"], call["ended_reason"]),
                    );
                }
            }
            let creates_held: u64 = kill_log.iter().map(|k| k.held).sum();
            let most_in_a_second = most_within(record.times.get(&account_sid).map_or(&[][..], Vec::as_slice), Duration::from_secs(1));
            let duplicates = record.duplicates;
            let problem_count = record.problem_count;
            let distinct = record.attempts.len();
            drop(record);

            // Per contact: its calls in order of creation, replayed under the rules.
            let mut calls_of: HashMap<i64, Vec<(&str, &str, &Value)>> = HashMap::new();
            for (call_id, (_, call)) in &server_calls {
                if let Some(contact) = call["contact"]["id"].as_i64() {
                    calls_of.entry(contact).or_default().push((call["created_at"].as_str().unwrap_or_default(), call_id, call));
                }
            }
            let mut expected_by_campaign: HashMap<i64, [i64; 3]> = HashMap::new(); // answered, voicemail, failed
            let mut histogram = [0usize; 4];
            for (campaign, contact) in &server_contacts {
                let contact_id = contact["id"].as_i64().unwrap_or_default();
                let mut calls = calls_of.remove(&contact_id).unwrap_or_default();
                calls.sort_unstable_by_key(|(created, id, _)| (*created, *id));
                histogram[calls.len().min(3)] += 1;
                if calls.is_empty() {
                    violations.add("contact lost (no call)", format!("contact {contact_id} of campaign {campaign}: {contact}"));
                    continue;
                }
                let Some(outcomes) = calls.iter().map(|(_, _, call)| outcome_of(call)).collect::<Option<Vec<Outcome>>>() else {
                    violations.add("call never ended", format!("contact {contact_id}: calls {:?}", calls.iter().map(|c| c.1).collect::<Vec<_>>()));
                    continue;
                };
                let replayed = replay(&outcomes);
                if matches!(contact["status"].as_str(), Some("queue" | "sending" | "retrying")) {
                    violations.add("contact not in a final status", format!("contact {contact_id} of campaign {campaign}: {}", contact["status"]));
                }
                let server_view = (
                    contact["status"].as_str().unwrap_or_default(),
                    contact["call_count"].as_u64(),
                    contact["retries"].as_u64(),
                    contact["failed_retries"].as_u64(),
                );
                let replay_view =
                    (replayed.status, Some(outcomes.len() as u64), Some(u64::from(replayed.retries)), Some(u64::from(replayed.failed_retries)));
                if replayed.demanded != Some(outcomes.len()) || server_view != replay_view {
                    violations.add(
                        "contact differs from the replay of its calls",
                        format!(
                            "contact {contact_id}: server (status, call_count, retries, failed_retries) = {server_view:?}, replay of {outcomes:?} = {replay_view:?}, demanding {:?} calls",
                            replayed.demanded
                        ),
                    );
                }
                let expect = expected_by_campaign.entry(*campaign).or_default();
                match replayed.status {
                    "answered" => expect[0] += 1,
                    "voicemail" => expect[1] += 1,
                    "failed" => expect[2] += 1,
                    _ => {}
                }
            }
            for (contact, calls) in calls_of {
                violations.add("calls of an unknown contact", format!("contact {contact}: {} calls", calls.len()));
            }

            // Per campaign.
            let mut rows = Vec::new();
            for campaign in &campaign_views {
                let id = campaign["id"].as_i64().unwrap_or_default();
                let calls: Vec<&Value> = server_calls.values().filter(|(c, _)| *c == id).map(|(_, call)| call).collect();
                let count = |answered: &str| calls.iter().filter(|c| c["status"] == "ended" && c["answered_by"] == answered).count() as i64;
                let unknown = calls.iter().filter(|c| is_provider_unknown(c)).count();
                let expect = expected_by_campaign.get(&id).copied().unwrap_or_default();
                if campaign["status"] != "finished" {
                    violations.add("campaign not finished", format!("campaign {id}: {}", campaign["status"]));
                }
                let analytics = &campaign["analytics"];
                let checks = [
                    ("contacts", contacts as i64),
                    ("contactsProcessed", contacts as i64),
                    ("calls", calls.len() as i64),
                    ("callsAnsweredByHuman", count("human")),
                    ("callsAnsweredByMachine", count("machine")),
                    ("contactsAnswered", expect[0]),
                    ("contactsVoicemail", expect[1]),
                    ("contactsFailed", expect[2]),
                ];
                violations.check_analytics(id, analytics, &checks);
                rows.push(format!(
                    "| {id} | {} | {} | {} / {} | {unknown} | {} / {} / {} |",
                    campaign["status"].as_str().unwrap_or_default(),
                    calls.len(),
                    count("human"),
                    count("machine"),
                    expect[0],
                    expect[1],
                    expect[2],
                ));
            }

            // Report.
            let callbacks = mock.callback_counts();
            println!(
                "\nRun: {campaigns} campaigns × {contacts} contacts, mock Twilio at {max_per_second}/s, {} SIGKILLs, all finished in {:.1} s",
                kill_log.len(),
                run_time.as_secs_f64()
            );
            println!("\n| kill | at distinct attempts | at creates | creates unanswered | at | down | back listening after |");
            println!("|---|---:|---:|---:|---:|---:|---:|");
            for (i, kill) in kill_log.iter().enumerate() {
                println!(
                    "| {} | {} | {} | {} | {:.1} s | {} ms | {} ms |",
                    i + 1,
                    kill.at_distinct,
                    kill.at_creates,
                    kill.held,
                    kill.at.as_secs_f64(),
                    kill.down.as_millis(),
                    kill.restart.as_millis()
                );
            }
            println!("\n| check | result |");
            println!("|---|---|");
            println!(
                "| creates (Calls.json) / distinct attempt ids / creates after every campaign finished | {} / {distinct} (expected about {expected_total:.0}) / {creates_after_finish} |",
                mock.creates.load(Ordering::Relaxed)
            );
            println!(
                "| no attempt id created twice (the re-sending rule) | {} |",
                ok(violations.count("attempt id created twice at the provider (a second call placed)"))
            );
            println!("| creates well formed, callbacks all accepted (mock problems) | {} |", ok(problem_count as usize));
            println!(
                "| calls ended as the provider reported / closed provider_unknown after a create (died with it) / provider_id missing (died before recording it) | {as_reported} / {unknown_after_create} / {without_provider_id} |"
            );
            println!(
                "| of the provider_unknown after a create: left unanswered at a kill / answered 201 before the kill | {} / {unknown_answered} |",
                unknown_after_create - unknown_answered
            );
            println!("| calls closed provider_unknown never sent (claimed before a kill) | {unknown_unsent} |");
            println!("| creates left unanswered at the kills | {creates_held} |");
            println!(
                "| every attempt id the provider got is in /calls with its outcome | {} |",
                ok(violations.count("attempt id the provider got is not in /calls")
                    + violations.count("call outcome differs from what the provider reported")
                    + violations.count("call's provider_id is not the provider's sid")
                    + violations.count("call closed provider_unknown though its server lived on, or after acknowledging its outcome"))
            );
            println!("| every other call is provider_unknown, claimed before a kill | {} |", ok(violations.count("call never reached the provider")));
            println!(
                "| callbacks: to deliver / POSTs / acknowledged / connection errors (server down) / other answers | {} / {} / {} / {} / {:?} |",
                callbacks.callbacks, callbacks.posts, callbacks.acked, callbacks.connection_errors, callbacks.statuses
            );
            println!("| contacts with 0 / 1 / 2 / 3 calls | {} / {} / {} / {} |", histogram[0], histogram[1], histogram[2], histogram[3]);
            println!(
                "| no contact lost, none left in queue / sending / retrying | {} |",
                ok(violations.count("contact lost (no call)") + violations.count("contact not in a final status"))
            );
            println!(
                "| contact status, call_count, retries, failed_retries = the replay of its calls | {} |",
                ok(violations.count("contact differs from the replay of its calls") + violations.count("call never ended"))
            );
            println!("| per campaign: finished, analytics agree | {} |", ok(violations.count("campaign not finished") + violations.count("analytics differ from what happened")));
            println!("| most creates in any 1 s (pace {max_per_second}/s, 0.25 s of burst) | {most_in_a_second} |");
            println!("| duplicate creates | {duplicates} |");
            println!("\n| campaign | status | calls | human / machine | provider_unknown | contacts answered / voicemail / failed |");
            println!("|---|---|---:|---|---:|---|");
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
        if size.keep {
            println!("kept {}", dir.keep().display());
        }
        return violations;
    }
    violations.print();
    eprintln!("\nlast lines of the server's log ({}):\n{}", log.display(), log_tail(&log, 20));
    eprintln!("kept {} (database provider-crash.db, server.log)", dir.keep().display());
    violations
}
