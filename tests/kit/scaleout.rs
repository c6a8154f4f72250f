//! The scale-out scenario (issue 6, "PostgreSQL backend and several outbound processes over one
//! deployment"), parametrised by [`Settings`]: small in the system test
//! `scaleout::postgres_three_processes_one_killed` (`tests/system/`, every CI run), large in
//! `cargo bench --bench scaleout` (`benches/scaleout.rs`, whose knobs fill the [`Settings`]; the
//! names below are those knobs).
//!
//! Everything runs against one throwaway PostgreSQL database, `outbound_scaleout_<random>` (the
//! caller makes the [`ThrowawayDatabase`]), created by the first server and dropped at the end
//! (with `FORCE`) unless `SCALEOUT_KEEP=1`.
//! Each phase starts `SCALEOUT_PROCESSES` real `outbound serve` processes (the binary of the
//! profile built) on
//! that database, each on its own port with `--public-url` its own address: the first alone (it
//! creates and migrates the database and prints the bootstrap key), then the others.
//!
//! 1. **Dispatch** (servers with `--rate-limit-rps 0 --failed-retry-limit 0 --lease 5s
//!    --retry-interval 1s`). The mock provider of `mock.rs` (an axum server inside this
//!    harness) is a phone integration's webhook; it answers each attempt 200 and reports its
//!    outcome (human / machine / no answer, drawn from the attempt id) after
//!    `SCALEOUT_CALL_MS`/2..`SCALEOUT_CALL_MS` to the attempt's `callback_url`, failing over
//!    round-robin to the other live processes when that process does not answer. `SCALEOUT_CAMPAIGNS`
//!    campaigns of `SCALEOUT_CONTACTS` contacts (window always open, `retries` 0, `message_limit`
//!    10,000, `concurrency_limit` `SCALEOUT_CONCURRENCY`) are loaded through all processes and
//!    activated; once the mock has seen a random 30–50% of the attempts, one random process is
//!    killed with SIGKILL and **not restarted** (unless `SCALEOUT_RESTART=1`: then it comes back
//!    on the same port after 1 s). Just before the kill the mock stops answering that process
//!    (its POSTs stay open and are not recorded as attempts), so it dies with handoffs nobody
//!    confirmed: the others must re-send those (same attempt id, same contact) once the lease
//!    expires, and finish everything. Once every campaign is `finished` (and a lease later, for
//!    late re-sends) it checks:
//!    - no contact attempted twice: each contact got exactly one distinct attempt id (with
//!      `retries` 0 and failed-retry limit 0 every outcome is final); a re-send of an id carried
//!      the same campaign, contact and iteration, a valid signature and `Idempotency-Key` = id;
//!      every handoff the killed process left unanswered was re-sent (by a live process, after
//!      the lease) with the same contact;
//!    - none lost: every contact listed by the server has its attempt, its `call_count` is 1 and
//!      its status matches the reported outcome; every attempt id is in `/calls` (and every call
//!      reached the provider) with the reported outcome; every campaign is `finished` with
//!      `/calls` `total_count`, analytics `calls`, `contactsProcessed` and `contacts` all equal to
//!      the contacts loaded, and the answered-by and per-status counts agree with the mock;
//!    - `concurrency_limit` held in total across processes: the mock counts, per campaign, the
//!      attempts it holds at once, each from the first POST of its id until the outcome report
//!      that got a 2xx was sent (inside the time the server counts the attempt in flight: it is
//!      claimed before it is POSTed and closed once the event is in), and that peak must not
//!      exceed the limit. The peaks are printed, with the peaks counted until the 2xx came back
//!      (for information: while a 2xx is on its way back, another process may already have
//!      claimed the slot it freed, so these may exceed the limit by the answers in transit). A
//!      peak below the limit is noted (the test then did not press the limit), not a violation.
//! 2. **Idempotency across processes** (same servers, before activation): 50 simultaneous
//!    identical `POST /campaigns` with one `Idempotency-Key`, round-robin over the processes. Every
//!    answer must be 201 (exactly one original; the others replays with `Idempotent-Replayed:
//!    true` and the original's bytes) or `409 IDEMPOTENCY_KEY_IN_USE`; one more request per process
//!    afterwards must be a replay with the same bytes; `GET /campaigns` must list exactly one
//!    campaign of that name.
//! 3. **Rate limit shared across processes**: the dispatch servers are stopped and new ones
//!    started with `--rate-limit-rps 12` (burst 12), once with the limit in PostgreSQL (no Redis
//!    flag) and once with `--redis-url SCALEOUT_REDIS_URL`. The harness sends
//!    `SCALEOUT_RATE_RPS` requests/s (`GET /campaigns?pageSize=1`) with the one API key for
//!    `SCALEOUT_RATE_SECS`, round-robin over the processes, and counts 2xx and 429. With `span` =
//!    first send → last answer and `sent` = first send → last send, admitted must be
//!    ≤ 12 × span + 12 (burst) + 1 (a bound that only grows when the machine is slow), and
//!    ≥ 12 × sent − 3 (the limit does not admit too little; this one assumes the harness keeps up
//!    with its sending pace, so the system test, on a loaded CI machine, asks only for the burst:
//!    ≥ min(12, requests), see [`Settings::strict_rate_floor`]). Without a Redis URL (the system
//!    test when Redis is not reachable and not required) the Redis half is skipped with a note.
//!
//! Any violation: the list of problems on stderr, the tails of the servers' logs and the kept temp
//! dir with the logs; [`run`] returns them (the bench exits 1, the test fails). A panic of the
//! harness is caught and returned as a violation too.
//!
//! Bench knobs (environment, see `benches/scaleout.rs`): `SCALEOUT_CAMPAIGNS` (10), `SCALEOUT_CONTACTS` (10000, at most 10,000:
//! `message_limit` caps a campaign at 10,000 attempts per 24 h), `SCALEOUT_PROCESSES` (3, at least
//! 2), `SCALEOUT_CONCURRENCY` (100), `SCALEOUT_CALL_MS` (400), `SCALEOUT_SEED` (random; printed: it
//! picks the kill point and the victim), `SCALEOUT_RESTART` (0), `SCALEOUT_TIMEOUT_SECS` (600, for
//! the dispatch phase), `SCALEOUT_IDEMPOTENT_REQUESTS` (50), `SCALEOUT_RATE_RPS` (100),
//! `SCALEOUT_RATE_SECS` (5), `SCALEOUT_DATABASE_URL` (`postgres://postgres@127.0.0.1:5432`, the
//! server part only), `SCALEOUT_REDIS_URL` (`redis://127.0.0.1:6379`), `SCALEOUT_KEEP` (1: keep the
//! database and the temp dir with the servers' logs).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::mock::{Mock, Outcome};
use super::postgres::ThrowawayDatabase;
use super::{Api, Server, Violations, always_open, log_tail, ok};

const MESSAGE_LIMIT: usize = 10_000;
/// The servers' `--lease`: an unconfirmed handoff of a dead process is re-sent after it.
const LEASE: Duration = Duration::from_secs(5);
/// The per-key rate (and burst) of the rate-limit phase.
const RATE: u32 = 12;
/// Admitted requests allowed over `RATE` × span + burst.
const RATE_ALLOWANCE: f64 = 1.0;
/// Admitted requests allowed under `RATE` × span (the sanity bound).
const RATE_SHORTFALL: f64 = 3.0;
/// Pages of a list read at once after the run.
const READERS: usize = 8;

/// What one run does: its sizes, its randomness and its deadlines.
pub struct Settings {
    pub campaigns: usize,
    /// Contacts per campaign (1..=10,000).
    pub contacts: usize,
    /// Processes per phase (at least 2: one is killed).
    pub processes: usize,
    /// Each campaign's `concurrency_limit`.
    pub concurrency: usize,
    /// The mock reports an outcome `call_ms`/2..=`call_ms` after an attempt.
    pub call_ms: u64,
    /// Picks the kill point and the victim.
    pub seed: u64,
    /// Restart the killed process 1 s later (on the same port).
    pub restart: bool,
    /// The overall deadline of the dispatch phase: every campaign finished this long after activation.
    pub timeout: Duration,
    /// No new attempt for this long before the kill, or no POST nor accepted outcome report while
    /// campaigns are unfinished after it, is a violation.
    pub stall: Duration,
    pub idempotent_requests: usize,
    pub rate_rps: u32,
    pub rate_secs: f64,
    /// The Redis of the rate-limit phase's second half; `None`: that half is skipped (with a note).
    pub redis_url: Option<String>,
    /// The lower bound of the rate-limit check is 12 × the time spent sending − 3 (true), or only
    /// the burst, min(12, requests) (false: no assumption on how fast the harness sends).
    pub strict_rate_floor: bool,
    /// Keep the database and the temp dir with the servers' logs even when the run passed.
    pub keep: bool,
    /// How to run this again, printed first (with the seed).
    pub command: String,
}

impl Settings {
    /// Refuses settings the scenario cannot run.
    pub fn check(&self) -> Result<(), String> {
        if self.contacts > MESSAGE_LIMIT || self.contacts == 0 {
            return Err(format!(
                "{} contacts per campaign: must be 1..={MESSAGE_LIMIT} (message_limit caps a campaign's attempts per 24 h)",
                self.contacts
            ));
        }
        if self.processes < 2 || self.campaigns == 0 || self.concurrency == 0 || self.rate_rps == 0 || self.idempotent_requests == 0 {
            return Err(
                "processes must be at least 2 (one is killed); campaigns, concurrency, rate and requests must be positive".to_owned()
            );
        }
        Ok(())
    }
}

/// Runs the scenario at `settings` on `database` (dropped at the end unless `settings.keep`) and
/// returns the violations found (none: passed). Prints its progress and its report; on a
/// violation also the problems, the tails of the servers' logs and the temp dir it keeps.
pub fn run(settings: &Settings, throwaway: ThrowawayDatabase) -> Violations {
    let mut violations = Violations::default();
    if let Err(err) = settings.check() {
        violations.add("settings refused", err);
        return violations;
    }
    let keep = settings.keep;
    println!("Scale-out scenario: `{}` (seed {})", settings.command, settings.seed);
    println!("Machine: {}", super::machine());

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let database = throwaway.url.clone();
    let dir = tempfile::tempdir().expect("temp dir");
    println!("Database: {database} (throwaway); server logs in {}", dir.path().display());

    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(scenario(settings, &database, dir.path()))));
    match outcome {
        Ok(found) => violations = found,
        Err(panic) => violations.add("the harness stopped on an error", super::panic_message(panic.as_ref())),
    }

    if keep {
        println!("kept the database {database}");
    } else {
        match runtime.block_on(throwaway.drop_database()) {
            Ok(()) => println!("dropped the database {database}"),
            Err(err) => eprintln!("could not drop the database {database}: {err}"),
        }
    }
    if violations.is_empty() {
        println!("\nPASSED: no violation.");
        if keep {
            println!("kept {}", dir.keep().display());
        }
        return violations;
    }
    violations.print();
    print_log_tails(&log_files(dir.path()));
    eprintln!("kept {} (the servers' logs)", dir.keep().display());
    violations
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "log")).collect())
        .unwrap_or_default();
    logs.sort();
    logs
}

fn print_log_tails(logs: &[PathBuf]) {
    for log in logs {
        let tail = log_tail(log, 10);
        if !tail.is_empty() {
            eprintln!("\nlast lines of {}:\n{tail}", log.display());
        }
    }
}

/// One `outbound serve` of a fleet.
struct Process {
    server: Option<Server>,
    address: String,
    args: Vec<String>,
    log: PathBuf,
    /// `running`, `killed` or how it exited by itself.
    state: String,
}

/// The processes of one phase over the one database.
struct Fleet {
    processes: Vec<Process>,
    key: String,
}

impl Fleet {
    /// Starts `count` servers with `extra` flags: the first alone (it migrates), then the others.
    async fn start(label: &str, count: usize, database: &str, dir: &Path, extra: &[String], key: Option<String>) -> Result<Fleet, String> {
        let mut planned = Vec::new();
        for i in 0..count {
            let mut args: Vec<String> = [
                "--database",
                database,
                "--failed-retry-limit",
                "0",
                "--lease",
                &format!("{}s", LEASE.as_secs()),
                "--retry-interval",
                "1s",
            ]
            .map(str::to_owned)
            .into();
            args.extend_from_slice(extra);
            planned.push((args, dir.join(format!("{label}-{}.log", i + 1))));
        }
        let first = try_start(&planned[0].0, &planned[0].1).await?;
        let key = key.or_else(|| first.0.key.clone()).ok_or("the first server on a fresh database printed no API key")?;
        let rest = futures::future::join_all(planned[1..].iter().map(|(args, log)| try_start(args, log))).await;
        let mut servers = vec![first];
        for server in rest {
            servers.push(server?);
        }
        let processes = servers
            .into_iter()
            .zip(planned)
            .map(|((server, args), (_, log))| Process {
                address: server.address.clone(),
                server: Some(server),
                args,
                log,
                state: "running".to_owned(),
            })
            .collect();
        Ok(Fleet { processes, key })
    }

    /// Indexes of the processes still running.
    fn live(&self) -> Vec<usize> {
        (0..self.processes.len()).filter(|i| self.processes[*i].server.is_some()).collect()
    }

    fn live_addresses(&self) -> Vec<String> {
        self.live().into_iter().map(|i| self.processes[i].address.clone()).collect()
    }

    /// A client per live process.
    fn apis(&self) -> Vec<Api> {
        self.live().into_iter().map(|i| Api::new(&self.processes[i].address, &self.key)).collect()
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut server) = self.processes[i].server.take() {
            server.kill();
            self.processes[i].state = "killed (SIGKILL)".to_owned();
        }
    }

    async fn restart(&mut self, i: usize) {
        let process = &mut self.processes[i];
        let server = super::start_server(&process.args, &process.log).await;
        process.address = server.address.clone();
        process.server = Some(server);
        process.state = "running (restarted)".to_owned();
    }

    /// Records a violation for every process that exited on its own since the last call.
    fn check_exits(&mut self, violations: &mut Violations, when: &str) -> bool {
        let mut any = false;
        for (i, process) in self.processes.iter_mut().enumerate() {
            if let Some(status) = process.server.as_mut().and_then(Server::exited) {
                process.server = None;
                process.state = format!("exited by itself ({status})");
                violations.add("server exited by itself", format!("process {} ({}) {when}: {status}", i + 1, process.address));
                any = true;
            }
        }
        any
    }

    fn stop(&mut self) {
        for i in 0..self.processes.len() {
            if let Some(mut server) = self.processes[i].server.take() {
                server.kill();
                self.processes[i].state = "stopped".to_owned();
            }
        }
    }
}

/// Starts a server with `args` on a free port (also its public URL), trying another port when
/// one is taken before the server binds it (other tests start servers too); reports failure
/// instead of panicking after a few tries. Returns the server and its whole command line, which a
/// restart reuses.
async fn try_start(base: &[String], log: &Path) -> Result<(Server, Vec<String>), String> {
    let mut last = String::new();
    for _ in 0..5 {
        let listen = format!("127.0.0.1:{}", super::free_port());
        let mut args: Vec<String> = ["--listen".to_owned(), listen.clone(), "--public-url".to_owned(), format!("http://{listen}")].into();
        args.extend_from_slice(base);
        let log = log.to_owned();
        let started_with = args.clone();
        match tokio::task::spawn_blocking(move || Server::start(&args, Some(&log))).await.expect("start") {
            Ok(server) => return Ok((server, started_with)),
            Err(err) => last = err,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("{last} (log: {})", log.display()))
}

async fn scenario(settings: &Settings, database: &str, dir: &Path) -> Violations {
    let mut violations = Violations::default();
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let mock = Mock::new(settings.call_ms / 2, settings.call_ms);
    let mock_url = mock.serve().await;

    eprintln!("starting {} servers for the dispatch phase …", settings.processes);
    let dispatch_flags = ["--rate-limit-rps", "0"].map(str::to_owned);
    let mut fleet = Fleet::start("dispatch", settings.processes, database, dir, &dispatch_flags, None)
        .await
        .unwrap_or_else(|err| panic!("the dispatch servers did not start: {err}"));
    let key = fleet.key.clone();
    let apis = fleet.apis();
    println!("\nDispatch servers: {}", fleet.live_addresses().join(", "));

    // Setup through every process.
    let agent = apis[0].create_agent("Scale-out test").await;
    let (integration, secret) = apis[0].create_integration(&agent, "webhook", json!({ "url": mock_url, "timeout_ms": 5000 })).await;
    mock.secret.set(secret).expect("secret set once");
    mock.set_servers(fleet.live_addresses());
    let campaign_settings = json!({ "retries": 0, "concurrency_limit": settings.concurrency, "message_limit": MESSAGE_LIMIT });
    let mut ids = Vec::with_capacity(settings.campaigns);
    for i in 0..settings.campaigns {
        let api = &apis[i % apis.len()];
        ids.push(api.create_campaign(&format!("scaleout {i}"), &agent, &integration, campaign_settings.clone()).await);
    }
    eprintln!("loading {} × {} contacts through {} processes …", settings.campaigns, settings.contacts, apis.len());
    let loading = Instant::now();
    futures::future::join_all(apis.iter().enumerate().map(|(p, api)| {
        let mine: Vec<i64> = ids.iter().skip(p).step_by(apis.len()).copied().collect();
        async move { api.load_contacts(&mine, settings.contacts).await }
    }))
    .await;
    eprintln!("  loaded in {:.1} s", loading.elapsed().as_secs_f64());

    // Phase 2 (on the idle dispatch servers, before activation): idempotency across processes.
    let probe_body = json!({
        "name": format!("scaleout idempotency probe {}", settings.seed), "agent_id": agent, "integration_id": integration,
        "integration_type": "phone_call", "timezone": "UTC", "scheduling": always_open(), "retries": 0,
        "concurrency_limit": settings.concurrency, "message_limit": MESSAGE_LIMIT,
    });
    let idempotency = idempotency_check(&apis, &probe_body, settings.idempotent_requests, &mut violations).await;

    // Phase 1: dispatch, one SIGKILL.
    let total = (settings.campaigns * settings.contacts) as u64;
    let kill_share: f64 = rng.random_range(0.3..0.5);
    let kill_point = ((total as f64 * kill_share) as u64).max(1);
    let victim = rng.random_range(0..settings.processes);
    let started = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        apis[i % apis.len()].post(&format!("/campaigns/{id}/activate"), &json!({})).await;
    }
    eprintln!(
        "activated {} campaigns ({total} contacts); SIGKILL of process {} ({}) at {kill_point} distinct attempts",
        ids.len(),
        victim + 1,
        fleet.processes[victim].address
    );
    let mut kill_report = None;
    // Stalled before the kill point: no wait for the campaigns to finish.
    let mut stalled = false;
    let mut last = (0, Instant::now());
    let mut last_report = Instant::now();
    loop {
        let distinct = mock.distinct.load(Ordering::Relaxed);
        if distinct >= kill_point {
            break;
        }
        if fleet.check_exits(&mut violations, "before the kill") {
            mock.set_servers(fleet.live_addresses());
        }
        if distinct != last.0 {
            last = (distinct, Instant::now());
        } else if last.1.elapsed() > settings.stall || started.elapsed() > settings.timeout {
            violations.add(
                "progress stalled",
                format!(
                    "at {distinct} distinct attempts (kill point {kill_point}) after {:.0} s: no new attempt for {:.0} s (at most {} s), \
                     or past the deadline of {} s",
                    started.elapsed().as_secs_f64(),
                    last.1.elapsed().as_secs_f64(),
                    settings.stall.as_secs(),
                    settings.timeout.as_secs()
                ),
            );
            stalled = true;
            break;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            progress(&mock, started, 0, ids.len());
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if fleet.processes[victim].server.is_some() {
        let at = started.elapsed();
        let (at_distinct, at_posts) = (mock.distinct.load(Ordering::Relaxed), mock.posts.load(Ordering::Relaxed));
        let victim_address = fleet.processes[victim].address.clone();
        // Leave it handoffs nobody confirmed: the mock stops answering it, and it dies with its
        // POSTs in flight (or after 2 s if it sent none).
        mock.swallow_from(Some(victim_address.clone()));
        let swallowing = Instant::now();
        while mock.swallowed.lock().expect("swallowed").is_empty() && swallowing.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        fleet.kill(victim);
        mock.swallow_from(None);
        mock.set_servers(fleet.live_addresses());
        eprintln!("  SIGKILL of process {} at {at_distinct} distinct attempts ({:.1} s)", victim + 1, at.as_secs_f64());
        let mut restarted = None;
        if settings.restart {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let restarting = Instant::now();
            fleet.restart(victim).await;
            mock.set_servers(fleet.live_addresses());
            restarted = Some(restarting.elapsed());
            eprintln!("  process {} restarted in {} ms", victim + 1, restarting.elapsed().as_millis());
        }
        kill_report = Some((victim_address, at, at_distinct, at_posts, restarted));
    } else {
        violations.add("SIGKILL not done", format!("process {} was not running at the kill point", victim + 1));
    }

    // Wait until every campaign is finished.
    let mut finished = 0;
    let mut last_report = Instant::now();
    let mut watch = mock.watch(started, settings.timeout, settings.stall);
    while finished < ids.len() && !stalled {
        if fleet.check_exits(&mut violations, "after the kill") {
            mock.set_servers(fleet.live_addresses());
        }
        let live = fleet.apis();
        let Some(api) = live.get(finished % live.len().max(1)) else {
            violations.add("campaign not finished", "no server left running".to_owned());
            break;
        };
        let campaign = api.campaign(ids[finished]).await;
        if campaign["status"] == "finished" {
            finished += 1;
            continue;
        }
        if let Some(why) = watch.verdict(&mock, &campaign) {
            violations.add("campaign not finished", why);
            break;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            progress(&mock, started, finished, ids.len());
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run_time = started.elapsed();
    let posts_after_finish = mock.drain(LEASE, &mut violations).await;
    fleet.check_exits(&mut violations, "after the run");

    // The servers' view, read through the live processes.
    eprintln!("reading the servers' view (campaigns, calls, contacts) …");
    let live = fleet.apis();
    let mut views = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        views.push(campaign_view(&live, i, *id).await);
    }
    let dispatch_states: Vec<(String, String)> = fleet.processes.iter().map(|p| (p.address.clone(), p.state.clone())).collect();
    fleet.stop();

    let dispatch = check_dispatch(settings, &mock, &views, &mut violations);

    // Phase 3: the shared rate limit, PostgreSQL then Redis.
    let mut rate_rows = Vec::new();
    let mut limiters = vec![("PostgreSQL (no Redis flag)", vec!["--rate-limit-rps".to_owned(), RATE.to_string()])];
    match &settings.redis_url {
        Some(redis) => {
            limiters.push(("Redis", vec!["--rate-limit-rps".to_owned(), RATE.to_string(), "--redis-url".to_owned(), redis.clone()]))
        }
        None => rate_rows.push(("| Redis | skipped: no Redis to use | | | | | | |".to_owned(), String::new())),
    }
    for (label, flags) in limiters {
        let file_label = if label.starts_with("Redis") { "rate-redis" } else { "rate-postgres" };
        eprintln!("rate limit, {label}: starting {} servers …", settings.processes);
        match Fleet::start(file_label, settings.processes, database, dir, &flags, Some(key.clone())).await {
            Ok(mut rate_fleet) => {
                let result = rate_burst(&rate_fleet.apis(), settings.rate_rps, settings.rate_secs).await;
                rate_fleet.check_exits(&mut violations, &format!("in the rate-limit phase ({label})"));
                rate_fleet.stop();
                rate_rows.push(check_rate(label, &result, settings.strict_rate_floor, &mut violations));
            }
            Err(err) => {
                violations.add("rate-limit servers did not start", format!("{label}: {err}"));
                rate_rows.push((format!("| {label} | servers did not start: {err} | | | | | | |"), String::new()));
            }
        }
    }

    // Report.
    let posts = mock.posts.load(Ordering::Relaxed);
    let record = mock.record.lock().expect("record");
    println!(
        "\n## Dispatch: {} campaigns × {} contacts over {} processes, webhook provider (mock, {}–{} ms per call), all finished in {:.1} s",
        settings.campaigns,
        settings.contacts,
        settings.processes,
        settings.call_ms / 2,
        settings.call_ms,
        run_time.as_secs_f64()
    );
    match &kill_report {
        Some((address, at, at_distinct, at_posts, restarted)) => println!(
            "\nSIGKILL of process {} ({address}) at {:.1} s, {at_distinct} distinct attempts ({:.0}% of {total}), {at_posts} POSTs; {}",
            victim + 1,
            at.as_secs_f64(),
            *at_distinct as f64 * 100.0 / total as f64,
            match restarted {
                Some(took) => format!("restarted 1 s later (listening after {} ms)", took.as_millis()),
                None => "not restarted: the others finished the run".to_owned(),
            }
        ),
        None => println!("\nno SIGKILL was done"),
    }
    println!("\n| process | state at the end | attempts sent first | re-sends | re-sends of another process's attempt |");
    println!("|---|---|---:|---:|---:|");
    for (i, (address, state)) in dispatch_states.iter().enumerate() {
        let sends = record.senders.get(address).copied().unwrap_or_default();
        println!("| {} {address} | {state} | {} | {} | {} |", i + 1, sends.first, sends.resends, sends.takeovers);
    }
    for (sender, sends) in &record.senders {
        if !dispatch_states.iter().any(|(address, _)| address == sender) {
            println!("| unknown {sender} | | {} | {} | {} |", sends.first, sends.resends, sends.takeovers);
        }
    }
    println!("\n| check | result |");
    println!("|---|---|");
    println!("| POSTs received by the provider | {posts} ({posts_after_finish} after every campaign was finished) |");
    println!("| distinct attempt ids | {} (contacts: {total}) |", record.attempts.len());
    println!(
        "| handoffs the killed process left unconfirmed (its POSTs the mock left unanswered) / re-sent since by a live process (lease takeover), same id and contact | {} / {} ({}) |",
        dispatch.takeover.0,
        dispatch.takeover.1,
        ok(violations.count("a handoff of the killed process was never taken over")
            + violations.count("a handoff of the killed process was re-sent changed"))
    );
    println!(
        "| re-sends (POSTs of an id seen before) | {} ({} after its outcome had been accepted) |",
        record.resends, record.resends_after_outcome
    );
    println!(
        "| outcome reports: accepted (of which by another process than callback_url's) / 404 / connection errors / other statuses | {} ({}) / {} / {} / {:?} |",
        mock.delivered.load(Ordering::Relaxed),
        mock.delivered_elsewhere.load(Ordering::Relaxed),
        mock.not_found.load(Ordering::Relaxed),
        mock.connection_errors.load(Ordering::Relaxed),
        mock.other_statuses.lock().expect("statuses")
    );
    println!(
        "| contacts with 0 / 1 / 2+ distinct attempts | {} / {} / {} |",
        dispatch.histogram[0], dispatch.histogram[1], dispatch.histogram[2]
    );
    println!("| no contact attempted twice (one distinct attempt id each) | {} |", ok(violations.count("contact attempted twice")));
    println!(
        "| re-sends carried the same campaign, contact, iteration; signed; Idempotency-Key = id | {} |",
        ok(violations.count("mock provider saw a bad request or report"))
    );
    println!(
        "| no contact lost (each has its attempt; call_count 1; status = outcome) | {} |",
        ok(violations.count("contact lost (never attempted)") + violations.count("contact state differs from the outcome"))
    );
    println!(
        "| every attempt id is a call of the server with the reported outcome, every call reached the provider | {} |",
        ok(violations.count("attempt id not created by the server")
            + violations.count("call differs from what the provider got")
            + violations.count("call outcome differs from the report")
            + violations.count("call never reached the provider")
            + violations.count("call listed twice"))
    );
    println!(
        "| every campaign finished; /calls total, analytics calls = contactsProcessed = contacts = {} | {} |",
        settings.contacts,
        ok(violations.count("campaign not finished")
            + violations.count("/calls total_count ≠ contacts")
            + violations.count("analytics differ from what happened"))
    );
    println!(
        "| concurrency_limit {} never exceeded in total (peak attempts held by the provider per campaign, until the accepted report was sent) | {} (peaks {}) |",
        settings.concurrency,
        ok(violations.count("concurrency_limit exceeded")),
        dispatch.peaks.iter().map(|(peak, _)| peak.to_string()).collect::<Vec<_>>().join(", ")
    );
    println!(
        "| for information: the same peaks counted until the report's 2xx came back | {} |",
        dispatch.peaks.iter().map(|(_, peak)| peak.to_string()).collect::<Vec<_>>().join(", ")
    );
    if dispatch.peaks.iter().any(|(peak, _)| *peak < settings.concurrency) {
        println!(
            "\nnote: some campaign's peak stayed under its limit {} (the limit was not pressed there; raise SCALEOUT_CALL_MS)",
            settings.concurrency
        );
    }
    println!(
        "\n| campaign | status | distinct ids (provider) | /calls total | analytics contacts / calls / contactsProcessed | human / machine / no-answer | peak held / limit (peak until the 2xx) |"
    );
    println!("|---|---|---:|---:|---|---|---|");
    for row in &dispatch.rows {
        println!("{row}");
    }
    drop(record);

    println!("\n## Idempotency across processes");
    for line in idempotency {
        println!("{line}");
    }

    println!(
        "\n## Rate limit across {} processes ({RATE} rps, burst {RATE}; {} requests/s for {} s with one key, round-robin)",
        settings.processes, settings.rate_rps, settings.rate_secs
    );
    let floor = if settings.strict_rate_floor {
        format!("{RATE} × sent − {RATE_SHORTFALL}")
    } else {
        format!("the burst, min({RATE}, requests)")
    };
    println!(
        "\n| limiter | requests | 2xx | 429 | other | span (first send → last answer) / sent over | admitted allowed ({RATE} × span + {RATE} + {RATE_ALLOWANCE}) / at least ({floor}) | result |"
    );
    println!("|---|---:|---:|---:|---|---|---|---|");
    for (row, _) in &rate_rows {
        println!("{row}");
    }
    println!();
    for (_, note) in &rate_rows {
        if !note.is_empty() {
            println!("{note}");
        }
    }
    violations
}

fn progress(mock: &Mock, started: Instant, finished: usize, campaigns: usize) {
    let held = mock.held();
    eprintln!(
        "  … {:.0} s: {finished}/{campaigns} campaigns finished; {} distinct attempts, {} POSTs; held now {}, highest peak {}",
        started.elapsed().as_secs_f64(),
        mock.distinct.load(Ordering::Relaxed),
        mock.posts.load(Ordering::Relaxed),
        held.values().map(|h| h.now).sum::<usize>(),
        held.values().map(|h| h.peak).max().unwrap_or(0)
    );
}

/// A campaign as the servers report it after the run.
struct CampaignView {
    id: i64,
    campaign: Value,
    calls_total: i64,
    calls: Vec<Value>,
    contacts_total: i64,
    contacts: Vec<Value>,
}

async fn campaign_view(apis: &[Api], turn: usize, id: i64) -> CampaignView {
    let api = &apis[turn % apis.len()];
    let campaign = api.campaign(id).await;
    let calls_total = api.get(&format!("/campaigns/{id}/calls?pageSize=1")).await["total_count"].as_i64().unwrap_or(-1);
    let contacts_total = api.get(&format!("/campaigns/{id}/contacts?pageSize=1")).await["total_count"].as_i64().unwrap_or(-1);
    let calls = pages(apis, &format!("/campaigns/{id}/calls"), "calls", calls_total).await;
    let contacts = pages(apis, &format!("/campaigns/{id}/contacts"), "contacts", contacts_total).await;
    CampaignView { id, campaign, calls_total, calls, contacts_total, contacts }
}

/// Every page (100 items) of a list of `total` items, `READERS` at a time over the processes.
async fn pages(apis: &[Api], path: &str, field: &str, total: i64) -> Vec<Value> {
    let count = usize::try_from(total).unwrap_or(0).div_ceil(100);
    let mut pages: Vec<(usize, Vec<Value>)> = stream::iter(0..count)
        .map(|page| {
            let api = apis[page % apis.len()].clone();
            let path = format!("{path}?pageSize=100&pageIndex={page}");
            async move {
                let mut reply = api.get(&path).await;
                (page, reply[field].as_array_mut().map(std::mem::take).unwrap_or_default())
            }
        })
        .buffer_unordered(READERS)
        .collect()
        .await;
    pages.sort_by_key(|(page, _)| *page);
    pages.into_iter().flat_map(|(_, items)| items).collect()
}

/// What the dispatch checks found, for the report.
struct Dispatch {
    /// Contacts with 0, 1 and 2+ distinct attempts.
    histogram: [usize; 3],
    /// Per campaign: the peak held until the accepted report was sent (checked), and until its 2xx.
    peaks: Vec<(usize, usize)>,
    /// POSTs of the killed process left unanswered (its unconfirmed handoffs), and how many of them
    /// another process re-sent.
    takeover: (usize, usize),
    rows: Vec<String>,
}

fn check_dispatch(settings: &Settings, mock: &Mock, views: &[CampaignView], violations: &mut Violations) -> Dispatch {
    let peaks_sent = mock.peaks(false);
    let peaks_answered = mock.peaks(true);
    let record = mock.record.lock().expect("record");
    for problem in &record.problems {
        violations.add("mock provider saw a bad request or report", problem.clone());
    }
    for (status, count) in mock.other_statuses.lock().expect("statuses").iter() {
        violations.add("outcome report answered other than 2xx/404", format!("{count} reports answered {status}"));
    }

    // Handoffs the killed process left unconfirmed (the mock swallowed their POSTs): re-sent since,
    // same id, same contact.
    let swallowed = mock.swallowed.lock().expect("swallowed");
    let taken_over = record.check_resent(&swallowed, "a handoff of the killed process", "was never taken over", violations);
    let takeover = (swallowed.len(), taken_over);
    drop(swallowed);

    // Calls.
    let mut server_calls: HashMap<String, (i64, &Value)> = HashMap::new();
    for view in views {
        for call in &view.calls {
            let call_id = call["id"].as_str().unwrap_or_default().to_owned();
            if server_calls.insert(call_id.clone(), (view.id, call)).is_some() {
                violations.add("call listed twice", format!("call {call_id} in campaign {}", view.id));
            }
        }
    }
    record.check_calls(&server_calls, violations);

    // Contacts.
    let mut histogram = [0; 3];
    let mut known_contacts = HashSet::new();
    for view in views {
        if view.contacts.len() as i64 != view.contacts_total || view.contacts_total != settings.contacts as i64 {
            violations.add(
                "contacts listed",
                format!(
                    "campaign {}: {} contacts listed, total_count {}, {} loaded",
                    view.id,
                    view.contacts.len(),
                    view.contacts_total,
                    settings.contacts
                ),
            );
        }
        for contact in &view.contacts {
            let Some(contact_id) = contact["id"].as_i64() else {
                violations.add("contact without id", contact.to_string());
                continue;
            };
            if !known_contacts.insert(contact_id) {
                violations.add("contact listed twice", format!("contact {contact_id} of campaign {}", view.id));
            }
            let attempt_ids = record.by_contact.get(&contact_id).map(Vec::as_slice).unwrap_or_default();
            histogram[attempt_ids.len().min(2)] += 1;
            let Some(first) = attempt_ids.first() else {
                violations.add("contact lost (never attempted)", format!("contact {contact_id} of campaign {}: {contact}", view.id));
                continue;
            };
            if attempt_ids.len() > 1 {
                violations.add(
                    "contact attempted twice",
                    format!("contact {contact_id} of campaign {}: {} distinct attempt ids {attempt_ids:?}", view.id, attempt_ids.len()),
                );
            }
            for id in attempt_ids {
                if record.attempts[id].campaign != view.id {
                    violations.add("attempt for another campaign's contact", format!("attempt {id} of contact {contact_id}"));
                }
            }
            let want = match record.attempts[first].outcome {
                Outcome::Human => "answered",
                Outcome::Machine => "voicemail",
                Outcome::NoAnswer => "failed",
            };
            let server_view = (contact["status"].as_str().unwrap_or_default(), contact["call_count"].as_u64());
            if server_view != (want, Some(attempt_ids.len() as u64)) || attempt_ids.len() != 1 {
                violations.add(
                    "contact state differs from the outcome",
                    format!(
                        "contact {contact_id}: server (status, call_count) = {server_view:?}, provider saw {} attempt(s), first outcome {:?}",
                        attempt_ids.len(),
                        record.attempts[first].outcome
                    ),
                );
            }
        }
    }
    for contact_id in record.by_contact.keys() {
        if !known_contacts.contains(contact_id) {
            violations.add("attempt for an unknown contact", format!("contact {contact_id}"));
        }
    }

    // Campaigns.
    let per_campaign = record.counts_by_campaign();
    let contacts = settings.contacts as i64;
    let mut peaks = Vec::new();
    let mut rows = Vec::new();
    for view in views {
        let (id, analytics) = (view.id, &view.campaign["analytics"]);
        let status = view.campaign["status"].as_str().unwrap_or_default();
        let mock_counts = per_campaign.get(&id).copied().unwrap_or_default();
        if status != "finished" {
            violations.add("campaign not finished", format!("campaign {id}: {status} at the end"));
        }
        if view.calls_total != contacts || view.calls.len() as i64 != contacts || mock_counts[0] != contacts {
            violations.add(
                "/calls total_count ≠ contacts",
                format!(
                    "campaign {id}: /calls total_count {}, listed {}, distinct ids at the provider {}, contacts {contacts}",
                    view.calls_total,
                    view.calls.len(),
                    mock_counts[0]
                ),
            );
        }
        let checks = [
            ("contacts", contacts),
            ("contactsProcessed", contacts),
            ("calls", contacts),
            ("callsAnsweredByHuman", mock_counts[1]),
            ("callsAnsweredByMachine", mock_counts[2]),
            ("callsAnsweredByUnknown", 0),
            ("contactsAnswered", mock_counts[1]),
            ("contactsVoicemail", mock_counts[2]),
            ("contactsFailed", mock_counts[3]),
            ("contactsConverted", 0),
        ];
        violations.check_analytics(id, analytics, &checks);
        let limit = view.campaign["concurrency_limit"].as_u64().map_or(settings.concurrency, |l| l as usize);
        let peak = peaks_sent.get(&id).copied().unwrap_or(0);
        let peak_answered = peaks_answered.get(&id).copied().unwrap_or(0);
        if peak > limit || limit != settings.concurrency {
            violations.add(
                "concurrency_limit exceeded",
                format!(
                    "campaign {id}: the provider held {peak} attempts at once, concurrency_limit {limit} (set {})",
                    settings.concurrency
                ),
            );
        }
        peaks.push((peak, peak_answered));
        rows.push(format!(
            "| {id} | {status} | {} | {} | {} / {} / {} | {} / {} / {} | {peak} / {limit} ({peak_answered}) |",
            mock_counts[0],
            view.calls_total,
            analytics["contacts"],
            analytics["calls"],
            analytics["contactsProcessed"],
            mock_counts[1],
            mock_counts[2],
            mock_counts[3],
        ));
    }
    Dispatch { histogram, peaks, rows, takeover }
}

/// One answer to a `POST /campaigns`.
struct Answer {
    process: usize,
    status: u16,
    replayed: bool,
    body: Vec<u8>,
}

impl Answer {
    fn error(&self) -> String {
        serde_json::from_slice::<Value>(&self.body).ok().and_then(|v| v["error"].as_str().map(str::to_owned)).unwrap_or_default()
    }

    fn describe(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(300).collect();
        format!("process {}: {} {body}", self.process + 1, self.status)
    }
}

async fn create_with_key(api: &Api, process: usize, key: &str, body: &Value) -> Result<Answer, String> {
    let response = api
        .client
        .post(format!("{}/campaigns", api.base))
        .header("Authorization", format!("api-key {}", api.key))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("process {}: POST /campaigns: {e}", process + 1))?;
    let status = response.status().as_u16();
    let replayed = response.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()) == Some("true");
    let body = response.bytes().await.map_err(|e| format!("process {}: reading the body: {e}", process + 1))?.to_vec();
    Ok(Answer { process, status, replayed, body })
}

/// Phase 2: `requests` simultaneous identical creates with one key, round-robin over `apis`.
async fn idempotency_check(apis: &[Api], body: &Value, requests: usize, violations: &mut Violations) -> Vec<String> {
    let name = body["name"].as_str().expect("name").to_owned();
    let key = format!("scaleout-{:016x}", rand::rng().random::<u64>());
    let barrier = Arc::new(tokio::sync::Barrier::new(requests));
    let tasks: Vec<_> = (0..requests)
        .map(|i| {
            let process = i % apis.len();
            let (api, key, body, barrier) = (apis[process].clone(), key.clone(), body.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                create_with_key(&api, process, &key, &body).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        match task.await.expect("request task") {
            Ok(answer) => answers.push(answer),
            Err(err) => violations.add("idempotency: request failed", err),
        }
    }
    let (mut originals, mut replays, mut in_use, mut others) = (Vec::new(), 0, 0, Vec::new());
    for answer in &answers {
        match (answer.status, answer.replayed) {
            (201, false) => originals.push(answer),
            (201, true) => replays += 1,
            (409, _) if answer.error() == "IDEMPOTENCY_KEY_IN_USE" => in_use += 1,
            _ => others.push(answer),
        }
    }
    for answer in &others {
        violations.add("idempotency: answer other than 201 or 409 IDEMPOTENCY_KEY_IN_USE", answer.describe());
    }
    if originals.len() != 1 {
        violations.add(
            "idempotency: not exactly one original 201",
            format!(
                "{} answers were 201 without Idempotent-Replayed: true ({})",
                originals.len(),
                originals.iter().map(|a| format!("process {}", a.process + 1)).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    let reference = originals.first().map(|a| a.body.clone()).or_else(|| answers.iter().find(|a| a.status == 201).map(|a| a.body.clone()));
    let mut differing = 0;
    if let Some(reference) = &reference {
        for answer in answers.iter().filter(|a| a.status == 201 && a.body != *reference) {
            differing += 1;
            violations.add("idempotency: a 201 body differs from the original's", answer.describe());
        }
    }
    // One more per process, now that the first is done: a replay with the same bytes.
    let mut follow_ups = Vec::new();
    for (process, api) in apis.iter().enumerate() {
        match create_with_key(api, process, &key, body).await {
            Ok(answer) => {
                let same = reference.as_ref() == Some(&answer.body);
                if answer.status != 201 || !answer.replayed || !same {
                    violations.add(
                        "idempotency: a later repeat is not a replay of the original",
                        format!("replayed {}, same bytes {same}: {}", answer.replayed, answer.describe()),
                    );
                }
                follow_ups.push(format!("process {}: {}{}", process + 1, answer.status, if answer.replayed { " replayed" } else { "" }));
            }
            Err(err) => violations.add("idempotency: request failed", err),
        }
    }
    // Campaigns of that name, through every page of the list.
    let mut named = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => {
                format!("/campaigns?pageSize=100&cursor={}", url::form_urlencoded::byte_serialize(cursor.as_bytes()).collect::<String>())
            }
            None => "/campaigns?pageSize=100".to_owned(),
        };
        let reply = apis[0].get(&path).await;
        named += reply["campaigns"].as_array().map_or(0, |list| list.iter().filter(|c| c["name"] == name.as_str()).count());
        match reply["pagination"]["next_cursor"].as_str() {
            Some(next) if reply["pagination"]["has_next"] == true => cursor = Some(next.to_owned()),
            _ => break,
        }
    }
    if named != 1 {
        violations.add("idempotency: not exactly one campaign created", format!("{named} campaigns named {name:?}"));
    }
    let mut other_statuses: BTreeMap<String, usize> = BTreeMap::new();
    for answer in &others {
        *other_statuses.entry(format!("{} {}", answer.status, answer.error())).or_default() += 1;
    }
    vec![
        format!(
            "\n{requests} simultaneous identical `POST /campaigns` with one Idempotency-Key, round-robin over {} processes:\n",
            apis.len()
        ),
        "| check | result |".to_owned(),
        "|---|---|".to_owned(),
        format!(
            "| answers: 201 original / 201 replayed / 409 IDEMPOTENCY_KEY_IN_USE / other | {} / {replays} / {in_use} / {} {:?} |",
            originals.len(),
            others.len(),
            other_statuses
        ),
        format!(
            "| the original answered by | {} |",
            originals.iter().map(|a| format!("process {}", a.process + 1)).collect::<Vec<_>>().join(", ")
        ),
        format!("| every 201 body byte-identical to the original's | {} |", ok(differing)),
        format!("| a repeat afterwards on each process | {} |", follow_ups.join("; ")),
        format!("| campaigns named {name:?} in `GET /campaigns` | {named} (must be 1) |"),
        format!(
            "| verdict | {} |",
            ok(others.len()
                + differing
                + usize::from(originals.len() != 1)
                + usize::from(named != 1)
                + violations.count("idempotency: a later repeat is not a replay of the original")
                + violations.count("idempotency: request failed"))
        ),
    ]
}

/// What one rate-limit burst saw.
struct RateResult {
    requests: usize,
    admitted: usize,
    limited: usize,
    others: BTreeMap<String, usize>,
    /// First send → last answer.
    span: Duration,
    /// First send → last send.
    sent_over: Duration,
    first_headers: String,
}

async fn rate_burst(apis: &[Api], rps: u32, secs: f64) -> RateResult {
    let requests = (f64::from(rps) * secs).round() as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rps));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(requests);
    let mut last_send = Duration::ZERO;
    for i in 0..requests {
        tokio::time::sleep_until(start + interval * u32::try_from(i).unwrap_or(u32::MAX)).await;
        last_send = start.elapsed();
        let api = apis[i % apis.len()].clone();
        tasks.push(tokio::spawn(async move {
            let sent = api
                .client
                .get(format!("{}/campaigns?pageSize=1", api.base))
                .header("Authorization", format!("api-key {}", api.key))
                .send()
                .await;
            let headers = match &sent {
                Ok(response) => ["ratelimit-policy", "ratelimit", "retry-after"]
                    .iter()
                    .filter_map(|name| response.headers().get(*name).and_then(|v| v.to_str().ok()).map(|v| format!("{name}: {v}")))
                    .collect::<Vec<_>>()
                    .join("; "),
                Err(_) => String::new(),
            };
            (sent.map(|r| r.status().as_u16()).map_err(|e| e.to_string()), headers, start.elapsed())
        }));
    }
    let mut result = RateResult {
        requests,
        admitted: 0,
        limited: 0,
        others: BTreeMap::new(),
        span: Duration::ZERO,
        sent_over: last_send,
        first_headers: String::new(),
    };
    for (i, task) in tasks.into_iter().enumerate() {
        let (status, headers, done) = task.await.expect("request task");
        result.span = result.span.max(done);
        if i == 0 {
            result.first_headers = headers;
        }
        match status {
            Ok(status) if (200..300).contains(&status) => result.admitted += 1,
            Ok(429) => result.limited += 1,
            Ok(status) => *result.others.entry(status.to_string()).or_default() += 1,
            Err(err) => *result.others.entry(err).or_default() += 1,
        }
    }
    result
}

fn check_rate(label: &str, result: &RateResult, strict_floor: bool, violations: &mut Violations) -> (String, String) {
    let rate = f64::from(RATE);
    let most = rate * result.span.as_secs_f64() + rate + RATE_ALLOWANCE;
    let least = if strict_floor { rate * result.sent_over.as_secs_f64() - RATE_SHORTFALL } else { rate.min(result.requests as f64) };
    let admitted = result.admitted as f64;
    let mut verdict = Vec::new();
    if admitted > most {
        verdict.push("TOO MANY ADMITTED");
        violations.add(
            "rate limit not shared (too many requests admitted)",
            format!("{label}: {} admitted over {:.2} s, at most {most:.1} allowed", result.admitted, result.span.as_secs_f64()),
        );
    }
    if admitted < least {
        verdict.push("TOO FEW ADMITTED");
        violations.add(
            "rate limit admits too little",
            format!(
                "{label}: {} admitted over {:.2} s of sending, at least {least:.1} expected",
                result.admitted,
                result.sent_over.as_secs_f64()
            ),
        );
    }
    if !result.others.is_empty() {
        verdict.push("OTHER ANSWERS");
        violations.add("rate limit: answers other than 2xx and 429", format!("{label}: {:?}", result.others));
    }
    let row = format!(
        "| {label} | {} | {} | {} | {:?} | {:.2} s / {:.2} s | ≤ {most:.1} / ≥ {least:.1} | {} |",
        result.requests,
        result.admitted,
        result.limited,
        result.others,
        result.span.as_secs_f64(),
        result.sent_over.as_secs_f64(),
        if verdict.is_empty() { "OK".to_owned() } else { verdict.join(", ") }
    );
    (row, format!("- {label}: headers of the first answer: {}", result.first_headers))
}
