//! Crash test against a real provider's API: one command, `cargo bench --bench provider_crash`.
//!
//! The large run of the provider crash scenario of `tests/kit/provider_crash.rs` (see its doc for
//! what it does and checks): a real `outbound serve` on SQLite handing calls to a mock Twilio
//! (`tests/kit/providers_mock.rs`, which plays the calls back through signed status callbacks),
//! SIGKILLed several times while campaigns run; then no attempt id may have reached Calls.json
//! twice, every call must show the outcome the provider reported (or `provider_unknown` for a
//! hand-off the server died with), and no contact may be lost or left unfinished. The system
//! test `crash::twilio_survives_sigkills` (`tests/system/`) runs the same code small on every
//! change. Any violation: the list of problems on stderr and exit status 1.
//!
//! Knobs (environment): `PCRASH_CAMPAIGNS` (10), `PCRASH_CONTACTS` (3333 per campaign, at most
//! 3333), `PCRASH_KILLS` (4), `PCRASH_SEED` (random; printed, so a run can be repeated),
//! `PCRASH_PER_SECOND` (200: the integration's `max_per_second`), `PCRASH_CALL_MS` (50: a call
//! lasts 0..this once answered), `PCRASH_DOWNTIME_MS` (2000: the server stays down 0..this after a
//! kill), `PCRASH_TIMEOUT_SECS` (1800), `PCRASH_KEEP` (1: keep the temp dir with the database and
//! the server's log), `BENCH_SERVER_LOG` (the server's `RUST_LOG`, `warn`).

#[path = "../tests/kit/mod.rs"]
mod kit;

use std::time::Duration;

use kit::env_or;

const KNOBS: [&str; 9] = [
    "PCRASH_CAMPAIGNS",
    "PCRASH_CONTACTS",
    "PCRASH_KILLS",
    "PCRASH_SEED",
    "PCRASH_PER_SECOND",
    "PCRASH_CALL_MS",
    "PCRASH_DOWNTIME_MS",
    "PCRASH_TIMEOUT_SECS",
    "PCRASH_KEEP",
];

fn main() {
    let size = kit::crash::Size {
        campaigns: env_or("PCRASH_CAMPAIGNS", 10),
        contacts: env_or("PCRASH_CONTACTS", 3333),
        kills: env_or("PCRASH_KILLS", 4),
        seed: kit::seed("PCRASH_SEED"),
        max_call_ms: env_or("PCRASH_CALL_MS", 50),
        max_down_ms: env_or("PCRASH_DOWNTIME_MS", 2000),
        timeout: Duration::from_secs(env_or("PCRASH_TIMEOUT_SECS", 1800)),
        stall: Duration::from_secs(120),
        keep: env_or("PCRASH_KEEP", 0) == 1,
        command: kit::command_line("provider_crash", &KNOBS),
    };
    if let Err(err) = size.check() {
        eprintln!("PCRASH_CONTACTS / PCRASH_CAMPAIGNS: {err}");
        std::process::exit(2);
    }
    if !kit::provider_crash::run(&size, env_or("PCRASH_PER_SECOND", 200.0)).is_empty() {
        std::process::exit(1);
    }
}
