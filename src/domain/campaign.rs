//! Campaigns: their settings, the rules that validate create and update requests (contract §2),
//! and the lifecycle state machine (§2.8, §2.9). Pure: no I/O, time comes in as an argument.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::analytics::CampaignCounters;
use super::schedule::{WeekSchedule, WeekScheduleInput};
use super::timezone::TimeZone;
use super::validation::{self, Field, Violation, Violations, int_in_range};
use super::window::DateRange;

pub const DEFAULT_TIMEZONE: &str = "America/Mexico_City";
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
pub const MAX_FIRST_MESSAGE_CHARS: usize = 10_000;
pub const MAX_TEMPLATE_CHARS: usize = 512;
pub const MAX_TAG_CHARS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    PhoneCall,
    Whatsapp,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::PhoneCall => "phone_call",
            Channel::Whatsapp => "whatsapp",
        }
    }

    pub fn parse(text: &str) -> Option<Channel> {
        match text {
            "phone_call" => Some(Channel::PhoneCall),
            "whatsapp" => Some(Channel::Whatsapp),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Pending,
    Ready,
    Active,
    Inactive,
    Cooldown,
    Finished,
}

impl CampaignStatus {
    pub const ALL: [CampaignStatus; 6] = [
        CampaignStatus::Pending,
        CampaignStatus::Ready,
        CampaignStatus::Active,
        CampaignStatus::Inactive,
        CampaignStatus::Cooldown,
        CampaignStatus::Finished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Pending => "pending",
            CampaignStatus::Ready => "ready",
            CampaignStatus::Active => "active",
            CampaignStatus::Inactive => "inactive",
            CampaignStatus::Cooldown => "cooldown",
            CampaignStatus::Finished => "finished",
        }
    }

    pub fn parse(text: &str) -> Option<CampaignStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The statuses the engine runs a campaign in: dispatching, or waiting for its next cycle.
    pub const RUNNING: [CampaignStatus; 2] = [CampaignStatus::Active, CampaignStatus::Cooldown];

    /// Whether contacts may still be added (§3.1): a finished campaign takes no more.
    pub fn accepts_contacts(self) -> bool {
        self != CampaignStatus::Finished
    }

    /// The status once contacts were added (§2.9): a `pending` campaign becomes `ready`.
    pub fn with_contacts(self) -> CampaignStatus {
        match self {
            CampaignStatus::Pending => CampaignStatus::Ready,
            other => other,
        }
    }
}

/// Contact statuses (§3.5); campaigns name them in `cycles.filter_statuses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContactStatus {
    Queue,
    Sending,
    Sent,
    Delivered,
    Read,
    Accepted,
    Rejected,
    Voicemail,
    Answered,
    Failed,
    Retrying,
    Converted,
}

impl ContactStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ContactStatus::Queue => "queue",
            ContactStatus::Sending => "sending",
            ContactStatus::Sent => "sent",
            ContactStatus::Delivered => "delivered",
            ContactStatus::Read => "read",
            ContactStatus::Accepted => "accepted",
            ContactStatus::Rejected => "rejected",
            ContactStatus::Voicemail => "voicemail",
            ContactStatus::Answered => "answered",
            ContactStatus::Failed => "failed",
            ContactStatus::Retrying => "retrying",
            ContactStatus::Converted => "converted",
        }
    }

    pub const ALL: [ContactStatus; 12] = [
        ContactStatus::Queue,
        ContactStatus::Sending,
        ContactStatus::Sent,
        ContactStatus::Delivered,
        ContactStatus::Read,
        ContactStatus::Accepted,
        ContactStatus::Rejected,
        ContactStatus::Voicemail,
        ContactStatus::Answered,
        ContactStatus::Failed,
        ContactStatus::Retrying,
        ContactStatus::Converted,
    ];

    pub fn parse(text: &str) -> Option<ContactStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The contacts an iteration has yet to finish: waiting, in flight, or waiting to retry. The
    /// iteration ends when none is left (§5.5).
    pub const UNFINISHED: [ContactStatus; 3] = [ContactStatus::Queue, ContactStatus::Sending, ContactStatus::Retrying];

    /// Contacts a new iteration never takes back (§5.5): converted, or still in flight.
    pub const KEPT_BY_NEW_ITERATIONS: [ContactStatus; 2] = [ContactStatus::Converted, ContactStatus::Sending];

    /// Only contacts not yet in flight nor done may be deleted (§3.4).
    pub fn is_deletable(self) -> bool {
        matches!(self, ContactStatus::Queue | ContactStatus::Failed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CycleMode {
    Cooldown,
    Scheduled,
}

/// Lifecycle actions, in the order the contract lists them in `valid_targets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleAction {
    Activate,
    Pause,
    Resume,
    Archive,
}

impl LifecycleAction {
    pub const ALL: [LifecycleAction; 4] =
        [LifecycleAction::Activate, LifecycleAction::Pause, LifecycleAction::Resume, LifecycleAction::Archive];

    pub fn parse(text: &str) -> Option<LifecycleAction> {
        Self::ALL.into_iter().find(|a| a.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleAction::Activate => "activate",
            LifecycleAction::Pause => "pause",
            LifecycleAction::Resume => "resume",
            LifecycleAction::Archive => "archive",
        }
    }
}

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

    fn defaults(channel: Channel) -> Self {
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

/// The body of create and update requests. On create `name`, `agent_id`, `integration_id` and
/// `integration_type` are required; on update every field is optional.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignInput {
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 255)]
    pub name: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 10000)]
    pub description: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub agent_id: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub integration_id: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<Channel>)]
    pub integration_type: Field<Channel>,
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "America/Mexico_City")]
    pub timezone: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 5)]
    pub retries: Field<i64>,
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 10000)]
    pub message_limit: Field<i64>,
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub concurrency_limit: Field<i64>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub first_message: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub template: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub template_alt: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<WeekScheduleInput>)]
    pub scheduling: Field<WeekScheduleInput>,
    #[serde(default)]
    #[schema(value_type = Option<CyclesInput>)]
    pub cycles: Field<CyclesInput>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CyclesInput {
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub enabled: Field<bool>,
    #[serde(default)]
    #[schema(value_type = Option<CycleMode>)]
    pub mode: Field<CycleMode>,
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 2, maximum = 12)]
    pub max_iterations: Field<i64>,
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1440)]
    pub cooldown_minutes: Field<i64>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<ContactStatus>>)]
    pub filter_statuses: Field<Vec<ContactStatus>>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub filter_tags: Field<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Option<WeekScheduleInput>)]
    pub schedule: Field<WeekScheduleInput>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Date)]
    pub schedule_start_date: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Date)]
    pub schedule_end_date: Field<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Create,
    Update,
}

/// Validates a create request (§2.1).
pub fn parse_new_campaign(input: &CampaignInput) -> Result<NewCampaign, CampaignError> {
    let mut violations = Violations::default();
    let agent_id = violations.check(validation::required("agent_id", &input.agent_id).and_then(|id| parse_uuid("agent_id", id)));
    let integration_id = violations
        .check(validation::required("integration_id", &input.integration_id).and_then(|id| validation::text("integration_id", id, 1, 64)));
    let channel = violations.check(validation::required("integration_type", &input.integration_type).copied());
    if !input.name.is_present() {
        violations.push("name", "name is required");
    }
    // Without a channel the channel-only rules cannot be judged; report what we have.
    let Some(channel) = channel else {
        return Err(CampaignError::Invalid(collect_all(violations, input)));
    };
    let mut settings = CampaignSettings::defaults(channel);
    let outcome = apply_input(&mut settings, channel, input, Mode::Create, &mut violations);
    outcome?;
    violations.into_result().map_err(CampaignError::Invalid)?;
    Ok(NewCampaign { agent_id: agent_id.unwrap_or_default(), integration_id: integration_id.unwrap_or_default(), channel, settings })
}

/// With no usable `integration_type`, still report every other broken rule.
fn collect_all(mut violations: Violations, input: &CampaignInput) -> Vec<Violation> {
    let mut scratch = CampaignSettings::defaults(Channel::PhoneCall);
    let mut channel_free = input.clone();
    for field in [&mut channel_free.first_message, &mut channel_free.template, &mut channel_free.template_alt] {
        *field = Field::Absent;
    }
    channel_free.concurrency_limit = Field::Absent;
    let _ = apply_input(&mut scratch, Channel::PhoneCall, &channel_free, Mode::Create, &mut violations);
    violations.into_result().err().unwrap_or_default()
}

fn parse_uuid(field: &str, text: &str) -> Result<Uuid, Violation> {
    Uuid::parse_str(text).map_err(|_| Violation::new(field, format!("{field} must be a UUID, got {text:?}")))
}

impl Campaign {
    /// Whether a change made while the campaign was at `iteration_before` started a later
    /// iteration (activating or resuming out of a cooldown): its contacts must be queued again.
    pub fn began_iteration_since(&self, iteration_before: i64) -> bool {
        iteration_before >= 1 && self.current_iteration > iteration_before
    }

    /// Applies an update request (§2.7); on error the campaign is left unchanged.
    pub fn apply_update(&mut self, input: &CampaignInput) -> Result<(), CampaignError> {
        if self.status == CampaignStatus::Finished {
            return Err(CampaignError::Finished);
        }
        if let Some(field) = self.changed_immutable_field(input) {
            return Err(CampaignError::ImmutableField(field.to_owned()));
        }
        let mut settings = self.settings.clone();
        let mut violations = Violations::default();
        apply_input(&mut settings, self.integration.channel, input, Mode::Update, &mut violations)?;
        violations.into_result().map_err(CampaignError::Invalid)?;
        self.settings = settings;
        Ok(())
    }

    fn changed_immutable_field(&self, input: &CampaignInput) -> Option<&'static str> {
        let agent_differs = match &input.agent_id {
            Field::Absent => false,
            Field::Value(id) => Uuid::parse_str(id).ok() != Some(self.agent.id),
            Field::Null => true,
        };
        if agent_differs {
            return Some("agent_id");
        }
        if differs(&input.integration_id, &self.integration.id) {
            return Some("integration_id");
        }
        if differs(&input.integration_type, &self.integration.channel) {
            return Some("integration_type");
        }
        if let Field::Value(cycles) = &input.cycles {
            if differs(&cycles.enabled, &self.settings.cycles.enabled) {
                return Some("cycles.enabled");
            }
            if differs(&cycles.mode, &self.settings.cycles.mode) {
                return Some("cycles.mode");
            }
        }
        None
    }

    /// Every action that would succeed now, no-ops included, in the contract's order.
    pub fn valid_actions(&self) -> Vec<LifecycleAction> {
        LifecycleAction::ALL.into_iter().filter(|a| self.transition(*a).is_some()).collect()
    }

    /// The status an action leads to, or `None` when it is not allowed now.
    fn transition(&self, action: LifecycleAction) -> Option<CampaignStatus> {
        use CampaignStatus::*;
        if self.archived {
            return (action == LifecycleAction::Archive).then_some(self.status);
        }
        match (action, self.status) {
            (LifecycleAction::Activate, Pending | Ready | Cooldown) => Some(Active),
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

fn differs<T: PartialEq>(sent: &Field<T>, current: &T) -> bool {
    match sent {
        Field::Absent => false,
        Field::Null => true,
        Field::Value(v) => v != current,
    }
}

/// Applies every settable field of `input` onto `settings`, recording broken rules in
/// `violations`. Errors with their own key (not `INVALID_REQUEST`) are returned at once.
fn apply_input(
    settings: &mut CampaignSettings,
    channel: Channel,
    input: &CampaignInput,
    mode: Mode,
    violations: &mut Violations,
) -> Result<(), CampaignError> {
    let not_null = |field: &str, violations: &mut Violations| violations.push(field, format!("{field} must not be null"));

    match &input.name {
        Field::Value(name) => {
            if let Some(name) = violations.check(validation::text("name", name, 1, 255)) {
                settings.name = name;
            }
        }
        Field::Null => not_null("name", violations),
        Field::Absent => {}
    }
    match &input.description {
        Field::Value(text) => settings.description = violations.check(validation::max_chars("description", text, MAX_DESCRIPTION_CHARS)),
        Field::Null => settings.description = None,
        Field::Absent => {}
    }
    match &input.timezone {
        Field::Value(name) => {
            if let Some(tz) = violations.check(parse_timezone(name)) {
                settings.timezone = tz;
            }
        }
        Field::Null if mode == Mode::Update => not_null("timezone", violations),
        _ => {}
    }
    set_int(&mut settings.retries, "retries", &input.retries, 0, 5, mode, violations);
    set_int(&mut settings.message_limit, "message_limit", &input.message_limit, 1, 10_000, mode, violations);

    let wrong_channel = |field: &str, violations: &mut Violations| {
        let other = match channel {
            Channel::PhoneCall => "whatsapp",
            Channel::Whatsapp => "phone_call",
        };
        violations.push(field, format!("{field} is only for {other} campaigns, this one is {}", channel.as_str()));
    };
    match channel {
        Channel::PhoneCall => {
            for (field, value) in [("template", &input.template), ("template_alt", &input.template_alt)] {
                if value.is_present() {
                    wrong_channel(field, violations);
                }
            }
            if let Some(limit) = settings.concurrency_limit.as_mut() {
                set_int(limit, "concurrency_limit", &input.concurrency_limit, 1, 1000, mode, violations);
            }
            set_text(&mut settings.first_message, "first_message", &input.first_message, 0, MAX_FIRST_MESSAGE_CHARS, violations);
        }
        Channel::Whatsapp => {
            for (field, present) in
                [("first_message", input.first_message.is_present()), ("concurrency_limit", input.concurrency_limit.is_present())]
            {
                if present {
                    wrong_channel(field, violations);
                }
            }
            set_text(&mut settings.template, "template", &input.template, 1, MAX_TEMPLATE_CHARS, violations);
            set_text(&mut settings.template_alt, "template_alt", &input.template_alt, 1, MAX_TEMPLATE_CHARS, violations);
        }
    }

    match &input.scheduling {
        Field::Value(week) => match WeekSchedule::parse("scheduling", week) {
            Ok(week) => settings.scheduling = week,
            Err(list) => list.into_iter().for_each(|v| violations.push(v.field, v.message)),
        },
        Field::Null if mode == Mode::Update => not_null("scheduling", violations),
        _ => {}
    }

    match (&input.cycles, mode) {
        (Field::Value(cycles), Mode::Create) => create_cycles(&mut settings.cycles, channel, cycles, violations),
        (Field::Value(cycles), Mode::Update) => update_cycles(&mut settings.cycles, cycles, violations),
        (Field::Null, Mode::Update) => {
            not_null("cycles", violations);
            Ok(())
        }
        _ => Ok(()),
    }
}

fn set_int(target: &mut i64, field: &str, value: &Field<i64>, min: i64, max: i64, mode: Mode, violations: &mut Violations) {
    match value {
        Field::Value(v) => {
            if let Some(v) = violations.check(int_in_range(field, *v, min, max)) {
                *target = v;
            }
        }
        Field::Null if mode == Mode::Update => violations.push(field, format!("{field} must not be null")),
        _ => {}
    }
}

fn set_text(target: &mut Option<String>, field: &str, value: &Field<String>, min: usize, max: usize, violations: &mut Violations) {
    match value {
        Field::Value(text) if min > 0 && text.trim().is_empty() => violations.push(field, format!("{field} must not be empty")),
        Field::Value(text) => *target = violations.check(validation::max_chars(field, text, max)),
        Field::Null => *target = None,
        Field::Absent => {}
    }
}

fn parse_timezone(name: &str) -> Result<TimeZone, Violation> {
    TimeZone::parse(name)
        .ok_or_else(|| Violation::new("timezone", format!("timezone must be an IANA zone name such as America/Mexico_City, got {name:?}")))
}

fn create_cycles(
    cycles: &mut CyclesConfig,
    channel: Channel,
    input: &CyclesInput,
    violations: &mut Violations,
) -> Result<(), CampaignError> {
    let enabled = matches!(input.enabled, Field::Value(true));
    if !enabled {
        // A disabled block is accepted and ignored, on either channel.
        return Ok(());
    }
    if channel == Channel::Whatsapp {
        violations.push("cycles.enabled", "cycles are only for phone_call campaigns");
        return Ok(());
    }
    cycles.enabled = true;
    if let Field::Value(mode) = input.mode {
        cycles.mode = mode;
    }
    merge_cycle_fields(cycles, input, violations)?;
    // A schedule that was sent but failed to parse has its own violation already.
    if cycles.mode == CycleMode::Scheduled && cycles.schedule.is_none() && !matches!(input.schedule, Field::Value(_)) {
        violations.push("cycles.schedule", "cycles.schedule is required when cycles.mode is scheduled");
    }
    Ok(())
}

fn update_cycles(cycles: &mut CyclesConfig, input: &CyclesInput, violations: &mut Violations) -> Result<(), CampaignError> {
    if !cycles.enabled {
        let touched = [
            ("cycles.max_iterations", input.max_iterations.is_present()),
            ("cycles.cooldown_minutes", input.cooldown_minutes.is_present()),
            ("cycles.filter_statuses", input.filter_statuses.is_present()),
            ("cycles.filter_tags", input.filter_tags.is_present()),
            ("cycles.schedule", input.schedule.is_present()),
            ("cycles.schedule_start_date", input.schedule_start_date.is_present()),
            ("cycles.schedule_end_date", input.schedule_end_date.is_present()),
        ];
        if let Some((field, _)) = touched.into_iter().find(|(_, present)| *present) {
            return Err(CampaignError::CyclesNotEnabled(field.to_owned()));
        }
        return Ok(());
    }
    if cycles.mode == CycleMode::Scheduled && matches!(input.schedule, Field::Null) {
        violations.push("cycles.schedule", "cycles.schedule is required when cycles.mode is scheduled");
    }
    merge_cycle_fields(cycles, input, violations)
}

/// Merges the mutable cycle fields; shared by create and update.
fn merge_cycle_fields(cycles: &mut CyclesConfig, input: &CyclesInput, violations: &mut Violations) -> Result<(), CampaignError> {
    if cycles.mode == CycleMode::Cooldown {
        let scheduled_only = [
            ("cycles.schedule", matches!(input.schedule, Field::Value(_))),
            ("cycles.schedule_start_date", matches!(input.schedule_start_date, Field::Value(_))),
            ("cycles.schedule_end_date", matches!(input.schedule_end_date, Field::Value(_))),
        ];
        if let Some((field, _)) = scheduled_only.into_iter().find(|(_, given)| *given) {
            return Err(CampaignError::ScheduledModeOnly(field.to_owned()));
        }
    }
    let null = |field: &str, violations: &mut Violations| violations.push(field, format!("{field} must not be null"));
    for (target, field, value, min, max) in [
        (&mut cycles.max_iterations, "cycles.max_iterations", &input.max_iterations, 2, 12),
        (&mut cycles.cooldown_minutes, "cycles.cooldown_minutes", &input.cooldown_minutes, 0, 1440),
    ] {
        match value {
            Field::Value(v) => {
                if let Some(v) = violations.check(int_in_range(field, *v, min, max)) {
                    *target = v;
                }
            }
            Field::Null => null(field, violations),
            Field::Absent => {}
        }
    }
    match &input.filter_statuses {
        Field::Value(list) => cycles.filter_statuses = dedup(list.clone()),
        Field::Null => cycles.filter_statuses.clear(),
        Field::Absent => {}
    }
    match &input.filter_tags {
        Field::Value(tags) => {
            let mut ok = true;
            for (i, tag) in tags.iter().enumerate() {
                ok &= violations.check(validation::text(&format!("cycles.filter_tags[{i}]"), tag, 1, MAX_TAG_CHARS)).is_some();
            }
            if ok {
                cycles.filter_tags = dedup(tags.iter().map(|t| t.trim().to_owned()).collect());
            }
        }
        Field::Null => cycles.filter_tags.clear(),
        Field::Absent => {}
    }
    if let Field::Value(week) = &input.schedule {
        match WeekSchedule::parse("cycles.schedule", week) {
            Ok(week) => cycles.schedule = Some(week),
            Err(list) => list.into_iter().for_each(|v| violations.push(v.field, v.message)),
        }
    }
    for (target, field, value) in [
        (&mut cycles.schedule_start_date, "cycles.schedule_start_date", &input.schedule_start_date),
        (&mut cycles.schedule_end_date, "cycles.schedule_end_date", &input.schedule_end_date),
    ] {
        match value {
            Field::Value(text) => {
                if let Some(date) = violations.check(parse_date(field, text)) {
                    *target = Some(date);
                }
            }
            Field::Null => *target = None,
            Field::Absent => {}
        }
    }
    if let (Some(start), Some(end)) = (cycles.schedule_start_date, cycles.schedule_end_date)
        && start > end
    {
        violations.push(
            "cycles.schedule_end_date",
            format!("cycles.schedule_end_date ({end}) must not be before cycles.schedule_start_date ({start})"),
        );
    }
    Ok(())
}

fn dedup<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn parse_date(field: &str, text: &str) -> Result<jiff::civil::Date, Violation> {
    let invalid = || Violation::new(field, format!("{field} must be a date YYYY-MM-DD, got {text:?}"));
    if text.len() != 10 {
        return Err(invalid());
    }
    text.parse::<jiff::civil::Date>().map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn resuming_a_campaign_paused_in_cooldown_starts_the_next_iteration() {
        let mut c = campaign(CampaignStatus::Cooldown);
        c.apply_action(LifecycleAction::Pause, later()).expect("pause");
        assert!(c.paused_in_cooldown);
        c.apply_action(LifecycleAction::Resume, later()).expect("resume");
        assert_eq!((c.status, c.current_iteration, c.paused_in_cooldown), (CampaignStatus::Active, 2, false));
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
