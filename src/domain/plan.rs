//! The plan preview (contract §12.3): what the engine would do with a campaign's remaining
//! contacts now, each counted once, in `eligible_now` or under the first reason that blocks it.
//! Made of counts the store keeps or reads from indexes; this module only decides.

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use utoipa::ToSchema;

use super::campaign::{Campaign, CampaignStatus, Channel, ContactStatus};
use super::window::DateRange;

/// Remaining contacts of one group the store counted: those in `queue`, or in `retrying` with
/// their retry time reached (`due`) or not, in one timezone (`None`: the campaign's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingGroup {
    pub zone: Option<String>,
    pub status: ContactStatus,
    pub due: bool,
    pub count: i64,
}

/// What the store read for a plan.
#[derive(Debug, Clone, Default)]
pub struct PlanCounts {
    /// Contacts per status (§3.5).
    pub by_status: Vec<(ContactStatus, i64)>,
    /// Every remaining contact, grouped (the groups add up to the `queue` and `retrying` counts).
    pub waiting: Vec<WaitingGroup>,
    /// The remaining contacts whose numbers the do-not-contact list suppresses, grouped alike.
    pub suppressed: Vec<WaitingGroup>,
    /// Attempts started in the rolling 24 hours (`message_limit`) and in flight (`concurrency_limit`).
    pub started_last_day: i64,
    pub in_flight: i64,
    /// The mean time from claim to close of the campaign's latest closed attempts.
    pub attempt_duration: Option<SignedDuration>,
    /// The integration's `max_per_second`, when it has one.
    pub max_per_second: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Blocked {
    pub window_closed: i64,
    pub contact_hours: i64,
    pub message_limit: i64,
    pub concurrency: i64,
    pub suppressed: i64,
    pub retry_wait: i64,
    pub cycle_cooldown: i64,
}

impl Blocked {
    fn total(&self) -> i64 {
        self.window_closed
            + self.contact_hours
            + self.message_limit
            + self.concurrency
            + self.suppressed
            + self.retry_wait
            + self.cycle_cooldown
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub at: Timestamp,
    pub eligible_now: i64,
    pub blocked: Blocked,
    pub remaining: i64,
    pub next_window_opens_at: Option<Timestamp>,
    pub estimated_finish_at: Option<Timestamp>,
    pub by_status: Vec<(ContactStatus, i64)>,
}

/// How many windows the finish estimate walks through before it gives up (about a year of daily ones).
const MAX_WINDOWS: usize = 400;

/// The plan of `campaign` at `at`. A campaign not yet started is planned as if it were activated
/// now: the preview is what launching it would do.
pub fn plan(campaign: &Campaign, counts: &PlanCounts, at: Timestamp) -> Plan {
    let settings = &campaign.settings;
    let zone_open = |zone: Option<&str>| {
        settings.contact_hours.as_ref().is_none_or(|hours| hours.open_for_key(&settings.timezone, zone.unwrap_or(""), at))
    };
    let count_of = |status: ContactStatus| counts.by_status.iter().filter(|(s, _)| *s == status).map(|(_, n)| n).sum::<i64>();
    let remaining = count_of(ContactStatus::Queue) + count_of(ContactStatus::Retrying);
    let sum =
        |groups: &[WaitingGroup], keep: &dyn Fn(&WaitingGroup) -> bool| groups.iter().filter(|g| keep(g)).map(|g| g.count).sum::<i64>();
    // Each group minus its suppressed contacts, counted first.
    let unsuppressed = |keep: &dyn Fn(&WaitingGroup) -> bool| (sum(&counts.waiting, keep) - sum(&counts.suppressed, keep)).max(0);

    let mut blocked = Blocked { suppressed: sum(&counts.suppressed, &|_| true).min(remaining), ..Blocked::default() };
    let rest = remaining - blocked.suppressed;
    let window_open = settings.scheduling.is_open_at(settings.timezone.zone(), at);
    if !window_open {
        blocked.window_closed = rest;
    } else if campaign.status == CampaignStatus::Cooldown {
        blocked.cycle_cooldown = rest;
    } else {
        let closed = |g: &WaitingGroup| !zone_open(g.zone.as_deref());
        blocked.contact_hours = unsuppressed(&closed).min(rest);
        let waiting_retry = |g: &WaitingGroup| !closed(g) && g.status == ContactStatus::Retrying && !g.due;
        blocked.retry_wait = unsuppressed(&waiting_retry).min(rest - blocked.contact_hours);
        let candidates = rest - blocked.contact_hours - blocked.retry_wait;
        let by_limit = (settings.message_limit - counts.started_last_day).max(0);
        let by_concurrency = settings.concurrency_room(counts.in_flight);
        let excess = (candidates - by_limit.min(by_concurrency)).max(0);
        if by_limit < by_concurrency {
            blocked.message_limit = excess;
        } else {
            blocked.concurrency = excess;
        }
    }
    let eligible_now = remaining - blocked.total();
    let schedule = &settings.scheduling;
    let tz = settings.timezone.zone();
    let next_window_opens_at = if window_open {
        schedule.next_closing(tz, at).and_then(|closing| schedule.next_opening(tz, closing, DateRange::ANY))
    } else {
        schedule.next_opening(tz, at, DateRange::ANY)
    };
    let estimated_finish_at = estimate_finish(campaign, counts, at, remaining - blocked.suppressed);
    Plan { at, eligible_now, blocked, remaining, next_window_opens_at, estimated_finish_at, by_status: counts.by_status.clone() }
}

/// When the `left` contacts would be done at the pace the caps allow, inside the campaign's
/// windows: attempts run at the tighter of `concurrency_limit` over the observed attempt
/// duration (calls) and the integration's `max_per_second`, and at most `message_limit` start in
/// any 24 hours. Retries and calling hours are not foreseen. `None` when a call campaign has no
/// closed attempt yet to time, or no window opens within the search.
fn estimate_finish(campaign: &Campaign, counts: &PlanCounts, at: Timestamp, left: i64) -> Option<Timestamp> {
    if left <= 0 {
        return Some(at);
    }
    let settings = &campaign.settings;
    let by_concurrency = match (campaign.integration.channel, settings.concurrency_limit) {
        (Channel::PhoneCall, Some(limit)) => {
            let seconds = counts.attempt_duration?.as_secs_f64().max(1.0);
            Some(limit as f64 / seconds)
        }
        _ => None,
    };
    let per_second = [by_concurrency, counts.max_per_second].into_iter().flatten().fold(f64::INFINITY, f64::min);
    // Beyond what the 24-hour budget has left now, each further `message_limit` contacts wait a day.
    let budget = (settings.message_limit - counts.started_last_day).max(0);
    let days_of_limit = if left > budget { (left - budget + settings.message_limit - 1) / settings.message_limit.max(1) } else { 0 };
    let by_limit = at.saturating_add(SignedDuration::from_hours(24 * days_of_limit)).ok()?;

    let (schedule, tz) = (&settings.scheduling, settings.timezone.zone());
    let mut left = left as f64;
    let mut from = at;
    for _ in 0..MAX_WINDOWS {
        let opens = schedule.next_opening(tz, from, DateRange::ANY)?;
        if !per_second.is_finite() {
            return Some(opens.max(by_limit));
        }
        let closes = schedule.next_closing(tz, opens);
        let open_secs = closes.map(|c| c.duration_since(opens).as_secs_f64());
        match open_secs {
            Some(secs) if secs * per_second < left => {
                left -= secs * per_second;
                from = closes?;
            }
            _ => {
                let done = opens.saturating_add(SignedDuration::from_secs_f64(left / per_second)).ok()?;
                return Some(done.max(by_limit));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::campaign::{CampaignSettings, NewCampaign};
    use crate::domain::schedule::DayWindow;

    fn campaign(channel: Channel, extra: impl FnOnce(&mut CampaignSettings)) -> Campaign {
        let mut settings = CampaignSettings::defaults(channel);
        // Mondays 09:00–18:00 only.
        let off = DayWindow { active: false, ..settings.scheduling.mon };
        let days = &mut settings.scheduling;
        (days.tue, days.wed, days.thu, days.fri) = (off, off, off, off);
        extra(&mut settings);
        let new = NewCampaign { agent_id: uuid::Uuid::from_u128(1), integration_id: "iph_1".to_owned(), channel, settings };
        new.create(1, "bot".to_owned(), monday("08:00"))
    }

    fn group(zone: Option<&str>, status: ContactStatus, due: bool, count: i64) -> WaitingGroup {
        WaitingGroup { zone: zone.map(str::to_owned), status, due, count }
    }

    /// Monday 2026-06-08 at `hh:mm` in Mexico City (the default zone).
    fn monday(time: &str) -> Timestamp {
        format!("2026-06-08T{time}:00[America/Mexico_City]").parse::<jiff::Zoned>().map(|z| z.timestamp()).unwrap_or_default()
    }

    fn counts(waiting: Vec<WaitingGroup>, suppressed: Vec<WaitingGroup>) -> PlanCounts {
        let of = |status| waiting.iter().filter(|g| g.status == status).map(|g| g.count).sum::<i64>();
        PlanCounts {
            by_status: vec![(ContactStatus::Queue, of(ContactStatus::Queue)), (ContactStatus::Retrying, of(ContactStatus::Retrying))],
            waiting,
            suppressed,
            ..PlanCounts::default()
        }
    }

    #[test]
    fn every_remaining_contact_is_counted_once_under_the_first_reason_in_the_contracts_order() {
        // At 10:00 in Mexico City it is 09:00 in Tijuana, before these hours.
        let hours = serde_json::from_value(serde_json::json!({ "start": "09:30", "end": "18:00" })).ok();
        let c = campaign(Channel::PhoneCall, |s| {
            s.concurrency_limit = Some(10);
            s.contact_hours = hours;
        });
        let waiting = vec![
            group(None, ContactStatus::Queue, true, 50),
            group(Some("America/Tijuana"), ContactStatus::Queue, true, 20),
            group(None, ContactStatus::Retrying, false, 7),
            group(None, ContactStatus::Retrying, true, 3),
        ];
        let suppressed =
            vec![group(Some("America/Tijuana"), ContactStatus::Queue, true, 2), group(None, ContactStatus::Retrying, false, 1)];
        let counts = counts(waiting, suppressed);
        let plan = plan(&c, &counts, monday("10:00"));
        assert_eq!(plan.remaining, 80);
        assert_eq!(
            plan.blocked,
            Blocked { suppressed: 3, contact_hours: 18, retry_wait: 6, concurrency: 43, ..Blocked::default() },
            "53 candidates, 10 of them within the concurrency limit"
        );
        assert_eq!(plan.eligible_now, 10);
        assert_eq!(plan.eligible_now + plan.blocked.total(), plan.remaining);

        // Outside the window everything not suppressed waits for it, whatever else holds it.
        let closed = super::plan(&c, &counts, monday("19:00"));
        assert_eq!(closed.blocked, Blocked { suppressed: 3, window_closed: 77, ..Blocked::default() });
        assert_eq!(closed.next_window_opens_at, Some(monday("09:00") + SignedDuration::from_hours(24 * 7)));
    }

    #[test]
    fn the_tighter_cap_takes_the_contacts_beyond_it() {
        let c = campaign(Channel::PhoneCall, |s| {
            s.concurrency_limit = Some(10);
            s.message_limit = 30;
        });
        let mut counts = counts(vec![group(None, ContactStatus::Queue, true, 40)], vec![]);
        counts.started_last_day = 25;
        let plan = plan(&c, &counts, monday("10:00"));
        assert_eq!((plan.eligible_now, plan.blocked.message_limit, plan.blocked.concurrency), (5, 35, 0));
        counts.started_last_day = 0;
        counts.in_flight = 8;
        let plan = super::plan(&c, &counts, monday("10:00"));
        assert_eq!((plan.eligible_now, plan.blocked.message_limit, plan.blocked.concurrency), (2, 0, 38));
    }

    #[test]
    fn the_finish_is_estimated_through_the_windows_from_the_observed_duration() {
        // 10 at once, 60 s each: 600 calls an hour; 9 hours a Monday; 8,000 calls take 2 Mondays.
        let c = campaign(Channel::PhoneCall, |s| {
            s.concurrency_limit = Some(10);
            s.message_limit = 100_000;
        });
        let mut counts = counts(vec![group(None, ContactStatus::Queue, true, 6_000)], vec![]);
        assert_eq!(plan(&c, &counts, monday("09:00")).estimated_finish_at, None, "no attempt timed yet");
        counts.attempt_duration = Some(SignedDuration::from_secs(60));
        let week = SignedDuration::from_hours(24 * 7);
        assert_eq!(plan(&c, &counts, monday("09:00")).estimated_finish_at, Some(monday("10:00") + week));
        // The daily cap stretches it: 250 a day is 24 days for 6,000.
        let capped = campaign(Channel::PhoneCall, |s| s.concurrency_limit = Some(10));
        let finish = plan(&capped, &counts, monday("09:00")).estimated_finish_at.expect("estimated");
        assert_eq!(finish, monday("09:00") + SignedDuration::from_hours(24 * 23));
    }
}
