//! The webhook delivery worker (contract §8.2): sends the events the stores recorded in their
//! outbox, signed both ways, on the retry schedule, apart from the engine.
//!
//! Each subscription is delivered by one process at a time (it holds the subscription's lease in
//! the store), at most [`IN_FLIGHT_PER_WEBHOOK`] requests at once, so a slow or dead receiver
//! holds up only its own deliveries. A delivery taken is leased until its answer is recorded; one
//! a crashed process left is sent again after the lease, with the same `event_id`. Attempts'
//! events are rendered from the attempt each time they are sent (a retry carries a recording that
//! came since), so the outbox keeps only which attempt and status each one is about.

pub mod payload;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::join_all;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::clock::Clock;
use crate::domain::webhook::{default_retry_delays, is_private_address, next_attempt, sign};
use crate::metrics;
use crate::store::{DeliveryOutcome, DeliveryResult, DeliveryStore, DeliveryTake, DueDelivery, EventSource, StoreResult};

/// Webhook settings (contract §5.6).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// When each attempt is due after the event; its length is the number of attempts.
    pub retry_delays: Vec<SignedDuration>,
    /// How long a receiver has to answer.
    pub timeout: Duration,
    /// Whether URLs on loopback, private, link-local or unspecified addresses are allowed.
    pub allow_private: bool,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings { retry_delays: default_retry_delays(), timeout: Duration::from_secs(5), allow_private: false }
    }
}

/// Requests in flight to one subscription at most (§8.2).
pub const IN_FLIGHT_PER_WEBHOOK: usize = 16;
/// Deliveries of one subscription taken at once.
const TAKE_PER_WEBHOOK: u32 = 256;
/// How long a subscription stays the process's that delivers it without a take renewing it: how
/// soon another process takes over from one that died.
const SUBSCRIPTION_LEASE: SignedDuration = SignedDuration::from_secs(30);
/// How often an idle worker looks for deliveries.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Answers recorded in one write.
const RECORD_BATCH: usize = 1024;
/// How long delivered and failed deliveries stay in the log (§8.2).
const KEPT_FOR: SignedDuration = SignedDuration::from_hours(30 * 24);
const PURGE_EVERY: Duration = Duration::from_secs(3600);
const BACKLOG_EVERY: Duration = Duration::from_secs(15);

pub struct Deliveries {
    store: Arc<dyn DeliveryStore>,
    clock: Arc<dyn Clock>,
    settings: WebhookSettings,
    client: reqwest::Client,
    /// This process, as the holder of subscriptions' leases.
    owner: String,
}

/// A delivery ready to send: its body, or why it cannot have one.
struct Prepared {
    delivery: DueDelivery,
    body: Result<String, &'static str>,
}

impl Deliveries {
    pub fn new(store: Arc<dyn DeliveryStore>, clock: Arc<dyn Clock>, settings: WebhookSettings) -> Result<Deliveries, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("Outbound-Webhooks/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.timeout)
            // A redirect is an answer that is not 2xx (and may point anywhere): not followed.
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver { allow_private: settings.allow_private }))
            .pool_max_idle_per_host(IN_FLIGHT_PER_WEBHOOK)
            .build()?;
        let owner = uuid::Uuid::new_v4().simple().to_string();
        Ok(Deliveries { store, clock, settings, client, owner })
    }

    /// Sends every delivery due at the clock's instant (and those that become due at it while
    /// doing so), waits for the answers and records them; returns how many attempts were made.
    /// Tests move the clock, then settle.
    pub async fn settle(&self) -> StoreResult<usize> {
        let mut attempts = 0;
        loop {
            let due = self.take(Vec::new()).await?;
            if due.is_empty() {
                self.count_backlog().await;
                return Ok(attempts);
            }
            let prepared = self.prepare(due).await?;
            let lanes: HashMap<String, Arc<Semaphore>> =
                prepared.iter().map(|p| (p.delivery.webhook_id.clone(), Arc::new(Semaphore::new(IN_FLIGHT_PER_WEBHOOK)))).collect();
            let results = join_all(prepared.into_iter().map(|prepared| {
                let lane = lanes.get(&prepared.delivery.webhook_id).cloned();
                async move {
                    let _permit = match &lane {
                        Some(lane) => lane.acquire().await.ok(),
                        None => None,
                    };
                    self.attempt(prepared).await
                }
            }))
            .await;
            attempts += results.iter().filter(|r| !matches!(r.outcome, DeliveryOutcome::NotYet { .. })).count();
            self.store.record_deliveries(results).await?;
        }
    }

    /// Delivers until `stop` resolves: takes due deliveries of subscriptions whose queue here is
    /// short, sends each subscription's at most [`IN_FLIGHT_PER_WEBHOOK`] at a time, and records
    /// answers in batches.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        match self.store.release_delivery_leases().await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "sending again the webhook deliveries the previous run left unanswered"),
            Err(err) => tracing::error!(error = %err, "could not release earlier webhook delivery leases"),
        }
        let (answers, answered) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(record_answers(self.store.clone(), answered));
        let mut lanes: HashMap<String, Lane> = HashMap::new();
        let room = Arc::new(Notify::new());
        let mut housekeeping = Housekeeping::default();
        tokio::pin!(stop);
        loop {
            housekeeping.run(&self).await;
            let busy: Vec<String> = lanes.iter().filter(|(_, lane)| lane.is_busy()).map(|(id, _)| id.clone()).collect();
            let taken = match self.take(busy).await {
                Ok(due) => due,
                Err(err) => {
                    tracing::error!(error = %err, "could not take webhook deliveries");
                    Vec::new()
                }
            };
            let idle = taken.is_empty();
            if !idle {
                match self.prepare(taken).await {
                    Ok(prepared) => {
                        for prepared in prepared {
                            let lane = lanes.entry(prepared.delivery.webhook_id.clone()).or_insert_with(Lane::new);
                            lane.queued.fetch_add(1, Ordering::Relaxed);
                            let (worker, lane, answers, room) = (self.clone(), lane.clone(), answers.clone(), room.clone());
                            tokio::spawn(async move {
                                let answer = match lane.sending.acquire().await {
                                    Ok(_permit) => worker.attempt(prepared).await,
                                    Err(_) => return,
                                };
                                let _ = answers.send(answer);
                                if lane.queued.fetch_sub(1, Ordering::Relaxed) == Lane::BUSY_AT {
                                    room.notify_one();
                                }
                            });
                        }
                    }
                    Err(err) => tracing::error!(error = %err, "could not read what webhook events are made of"),
                }
            }
            lanes.retain(|_, lane| lane.queued.load(Ordering::Relaxed) > 0);
            tokio::select! {
                () = &mut stop => break,
                () = room.notified(), if idle => {}
                () = tokio::time::sleep(IDLE_POLL), if idle => {}
                () = std::future::ready(()), if !idle => {}
            }
        }
        drop(answers);
        // Sends in flight finish and are recorded; what they do not confirm is sent again later.
        let _ = tokio::time::timeout(self.settings.timeout + Duration::from_secs(1), recorder).await;
    }

    /// Sets the backlog gauge from the store.
    async fn count_backlog(&self) {
        match self.store.delivery_backlog().await {
            Ok(pending) => metrics::webhook_backlog(pending),
            Err(err) => tracing::warn!(error = %err, "could not count the webhook backlog, for /metrics"),
        }
    }

    /// How long a taken delivery stays this process's: long enough for all a lane may hold (a
    /// take on top of one not yet busy) to go through it at the timeout each. Another process
    /// that takes the subscription over sends the others at once, these after their lease.
    fn lease(&self) -> SignedDuration {
        let rounds = 2 * TAKE_PER_WEBHOOK / u32::try_from(IN_FLIGHT_PER_WEBHOOK).unwrap_or(1) + 1;
        SignedDuration::try_from(self.settings.timeout * rounds).unwrap_or(SignedDuration::from_mins(10)) + SignedDuration::from_secs(30)
    }

    async fn take(&self, busy: Vec<String>) -> StoreResult<Vec<DueDelivery>> {
        let now = self.clock.now();
        let after = |lease: SignedDuration| now.saturating_add(lease).unwrap_or(now);
        let take = DeliveryTake {
            owner: self.owner.clone(),
            at: now,
            subscriptions_until: after(SUBSCRIPTION_LEASE),
            deliveries_until: after(self.lease()),
            limit: TAKE_PER_WEBHOOK,
            busy,
        };
        self.store.take_deliveries(take).await
    }

    /// Gives each delivery its body: as stored, or rendered from its attempt as it is now.
    async fn prepare(&self, mut due: Vec<DueDelivery>) -> StoreResult<Vec<Prepared>> {
        let attempts = EventSource::subjects(due.iter().map(|d| &d.body));
        if !attempts.is_empty() {
            let reports = self.store.attempt_reports(attempts).await?;
            due.iter_mut().for_each(|d| d.body.attach(&reports));
        }
        Ok(due
            .into_iter()
            .map(|delivery| {
                let body = payload::body(&delivery.event, &delivery.body).ok_or("attempt_not_found");
                Prepared { delivery, body }
            })
            .collect())
    }

    /// One attempt at a delivery, with what it came to.
    async fn attempt(&self, prepared: Prepared) -> DeliveryResult {
        let Prepared { delivery, body } = prepared;
        let (id, event) = (delivery.id, &delivery.event);
        let now = self.clock.now();
        let first_due = next_attempt(&self.settings.retry_delays, event.occurred_at, 0, event.occurred_at);
        if let Some(due) = first_due.filter(|due| delivery.attempts == 0 && *due > now) {
            return DeliveryResult { id, outcome: DeliveryOutcome::NotYet { until: due } };
        }
        let (status_code, error) = match &body {
            Ok(body) => match self.post(&delivery, body, now).await {
                Ok(code) if (200..300).contains(&code) => {
                    let at = self.clock.now();
                    let since_event = at.duration_since(event.occurred_at).unsigned_abs();
                    metrics::webhook_delivery(event.event_type, metrics::DeliveryResult::Delivered, Some(since_event));
                    return DeliveryResult { id, outcome: DeliveryOutcome::Delivered { status_code: code, at } };
                }
                Ok(code) => (Some(code), format!("receiver answered {code}")),
                Err(error) => (None, error),
            },
            Err(reason) => (None, (*reason).to_owned()),
        };
        let retry_at = match body {
            Ok(_) => next_attempt(&self.settings.retry_delays, event.occurred_at, delivery.attempts + 1, self.clock.now()),
            Err(_) => None,
        };
        let result = if retry_at.is_some() { metrics::DeliveryResult::Retrying } else { metrics::DeliveryResult::Failed };
        metrics::webhook_delivery(event.event_type, result, None);
        DeliveryResult { id, outcome: DeliveryOutcome::Failed { status_code, error, retry_at } }
    }

    /// POSTs the body, signed (§8.2); the answer's status, or what went wrong.
    async fn post(&self, delivery: &DueDelivery, body: &str, now: Timestamp) -> Result<u16, String> {
        let url = reqwest::Url::parse(&delivery.url).map_err(|_| "invalid_url".to_owned())?;
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if !self.settings.allow_private && literal.is_some_and(is_private_address) {
            return Err(PRIVATE_ADDRESS.to_owned());
        }
        let timestamp = now.as_second();
        let event_id = &delivery.event.event_id;
        let signatures = sign(&delivery.secret, event_id, timestamp, body.as_bytes()).ok_or_else(|| "bad_secret".to_owned())?;
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Altur-Signature", signatures.altur)
            .header("webhook-id", event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures.standard)
            .body(body.to_owned())
            .send()
            .await;
        match sent {
            Ok(response) => Ok(response.status().as_u16()),
            Err(err) => Err(describe(&err)),
        }
    }
}

const PRIVATE_ADDRESS: &str = "private_address";

/// `last_error` for a request that got no answer.
fn describe(err: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause.downcast_ref::<RefusedPrivateAddress>().is_some() {
            return PRIVATE_ADDRESS.to_owned();
        }
        source = cause.source();
    }
    if err.is_timeout() {
        "timeout".to_owned()
    } else if err.is_connect() {
        "connection_failed".to_owned()
    } else {
        format!("request_failed: {err}")
    }
}

/// One subscription's sends in this process.
#[derive(Clone)]
struct Lane {
    /// Taken and not yet answered.
    queued: Arc<AtomicUsize>,
    sending: Arc<Semaphore>,
}

impl Lane {
    /// A lane with this many waiting takes no more until it drains below.
    const BUSY_AT: usize = TAKE_PER_WEBHOOK as usize;

    fn new() -> Lane {
        Lane { queued: Arc::default(), sending: Arc::new(Semaphore::new(IN_FLIGHT_PER_WEBHOOK)) }
    }

    fn is_busy(&self) -> bool {
        self.queued.load(Ordering::Relaxed) >= Self::BUSY_AT
    }
}

/// Records answers as they come, many per write.
async fn record_answers(store: Arc<dyn DeliveryStore>, mut answered: mpsc::UnboundedReceiver<DeliveryResult>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while answered.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        if let Err(err) = store.record_deliveries(std::mem::take(&mut batch)).await {
            // Unrecorded answers are sent again when their lease ends: at least once holds.
            tracing::error!(error = %err, "could not record webhook delivery answers");
        }
    }
}

/// The log's purge and the backlog gauge, each at its own pace.
#[derive(Default)]
struct Housekeeping {
    purged_at: Option<tokio::time::Instant>,
    counted_at: Option<tokio::time::Instant>,
}

impl Housekeeping {
    async fn run(&mut self, deliveries: &Deliveries) {
        let due = |at: Option<tokio::time::Instant>, every: Duration| at.is_none_or(|at| at.elapsed() >= every);
        if due(self.counted_at, BACKLOG_EVERY) {
            self.counted_at = Some(tokio::time::Instant::now());
            deliveries.count_backlog().await;
        }
        if due(self.purged_at, PURGE_EVERY) {
            self.purged_at = Some(tokio::time::Instant::now());
            let now = deliveries.clock.now();
            match deliveries.store.purge_deliveries(now.saturating_sub(KEPT_FOR).unwrap_or(now)).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "webhook deliveries older than 30 days removed"),
                Err(err) => tracing::warn!(error = %err, "could not remove old webhook deliveries"),
            }
        }
    }
}

/// Resolves names and refuses, unless private targets are allowed, any that resolves to a
/// private address (§8.1): checked on the addresses connected to, so a name cannot point
/// somewhere else between a check and the connection.
struct GuardedResolver {
    allow_private: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("the name resolves to a loopback, private, link-local or unspecified address")]
struct RefusedPrivateAddress;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private && addresses.iter().any(|a| is_private_address(a.ip())) {
                return Err(Box::new(RefusedPrivateAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
