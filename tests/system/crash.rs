//! The crash scenarios at a small size: `tests/kit/crash.rs` (one `outbound serve` on SQLite,
//! SIGKILLed three times while three campaigns run against the mock webhook provider) and
//! `tests/kit/provider_crash.rs` (the same against a mock Twilio).

use crate::kit;

#[test]
fn sqlite_survives_sigkills() {
    let seed = kit::seed("CRASH_SEED");
    let replay = format!("CRASH_SEED={seed} cargo nextest run --test system crash::sqlite_survives_sigkills");
    println!("seed {seed}; to replay: {replay}");
    let size = kit::crash::Size {
        campaigns: 3,
        contacts: 150,
        kills: 3,
        seed,
        max_call_ms: 50,
        max_down_ms: 1000,
        timeout: crate::DEADLINE,
        stall: crate::STALL,
        keep: crate::knob("CRASH_KEEP", 0) == 1,
        command: replay.clone(),
    };
    let violations = kit::crash::run(&size);
    assert!(violations.is_empty(), "the crash scenario found violations (seed {seed}; replay: {replay}):\n{}", violations.summary());
}

/// The provider crash scenario (`tests/kit/provider_crash.rs`) at a small size: one `outbound
/// serve` on SQLite handing calls to a mock Twilio at 200/s, SIGKILLed three times while two
/// campaigns run; no attempt id may reach the provider twice.
#[test]
fn twilio_survives_sigkills() {
    let seed = kit::seed("CRASH_SEED");
    let replay = format!("CRASH_SEED={seed} cargo nextest run --test system crash::twilio_survives_sigkills");
    println!("seed {seed}; to replay: {replay}");
    let size = kit::crash::Size {
        campaigns: 2,
        contacts: 200,
        kills: 3,
        seed,
        max_call_ms: 50,
        max_down_ms: 1000,
        timeout: crate::DEADLINE,
        stall: crate::STALL,
        keep: crate::knob("CRASH_KEEP", 0) == 1,
        command: replay.clone(),
    };
    let violations = kit::provider_crash::run(&size, 200.0);
    assert!(
        violations.is_empty(),
        "the provider crash scenario found violations (seed {seed}; replay: {replay}):\n{}",
        violations.summary()
    );
}
