//! Per-API-key rate limit (contract §6): GCRA with burst equal to the rate, checked right after
//! authentication and before the body is read, with the IETF `RateLimit` fields on every
//! authenticated response.
//!
//! Where the limit lives depends on the deployment (README "Retries and limits"):
//! - in this process ([`governor`]), the default on SQLite, where one process owns the database;
//! - in PostgreSQL (table `rate_limits`), the default when the store is PostgreSQL, so every
//!   `outbound serve` on that database shares one limit per key;
//! - in Redis, when `OUTBOUND_REDIS_URL` is set (one Lua script per request).
//!
//! All three run the same GCRA on the injected clock's time (the shared ones take the caller's
//! `now`), so they decide alike. When the shared limiter cannot be reached the request is still
//! answered (fail open), limited by this process's own limiter meanwhile; a warning is logged at
//! most once a minute and `outbound_rate_limit_backend_errors_total` counts every such request.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use super::AppState;
use super::error::ApiError;
use super::extract::Tenant;
use crate::clock::Clock;
use crate::store::{RateLimitStep, RateLimitStore};

const NANOS_PER_SECOND: i64 = 1_000_000_000;
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Governor reads time from the injected clock, so tests drive the limiter without sleeping.
#[derive(Clone)]
struct InjectedClock(Arc<dyn Clock>);

impl InjectedClock {
    fn unix_nanos(&self) -> i64 {
        i64::try_from(self.0.now().as_nanosecond()).unwrap_or(i64::MAX)
    }
}

impl governor::clock::Clock for InjectedClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_nanos(u64::try_from(self.0.now().as_nanosecond()).unwrap_or(0))
    }
}

type KeyedLimiter = RateLimiter<i64, DashMapStateStore<i64>, InjectedClock, StateInformationMiddleware>;

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed { remaining: u32, full_in_seconds: u64 },
    Limited { retry_after_seconds: u64 },
}

/// The GCRA of governor's `Quota::per_second(rate).allow_burst(rate)`, in unix nanoseconds: the
/// shared limiters store the theoretical arrival time (TAT) and this turns it into a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    rate: u32,
    /// Emission interval: one request every `interval` nanoseconds.
    pub interval: i64,
    /// How far the TAT may run ahead of now: `interval * (burst - 1)`.
    pub tolerance: i64,
}

impl Gcra {
    pub fn new(rate: NonZeroU32) -> Self {
        let interval = (NANOS_PER_SECOND / i64::from(rate.get())).max(1);
        Gcra { rate: rate.get(), interval, tolerance: interval * i64::from(rate.get() - 1) }
    }

    /// The step itself (what the SQL and the Lua script compute): `stored` is the key's TAT,
    /// `None` when it has none.
    pub fn step(&self, stored: Option<i64>, now: i64) -> RateLimitStep {
        let tat = stored.unwrap_or(now);
        if now < tat - self.tolerance { RateLimitStep::Refused(tat) } else { RateLimitStep::Admitted(tat.max(now) + self.interval) }
    }

    /// The decision a step stands for, as governor reports it.
    pub fn decision(&self, step: RateLimitStep, now: i64) -> Decision {
        match step {
            RateLimitStep::Admitted(tat) => {
                let full = self.tolerance + self.interval;
                let remaining = ((now + full - tat).clamp(0, full) / self.interval) as u32;
                let missing = u64::from(self.rate - remaining.min(self.rate));
                Decision::Allowed { remaining, full_in_seconds: missing.div_ceil(u64::from(self.rate)) }
            }
            RateLimitStep::Refused(tat) => {
                let wait = (tat - self.tolerance - now).max(0);
                let seconds = u64::try_from((wait + NANOS_PER_SECOND - 1) / NANOS_PER_SECOND).unwrap_or(1);
                Decision::Limited { retry_after_seconds: seconds.max(1) }
            }
        }
    }
}

/// The GCRA step in Redis. Lua numbers are doubles, exact only up to 2^53, and unix nanoseconds
/// are larger: the script gets now as seconds and nanoseconds and keeps the TAT as their decimal
/// digits, computing only with the difference to now. Returns `{1, tat - now}` when admitted and
/// `{0, tat - now}` when refused. A key expires once full (its TAT past, in Redis's own time), with
/// a margin of a few seconds: a TAT found past counts as none, so a late expiry changes nothing.
const REDIS_SCRIPT: &str = r"
local now_s = tonumber(ARGV[1])
local now_ns = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local tolerance = tonumber(ARGV[4])
local ahead = 0
local stored = redis.call('GET', KEYS[1])
if stored then
  ahead = (tonumber(string.sub(stored, 1, -10)) - now_s) * 1000000000 + (tonumber(string.sub(stored, -9)) - now_ns)
end
if ahead - tolerance > 0 then
  return {0, ahead}
end
if ahead < 0 then
  ahead = 0
end
ahead = ahead + interval
local ns = now_ns + ahead
local s = now_s + math.floor(ns / 1000000000)
ns = ns % 1000000000
redis.call('SET', KEYS[1], string.format('%d%09d', s, ns))
redis.call('PEXPIRE', KEYS[1], math.ceil(ahead / 1000000) + 5000)
return {1, ahead}
";

/// Where the limit is shared, when it is.
enum Shared {
    /// Only in this process.
    Local,
    /// In the store's database (PostgreSQL).
    Store(Arc<dyn RateLimitStore>),
    /// In Redis.
    Redis { connection: redis::aio::ConnectionManager, script: redis::Script },
}

/// Which limiter `outbound serve` uses, besides the rate (contract §5.6).
#[derive(Debug, Clone, Default)]
pub struct RateLimitConfig {
    /// `OUTBOUND_REDIS_URL`: keep the limit in Redis.
    pub redis_url: Option<String>,
    /// Prefix of the keys in Redis and PostgreSQL; empty means `outbound:rl:`.
    pub key_prefix: String,
}

/// Could not set up the configured limiter.
#[derive(Debug, thiserror::Error)]
#[error("rate limiter: {0}")]
pub struct LimiterError(#[from] redis::RedisError);

pub struct KeyRateLimiter {
    /// This process's limiter: the limit itself when it is not shared, else the stand-in while
    /// the shared one cannot be reached.
    limiter: KeyedLimiter,
    clock: InjectedClock,
    rate: NonZeroU32,
    gcra: Gcra,
    /// The `RateLimit-Policy` field, the same on every response.
    policy: HeaderValue,
    shared: Shared,
    key_prefix: String,
    last_warning: Mutex<Option<Instant>>,
}

impl KeyRateLimiter {
    /// A limiter kept in this process.
    pub fn new(rate: NonZeroU32, clock: Arc<dyn Clock>) -> Self {
        Self::with_shared(rate, clock, Shared::Local, String::new())
    }

    fn with_shared(rate: NonZeroU32, clock: Arc<dyn Clock>, shared: Shared, key_prefix: String) -> Self {
        let clock = InjectedClock(clock);
        let quota = Quota::per_second(rate).allow_burst(rate);
        let limiter = RateLimiter::<_, _, _, NoOpMiddleware<Duration>>::new(quota, DashMapStateStore::default(), clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        let key_prefix = if key_prefix.is_empty() { "outbound:rl:".to_owned() } else { key_prefix };
        let policy = HeaderValue::from_str(&format!("\"default\";q={rate};w=1")).unwrap_or(HeaderValue::from_static("\"default\""));
        KeyRateLimiter { limiter, clock, rate, gcra: Gcra::new(rate), policy, shared, key_prefix, last_warning: Mutex::new(None) }
    }

    /// The limiter a server uses: Redis when a URL is configured, else the store's database when
    /// it keeps rate limits (PostgreSQL), else this process.
    pub async fn select(
        rate: NonZeroU32,
        clock: Arc<dyn Clock>,
        store: Arc<dyn RateLimitStore>,
        config: &RateLimitConfig,
    ) -> Result<Self, LimiterError> {
        let prefix = config.key_prefix.clone();
        let limiter = if let Some(url) = &config.redis_url {
            let client = redis::Client::open(url.as_str())?;
            let manager_config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(Duration::from_millis(500)))
                .set_number_of_retries(2);
            let connection = redis::aio::ConnectionManager::new_with_config(client, manager_config).await?;
            Self::with_shared(rate, clock, Shared::Redis { connection, script: redis::Script::new(REDIS_SCRIPT) }, prefix)
        } else if store.keeps_rate_limits() {
            Self::with_shared(rate, clock, Shared::Store(store), prefix)
        } else {
            Self::with_shared(rate, clock, Shared::Local, prefix)
        };
        tracing::info!(limiter = limiter.kind(), rate = rate.get(), "per-key rate limit");
        Ok(limiter)
    }

    /// Where the limit lives: `in-process`, `postgres` or `redis`.
    pub fn kind(&self) -> &'static str {
        match self.shared {
            Shared::Local => "in-process",
            Shared::Store(_) => "postgres",
            Shared::Redis { .. } => "redis",
        }
    }

    pub async fn check(&self, key_id: i64) -> Decision {
        let shared = match &self.shared {
            Shared::Local => return self.check_local(key_id),
            Shared::Store(store) => {
                let now = self.clock.unix_nanos();
                let key = format!("{}{key_id}", self.key_prefix);
                store
                    .take_rate_limit(&key, now, self.gcra.interval, self.gcra.tolerance)
                    .await
                    .map(|step| self.gcra.decision(step, now))
                    .map_err(|err| err.to_string())
            }
            Shared::Redis { connection, script } => {
                let now = self.clock.unix_nanos();
                let mut connection = connection.clone();
                let answer: Result<(i64, i64), _> = script
                    .key(format!("{}{key_id}", self.key_prefix))
                    .arg(now.div_euclid(NANOS_PER_SECOND))
                    .arg(now.rem_euclid(NANOS_PER_SECOND))
                    .arg(self.gcra.interval)
                    .arg(self.gcra.tolerance)
                    .invoke_async(&mut connection)
                    .await;
                answer
                    .map(|(admitted, ahead)| {
                        let tat = now + ahead;
                        self.gcra.decision(if admitted == 1 { RateLimitStep::Admitted(tat) } else { RateLimitStep::Refused(tat) }, now)
                    })
                    .map_err(|err| err.to_string())
            }
        };
        shared.unwrap_or_else(|error| {
            crate::metrics::rate_limit_backend_error(self.kind());
            self.warn_at_most_once_a_minute(&error);
            self.check_local(key_id)
        })
    }

    fn warn_at_most_once_a_minute(&self, error: &str) {
        let Ok(mut last) = self.last_warning.lock() else { return };
        if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            *last = Some(Instant::now());
            tracing::warn!(limiter = self.kind(), %error, "shared rate limit unreachable: requests are limited by this process alone meanwhile");
        }
    }

    fn check_local(&self, key_id: i64) -> Decision {
        match self.limiter.check_key(&key_id) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let missing = u64::from(self.rate.get() - remaining.min(self.rate.get()));
                // Each missing request comes back after 1/rate seconds.
                let full_in_seconds = missing.div_ceil(u64::from(self.rate.get()));
                Decision::Allowed { remaining, full_in_seconds }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(&self.clock));
                Decision::Limited { retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64 }
            }
        }
    }

    /// Forgets keys whose bucket is full again: memory follows the keys active right now. In
    /// PostgreSQL that deletes the rows whose TAT is past; Redis keys expire by themselves.
    pub async fn forget_idle_keys(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        if let Shared::Store(store) = &self.shared {
            match store.purge_rate_limits(self.clock.unix_nanos()).await {
                Ok(0) => {}
                Ok(purged) => tracing::debug!(purged, "full rate-limit keys removed"),
                Err(err) => tracing::warn!(error = %err, "could not remove full rate-limit keys"),
            }
        }
    }

    pub fn tracked_keys(&self) -> usize {
        self.limiter.len()
    }

    fn set_headers(&self, headers: &mut HeaderMap, remaining: u32, reset_seconds: u64) {
        headers.insert(RATELIMIT_POLICY, self.policy.clone());
        let state = format!("\"default\";r={remaining};t={reset_seconds}");
        // Handing the String over as Bytes spares a copy; it is ASCII, so it always converts.
        if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(state)) {
            headers.insert(RATELIMIT, value);
        }
    }
}

pub async fn rate_limit(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let Some(limiter) = &app.rate_limiter else { return next.run(request).await };
    let Some(tenant) = request.extensions().get::<Tenant>().copied() else { return ApiError::unauthorized().into_response() };
    match limiter.check(tenant.key_id).await {
        Decision::Allowed { remaining, full_in_seconds } => {
            let mut response = next.run(request).await;
            limiter.set_headers(response.headers_mut(), remaining, full_in_seconds);
            response
        }
        Decision::Limited { retry_after_seconds } => {
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                format!("over the limit of {} requests per second for this API key; retry in {retry_after_seconds} s", limiter.rate),
            )
            .into_response();
            limiter.set_headers(response.headers_mut(), 0, retry_after_seconds);
            if let Ok(value) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use jiff::{SignedDuration, Timestamp};

    use super::*;
    use crate::clock::ManualClock;

    fn limiter(rate: u32) -> (KeyRateLimiter, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_second(1_780_000_000).expect("time")));
        (KeyRateLimiter::new(NonZeroU32::new(rate).expect("rate"), clock.clone()), clock)
    }

    #[test]
    fn admits_exactly_the_burst_then_the_steady_rate() {
        let (limiter, clock) = limiter(12);
        for expected_remaining in (0..12).rev() {
            assert!(matches!(limiter.check_local(1), Decision::Allowed { remaining, .. } if remaining == expected_remaining));
        }
        assert_eq!(limiter.check_local(1), Decision::Limited { retry_after_seconds: 1 });
        // One request comes back every 1/12 s.
        clock.advance(SignedDuration::from_millis(83));
        assert!(matches!(limiter.check_local(1), Decision::Limited { .. }));
        clock.advance(SignedDuration::from_millis(1));
        assert!(matches!(limiter.check_local(1), Decision::Allowed { remaining: 0, .. }));
        assert!(matches!(limiter.check_local(1), Decision::Limited { .. }));
        // Over ten seconds at exactly the rate, every request passes.
        for _ in 0..120 {
            clock.advance(SignedDuration::from_nanos(1_000_000_000 / 12 + 1));
            assert!(matches!(limiter.check_local(1), Decision::Allowed { .. }));
        }
        // A full second idle refills the whole burst.
        clock.advance(SignedDuration::from_secs(1));
        assert!(matches!(limiter.check_local(1), Decision::Allowed { remaining: 11, full_in_seconds: 1 }));
    }

    #[test]
    fn keys_are_independent_and_idle_keys_are_forgotten() {
        let (limiter, clock) = limiter(2);
        assert!(matches!(limiter.check_local(1), Decision::Allowed { .. }));
        assert!(matches!(limiter.check_local(1), Decision::Allowed { .. }));
        assert!(matches!(limiter.check_local(1), Decision::Limited { .. }));
        assert!(matches!(limiter.check_local(2), Decision::Allowed { remaining: 1, .. }));
        for key in 3..1000 {
            limiter.check_local(key);
        }
        assert_eq!(limiter.tracked_keys(), 999);
        clock.advance(SignedDuration::from_secs(2));
        limiter.limiter.retain_recent();
        assert_eq!(limiter.tracked_keys(), 0);
    }

    /// The step the SQL and the Lua script compute decides as governor, timestamp by timestamp.
    #[test]
    fn the_shared_gcra_step_decides_as_governor() {
        for rate in [1, 2, 12, 1000] {
            let (limiter, clock) = limiter(rate);
            let gcra = Gcra::new(NonZeroU32::new(rate).expect("rate"));
            let interval = 1_000_000_000 / i64::from(rate);
            let mut tat = None;
            for i in 0..2000_i64 {
                let gap = match i % 9 {
                    0..=2 => 0,
                    3 => interval - 1,
                    4 => interval,
                    5 => interval + 1,
                    6 => (i * 104_729) % 300_000_000,
                    7 => {
                        if i % 5 == 0 {
                            1_500_000_000
                        } else {
                            1
                        }
                    }
                    _ => interval / 2,
                };
                clock.advance(SignedDuration::from_nanos(gap));
                let now = limiter.clock.unix_nanos();
                let step = gcra.step(tat, now);
                if let RateLimitStep::Admitted(next) = step {
                    tat = Some(next);
                }
                assert_eq!(gcra.decision(step, now), limiter.check_local(1), "rate {rate}, step {i}");
            }
        }
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        let (limiter, _) = limiter(1);
        assert!(matches!(limiter.check_local(7), Decision::Allowed { remaining: 0, full_in_seconds: 1 }));
        assert_eq!(limiter.check_local(7), Decision::Limited { retry_after_seconds: 1 });
    }
}
