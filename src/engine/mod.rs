//! The engine: runs active campaigns (contract §5).
//!
//! Each tick reads the campaigns that can change, then for each: starts a due iteration, ends a
//! finished one, or claims the next contacts within its window and budgets. Claims and outcomes go
//! through the store's single writer, so the claims of every campaign in a tick share one commit.
//! An attempt is a row before its provider hears of it; a handoff not confirmed by the lease's end
//! (a crash, a provider error) is re-sent with the same attempt id; an attempt with no final event
//! by its deadline is closed as failed. Time comes only from the injected clock.

mod handoff;

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;
use jiff::{SignedDuration, Timestamp};

use crate::clock::Clock;
use crate::domain::attempt::RetrySettings;
use crate::domain::campaign::{CampaignStatus, Channel};
use crate::metrics;
use crate::store::{ClaimRequest, Dispatch, EngineStore, Pace, RunningCampaign, StoreResult};

/// Engine settings (contract §5.6).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub retry: RetrySettings,
    pub attempt_timeout: SignedDuration,
    /// How long a claimer holds an unconfirmed handoff before anyone may re-send it.
    pub lease: SignedDuration,
    /// Base URL providers post events to (`{public_url}/api/v1.0/integrations/{id}/events`).
    pub public_url: String,
    /// Opens provider credentials (`OUTBOUND_SECRET_KEY` or the key file).
    pub keyring: Arc<crate::providers::keyring::Keyring>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            retry: RetrySettings::default(),
            attempt_timeout: SignedDuration::from_hours(2),
            lease: SignedDuration::from_mins(2),
            public_url: "http://127.0.0.1:8080".to_owned(),
            keyring: Default::default(),
        }
    }
}

/// Most attempts one tick starts over all campaigns: bounds memory and the size of a commit.
const MAX_CLAIMS_PER_TICK: u32 = 8192;
/// Campaigns served per tick, taken in turn, so that each claim is large enough to carry its fixed
/// cost (a handful of statements) whatever the number of campaigns; they share the tick evenly.
const MAX_CAMPAIGNS_PER_TICK: usize = 16;
/// Re-sends, timeouts handled per tick.
const MAX_DUE_PER_TICK: u32 = 2048;
/// How often an idle engine looks for work.
const IDLE_POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// How often (by the engine's clock) the contacts-waiting gauge is read from the store's counters.
const WAITING_EVERY: SignedDuration = SignedDuration::from_secs(15);

/// What one tick did; a tick that did nothing means the engine is idle until time moves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    pub claimed: usize,
    pub resent: usize,
    pub timed_out: usize,
    pub iterations: usize,
}

impl TickReport {
    pub fn is_idle(&self) -> bool {
        *self == TickReport::default()
    }
}

pub struct Engine {
    store: Arc<dyn EngineStore>,
    clock: Arc<dyn Clock>,
    settings: EngineSettings,
    providers: Arc<handoff::Providers>,
    /// Where the next tick starts among campaigns waiting to dispatch.
    turn: std::sync::atomic::AtomicUsize,
    /// Provider sends running beside the ticks (`run` only).
    detached: std::sync::Mutex<tokio::task::JoinSet<StoreResult<()>>>,
    /// When the contacts-waiting gauge was last read.
    waiting_read_at: std::sync::Mutex<Option<Timestamp>>,
}

impl Engine {
    pub fn new(store: Arc<dyn EngineStore>, clock: Arc<dyn Clock>, settings: EngineSettings) -> Engine {
        let providers = Arc::new(handoff::Providers::new(&settings));
        Engine {
            store,
            clock,
            settings,
            providers,
            turn: Default::default(),
            detached: Default::default(),
            waiting_read_at: Default::default(),
        }
    }

    /// Runs ticks until `stop` resolves. Handoffs left unconfirmed by an earlier run of this
    /// process are made due at once where the store can tell them apart (SQLite; on PostgreSQL
    /// they wait for their leases to run out). A tick's handoff (simulator outcomes) runs while
    /// the next tick claims, so the store's writer is never idle; sends to outside providers run
    /// beside the ticks, each campaign's on its own.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        match self.store.release_leases(self.clock.now()).await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "re-sending handoffs left unconfirmed by the previous run"),
            Err(err) => tracing::error!(error = %err, "could not release earlier leases"),
        }
        tokio::pin!(stop);
        let mut handing_off: Option<tokio::task::JoinHandle<StoreResult<()>>> = None;
        loop {
            let prepared = self.prepare().await;
            let busy = handing_off.is_some();
            if let Some(previous) = handing_off.take() {
                match previous.await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::error!(error = %err, "engine handoff failed"),
                    Err(err) => tracing::error!(error = %err, "engine handoff panicked"),
                }
            }
            let idle = match prepared {
                Ok((report, handoff)) => {
                    if !handoff.is_empty() {
                        let engine = self.clone();
                        handing_off = Some(tokio::spawn(async move { engine.hand_off(handoff, true).await }));
                    }
                    self.reap_detached();
                    report.is_idle() && !busy
                }
                Err(err) => {
                    tracing::error!(error = %err, "engine tick failed");
                    true
                }
            };
            let pause = if idle { IDLE_POLL } else { std::time::Duration::ZERO };
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        if let Some(last) = handing_off {
            let _ = last.await;
        }
        self.finish_detached().await;
    }

    /// Ticks until a tick finds nothing to do at the clock's current instant (tests move the
    /// clock, then settle).
    pub async fn settle(&self) -> StoreResult<TickReport> {
        let mut total = TickReport::default();
        loop {
            let report = self.tick().await?;
            if report.is_idle() {
                return Ok(total);
            }
            total.claimed += report.claimed;
            total.resent += report.resent;
            total.timed_out += report.timed_out;
            total.iterations += report.iterations;
        }
    }

    /// One pass over everything due at the clock's current instant, handoffs included.
    pub async fn tick(&self) -> StoreResult<TickReport> {
        let (report, handoff) = self.prepare().await?;
        self.hand_off(handoff, false).await?;
        Ok(report)
    }

    /// Closes timed-out attempts, moves iterations, claims contacts and takes due re-sends; returns
    /// the attempts to hand to providers.
    async fn prepare(&self) -> StoreResult<(TickReport, ClaimedBatch)> {
        let now = self.clock.now();
        let mut report = TickReport::default();
        self.read_waiting_contacts(now).await;

        let expired = self.store.expired_attempts(now, MAX_DUE_PER_TICK).await?;
        report.timed_out = expired.len();
        if !expired.is_empty() {
            let (events, broken) = self.providers.close_expired(expired).await;
            for (integration_id, reason) in broken {
                self.store.mark_integration_failing(&integration_id, &reason, now).await?;
            }
            self.store.apply_events(events, now, self.settings.retry).await?;
        }

        let campaigns = self.store.running_campaigns().await?;
        for running in &campaigns {
            let campaign = &running.campaign;
            let iteration_due = match campaign.status {
                CampaignStatus::Cooldown => campaign.next_cycle_at.is_some_and(|at| at <= now),
                _ => running.unfinished == 0 && campaign.counters.contacts > 0,
            };
            if iteration_due && self.store.advance_iteration(campaign.id, now).await?.is_some() {
                report.iterations += 1;
            }
        }
        let mut dispatching: Vec<&RunningCampaign> = campaigns.iter().filter(|c| wants_to_dispatch(c, now)).collect();
        if dispatching.len() > MAX_CAMPAIGNS_PER_TICK {
            let turn = self.turn.fetch_add(MAX_CAMPAIGNS_PER_TICK, std::sync::atomic::Ordering::Relaxed) % dispatching.len();
            dispatching.rotate_left(turn);
            dispatching.truncate(MAX_CAMPAIGNS_PER_TICK);
        }
        let share = (MAX_CLAIMS_PER_TICK / u32::try_from(dispatching.len().max(1)).unwrap_or(u32::MAX)).max(1);
        let lease_until = now.saturating_add(self.settings.lease).unwrap_or(now);
        let claims: Vec<ClaimRequest> = dispatching
            .iter()
            .filter_map(|running| {
                let room = u32::try_from(running.campaign.settings.concurrency_room(running.in_flight)).unwrap_or(u32::MAX).min(share);
                (room > 0).then(|| ClaimRequest {
                    campaign_id: running.campaign.id,
                    limit: room,
                    at: now,
                    lease_until,
                    deadline: now.saturating_add(self.settings.attempt_timeout).unwrap_or(now),
                    pace: running
                        .provider
                        .max_per_second()
                        .map(|per_second| Pace { integration_id: running.campaign.integration.id.clone(), per_second }),
                })
            })
            .collect();
        let claiming = !claims.is_empty();
        let mut dispatches = if claiming { self.store.claim_attempts(claims).await? } else { Vec::new() };
        report.claimed = dispatches.len();
        let campaigns: HashMap<i64, RunningCampaign> = campaigns.into_iter().map(|running| (running.campaign.id, running)).collect();
        if claiming {
            metrics::tick_claimed(report.claimed);
            count_dispatched(&dispatches, &campaigns);
        }

        let due = self.store.take_due_handoffs(now, lease_until, MAX_DUE_PER_TICK).await?;
        report.resent = due.len();
        dispatches.extend(due);
        Ok((report, ClaimedBatch { dispatches, campaigns, now }))
    }

    /// Sets the contacts-waiting gauge from the store's counters, at most every [`WAITING_EVERY`].
    async fn read_waiting_contacts(&self, now: Timestamp) {
        {
            let mut read_at = self.waiting_read_at.lock().unwrap_or_else(|p| p.into_inner());
            // A clock that stepped back reads at once rather than waiting for the old instant.
            if read_at.is_some_and(|at| at <= now && now < at.saturating_add(WAITING_EVERY).unwrap_or(at)) {
                return;
            }
            *read_at = Some(now);
        }
        match self.store.waiting_contacts().await {
            Ok(waiting) => metrics::contacts_waiting(&waiting),
            Err(err) => tracing::warn!(error = %err, "could not read the contacts waiting, for /metrics"),
        }
    }

    /// Gives each attempt to its campaign's provider and records what came back. The simulator's
    /// outcomes of every campaign go to the store together. Other providers' sends are awaited,
    /// or with `detach` left to run beside the next ticks (in `detached`), so that one slow
    /// provider endpoint never holds up the dispatch of other campaigns.
    async fn hand_off(&self, handoff: ClaimedBatch, detach: bool) -> StoreResult<()> {
        let ClaimedBatch { dispatches, mut campaigns, now } = handoff;
        let mut per_campaign: HashMap<i64, Vec<Dispatch>> = HashMap::new();
        for dispatch in dispatches {
            per_campaign.entry(dispatch.campaign_id).or_default().push(dispatch);
        }
        for campaign_id in per_campaign.keys() {
            if !campaigns.contains_key(campaign_id)
                // A paused campaign's in-flight attempts still finish (§2.8).
                && let Some(running) = self.store.running_campaign(*campaign_id).await?
            {
                campaigns.insert(*campaign_id, running);
            }
        }
        let retry = self.settings.retry;
        let mut simulated = Vec::new();
        let mut sends = Vec::new();
        for (campaign_id, batch) in per_campaign {
            let Some(running) = campaigns.remove(&campaign_id) else { continue };
            match handoff::simulate_now(&running, &batch, now) {
                Some(events) => simulated.extend(events),
                None => sends.push(self.providers.clone().send(self.store.clone(), Arc::new(running), batch, now, retry)),
            }
        }
        if detach {
            let mut detached = self.detached.lock().unwrap_or_else(|p| p.into_inner());
            for send in sends.drain(..) {
                detached.spawn(send);
            }
        }
        let store = &*self.store;
        let outcomes =
            async move { if simulated.is_empty() { Ok(()) } else { handoff::apply_simulated(store, simulated, now, retry).await } };
        let (outcomes, sent) = tokio::join!(outcomes, join_all(sends));
        outcomes?;
        sent.into_iter().collect()
    }

    /// Logs the detached sends that have ended.
    fn reap_detached(&self) {
        let mut detached = self.detached.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(ended) = detached.try_join_next() {
            log_send(ended);
        }
    }

    /// Waits for every detached send (on shutdown: what they confirm need not be re-sent).
    async fn finish_detached(&self) {
        let mut detached = std::mem::take(&mut *self.detached.lock().unwrap_or_else(|p| p.into_inner()));
        while let Some(ended) = detached.join_next().await {
            log_send(ended);
        }
    }
}

fn log_send(ended: Result<StoreResult<()>, tokio::task::JoinError>) {
    match ended {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!(error = %err, "provider handoff failed"),
        Err(err) => tracing::error!(error = %err, "provider handoff panicked"),
    }
}

/// Counts the attempts a tick claimed, per channel: each attempt once, on its way to its first
/// hand-off (re-sends of the same attempt are not counted again).
fn count_dispatched(claimed: &[Dispatch], campaigns: &HashMap<i64, RunningCampaign>) {
    for channel in Channel::ALL {
        let count =
            claimed.iter().filter(|d| campaigns.get(&d.campaign_id).is_some_and(|c| c.campaign.integration.channel == channel)).count();
        if count > 0 {
            metrics::attempts_dispatched(channel, count);
        }
    }
}

/// Attempts claimed in one tick, on their way to providers.
struct ClaimedBatch {
    dispatches: Vec<Dispatch>,
    campaigns: HashMap<i64, RunningCampaign>,
    now: Timestamp,
}

impl ClaimedBatch {
    fn is_empty(&self) -> bool {
        self.dispatches.is_empty()
    }
}

/// Whether a campaign may start attempts now: active, not archived, its integration not failing,
/// inside its window, with contacts waiting and room under its concurrency limit. Budgets are checked again by the claim.
fn wants_to_dispatch(running: &RunningCampaign, now: Timestamp) -> bool {
    let campaign = &running.campaign;
    let waiting = running.queued > 0 || running.next_retry_at.is_some_and(|at| at <= now);
    let room = campaign.settings.concurrency_room(running.in_flight) > 0;
    campaign.status.dispatches(campaign.archived) && waiting && room && !running.integration_failing && window_open(campaign, now)
}

fn window_open(campaign: &crate::domain::campaign::Campaign, now: Timestamp) -> bool {
    campaign.settings.scheduling.is_open_at(campaign.settings.timezone.zone(), now)
}
