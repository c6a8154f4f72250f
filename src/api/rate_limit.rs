//! Per-API-key rate limit (contract §6): GCRA with burst equal to the rate, checked right after
//! authentication and before the body is read, with the IETF `RateLimit` fields on every
//! authenticated response.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use super::AppState;
use super::error::ApiError;
use super::extract::Tenant;
use crate::clock::Clock;

/// Governor reads time from the injected clock, so tests drive the limiter without sleeping.
#[derive(Clone)]
struct InjectedClock(Arc<dyn Clock>);

impl governor::clock::Clock for InjectedClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_nanos(u64::try_from(self.0.now().as_nanosecond()).unwrap_or(0))
    }
}

type KeyedLimiter = RateLimiter<i64, DashMapStateStore<i64>, InjectedClock, StateInformationMiddleware>;

pub struct KeyRateLimiter {
    limiter: KeyedLimiter,
    clock: InjectedClock,
    rate: NonZeroU32,
}

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed { remaining: u32, full_in_seconds: u64 },
    Limited { retry_after_seconds: u64 },
}

impl KeyRateLimiter {
    pub fn new(rate: NonZeroU32, clock: Arc<dyn Clock>) -> Self {
        let clock = InjectedClock(clock);
        let quota = Quota::per_second(rate).allow_burst(rate);
        let limiter = RateLimiter::<_, _, _, NoOpMiddleware<Duration>>::new(quota, DashMapStateStore::default(), clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        KeyRateLimiter { limiter, clock, rate }
    }

    pub fn check(&self, key_id: i64) -> Decision {
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

    /// Forgets keys whose bucket is full again: memory follows the keys active right now.
    pub fn forget_idle_keys(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    pub fn tracked_keys(&self) -> usize {
        self.limiter.len()
    }

    fn set_headers(&self, headers: &mut HeaderMap, remaining: u32, reset_seconds: u64) {
        let policy = format!("\"default\";q={};w=1", self.rate);
        let state = format!("\"default\";r={remaining};t={reset_seconds}");
        for (name, value) in [("ratelimit-policy", policy), ("ratelimit", state)] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
}

pub async fn rate_limit(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let Some(limiter) = &app.rate_limiter else { return next.run(request).await };
    let Some(tenant) = request.extensions().get::<Tenant>().copied() else { return ApiError::unauthorized().into_response() };
    match limiter.check(tenant.key_id) {
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
            assert!(matches!(limiter.check(1), Decision::Allowed { remaining, .. } if remaining == expected_remaining));
        }
        assert_eq!(limiter.check(1), Decision::Limited { retry_after_seconds: 1 });
        // One request comes back every 1/12 s.
        clock.advance(SignedDuration::from_millis(83));
        assert!(matches!(limiter.check(1), Decision::Limited { .. }));
        clock.advance(SignedDuration::from_millis(1));
        assert!(matches!(limiter.check(1), Decision::Allowed { remaining: 0, .. }));
        assert!(matches!(limiter.check(1), Decision::Limited { .. }));
        // Over ten seconds at exactly the rate, every request passes.
        for _ in 0..120 {
            clock.advance(SignedDuration::from_nanos(1_000_000_000 / 12 + 1));
            assert!(matches!(limiter.check(1), Decision::Allowed { .. }));
        }
        // A full second idle refills the whole burst.
        clock.advance(SignedDuration::from_secs(1));
        assert!(matches!(limiter.check(1), Decision::Allowed { remaining: 11, full_in_seconds: 1 }));
    }

    #[test]
    fn keys_are_independent_and_idle_keys_are_forgotten() {
        let (limiter, clock) = limiter(2);
        assert!(matches!(limiter.check(1), Decision::Allowed { .. }));
        assert!(matches!(limiter.check(1), Decision::Allowed { .. }));
        assert!(matches!(limiter.check(1), Decision::Limited { .. }));
        assert!(matches!(limiter.check(2), Decision::Allowed { remaining: 1, .. }));
        for key in 3..1000 {
            limiter.check(key);
        }
        assert_eq!(limiter.tracked_keys(), 999);
        clock.advance(SignedDuration::from_secs(2));
        limiter.forget_idle_keys();
        assert_eq!(limiter.tracked_keys(), 0);
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        let (limiter, _) = limiter(1);
        assert!(matches!(limiter.check(7), Decision::Allowed { remaining: 0, full_in_seconds: 1 }));
        assert_eq!(limiter.check(7), Decision::Limited { retry_after_seconds: 1 });
    }
}
