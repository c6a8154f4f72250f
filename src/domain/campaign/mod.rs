//! Campaigns: what a campaign is (`Campaign`, its settings and cycles), its statuses
//! (`status`), the rules that validate create and update requests (`input`, contract §2) and the
//! lifecycle state machine with its iterations (`lifecycle`, §2.8, §2.9, §5.5). Pure: no I/O,
//! time comes in as an argument.

mod input;
mod lifecycle;
mod status;

pub use input::{CampaignInput, CyclesInput, parse_new_campaign};
pub use status::{CampaignStatus, Channel, ContactStatus, CycleMode, LifecycleAction};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::analytics::CampaignCounters;
use super::contact_hours::ContactHours;
use super::schedule::WeekSchedule;
use super::timezone::TimeZone;
use super::validation::Violation;
pub const DEFAULT_TIMEZONE: &str = "America/Mexico_City";
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
pub const MAX_FIRST_MESSAGE_CHARS: usize = 4_000;
pub const MAX_TEMPLATE_CHARS: usize = 512;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CyclesConfig {
    pub enabled: bool,
    pub mode: CycleMode,
    pub max_iterations: i64,
    pub cooldown_minutes: i64,
    pub filter_statuses: Vec<ContactStatus>,
    pub filter_tags: Vec<String>,
    pub schedule: Option<WeekSchedule>,
    pub schedule_start_date: Option<jiff::civil::Date>,
    pub schedule_end_date: Option<jiff::civil::Date>,
}

impl CyclesConfig {
    /// The statuses whose contacts a new iteration leaves as they are (§5.5): converted or in
    /// flight, and those `filter_statuses` names.
    pub fn statuses_left_alone(&self) -> Vec<ContactStatus> {
        let mut statuses = ContactStatus::KEPT_BY_NEW_ITERATIONS.to_vec();
        statuses.extend(self.filter_statuses.iter().filter(|s| !statuses.contains(s)).collect::<Vec<_>>());
        statuses
    }
}

impl Default for CyclesConfig {
    fn default() -> Self {
        CyclesConfig {
            enabled: false,
            mode: CycleMode::Cooldown,
            max_iterations: 3,
            cooldown_minutes: 60,
            filter_statuses: Vec::new(),
            filter_tags: Vec::new(),
            schedule: None,
            schedule_start_date: None,
            schedule_end_date: None,
        }
    }
}

/// Everything a client may set on a campaign (the immutable identity lives in `Campaign`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignSettings {
    pub name: String,
    pub description: Option<String>,
    pub timezone: TimeZone,
    pub retries: i64,
    pub message_limit: i64,
    pub concurrency_limit: Option<i64>,
    pub first_message: Option<String>,
    pub template: Option<String>,
    pub template_alt: Option<String>,
    pub scheduling: WeekSchedule,
    pub cycles: CyclesConfig,
    /// Hours in each contact's own time (§12.2); `None`: off. Campaigns stored before the field
    /// existed read as off.
    #[serde(default)]
    pub contact_hours: Option<ContactHours>,
}

impl CampaignSettings {
    /// Attempts that may start beside the `in_flight` ones under `concurrency_limit` (§5.2);
    /// unbounded without one.
    pub fn concurrency_room(&self, in_flight: i64) -> i64 {
        self.concurrency_limit.map_or(i64::MAX, |limit| (limit - in_flight).max(0))
    }

    /// How many contacts one claim may start (§5.1, §5.2): at most `wanted`, within what
    /// `message_limit` leaves of the rolling 24 hours and within the concurrency room.
    pub fn claim_room(&self, wanted: i64, started_last_day: i64, in_flight: i64) -> i64 {
        wanted.min(self.message_limit - started_last_day).min(self.concurrency_room(in_flight)).max(0)
    }

    /// The template of an attempt on `channel` (§5.5): a WhatsApp retry after a failed send
    /// uses `template_alt` when there is one; a call has none.
    pub fn template_for(&self, channel: Channel, failed_retries: i64) -> Option<String> {
        match channel {
            Channel::PhoneCall => None,
            Channel::Whatsapp if failed_retries > 0 && self.template_alt.is_some() => self.template_alt.clone(),
            Channel::Whatsapp => self.template.clone(),
        }
    }

    /// What a new campaign of this channel gets for every field a request leaves out.
    pub fn defaults(channel: Channel) -> Self {
        CampaignSettings {
            name: String::new(),
            description: None,
            timezone: TimeZone::parse(DEFAULT_TIMEZONE).unwrap_or_else(|| unreachable!("the default zone is in the bundled database")),
            retries: 1,
            message_limit: 250,
            concurrency_limit: (channel == Channel::PhoneCall).then_some(10),
            first_message: None,
            template: None,
            template_alt: None,
            scheduling: WeekSchedule::default(),
            cycles: CyclesConfig::default(),
            contact_hours: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentRef {
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationRef {
    pub id: String,
    pub channel: Channel,
}

/// A stored campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    pub id: i64,
    pub agent: AgentRef,
    pub integration: IntegrationRef,
    pub status: CampaignStatus,
    pub archived: bool,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub settings: CampaignSettings,
    pub current_iteration: i64,
    pub last_iteration_at: Option<Timestamp>,
    pub next_cycle_at: Option<Timestamp>,
    /// Paused while between iterations: `resume` then starts the next iteration.
    pub paused_in_cooldown: bool,
    /// Counts analytics are made of (contacts included), kept by the store with every change.
    pub counters: CampaignCounters,
}

/// A validated create request, before the agent and integration are looked up.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub agent_id: Uuid,
    pub integration_id: String,
    pub channel: Channel,
    pub settings: CampaignSettings,
}

/// Why the agent or integration a new campaign names cannot take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceError {
    AgentNotFound,
    /// Unknown, or owned by another agent.
    IntegrationNotFound,
    /// The integration's real channel differs from `integration_type`.
    WrongIntegrationType(Channel),
}

impl NewCampaign {
    /// Checks the agent and integration as found in the organization: `agent` its name when it
    /// exists, `integration` the integration's owner and channel when it exists.
    pub fn check_references<'a>(&self, agent: Option<&'a str>, integration: Option<(Uuid, Channel)>) -> Result<&'a str, ReferenceError> {
        let agent_name = agent.ok_or(ReferenceError::AgentNotFound)?;
        match integration {
            Some((owner, channel)) if owner == self.agent_id && channel == self.channel => Ok(agent_name),
            Some((owner, channel)) if owner == self.agent_id => Err(ReferenceError::WrongIntegrationType(channel)),
            _ => Err(ReferenceError::IntegrationNotFound),
        }
    }

    /// The campaign once stored under `id`, `pending`, created at `at`.
    pub fn create(self, id: i64, agent_name: String, at: Timestamp) -> Campaign {
        Campaign {
            id,
            agent: AgentRef { id: self.agent_id, name: agent_name },
            integration: IntegrationRef { id: self.integration_id, channel: self.channel },
            status: CampaignStatus::Pending,
            archived: false,
            created_at: super::whole_seconds(at),
            started_at: None,
            ended_at: None,
            settings: self.settings,
            current_iteration: 0,
            last_iteration_at: None,
            next_cycle_at: None,
            paused_in_cooldown: false,
            counters: CampaignCounters::default(),
        }
    }
}

/// Why a create or update request was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum CampaignError {
    Invalid(Vec<Violation>),
    ImmutableField(String),
    CyclesNotEnabled(String),
    ScheduledModeOnly(String),
    Finished,
}

/// Why a lifecycle action was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum LifecycleError {
    InvalidTransition {
        current: CampaignStatus,
        valid_targets: Vec<LifecycleAction>,
    },
    /// A WhatsApp campaign needs a `template` before it can be activated.
    MissingTemplate,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validation::Field;

    fn settings(message_limit: i64, concurrency_limit: Option<i64>) -> CampaignSettings {
        CampaignSettings { message_limit, concurrency_limit, ..CampaignSettings::defaults(Channel::PhoneCall) }
    }

    proptest::proptest! {
        /// A claim takes the least of what is asked, what the rolling day leaves and what the
        /// concurrency leaves, and never less than nothing.
        #[test]
        fn claim_room_is_the_tightest_budget(
            wanted in 0_i64..10_000, limit in 1_i64..10_000, started in 0_i64..12_000,
            concurrency in proptest::option::of(1_i64..500), in_flight in 0_i64..600,
        ) {
            let room = settings(limit, concurrency).claim_room(wanted, started, in_flight);
            let expected = wanted.min(limit - started).min(concurrency.map_or(i64::MAX, |c| c - in_flight)).max(0);
            proptest::prop_assert_eq!(room, expected);
        }
    }

    #[test]
    fn claim_room_edges() {
        assert_eq!(settings(250, Some(10)).claim_room(100, 249, 9), 1, "one left of the day and of the concurrency");
        assert_eq!(settings(250, Some(10)).claim_room(100, 250, 0), 0, "the day's limit reached");
        assert_eq!(settings(250, Some(10)).claim_room(100, 0, 12), 0, "more in flight than the limit (lowered meanwhile)");
        assert_eq!(settings(250, None).claim_room(100, 0, 1_000), 100, "no concurrency limit");
        assert_eq!(settings(250, None).concurrency_room(5), i64::MAX);
    }

    #[test]
    fn a_whatsapp_retry_after_a_failed_send_uses_the_alternative_template() {
        let mut whatsapp = CampaignSettings::defaults(Channel::Whatsapp);
        whatsapp.template = Some("first".to_owned());
        assert_eq!(whatsapp.template_for(Channel::Whatsapp, 1).as_deref(), Some("first"), "no alternative: the same template");
        whatsapp.template_alt = Some("second".to_owned());
        assert_eq!(whatsapp.template_for(Channel::Whatsapp, 0).as_deref(), Some("first"));
        assert_eq!(whatsapp.template_for(Channel::Whatsapp, 1).as_deref(), Some("second"));
        assert_eq!(whatsapp.template_for(Channel::PhoneCall, 1), None);
    }

    #[test]
    fn status_sets_and_transitions_named_once() {
        assert_eq!(ContactStatus::UNFINISHED, [ContactStatus::Queue, ContactStatus::Sending, ContactStatus::Retrying]);
        assert!(CampaignStatus::ALL.iter().all(|s| s.accepts_contacts() == (*s != CampaignStatus::Finished)));
        assert_eq!(CampaignStatus::Pending.with_contacts(), CampaignStatus::Ready);
        assert!(CampaignStatus::ALL.iter().all(|s| s.dispatches(false) == (*s == CampaignStatus::Active) && !s.dispatches(true)));
        assert_eq!(CampaignStatus::Active.with_contacts(), CampaignStatus::Active);
        let cycles = CyclesConfig { filter_statuses: vec![ContactStatus::Answered, ContactStatus::Converted], ..CyclesConfig::default() };
        assert_eq!(cycles.statuses_left_alone(), [ContactStatus::Converted, ContactStatus::Sending, ContactStatus::Answered]);
    }

    #[test]
    fn a_new_campaign_needs_its_agent_and_that_agent_s_integration_of_its_channel() {
        let agent = Uuid::from_u128(1);
        let new = NewCampaign {
            agent_id: agent,
            integration_id: "iph_1".to_owned(),
            channel: Channel::PhoneCall,
            settings: CampaignSettings::defaults(Channel::PhoneCall),
        };
        assert_eq!(new.check_references(Some("bot"), Some((agent, Channel::PhoneCall))), Ok("bot"));
        assert_eq!(new.check_references(None, Some((agent, Channel::PhoneCall))), Err(ReferenceError::AgentNotFound));
        assert_eq!(new.check_references(Some("bot"), None), Err(ReferenceError::IntegrationNotFound));
        assert_eq!(
            new.check_references(Some("bot"), Some((Uuid::from_u128(2), Channel::PhoneCall))),
            Err(ReferenceError::IntegrationNotFound)
        );
        assert_eq!(
            new.check_references(Some("bot"), Some((agent, Channel::Whatsapp))),
            Err(ReferenceError::WrongIntegrationType(Channel::Whatsapp))
        );
    }
    use crate::domain::schedule::{DayWindow, TimeOfDay};

    #[test]
    fn only_a_running_unarchived_campaign_with_contacts_ends_an_iteration() {
        let mut running = campaign(CampaignStatus::Active);
        running.counters.contacts = 1;
        assert!(running.may_end_iteration());
        let mut empty = running.clone();
        empty.counters.contacts = 0;
        let mut archived = running.clone();
        archived.archived = true;
        let mut paused = running.clone();
        paused.status = CampaignStatus::Inactive;
        assert!(![empty, archived, paused].iter().any(Campaign::may_end_iteration));
    }

    fn campaign(status: CampaignStatus) -> Campaign {
        let at = Timestamp::from_second(1_780_000_000).expect("time");
        Campaign {
            id: 1,
            agent: AgentRef { id: Uuid::nil(), name: "Bot".into() },
            integration: IntegrationRef { id: "iph_x".into(), channel: Channel::PhoneCall },
            status,
            archived: false,
            created_at: at,
            started_at: Some(at),
            ended_at: None,
            settings: CampaignSettings { name: "c".into(), ..CampaignSettings::defaults(Channel::PhoneCall) },
            current_iteration: 1,
            last_iteration_at: Some(at),
            next_cycle_at: None,
            paused_in_cooldown: false,
            counters: CampaignCounters::default(),
        }
    }

    fn later() -> Timestamp {
        Timestamp::from_second(1_780_003_600).expect("time")
    }

    fn with_cycles(mode: CycleMode) -> Campaign {
        let mut c = campaign(CampaignStatus::Active);
        c.settings.cycles = CyclesConfig { enabled: true, mode, max_iterations: 2, cooldown_minutes: 30, ..CyclesConfig::default() };
        c
    }

    #[test]
    fn an_iteration_ends_in_cooldown_while_passes_remain_and_someone_is_eligible() {
        let mut c = with_cycles(CycleMode::Cooldown);
        c.end_iteration(later(), true);
        assert_eq!((c.status, c.next_cycle_at), (CampaignStatus::Cooldown, later().checked_add(jiff::SignedDuration::from_mins(30)).ok()));
        assert!(!c.begin_due_iteration(later()), "not before next_cycle_at");
        let due = c.next_cycle_at.expect("set");
        assert!(c.begin_due_iteration(due));
        assert_eq!((c.status, c.current_iteration, c.last_iteration_at, c.next_cycle_at), (CampaignStatus::Active, 2, Some(due), None));
        // The last pass, or nobody eligible, or no cycles at all: finished.
        c.end_iteration(due, true);
        assert_eq!((c.status, c.ended_at), (CampaignStatus::Finished, Some(due)));
        let mut nobody = with_cycles(CycleMode::Cooldown);
        nobody.end_iteration(later(), false);
        assert_eq!(nobody.status, CampaignStatus::Finished);
        let mut single = campaign(CampaignStatus::Active);
        single.end_iteration(later(), true);
        assert_eq!(single.status, CampaignStatus::Finished);
    }

    #[test]
    fn scheduled_cycles_start_at_the_next_opening_between_their_dates() {
        let mut c = with_cycles(CycleMode::Scheduled);
        c.settings.timezone = TimeZone::parse("UTC").expect("a zone");
        let closed = DayWindow {
            start: TimeOfDay::parse("t", "09:00").expect("t"),
            stop: TimeOfDay::parse("t", "10:00").expect("t"),
            active: false,
        };
        let open = DayWindow { active: true, ..closed };
        // 1_780_003_600 is a Thursday (2026-05-28 21:26 UTC); only Saturdays 09:00–10:00 open.
        c.settings.cycles.schedule =
            Some(WeekSchedule { mon: closed, tue: closed, wed: closed, thu: closed, fri: closed, sat: open, sun: closed });
        c.end_iteration(later(), true);
        assert_eq!(c.status, CampaignStatus::Cooldown);
        assert_eq!(c.next_cycle_at, "2026-05-30T09:00:00Z".parse().ok());
        // No opening left before the end date: finished.
        let mut ended = with_cycles(CycleMode::Scheduled);
        ended.settings.timezone = TimeZone::parse("UTC").expect("a zone");
        ended.settings.cycles.schedule = c.settings.cycles.schedule.clone();
        ended.settings.cycles.schedule_end_date = "2026-05-29".parse().ok();
        ended.end_iteration(later(), true);
        assert_eq!(ended.status, CampaignStatus::Finished);
    }

    // The API cannot reach `cooldown` or `finished` without the engine; these pin the rules now.
    #[test]
    fn cooldown_offers_activate_pause_archive_and_activate_starts_the_next_iteration() {
        let mut c = campaign(CampaignStatus::Cooldown);
        assert_eq!(c.valid_actions(), vec![LifecycleAction::Activate, LifecycleAction::Pause, LifecycleAction::Archive]);
        assert!(matches!(c.apply_action(LifecycleAction::Resume, later()), Err(LifecycleError::InvalidTransition { .. })));
        c.apply_action(LifecycleAction::Activate, later()).expect("activate from cooldown");
        assert_eq!((c.status, c.current_iteration, c.last_iteration_at), (CampaignStatus::Active, 2, Some(later())));
    }

    #[test]
    fn every_action_is_valid_on_an_active_campaign_and_activate_changes_nothing() {
        let mut c = campaign(CampaignStatus::Active);
        let all = vec![LifecycleAction::Activate, LifecycleAction::Pause, LifecycleAction::Resume, LifecycleAction::Archive];
        assert_eq!(c.valid_actions(), all);
        let (iteration, started, last) = (c.current_iteration, c.started_at, c.last_iteration_at);
        c.apply_action(LifecycleAction::Activate, later()).expect("a no-op");
        assert_eq!((c.status, c.current_iteration, c.started_at, c.last_iteration_at), (CampaignStatus::Active, iteration, started, last));
        // Not when inactive: that is what resume is for.
        let mut paused = campaign(CampaignStatus::Inactive);
        assert!(matches!(paused.apply_action(LifecycleAction::Activate, later()), Err(LifecycleError::InvalidTransition { .. })));
    }

    #[test]
    fn resuming_a_campaign_paused_in_cooldown_starts_the_next_iteration() {
        let mut c = campaign(CampaignStatus::Cooldown);
        c.apply_action(LifecycleAction::Pause, later()).expect("pause");
        assert!(c.paused_in_cooldown);
        c.apply_action(LifecycleAction::Resume, later()).expect("resume");
        assert_eq!((c.status, c.current_iteration, c.paused_in_cooldown), (CampaignStatus::Active, 2, false));
    }

    #[test]
    fn the_changing_actions_are_the_valid_ones_without_their_no_ops() {
        use CampaignStatus::*;
        use LifecycleAction::*;
        let cases = [
            (Pending, vec![Activate, Archive]),
            (Ready, vec![Activate, Archive]),
            (Active, vec![Pause, Archive]),
            (Cooldown, vec![Activate, Pause, Archive]),
            (Inactive, vec![Resume, Archive]),
            (Finished, vec![Archive]),
        ];
        for (status, expected) in cases {
            assert_eq!(campaign(status).changing_actions(), expected, "{status:?}");
        }
        let mut archived = campaign(Active);
        archived.archived = true;
        assert_eq!(archived.valid_actions(), vec![Archive], "archiving again is valid");
        assert!(archived.changing_actions().is_empty(), "but changes nothing");
    }

    #[test]
    fn a_finished_campaign_only_archives_and_refuses_updates() {
        let mut c = campaign(CampaignStatus::Finished);
        assert_eq!(c.valid_actions(), vec![LifecycleAction::Archive]);
        let err = c.apply_action(LifecycleAction::Activate, later()).expect_err("refused");
        assert_eq!(
            err,
            LifecycleError::InvalidTransition { current: CampaignStatus::Finished, valid_targets: vec![LifecycleAction::Archive] }
        );
        let input = CampaignInput { name: Field::Value("new".into()), ..CampaignInput::default() };
        assert_eq!(c.apply_update(&input), Err(CampaignError::Finished));
        assert_eq!(c.settings.name, "c", "a refused update changes nothing");
        c.apply_action(LifecycleAction::Archive, later()).expect("archive");
        assert!(c.archived && c.status == CampaignStatus::Finished);
    }
}
