//! The scale-out scenario (`tests/kit/scaleout.rs`) at a small size: three `outbound serve`
//! processes over one PostgreSQL database, one SIGKILLed mid-run and not restarted; then
//! idempotency across the processes and the shared rate limit, briefly.
//!
//! Skipped with a `SKIPPED: …` line when PostgreSQL is not reachable, unless `CI` or
//! `OUTBOUND_REQUIRE_POSTGRES=1` is set (then it fails); the Redis half of the rate-limit phase
//! likewise with `OUTBOUND_REQUIRE_REDIS=1`. PostgreSQL: `OUTBOUND_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`, as the HTTP suite), Redis: `OUTBOUND_TEST_REDIS_URL`.

use crate::kit;

#[test]
fn postgres_three_processes_one_killed() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let Some(database) = runtime.block_on(kit::postgres::for_test("outbound_system_scaleout")) else { return };
    let redis_url = runtime.block_on(kit::postgres::redis_for_test("the Redis half of the rate-limit phase"));
    drop(runtime);
    let seed = kit::seed("SCALEOUT_SEED");
    let replay = format!("SCALEOUT_SEED={seed} cargo nextest run --test system scaleout::postgres_three_processes_one_killed");
    println!("seed {seed}; to replay: {replay}");
    let settings = kit::scaleout::Settings {
        campaigns: 3,
        contacts: 200,
        processes: 3,
        // Low enough that 200 contacts press it (the peak check then means something).
        concurrency: 20,
        call_ms: 400,
        seed,
        restart: false,
        timeout: crate::DEADLINE,
        stall: crate::STALL,
        idempotent_requests: 20,
        rate_rps: 50,
        rate_secs: 2.0,
        redis_url,
        // Only the burst as the floor: the strict floor assumes the harness keeps its sending pace.
        strict_rate_floor: false,
        keep: crate::knob("SCALEOUT_KEEP", 0) == 1,
        command: replay.clone(),
    };
    let violations = kit::scaleout::run(&settings, database);
    assert!(violations.is_empty(), "the scale-out scenario found violations (seed {seed}; replay: {replay}):\n{}", violations.summary());
}
