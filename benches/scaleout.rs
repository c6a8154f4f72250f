//! Scale-out test (issue 6, "PostgreSQL backend and several outbound processes over one
//! deployment"): one command, `cargo bench --bench scaleout`.
//!
//! The large run of the scale-out scenario of `tests/kit/scaleout.rs` (see its doc for what it does
//! and checks): `SCALEOUT_PROCESSES` real `outbound serve` processes over one throwaway PostgreSQL
//! database, one SIGKILLed mid-run; then no contact attempted twice, none lost, `concurrency_limit`
//! held across processes, idempotency across processes and the shared rate limit (PostgreSQL and
//! Redis). The system test `scaleout::postgres_three_processes_one_killed` (`tests/system/`) runs
//! the same code small on every change. If PostgreSQL cannot be reached the harness says so and
//! exits 1; any violation: the list of problems on stderr and exit status 1.
//!
//! Knobs (environment): `SCALEOUT_CAMPAIGNS` (10), `SCALEOUT_CONTACTS` (10000, at most 10,000:
//! `message_limit` caps a campaign at 10,000 attempts per 24 h), `SCALEOUT_PROCESSES` (3, at least
//! 2), `SCALEOUT_CONCURRENCY` (100), `SCALEOUT_CALL_MS` (400), `SCALEOUT_SEED` (random; printed: it
//! picks the kill point and the victim), `SCALEOUT_RESTART` (0), `SCALEOUT_TIMEOUT_SECS` (600, for
//! the dispatch phase), `SCALEOUT_IDEMPOTENT_REQUESTS` (50), `SCALEOUT_RATE_RPS` (100),
//! `SCALEOUT_RATE_SECS` (5), `SCALEOUT_DATABASE_URL` (`postgres://postgres@127.0.0.1:5432`, the
//! server part only), `SCALEOUT_REDIS_URL` (`redis://127.0.0.1:6379`), `SCALEOUT_KEEP` (1: keep the
//! database and the temp dir with the servers' logs), `BENCH_SERVER_LOG` (the servers' `RUST_LOG`,
//! `warn`).

#[path = "../tests/kit/mod.rs"]
mod kit;

use std::time::Duration;

use kit::env_or;
use kit::postgres::ThrowawayDatabase;

const KNOBS: [&str; 15] = [
    "SCALEOUT_CAMPAIGNS",
    "SCALEOUT_CONTACTS",
    "SCALEOUT_PROCESSES",
    "SCALEOUT_CONCURRENCY",
    "SCALEOUT_CALL_MS",
    "SCALEOUT_SEED",
    "SCALEOUT_RESTART",
    "SCALEOUT_TIMEOUT_SECS",
    "SCALEOUT_IDEMPOTENT_REQUESTS",
    "SCALEOUT_RATE_RPS",
    "SCALEOUT_RATE_SECS",
    "SCALEOUT_DATABASE_URL",
    "SCALEOUT_REDIS_URL",
    "SCALEOUT_KEEP",
    "BENCH_SERVER_LOG",
];

fn main() {
    let settings = kit::scaleout::Settings {
        campaigns: env_or("SCALEOUT_CAMPAIGNS", 10),
        contacts: env_or("SCALEOUT_CONTACTS", 10_000),
        processes: env_or("SCALEOUT_PROCESSES", 3),
        concurrency: env_or("SCALEOUT_CONCURRENCY", 100),
        call_ms: env_or("SCALEOUT_CALL_MS", 400),
        seed: kit::seed("SCALEOUT_SEED"),
        restart: env_or("SCALEOUT_RESTART", 0) == 1,
        timeout: Duration::from_secs(env_or("SCALEOUT_TIMEOUT_SECS", 600)),
        stall: Duration::from_secs(60),
        idempotent_requests: env_or("SCALEOUT_IDEMPOTENT_REQUESTS", 50),
        rate_rps: env_or("SCALEOUT_RATE_RPS", 100),
        rate_secs: env_or("SCALEOUT_RATE_SECS", 5.0),
        redis_url: Some(env_or("SCALEOUT_REDIS_URL", "redis://127.0.0.1:6379".to_owned())),
        strict_rate_floor: true,
        keep: env_or("SCALEOUT_KEEP", 0) == 1,
        command: kit::command_line("scaleout", &KNOBS),
    };
    if let Err(err) = settings.check() {
        eprintln!("SCALEOUT_*: {err}");
        std::process::exit(2);
    }
    let server_url: String = env_or("SCALEOUT_DATABASE_URL", "postgres://postgres@127.0.0.1:5432".to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let throwaway = match runtime.block_on(ThrowawayDatabase::new(&server_url, "outbound_scaleout")) {
        Ok(throwaway) => throwaway,
        Err(err) => {
            eprintln!("{err}");
            eprintln!("FAILED: the scale-out test needs PostgreSQL (set SCALEOUT_DATABASE_URL to postgres://USER@HOST:PORT)");
            std::process::exit(1);
        }
    };
    drop(runtime);
    if !kit::scaleout::run(&settings, throwaway).is_empty() {
        std::process::exit(1);
    }
}
