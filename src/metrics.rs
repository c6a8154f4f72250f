//! The process's Prometheus metrics (`GET /metrics`): every name, help text and histogram bucket
//! set lives here, with one function per thing measured, so that call sites say what happened and
//! every label value comes from a fixed set (bounded series). The README's "Metrics" section
//! lists them for operators.

use std::time::Duration;

use ::metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::campaign::{CampaignStatus, Channel};
use crate::domain::integration::ProviderConfig;
use crate::domain::outcome::{EventOutcome, FinishedAttempt};

const HTTP_REQUESTS: &str = "outbound_http_requests_total";
const HTTP_REQUEST_SECONDS: &str = "outbound_http_request_duration_seconds";
const RATE_LIMIT_BACKEND_ERRORS: &str = "outbound_rate_limit_backend_errors_total";
const ATTEMPTS_DISPATCHED: &str = "outbound_attempts_dispatched_total";
const ATTEMPTS_FINISHED: &str = "outbound_attempts_finished_total";
const HANDOFF_SECONDS: &str = "outbound_provider_handoff_seconds";
const HANDOFF_FAILURES: &str = "outbound_provider_handoff_failures_total";
const PROVIDER_EVENTS: &str = "outbound_provider_events_total";
const TICK_CLAIMS: &str = "outbound_engine_tick_claims";
const CONTACTS_WAITING: &str = "outbound_contacts_waiting";
const WRITER_QUEUE: &str = "outbound_store_writer_queue_depth";
const COMMIT_SECONDS: &str = "outbound_store_commit_seconds";
const COMMIT_BATCH_SIZE: &str = "outbound_store_commit_batch_size";
const WEBHOOK_DELIVERIES: &str = "outbound_webhook_deliveries_total";
const WEBHOOK_DELIVERY_SECONDS: &str = "outbound_webhook_delivery_seconds";
const WEBHOOK_BACKLOG: &str = "outbound_webhook_backlog";

/// Buckets of the durations: requests, provider hand-offs (up to a webhook's 60 s timeout), commits.
const SECONDS_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0];
/// Buckets of the sizes: contacts a tick claims (at most 8192), jobs a commit takes (at most 512).
const SIZE_BUCKETS: [f64; 12] = [1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 8192.0];

/// Installs the process-wide recorder, with true Prometheus histograms (buckets add up across
/// processes, where summaries' quantiles do not), and describes every metric.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let mut builder = PrometheusBuilder::new();
    for name in [HTTP_REQUEST_SECONDS, HANDOFF_SECONDS, COMMIT_SECONDS, WEBHOOK_DELIVERY_SECONDS] {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), &SECONDS_BUCKETS)?;
    }
    for name in [TICK_CLAIMS, COMMIT_BATCH_SIZE] {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), &SIZE_BUCKETS)?;
    }
    let handle = builder.install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by method, route pattern and status.");
    describe_histogram!(HTTP_REQUEST_SECONDS, Unit::Seconds, "Time to answer an HTTP request, by method and route pattern.");
    describe_counter!(
        RATE_LIMIT_BACKEND_ERRORS,
        "Requests whose shared rate limit (Redis or PostgreSQL) failed and were limited in memory instead, by limiter."
    );
    describe_counter!(ATTEMPTS_DISPATCHED, "Attempts the engine claimed and handed to providers (each attempt once), by channel.");
    describe_counter!(
        ATTEMPTS_FINISHED,
        "Attempts closed (each once), by channel and outcome: the closing status (a message closes at its first report), or timeout."
    );
    describe_histogram!(HANDOFF_SECONDS, Unit::Seconds, "Time a provider took to take one attempt (each send and re-send), by provider.");
    describe_counter!(
        HANDOFF_FAILURES,
        "Hand-offs a provider did not take, by provider and reason: rejected (4xx, failed at once), \
         unavailable (throttled, or unreachable where a re-send is safe: handed off again later), unknown (a timeout or 5xx after the request was written: closed, never re-sent), integration_broken (the attempt waits for the integration to be fixed)."
    );
    describe_counter!(
        PROVIDER_EVENTS,
        "Provider events received, by source (http, simulator) and result (applied, ignored, unknown_attempt, bad_signature, invalid)."
    );
    describe_histogram!(TICK_CLAIMS, Unit::Count, "Contacts claimed by an engine tick that had campaigns to dispatch.");
    describe_gauge!(
        CONTACTS_WAITING,
        Unit::Count,
        "Contacts waiting for an attempt (queue or retrying) in unarchived campaigns, by campaign status; the whole database's figure."
    );
    describe_gauge!(WRITER_QUEUE, Unit::Count, "Writes waiting for the SQLite writer to take them into a transaction.");
    describe_histogram!(COMMIT_SECONDS, Unit::Seconds, "Time of one SQLite group commit, from BEGIN to a durable COMMIT.");
    describe_histogram!(COMMIT_BATCH_SIZE, Unit::Count, "Writes one SQLite group commit took.");
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook delivery attempts, by event type and result: delivered, retrying (to be tried again), failed (no attempt left)."
    );
    describe_histogram!(
        WEBHOOK_DELIVERY_SECONDS,
        Unit::Seconds,
        "Time from an event to its delivery (the receiver's 2xx), by event type: what a receiver waits."
    );
    describe_gauge!(WEBHOOK_BACKLOG, Unit::Count, "Webhook deliveries pending (due or waiting for a retry); the whole database's figure.");
}

/// What a webhook delivery attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryResult {
    Delivered,
    Retrying,
    Failed,
}

/// One delivery attempt of an event type; `since_event` is set when it delivered.
pub fn webhook_delivery(event_type: crate::domain::webhook::EventType, result: DeliveryResult, since_event: Option<Duration>) {
    let result = match result {
        DeliveryResult::Delivered => "delivered",
        DeliveryResult::Retrying => "retrying",
        DeliveryResult::Failed => "failed",
    };
    counter!(WEBHOOK_DELIVERIES, "event_type" => event_type.as_str(), "result" => result).increment(1);
    if let Some(took) = since_event {
        histogram!(WEBHOOK_DELIVERY_SECONDS, "event_type" => event_type.as_str()).record(took.as_secs_f64());
    }
}

pub fn webhook_backlog(pending: i64) {
    gauge!(WEBHOOK_BACKLOG).set(pending as f64);
}

/// An HTTP request answered; `route` is the matched route pattern, never the raw path.
pub fn http_request(method: String, route: String, status: u16, took: Duration) {
    counter!(HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status.to_string()).increment(1);
    histogram!(HTTP_REQUEST_SECONDS, "method" => method, "route" => route).record(took.as_secs_f64());
}

pub fn rate_limit_backend_error(limiter: &'static str) {
    counter!(RATE_LIMIT_BACKEND_ERRORS, "limiter" => limiter).increment(1);
}

pub fn attempts_dispatched(channel: Channel, count: usize) {
    counter!(ATTEMPTS_DISPATCHED, "channel" => channel.as_str()).increment(count as u64);
}

/// Attempts closed by events that are committed.
pub fn attempts_finished(finished: &[FinishedAttempt]) {
    // Few distinct label sets per batch: one registry lookup each, not one per attempt.
    let mut tally: Vec<((&'static str, &'static str), u64)> = Vec::new();
    for attempt in finished {
        let labels = (attempt.channel.as_str(), if attempt.timed_out { "timeout" } else { attempt.status.as_str() });
        match tally.iter_mut().find(|(seen, _)| *seen == labels) {
            Some((_, count)) => *count += 1,
            None => tally.push((labels, 1)),
        }
    }
    for ((channel, outcome), count) in tally {
        counter!(ATTEMPTS_FINISHED, "channel" => channel, "outcome" => outcome).increment(count);
    }
}

/// Times the hand-offs of one provider.
pub fn handoff_timer(provider: &ProviderConfig) -> HandoffTimer {
    HandoffTimer(histogram!(HANDOFF_SECONDS, "provider" => provider.provider().as_str()))
}

pub struct HandoffTimer(::metrics::Histogram);

impl HandoffTimer {
    /// One attempt taken (or answered) `took` after its hand-off began.
    pub fn record(&self, took: Duration) {
        self.0.record(took.as_secs_f64());
    }
}

/// Why a provider did not take a hand-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffFailure {
    /// The provider refused the attempt (it fails).
    Rejected,
    /// Throttled or unreachable: handed off again later.
    Unavailable,
    /// The provider may have acted: closed, never re-sent.
    Unknown,
    /// The integration is broken: the attempt waits for it to be fixed.
    Broken,
}

pub fn handoff_failed(provider: &ProviderConfig, failure: HandoffFailure) {
    let reason = match failure {
        HandoffFailure::Rejected => "rejected",
        HandoffFailure::Unavailable => "unavailable",
        HandoffFailure::Unknown => "unknown",
        HandoffFailure::Broken => "integration_broken",
    };
    counter!(HANDOFF_FAILURES, "provider" => provider.provider().as_str(), "reason" => reason).increment(1);
}

/// Where provider events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// `POST /integrations/{id}/events`.
    Http,
    /// The in-process simulator.
    Simulator,
    /// Decided by the engine from a provider's answer to a hand-off (a refusal, a timeout).
    Handoff,
}

/// An event refused before it reached the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRefusal {
    /// An unknown integration, or a missing or wrong signature.
    BadSignature,
    /// Not JSON, or not a valid event for the integration's channel.
    Invalid,
}

fn source_label(source: EventSource) -> &'static str {
    match source {
        EventSource::Http => "http",
        EventSource::Simulator => "simulator",
        EventSource::Handoff => "handoff",
    }
}

/// Provider events the store applied, by what became of each.
pub fn provider_events(source: EventSource, outcomes: &[EventOutcome]) {
    let mut counts = [0_u64; 3];
    for outcome in outcomes {
        counts[match outcome {
            EventOutcome::Applied => 0,
            EventOutcome::Ignored => 1,
            EventOutcome::UnknownAttempt => 2,
        }] += 1;
    }
    for (result, count) in ["applied", "ignored", "unknown_attempt"].into_iter().zip(counts).filter(|(_, count)| *count > 0) {
        counter!(PROVIDER_EVENTS, "source" => source_label(source), "result" => result).increment(count);
    }
}

pub fn provider_event_refused(source: EventSource, refusal: EventRefusal) {
    let result = match refusal {
        EventRefusal::BadSignature => "bad_signature",
        EventRefusal::Invalid => "invalid",
    };
    counter!(PROVIDER_EVENTS, "source" => source_label(source), "result" => result).increment(1);
}

/// Contacts a tick claimed, when it had campaigns to claim for (idle ticks would bury the rest).
pub fn tick_claimed(count: usize) {
    histogram!(TICK_CLAIMS).record(count as f64);
}

/// Sets every campaign status's figure, zero for those absent, so that none keeps a stale value.
pub fn contacts_waiting(waiting: &[(CampaignStatus, i64)]) {
    for status in CampaignStatus::ALL {
        let count: i64 = waiting.iter().filter(|(s, _)| *s == status).map(|(_, count)| count).sum();
        gauge!(CONTACTS_WAITING, "campaign_status" => status.as_str()).set(count as f64);
    }
}

/// A write joined the SQLite writer's queue.
pub fn writer_queued() {
    gauge!(WRITER_QUEUE).increment(1.0);
}

/// The SQLite writer took `jobs` writes off its queue (or they left it unrun).
pub fn writer_took(jobs: usize) {
    gauge!(WRITER_QUEUE).decrement(jobs as f64);
}

/// One SQLite group commit of `jobs` writes, committed or rolled back.
pub fn commit(took: Duration, jobs: usize) {
    histogram!(COMMIT_SECONDS).record(took.as_secs_f64());
    histogram!(COMMIT_BATCH_SIZE).record(jobs as f64);
}
