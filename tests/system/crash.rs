//! The crash scenario (`tests/kit/crash.rs`) at a small size: one `outbound serve` on SQLite,
//! SIGKILLed three times while three campaigns run.

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
