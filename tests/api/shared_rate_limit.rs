//! The per-key rate limit shared by several servers (as several processes) on one PostgreSQL
//! database, kept in PostgreSQL or in Redis (§6), with one controlled clock for both.

use std::num::NonZeroU32;
use std::sync::Arc;

use jiff::SignedDuration;
use outbound::api::ApiSettings;
use outbound::api::rate_limit::{Decision, KeyRateLimiter, RateLimitConfig};
use outbound::clock::{Clock, ManualClock};
use outbound::server::RunningServer;
use outbound::store;
use reqwest::StatusCode;

use super::helpers::{TestApp, redis_limits, start_time};

fn settings(rate: u32) -> ApiSettings {
    ApiSettings { rate_limit_rps: NonZeroU32::new(rate), ..ApiSettings::default() }
}

async fn get(client: &reqwest::Client, base: &str, key: &str) -> reqwest::Response {
    client.get(format!("{base}/api/v1.0/agents")).header("Authorization", format!("api-key {key}")).send().await.expect("sent")
}

fn ratelimit(response: &reqwest::Response) -> Option<String> {
    response.headers().get("ratelimit").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Two servers over the app's database, both limiting with `limits`, share the app's key: the
/// burst is admitted once in all, then one request per 1/rate seconds, whichever server gets it.
async fn two_servers_share_one_limit(app: TestApp, limits: RateLimitConfig) {
    let other_store = store::open(&app.database_url).await.expect("second store");
    let other =
        RunningServer::start_with("127.0.0.1:0", other_store, app.clock.clone(), settings(12), limits).await.expect("second server");
    let bases = [app.base.clone(), format!("http://{}", other.addr)];
    let client = &app.client;

    for (i, remaining) in (0..12).rev().enumerate() {
        let response = get(client, &bases[i % 2], &app.key).await;
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
        assert_eq!(ratelimit(&response), Some(format!("\"default\";r={remaining};t=1")), "request {i}");
    }
    for base in &bases {
        let limited = get(client, base, &app.key).await;
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
        assert_eq!(ratelimit(&limited).as_deref(), Some("\"default\";r=0;t=1"));
    }

    // Another key of the same organization has a limit of its own.
    let other_key = app.new_key("acme").await;
    assert_eq!(get(client, &bases[1], &other_key).await.status(), StatusCode::OK);

    // At the steady rate, one request per interval passes, on either server, and no more.
    for step in 0..24 {
        app.clock.advance(SignedDuration::from_nanos(1_000_000_000 / 12 + 1));
        assert_eq!(get(client, &bases[step % 2], &app.key).await.status(), StatusCode::OK, "step {step}");
        assert_eq!(get(client, &bases[(step + 1) % 2], &app.key).await.status(), StatusCode::TOO_MANY_REQUESTS, "step {step}");
    }

    // A full second idle refills the whole burst, shared again.
    app.clock.advance(SignedDuration::from_secs(1));
    for i in 0..12 {
        assert_eq!(get(client, &bases[i % 2], &app.key).await.status(), StatusCode::OK, "refilled request {i}");
    }
    assert_eq!(get(client, &bases[0], &app.key).await.status(), StatusCode::TOO_MANY_REQUESTS);
    other.shutdown().await.expect("second server stops");
}

#[tokio::test]
async fn rate_limit_two_servers_share_one_limit_in_postgres() {
    let Some(app) = TestApp::spawn_with(settings(12)).await else { return };
    two_servers_share_one_limit(app, RateLimitConfig::default()).await;
}

#[tokio::test]
async fn rate_limit_two_servers_share_one_limit_in_redis() {
    let Some(limits) = redis_limits().await else { return };
    let Some(app) = TestApp::spawn_with_limits(settings(12), limits.clone()).await else { return };
    two_servers_share_one_limit(app, limits).await;
}

/// The SQL and the Lua script decide as the in-process (governor) limiter, step by step.
#[tokio::test]
async fn rate_limit_postgres_and_redis_decide_as_the_in_process_limiter() {
    let Some(app) = TestApp::spawn().await else { return };
    let redis = redis_limits().await;
    for rate in [1, 3, 12, 1000] {
        let rate = NonZeroU32::new(rate).expect("rate");
        let clock = Arc::new(ManualClock::new(start_time()));
        let shared: Arc<dyn Clock> = clock.clone();
        let local = KeyRateLimiter::new(rate, shared.clone());
        let prefix = format!("rate-{rate}:");
        let postgres = KeyRateLimiter::select(
            rate,
            shared.clone(),
            app.store.clone(),
            &RateLimitConfig { redis_url: None, key_prefix: prefix.clone() },
        )
        .await
        .expect("postgres limiter");
        assert_eq!(postgres.kind(), "postgres");
        let mut limiters = vec![postgres];
        if let Some(limits) = &redis {
            let config = RateLimitConfig { redis_url: limits.redis_url.clone(), key_prefix: format!("{}{prefix}", limits.key_prefix) };
            let limiter = KeyRateLimiter::select(rate, shared.clone(), app.store.clone(), &config).await.expect("redis limiter");
            assert_eq!(limiter.kind(), "redis");
            limiters.push(limiter);
        }
        // Bursts, gaps just under and over one interval, long idle times, odd nanoseconds.
        let interval = 1_000_000_000 / i64::from(rate.get());
        let mut gaps = vec![0_i64; 2 * rate.get() as usize];
        for i in 0..200_i64 {
            gaps.push(match i % 7 {
                0 => interval - 1,
                1 => interval,
                2 => interval + 1,
                3 => 0,
                4 => (i * 7_919_333) % 1_000_000_000,
                5 => 2_000_000_001,
                _ => interval / 3 + i,
            });
        }
        let mut admitted = 0;
        for (n, gap) in gaps.into_iter().enumerate() {
            clock.advance(SignedDuration::from_nanos(gap));
            let expected = local.check(7).await;
            admitted += usize::from(matches!(expected, Decision::Allowed { .. }));
            for limiter in &limiters {
                assert_eq!(limiter.check(7).await, expected, "rate {rate}, step {n}, {} limiter", limiter.kind());
            }
        }
        assert!(admitted > 0);
    }
}
