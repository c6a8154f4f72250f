//! System tests: the real `outbound serve` binary (`CARGO_BIN_EXE_outbound`, the profile being
//! tested) run as separate processes against a mock provider, and killed with SIGKILL while
//! campaigns run; then every contact is checked: none lost, none sent twice, every count the API
//! reports true. They run the scenarios of `tests/kit/` (`crash.rs`, `provider_crash.rs`,
//! `scaleout.rs`) at a small size; `cargo bench --bench crash`, `cargo bench --bench
//! provider_crash` and `cargo bench --bench scaleout` run the same code large.
//! `providers_mock.rs` checks the mock providers' signatures against the providers' vectors.
//!
//! House rules, and where these tests bend them: a real process cannot be driven by a test clock,
//! so they wait on the wall clock for it to make progress. They never assert how long anything
//! took: they poll the state they need (attempts seen by the mock, campaigns `finished`) and give
//! up only at a generous overall deadline ([`DEADLINE`]), or when nothing moved for [`STALL`]; either
//! is reported as a violation. Each prints its seed; set `CRASH_SEED` /
//! `SCALEOUT_SEED` to replay the same kill points (the timing of a real process is not replayed).
//! Ports are free ports picked at run time, so the two tests may run beside each other and beside
//! the HTTP suite (`.config/nextest.toml` still runs them one at a time, to keep them within
//! their few minutes on a small machine).
//!
//! `python_tools.rs` runs the two Python tools of `tests/python/` (a client generated from
//! Altur's OpenAPI, Schemathesis) against a real server; they need `bash tests/python/setup.sh`
//! first, and are skipped without it unless `OUTBOUND_REQUIRE_PYTOOLS=1`.

#[path = "../kit/mod.rs"]
mod kit;

mod crash;
mod providers_mock;
mod python_tools;
mod scaleout;

use std::time::Duration;

/// A run whose campaigns are not all finished this long after activation fails. A run takes well
/// under a minute of progress on a 2-core machine in the debug profile; the margin is for a
/// loaded CI machine.
pub const DEADLINE: Duration = Duration::from_secs(600);
/// Nothing moved for this long fails the run: no new attempt while waiting for a kill point, or
/// no POST nor accepted outcome report while campaigns are unfinished (a correct server re-sends
/// an unconfirmed handoff after its 5 s lease, so it is never idle that long with work left).
pub const STALL: Duration = Duration::from_secs(120);

/// A knob of the system tests: its value when set and valid, else `default`.
pub fn knob(name: &str, default: u64) -> u64 {
    kit::env_or(name, default)
}
