//! The crash scenarios at a small size: `tests/kit/crash.rs` (one `outbound serve` on SQLite,
//! SIGKILLed three times while three campaigns run against the mock webhook provider) and
//! `tests/kit/provider_crash.rs` (the same against a mock Twilio).

use crate::kit;

/// A small run of `campaigns` × `contacts`, killed three times, replayable as `test`.
fn small(test: &str, campaigns: usize, contacts: usize) -> kit::crash::Size {
    let seed = kit::seed("CRASH_SEED");
    let replay = format!("CRASH_SEED={seed} cargo nextest run --test system crash::{test}");
    println!("seed {seed}; to replay: {replay}");
    kit::crash::Size {
        campaigns,
        contacts,
        kills: 3,
        seed,
        max_call_ms: 50,
        max_down_ms: 1000,
        timeout: crate::DEADLINE,
        stall: crate::STALL,
        keep: crate::knob("CRASH_KEEP", 0) == 1,
        command: replay,
    }
}

#[test]
fn sqlite_survives_sigkills() {
    let size = small("sqlite_survives_sigkills", 3, 150);
    let violations = kit::crash::run(&size);
    assert!(violations.is_empty(), "the crash scenario found violations ({}):\n{}", size.command, violations.summary());
}

/// The provider crash scenario (`tests/kit/provider_crash.rs`) at a small size: one `outbound
/// serve` on SQLite handing calls to a mock Twilio at 200/s, SIGKILLed three times while two
/// campaigns run; no attempt id may reach the provider twice.
#[test]
fn twilio_survives_sigkills() {
    let size = small("twilio_survives_sigkills", 2, 200);
    let violations = kit::provider_crash::run(&size, 200.0);
    assert!(violations.is_empty(), "the provider crash scenario found violations ({}):\n{}", size.command, violations.summary());
}
