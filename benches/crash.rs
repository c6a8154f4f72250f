//! Crash test (issue "Engine"): one command, `cargo bench --bench crash`.
//!
//! The large run of the crash scenario of `tests/kit/crash.rs` (see its doc for what it does and
//! checks): a real `outbound serve` on SQLite, SIGKILLed several times while campaigns run against
//! a mock provider (which also receives the server's webhook events); then nothing may be lost or
//! sent twice, and every event delivered at least once, duplicates only under the same event id. The system test
//! `crash::sqlite_survives_sigkills` (`tests/system/`) runs the same code small on every change.
//! Any violation: the list of problems on stderr and exit status 1.
//!
//! Knobs (environment): `CRASH_CAMPAIGNS` (30), `CRASH_CONTACTS` (3333 per campaign, at most 3333),
//! `CRASH_KILLS` (4), `CRASH_SEED` (random; printed, so a run can be repeated),
//! `CRASH_CALL_MS` (50: the mock waits 0..this before reporting an outcome), `CRASH_DOWNTIME_MS`
//! (2000: the server stays down 0..this after a kill), `CRASH_TIMEOUT_SECS` (1800),
//! `CRASH_KEEP` (1: keep the temp dir with the database and the server's log).

#[path = "../tests/kit/mod.rs"]
mod kit;

use std::time::Duration;

use kit::env_or;

const KNOBS: [&str; 8] = [
    "CRASH_CAMPAIGNS",
    "CRASH_CONTACTS",
    "CRASH_KILLS",
    "CRASH_SEED",
    "CRASH_CALL_MS",
    "CRASH_DOWNTIME_MS",
    "CRASH_TIMEOUT_SECS",
    "CRASH_KEEP",
];

fn main() {
    let size = kit::crash::Size {
        campaigns: env_or("CRASH_CAMPAIGNS", 30),
        contacts: env_or("CRASH_CONTACTS", 3333),
        kills: env_or("CRASH_KILLS", 4),
        seed: kit::seed("CRASH_SEED"),
        max_call_ms: env_or("CRASH_CALL_MS", 50),
        max_down_ms: env_or("CRASH_DOWNTIME_MS", 2000),
        timeout: Duration::from_secs(env_or("CRASH_TIMEOUT_SECS", 1800)),
        stall: Duration::from_secs(120),
        keep: env_or("CRASH_KEEP", 0) == 1,
        command: kit::command_line("crash", &KNOBS),
    };
    if let Err(err) = size.check() {
        eprintln!("CRASH_CONTACTS / CRASH_CAMPAIGNS: {err}");
        std::process::exit(2);
    }
    if !kit::crash::run(&size).is_empty() {
        std::process::exit(1);
    }
}
