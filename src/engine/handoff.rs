//! Handing attempts to providers (§5.3, PROVIDERS.md §1) and recording what each said. The
//! simulator with no latency answers in-process and its outcomes of every campaign go to the
//! store together; every other provider is reached through its [`Connector`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, stream};
use jiff::{SignedDuration, Timestamp};

use super::EngineSettings;
use crate::domain::attempt::{AttemptEvent, RetrySettings, simulate};
use crate::domain::integration::{ProviderConfig, SimulatorConfig};
use crate::metrics::{self, EventSource, HandoffFailure};
use crate::providers::keyring::Keyring;
use crate::providers::{self, Connector, Handoff, Outgoing, UNKNOWN_REASON};
use crate::store::{Dispatch, EngineStore, ExpiredAttempt, HandoffResult, RunningCampaign, StoreResult};

/// Hand-offs in flight at once per campaign batch.
const PARALLELISM: usize = 64;
/// The longest back-off of a throttled hand-off (PROVIDERS.md §1).
const MAX_BACKOFF: SignedDuration = SignedDuration::from_mins(5);
/// How long an attempt put back by a broken integration may wait for it to be fixed.
const PARKED_FOR: SignedDuration = SignedDuration::from_hours(24 * 30);

/// The wait before hand-off number `tries + 1` of a throttled attempt: 1 s doubling, at most 5 min.
pub(super) fn backoff(tries: i64) -> SignedDuration {
    SignedDuration::from_secs(1_i64 << tries.clamp(0, 9)).min(MAX_BACKOFF)
}

pub(super) struct Providers {
    http: reqwest::Client,
    public_url: String,
    keyring: Arc<Keyring>,
    attempt_timeout: SignedDuration,
}

/// The simulator's outcomes of a batch, when the campaign's provider is a simulator with no
/// latency (they are then applied together with other campaigns'); `None` otherwise.
pub(super) fn simulate_now(running: &RunningCampaign, batch: &[Dispatch], now: Timestamp) -> Option<Vec<AttemptEvent>> {
    match &running.provider {
        ProviderConfig::Simulator(config) if config.latency_ms == 0 => Some(simulate_batch(running, config, batch, now)),
        _ => None,
    }
}

fn simulate_batch(running: &RunningCampaign, config: &SimulatorConfig, batch: &[Dispatch], now: Timestamp) -> Vec<AttemptEvent> {
    let channel = running.campaign.integration.channel;
    let taken = metrics::handoff_timer(&running.provider);
    let started = Instant::now();
    let mut events = Vec::with_capacity(batch.len());
    for dispatch in batch {
        events.extend(simulate(&dispatch.attempt_id, channel, config, now));
        taken.record(started.elapsed());
    }
    events
}

/// Applies the simulator's events through the store's event path, as a provider's would be.
pub(super) async fn apply_simulated(
    store: &dyn EngineStore,
    events: Vec<AttemptEvent>,
    now: Timestamp,
    retry: RetrySettings,
) -> StoreResult<()> {
    let outcomes = store.apply_events(events, now, retry).await?;
    metrics::provider_events(EventSource::Simulator, &outcomes);
    Ok(())
}

/// What a batch's hand-offs come to, for the store.
#[derive(Default)]
struct Recorded {
    results: Vec<HandoffResult>,
    events: Vec<AttemptEvent>,
    broken: Option<String>,
}

impl Providers {
    pub(super) fn new(settings: &EngineSettings) -> Providers {
        Providers {
            http: reqwest::Client::new(),
            public_url: settings.public_url.trim_end_matches('/').to_owned(),
            keyring: settings.keyring.clone(),
            attempt_timeout: settings.attempt_timeout,
        }
    }

    /// The events that close attempts past their deadlines: what the provider says of the call
    /// when it can tell (Vapi, which does not retry its webhooks), else the provisional outcome
    /// held for it, else the timeout. Also the integrations those calls show broken, with why.
    pub(super) async fn close_expired(&self, expired: Vec<ExpiredAttempt>) -> (Vec<AttemptEvent>, Vec<(String, String)>) {
        let mut connectors: HashMap<String, Option<Arc<dyn Connector>>> = HashMap::new();
        let closing: Vec<_> = expired
            .into_iter()
            .map(|attempt| {
                let connector = connectors
                    .entry(attempt.integration_id.clone())
                    .or_insert_with(|| providers::connect(&attempt.provider, self.keyring.opening_key(), &self.http).ok())
                    .clone();
                async move {
                    let told = match (connector, &attempt.provider_id) {
                        (Some(connector), Some(provider_id)) => connector.reconcile(provider_id, &attempt.attempt_id).await,
                        _ => None,
                    };
                    let broken = told.as_ref().and_then(|told| told.broken.clone()).map(|reason| (attempt.integration_id, reason));
                    let attempt_id = attempt.attempt_id;
                    let event = match told.map(|told| told.event).or(attempt.held) {
                        Some(event) => AttemptEvent { attempt_id, ..event },
                        None => AttemptEvent::timed_out(attempt_id),
                    };
                    (event, broken)
                }
            })
            .collect();
        let closed: Vec<(AttemptEvent, Option<(String, String)>)> = stream::iter(closing).buffer_unordered(PARALLELISM).collect().await;
        let (events, broken): (Vec<_>, Vec<_>) = closed.into_iter().unzip();
        (events, broken.into_iter().flatten().collect())
    }

    /// Hands a campaign's batch to its provider and records what came back. Owns what it needs,
    /// so that the engine may run it beside its next ticks.
    pub(super) async fn send(
        self: Arc<Self>,
        store: Arc<dyn EngineStore>,
        running: Arc<RunningCampaign>,
        batch: Vec<Dispatch>,
        now: Timestamp,
        retry: RetrySettings,
    ) -> StoreResult<()> {
        // The last look at the do-not-contact list: a number suppressed after its claim (by
        // another process, while this one was claiming) is closed unsent (§12.1).
        let numbers = batch.iter().map(|dispatch| dispatch.contact.contact.as_str().to_owned()).collect();
        let suppressed = store.suppressed_numbers(running.campaign.id, numbers).await?;
        let (withheld, batch): (Vec<Dispatch>, Vec<Dispatch>) =
            batch.into_iter().partition(|dispatch| suppressed.contains(dispatch.contact.contact.as_str()));
        if !withheld.is_empty() {
            let events = withheld.into_iter().map(|dispatch| AttemptEvent::suppressed(dispatch.attempt_id)).collect();
            self.write(&*store, &running, Recorded { events, ..Recorded::default() }, now, retry).await?;
        }
        let provider = &running.provider;
        let connector = match providers::connect(provider, self.keyring.opening_key(), &self.http) {
            Ok(connector) => connector,
            Err(reason) => {
                metrics::handoff_failed(provider, HandoffFailure::Rejected);
                let events = batch.into_iter().map(|d| AttemptEvent::failed(d.attempt_id, reason)).collect();
                return self.write(&*store, &running, Recorded { events, ..Recorded::default() }, now, retry).await;
            }
        };
        let callback_url = format!("{}/api/v1.0/integrations/{}/events", self.public_url, running.campaign.integration.id);
        let taken = &metrics::handoff_timer(provider);
        let (connector, running_ref, callback_url) = (&connector, &*running, &callback_url);
        // Answers are recorded as they come (those ready together in one write), so that a
        // crash leaves in doubt only the hand-offs still on the wire, not a whole batch.
        let mut answered = stream::iter(batch)
            .map(|dispatch| async move {
                let started = Instant::now();
                let outgoing = Outgoing {
                    attempt_id: &dispatch.attempt_id,
                    tries: dispatch.tries,
                    iteration: dispatch.iteration,
                    campaign: &running_ref.campaign,
                    contact: &dispatch.contact,
                    template: dispatch.template.as_deref(),
                    callback_url,
                    signing_secret: &running_ref.secret,
                };
                let answer =
                    if dispatch.in_doubt && !connector.dedupes_attempts() { Handoff::Unknown } else { connector.hand_off(&outgoing).await };
                taken.record(started.elapsed());
                (dispatch, answer)
            })
            .buffer_unordered(PARALLELISM)
            .ready_chunks(PARALLELISM);
        while let Some(answers) = answered.next().await {
            let mut recorded = Recorded::default();
            for (dispatch, answer) in answers {
                self.record(provider, dispatch, answer, now, &mut recorded);
            }
            self.write(&*store, &running, recorded, now, retry).await?;
        }
        Ok(())
    }

    /// Writes what some hand-offs came to.
    async fn write(
        &self,
        store: &dyn EngineStore,
        running: &RunningCampaign,
        recorded: Recorded,
        now: Timestamp,
        retry: RetrySettings,
    ) -> StoreResult<()> {
        let Recorded { results, events, broken } = recorded;
        if let Some(reason) = broken {
            tracing::warn!(integration = %running.campaign.integration.id, %reason, "integration failing: its dispatch stops until its config is patched");
            store.mark_integration_failing(&running.campaign.integration.id, &reason, now).await?;
        }
        if !results.is_empty() {
            store.record_handoffs(results).await?;
        }
        if !events.is_empty() {
            let outcomes = store.apply_events(events, now, retry).await?;
            metrics::provider_events(EventSource::Handoff, &outcomes);
        }
        Ok(())
    }

    fn record(&self, provider: &ProviderConfig, dispatch: Dispatch, answer: Handoff, now: Timestamp, recorded: &mut Recorded) {
        let later = |wait: SignedDuration| now.saturating_add(wait).unwrap_or(now);
        let attempt_id = dispatch.attempt_id;
        match answer {
            Handoff::Accepted { provider_id } => {
                recorded.results.push(HandoffResult::Accepted { attempt_id, provider_id, deadline: later(self.attempt_timeout) })
            }
            Handoff::Retry { after } => {
                metrics::handoff_failed(provider, HandoffFailure::Unavailable);
                let wait = after.unwrap_or_else(|| backoff(dispatch.tries));
                // The attempt's timeout runs from its hand-off, however long the provider made it wait.
                let deadline = later(wait).saturating_add(self.attempt_timeout).ok();
                recorded.results.push(HandoffResult::RetryAt { attempt_id, at: later(wait), deadline });
            }
            Handoff::Failed { reason } => {
                metrics::handoff_failed(provider, HandoffFailure::Rejected);
                recorded.events.push(AttemptEvent::failed(attempt_id, &reason));
            }
            Handoff::InvalidNumber { reason } => {
                metrics::handoff_failed(provider, HandoffFailure::Rejected);
                recorded.events.push(AttemptEvent { invalid_number: true, ..AttemptEvent::failed(attempt_id, &reason) });
            }
            Handoff::Unknown => {
                metrics::handoff_failed(provider, HandoffFailure::Unknown);
                recorded.events.push(AttemptEvent::failed(attempt_id, UNKNOWN_REASON));
            }
            Handoff::Broken { reason } => {
                metrics::handoff_failed(provider, HandoffFailure::Broken);
                recorded.results.push(HandoffResult::RetryAt { attempt_id, at: now, deadline: Some(later(PARKED_FOR)) });
                recorded.broken.get_or_insert(reason);
            }
            Handoff::Settled(events) => recorded.events.extend(events),
        }
    }
}
