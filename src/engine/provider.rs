//! Handing attempts to providers (§5.3). The simulator answers in-process; its outcomes enter
//! through the store's event path like a real provider's. The webhook provider POSTs each
//! attempt, signed, with the attempt id as `Idempotency-Key`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::EngineSettings;
use crate::domain::attempt::{AttemptEvent, RetrySettings, simulate};
use crate::domain::campaign::Channel;
use crate::domain::ids::sign;
use crate::domain::integration::{ProviderConfig, SimulatorConfig, WebhookConfig};
use crate::metrics::{self, EventSource, HandoffFailure};
use crate::store::{Dispatch, DispatchContact, EngineStore, HandoffResult, RunningCampaign, StoreResult};

/// Re-sends after a 5xx, a timeout or a connection error before the attempt fails (§5.3).
pub const MAX_RESENDS: i64 = 5;
/// Webhook requests in flight at once per campaign batch.
const WEBHOOK_PARALLELISM: usize = 64;

/// The wait before re-send number `tries + 1`: 1 s, 2 s, 4 s, 8 s, 16 s.
fn backoff(tries: i64) -> SignedDuration {
    SignedDuration::from_secs(1_i64 << tries.clamp(0, 10))
}

pub(super) struct Providers {
    http: reqwest::Client,
    public_url: String,
}

#[derive(Serialize)]
struct Named<'a, Id: Serialize> {
    id: Id,
    name: &'a str,
}

/// The body POSTed to a webhook provider.
#[derive(Serialize)]
struct WebhookAttempt<'a> {
    attempt_id: &'a str,
    channel: Channel,
    campaign: Named<'a, i64>,
    agent: Named<'a, String>,
    contact: &'a DispatchContact,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    template: Option<&'a str>,
    /// Also sent so a provider can tell a first send from a re-send of the same attempt.
    iteration: i64,
    callback_url: String,
}

/// What a webhook said to one handoff.
enum WebhookAnswer {
    Accepted,
    Rejected(&'static str),
    Unavailable,
}

/// The simulator's outcomes of a batch, when the campaign's provider is a simulator with no
/// latency (they are then applied together with other campaigns'); `None` otherwise.
pub(super) fn simulate_now(running: &RunningCampaign, batch: &[Dispatch], now: Timestamp) -> Option<Vec<AttemptEvent>> {
    match &running.provider {
        ProviderConfig::Simulator(config) if config.latency_ms == 0 => Some(simulate_batch(running, config, batch, now, Instant::now())),
        _ => None,
    }
}

/// The simulator's events for a batch whose hand-off began at `started`: each attempt is taken
/// once its outcome is drawn.
fn simulate_batch(
    running: &RunningCampaign,
    config: &SimulatorConfig,
    batch: &[Dispatch],
    now: Timestamp,
    started: Instant,
) -> Vec<AttemptEvent> {
    let channel = running.campaign.integration.channel;
    let taken = metrics::handoff_timer(&running.provider);
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

impl Providers {
    pub(super) fn new(settings: &EngineSettings) -> Providers {
        Providers { http: reqwest::Client::new(), public_url: settings.public_url.trim_end_matches('/').to_owned() }
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
        let (providers, running) = (&*self, &*running);
        let provider = &running.provider;
        match provider {
            ProviderConfig::Simulator(config) => {
                let started = Instant::now();
                if config.latency_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(u64::from(config.latency_ms))).await;
                }
                let events = simulate_batch(running, config, &batch, now, started);
                apply_simulated(&*store, events, now, retry).await?;
            }
            ProviderConfig::Webhook(config) => {
                let taken = &metrics::handoff_timer(provider);
                let answers: Vec<(Dispatch, WebhookAnswer)> = stream::iter(batch)
                    .map(|dispatch| async move {
                        let started = Instant::now();
                        let answer = providers.post(config, running, &dispatch).await;
                        taken.record(started.elapsed());
                        (dispatch, answer)
                    })
                    .buffer_unordered(WEBHOOK_PARALLELISM)
                    .collect()
                    .await;
                let mut results = Vec::new();
                let mut failures = Vec::new();
                for (dispatch, answer) in answers {
                    match answer {
                        WebhookAnswer::Accepted => results.push(HandoffResult::Accepted(dispatch.attempt_id)),
                        WebhookAnswer::Rejected(reason) => {
                            metrics::handoff_failed(provider, HandoffFailure::Rejected);
                            failures.push(AttemptEvent::failed(dispatch.attempt_id, reason));
                        }
                        WebhookAnswer::Unavailable if dispatch.tries >= MAX_RESENDS => {
                            metrics::handoff_failed(provider, HandoffFailure::GaveUp);
                            failures.push(AttemptEvent::failed(dispatch.attempt_id, "provider_unavailable"));
                        }
                        WebhookAnswer::Unavailable => {
                            metrics::handoff_failed(provider, HandoffFailure::Unavailable);
                            results.push(HandoffResult::RetryAt {
                                at: now.saturating_add(backoff(dispatch.tries)).unwrap_or(now),
                                attempt_id: dispatch.attempt_id,
                            });
                        }
                    }
                }
                if !results.is_empty() {
                    store.record_handoffs(results).await?;
                }
                if !failures.is_empty() {
                    store.apply_events(failures, now, retry).await?;
                }
            }
        }
        Ok(())
    }

    async fn post(&self, config: &WebhookConfig, running: &RunningCampaign, dispatch: &Dispatch) -> WebhookAnswer {
        let campaign = &running.campaign;
        let body = WebhookAttempt {
            attempt_id: &dispatch.attempt_id,
            channel: campaign.integration.channel,
            campaign: Named { id: campaign.id, name: &campaign.settings.name },
            agent: Named { id: campaign.agent.id.to_string(), name: &campaign.agent.name },
            contact: &dispatch.contact,
            first_message: campaign.settings.first_message.as_deref().filter(|_| campaign.integration.channel == Channel::PhoneCall),
            template: dispatch.template.as_deref(),
            iteration: dispatch.iteration,
            callback_url: format!("{}/api/v1.0/integrations/{}/events", self.public_url, campaign.integration.id),
        };
        let Ok(body) = serde_json::to_vec(&body) else { return WebhookAnswer::Rejected("unserializable_attempt") };
        let Some(signature) = sign(&running.secret, &body) else { return WebhookAnswer::Rejected("bad_integration_secret") };
        let sent = self
            .http
            .post(&config.url)
            .timeout(Duration::from_millis(u64::from(config.timeout_ms)))
            .header("content-type", "application/json")
            .header("idempotency-key", &dispatch.attempt_id)
            .header("x-outbound-signature", signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => WebhookAnswer::Accepted,
            Ok(response) if response.status().is_client_error() => WebhookAnswer::Rejected("provider_rejected"),
            Ok(_) | Err(_) => WebhookAnswer::Unavailable,
        }
    }
}
