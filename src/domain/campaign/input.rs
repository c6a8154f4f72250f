//! Create and update requests (contract §2.1, §2.7): the bodies as sent, and the rules that turn
//! them into settings, every broken rule reported at once.

use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    Campaign, CampaignError, CampaignSettings, CampaignStatus, Channel, ContactStatus, CycleMode, CyclesConfig, MAX_DESCRIPTION_CHARS,
    MAX_FIRST_MESSAGE_CHARS, MAX_TEMPLATE_CHARS, NewCampaign,
};
use crate::domain::contact::MAX_TEXT_CHARS;
use crate::domain::contact_hours::{ContactHours, ContactHoursInput};
use crate::domain::schedule::{WeekSchedule, WeekScheduleInput};
use crate::domain::timezone::TimeZone;
use crate::domain::validation::{self, Field, Violation, Violations, WholeNumber, int_in_range, object_field};

/// The body of create and update requests. On create `name`, `agent_id`, `integration_id` and
/// `integration_type` are required and `null` means the default; on update every field is
/// optional and `null` clears only the nullable ones (the OpenAPI document says which, §0.3).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignInput {
    #[serde(default)]
    #[schema(value_type = String, min_length = 1, max_length = 255, pattern = r"^[^\u0000]*\S[^\u0000]*$")]
    pub name: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 10000)]
    pub description: Field<String>,
    #[serde(default)]
    #[schema(value_type = String, format = Uuid)]
    pub agent_id: Field<String>,
    #[serde(default)]
    #[schema(value_type = String, min_length = 1)]
    pub integration_id: Field<String>,
    #[serde(default)]
    #[schema(value_type = Channel)]
    pub integration_type: Field<Channel>,
    #[serde(default)]
    #[schema(value_type = String, example = "America/Mexico_City")]
    pub timezone: Field<String>,
    #[serde(default)]
    #[schema(value_type = i64, minimum = 0, maximum = 5)]
    pub retries: Field<WholeNumber>,
    #[serde(default)]
    #[schema(value_type = i64, minimum = 1, maximum = 10000)]
    pub message_limit: Field<WholeNumber>,
    #[serde(default)]
    #[schema(value_type = i64, minimum = 1, maximum = 1000)]
    pub concurrency_limit: Field<WholeNumber>,
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 4000)]
    pub first_message: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 512)]
    pub template: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 512)]
    pub template_alt: Field<String>,
    #[serde(default, deserialize_with = "object_field")]
    #[schema(value_type = WeekScheduleInput)]
    pub scheduling: Field<WeekScheduleInput>,
    #[serde(default, deserialize_with = "object_field")]
    #[schema(value_type = CyclesInput)]
    pub cycles: Field<CyclesInput>,
    /// Hours in each contact's own local time (ext, §12.2); `null` turns them off.
    #[serde(default, deserialize_with = "object_field")]
    #[schema(value_type = Option<ContactHoursInput>)]
    pub contact_hours: Field<ContactHoursInput>,
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
    pub max_iterations: Field<WholeNumber>,
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1440)]
    pub cooldown_minutes: Field<WholeNumber>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<ContactStatus>>)]
    pub filter_statuses: Field<Vec<ContactStatus>>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub filter_tags: Field<Vec<String>>,
    #[serde(default, deserialize_with = "object_field")]
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
    match &input.contact_hours {
        Field::Value(hours) => match ContactHours::parse("contact_hours", hours) {
            Ok(hours) => settings.contact_hours = Some(hours),
            Err(list) => list.into_iter().for_each(|v| violations.push(v.field, v.message)),
        },
        Field::Null => settings.contact_hours = None,
        Field::Absent => {}
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

fn set_int(target: &mut i64, field: &str, value: &Field<WholeNumber>, min: i64, max: i64, mode: Mode, violations: &mut Violations) {
    match value {
        Field::Value(WholeNumber(v)) => {
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
            Field::Value(WholeNumber(v)) => {
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
                ok &= violations.check(validation::text(&format!("cycles.filter_tags[{i}]"), tag, 1, MAX_TEXT_CHARS)).is_some();
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
