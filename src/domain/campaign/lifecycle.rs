//! The lifecycle state machine (contract §2.8, §2.9) and iterations (§5.5): which actions a
//! campaign takes in each status, and when an iteration ends and the next begins.

use jiff::Timestamp;

use super::{Campaign, CampaignStatus, Channel, CycleMode, LifecycleAction, LifecycleError};
use crate::domain::window::DateRange;

impl Campaign {
    /// Whether a change made while the campaign was at `iteration_before` started a later
    /// iteration (activating or resuming out of a cooldown): its contacts must be queued again.
    pub fn began_iteration_since(&self, iteration_before: i64) -> bool {
        iteration_before >= 1 && self.current_iteration > iteration_before
    }

    /// Every action that would succeed now, no-ops included, in the contract's order.
    pub fn valid_actions(&self) -> Vec<LifecycleAction> {
        LifecycleAction::ALL.into_iter().filter(|a| self.transition(*a).is_some()).collect()
    }

    /// The actions that would change something now: the valid ones without their no-ops (the
    /// dashboard offers only these).
    pub fn changing_actions(&self) -> Vec<LifecycleAction> {
        LifecycleAction::ALL
            .into_iter()
            .filter(|a| match self.transition(*a) {
                Some(_) if *a == LifecycleAction::Archive => !self.archived,
                Some(target) => target != self.status,
                None => false,
            })
            .collect()
    }

    /// The status an action leads to, or `None` when it is not allowed now.
    fn transition(&self, action: LifecycleAction) -> Option<CampaignStatus> {
        use CampaignStatus::*;
        if self.archived {
            return (action == LifecycleAction::Archive).then_some(self.status);
        }
        match (action, self.status) {
            // On `active` a no-op, as Altur's OpenAPI has every action whose target holds already.
            (LifecycleAction::Activate, Pending | Ready | Cooldown | Active) => Some(Active),
            (LifecycleAction::Pause, Active | Cooldown | Inactive) => Some(Inactive),
            (LifecycleAction::Resume, Inactive | Active) => Some(Active),
            (LifecycleAction::Archive, status) => Some(status),
            _ => None,
        }
    }

    /// Applies a lifecycle action at instant `now` (§2.8).
    pub fn apply_action(&mut self, action: LifecycleAction, now: Timestamp) -> Result<(), LifecycleError> {
        let Some(target) = self.transition(action) else {
            return Err(LifecycleError::InvalidTransition { current: self.status, valid_targets: self.valid_actions() });
        };
        match action {
            LifecycleAction::Activate if self.status == CampaignStatus::Active => {}
            LifecycleAction::Activate => {
                if self.integration.channel == Channel::Whatsapp && self.settings.template.is_none() {
                    return Err(LifecycleError::MissingTemplate);
                }
                self.started_at.get_or_insert(now);
                self.start_next_iteration(now);
            }
            LifecycleAction::Pause => {
                if self.status != CampaignStatus::Inactive {
                    self.paused_in_cooldown = self.status == CampaignStatus::Cooldown;
                }
            }
            LifecycleAction::Resume => {
                if std::mem::take(&mut self.paused_in_cooldown) {
                    self.start_next_iteration(now);
                }
            }
            LifecycleAction::Archive => self.archived = true,
        }
        self.status = target;
        Ok(())
    }

    fn start_next_iteration(&mut self, now: Timestamp) {
        self.current_iteration += 1;
        self.last_iteration_at = Some(now);
        self.next_cycle_at = None;
    }

    /// Whether the current iteration may end once no contact is left unfinished (§5.5): only a
    /// running, unarchived campaign with contacts ends one.
    pub fn may_end_iteration(&self) -> bool {
        self.status == CampaignStatus::Active && !self.archived && self.counters.contacts > 0
    }

    /// Ends the current iteration at `now` (§5.5): `cooldown` until the next one when iterations
    /// remain and some contact is eligible for it, else `finished`.
    pub fn end_iteration(&mut self, now: Timestamp, any_eligible: bool) {
        let cycles = &self.settings.cycles;
        let next = if any_eligible && cycles.enabled && self.current_iteration < cycles.max_iterations {
            self.next_cycle_start(now)
        } else {
            None
        };
        match next {
            Some(at) => {
                self.status = CampaignStatus::Cooldown;
                self.next_cycle_at = Some(at);
            }
            None => {
                self.status = CampaignStatus::Finished;
                self.ended_at = Some(now);
                self.next_cycle_at = None;
            }
        }
    }

    /// When the iteration after one ending at `now` starts; `None` when the schedule has no
    /// opening left between its dates.
    fn next_cycle_start(&self, now: Timestamp) -> Option<Timestamp> {
        let cycles = &self.settings.cycles;
        match cycles.mode {
            CycleMode::Cooldown => now.saturating_add(jiff::SignedDuration::from_mins(cycles.cooldown_minutes)).ok(),
            CycleMode::Scheduled => {
                let zone = self.settings.timezone.zone();
                let dates = DateRange { first: cycles.schedule_start_date, last: cycles.schedule_end_date };
                let schedule = cycles.schedule.as_ref()?;
                // One pass per opening: an iteration that ends inside a window waits for the next one.
                let after_this_window = schedule.next_closing(zone, now).unwrap_or(now);
                schedule.next_opening(zone, after_this_window, dates)
            }
        }
    }

    /// Starts the next iteration of a campaign in `cooldown` once its time has come. Returns
    /// whether it did; the store then puts the eligible contacts back in the queue.
    pub fn begin_due_iteration(&mut self, now: Timestamp) -> bool {
        let due = self.status == CampaignStatus::Cooldown && !self.archived && self.next_cycle_at.is_some_and(|at| at <= now);
        if due {
            self.start_next_iteration(now);
            self.status = CampaignStatus::Active;
        }
        due
    }
}
