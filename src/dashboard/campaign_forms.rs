//! The new-campaign and edit forms (contract §11).
//!
//! One rule path: a submitted form becomes the JSON body the API takes (`POST /campaigns`,
//! `PATCH /campaigns/{id}`), read by the API's own parser and checked by the same domain rules
//! and store calls. So the form never judges a value itself: what it shows beside a field is the
//! API's error naming that field (`field`, or each of `details`). Inputs are named by the JSON
//! path they fill (`scheduling.mon.startTime`, `cycles.max_iterations`), which is also how an
//! error finds its input.

use std::collections::HashSet;
use std::sync::LazyLock;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::campaigns::channel_label;
use super::session::Session;
use super::{Chrome, DashError, render};
use crate::api::AppState;
use crate::api::campaigns::{reference_error, update_change};
use crate::api::error::ApiError;
use crate::api::extract::parse_json;
use crate::domain::campaign::{
    Campaign, CampaignInput, CampaignSettings, CampaignStatus, Channel, ContactStatus, CycleMode, CyclesConfig, parse_new_campaign,
};
use crate::domain::schedule::{DAY_KEYS, TimeOfDay, WeekSchedule};
use crate::domain::timezone::TimeZone;
use crate::store::{CreateCampaignOutcome, Modified};

pub fn routes() -> Router<AppState> {
    Router::new().route("/campaigns/new", get(new_form).post(create)).route("/campaigns/{id}/edit", get(edit_form).post(update))
}

const DAY_NAMES: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
/// `<input type=time>` cannot hold `24:00`; a stop time of `00:00` is midnight at the day's end,
/// which is the same window (and makes `00:00`–`00:00` the whole day).
const MIDNIGHT: &str = "00:00";

static TIMEZONES: LazyLock<Vec<String>> = LazyLock::new(TimeZone::names);

// --- The form as submitted ------------------------------------------------------------------

/// A form's fields in order; a name comes once per ticked checkbox of a group.
#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Fields {
    fn set(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((name.to_owned(), value.into()));
    }

    fn text(&self, name: &str) -> &str {
        self.0.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn checked(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    fn set_week(&mut self, key: &str, week: &WeekSchedule) {
        for (day, window) in DAY_KEYS.iter().zip(week.days()) {
            if window.active {
                self.set(&format!("{key}.{day}.active"), "on");
            }
            self.set(&format!("{key}.{day}.startTime"), window.start.to_string());
            let stop = if window.stop == TimeOfDay::MIDNIGHT_END { MIDNIGHT.to_owned() } else { window.stop.to_string() };
            self.set(&format!("{key}.{day}.stopTime"), stop);
        }
    }

    /// A new campaign's form: the API's defaults filled in, so what is shown is what is sent.
    fn defaults() -> Fields {
        let mut fields = Fields::default();
        let defaults = CampaignSettings::defaults(Channel::PhoneCall);
        fields.set("timezone", defaults.timezone.name());
        fields.set("retries", defaults.retries.to_string());
        fields.set("message_limit", defaults.message_limit.to_string());
        fields.set_week("scheduling", &WeekSchedule::default());
        let cycles = CyclesConfig::default();
        fields.set("cycles.mode", "cooldown");
        fields.set("cycles.max_iterations", cycles.max_iterations.to_string());
        fields.set("cycles.cooldown_minutes", cycles.cooldown_minutes.to_string());
        // Times ready for a day to be ticked; an untouched cycle schedule is not sent.
        let mut week = WeekSchedule::default();
        for day in [&mut week.mon, &mut week.tue, &mut week.wed, &mut week.thu, &mut week.fri] {
            day.active = false;
        }
        fields.set_week("cycles.schedule", &week);
        fields
    }

    /// A stored campaign's edit form.
    fn of(campaign: &Campaign) -> Fields {
        let s = &campaign.settings;
        let mut fields = Fields::default();
        fields.set("name", &s.name);
        fields.set("description", s.description.clone().unwrap_or_default());
        fields.set("timezone", s.timezone.name());
        fields.set("retries", s.retries.to_string());
        fields.set("message_limit", s.message_limit.to_string());
        fields.set("concurrency_limit", s.concurrency_limit.map(|n| n.to_string()).unwrap_or_default());
        for (name, value) in [("first_message", &s.first_message), ("template", &s.template), ("template_alt", &s.template_alt)] {
            fields.set(name, value.clone().unwrap_or_default());
        }
        fields.set_week("scheduling", &s.scheduling);
        let c = &s.cycles;
        if c.enabled {
            fields.set("cycles.enabled", "on");
        }
        fields.set("cycles.mode", mode_name(c.mode));
        fields.set("cycles.max_iterations", c.max_iterations.to_string());
        fields.set("cycles.cooldown_minutes", c.cooldown_minutes.to_string());
        for status in &c.filter_statuses {
            fields.set("cycles.filter_statuses", status.as_str());
        }
        fields.set("cycles.filter_tags", c.filter_tags.join(", "));
        if let Some(week) = &c.schedule {
            fields.set_week("cycles.schedule", week);
        }
        fields.set("cycles.schedule_start_date", c.schedule_start_date.map(|d| d.to_string()).unwrap_or_default());
        fields.set("cycles.schedule_end_date", c.schedule_end_date.map(|d| d.to_string()).unwrap_or_default());
        fields
    }
}

fn mode_name(mode: CycleMode) -> &'static str {
    match mode {
        CycleMode::Cooldown => "cooldown",
        CycleMode::Scheduled => "scheduled",
    }
}

// --- The form as the API's JSON body ----------------------------------------------------------

/// Builds the JSON body of one request. An empty input is left out on create (the API's default
/// applies) and sent as `null` on edit (a nullable value is cleared; for a required one the
/// API's own error says so). A number is sent as a JSON number when it reads as one, else as
/// the text typed, so that the API's error names the field.
struct Body {
    json: Map<String, Value>,
    edit: bool,
}

impl Body {
    fn text(&mut self, fields: &Fields, name: &str) {
        self.put(name.rsplit('.').next().unwrap_or(name), fields.text(name), |text| json!(text));
    }

    fn number(&mut self, fields: &Fields, name: &str) {
        self.put(name.rsplit('.').next().unwrap_or(name), fields.text(name), number);
    }

    fn put(&mut self, key: &str, raw: &str, value: impl Fn(&str) -> Value) {
        if !raw.trim().is_empty() {
            self.json.insert(key.to_owned(), value(raw.trim()));
        } else if self.edit {
            self.json.insert(key.to_owned(), Value::Null);
        }
    }
}

fn number(text: &str) -> Value {
    if let Ok(n) = text.parse::<i64>() {
        return json!(n);
    }
    match text.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
        Some(n) => Value::Number(n),
        None => json!(text),
    }
}

/// A week as `scheduling` (and `cycles.schedule`) takes it: all seven days, times as typed.
fn week(fields: &Fields, key: &str) -> Value {
    let mut days = Map::new();
    for day in DAY_KEYS {
        let mut window = Map::new();
        window.insert("active".into(), json!(fields.checked(&format!("{key}.{day}.active"))));
        let start = fields.text(&format!("{key}.{day}.startTime")).trim();
        if !start.is_empty() {
            window.insert("startTime".into(), json!(start));
        }
        let stop = fields.text(&format!("{key}.{day}.stopTime")).trim();
        if !stop.is_empty() {
            window.insert("stopTime".into(), json!(if stop == MIDNIGHT { "24:00" } else { stop }));
        }
        days.insert(day.to_owned(), Value::Object(window));
    }
    Value::Object(days)
}

fn any_day_active(fields: &Fields, key: &str) -> bool {
    DAY_KEYS.iter().any(|day| fields.checked(&format!("{key}.{day}.active")))
}

/// What the form edits: a new campaign (the channel of the chosen integration, when it is one
/// of the organization's) or a stored one.
enum Target<'a> {
    New(Option<Channel>),
    Edit(&'a Campaign),
}

/// The body of `POST /campaigns` or `PATCH /campaigns/{id}` the form stands for. On edit the
/// immutable fields are not sent, nor those the campaign's channel and cycles leave out of the form.
fn request_body(fields: &Fields, target: &Target) -> Value {
    let mut body = Body { json: Map::new(), edit: matches!(target, Target::Edit(_)) };
    body.json.insert("name".into(), json!(fields.text("name")));
    body.text(fields, "description");
    let (phone, whatsapp) = match target {
        Target::New(channel) => {
            body.text(fields, "agent_id");
            body.text(fields, "integration_id");
            if let Some(channel) = channel {
                body.json.insert("integration_type".into(), json!(channel.as_str()));
            }
            (true, true)
        }
        Target::Edit(campaign) => (campaign.integration.channel == Channel::PhoneCall, campaign.integration.channel == Channel::Whatsapp),
    };
    body.text(fields, "timezone");
    body.number(fields, "retries");
    body.number(fields, "message_limit");
    // On create a channel-only field is sent only when filled in: the API refuses it for the
    // other channel even when empty.
    let new = !body.edit;
    if phone {
        for (name, is_number) in [("concurrency_limit", true), ("first_message", false)] {
            if body.edit || !fields.text(name).trim().is_empty() {
                if is_number { body.number(fields, name) } else { body.text(fields, name) }
            }
        }
    }
    if whatsapp {
        for name in ["template", "template_alt"] {
            if body.edit || !fields.text(name).trim().is_empty() {
                body.text(fields, name);
            }
        }
    }
    body.json.insert("scheduling".into(), week(fields, "scheduling"));
    let cycles = match target {
        Target::New(_) if fields.checked("cycles.enabled") => Some(None),
        Target::Edit(campaign) if campaign.settings.cycles.enabled => Some(Some(campaign.settings.cycles.mode)),
        _ => None,
    };
    if let Some(stored_mode) = cycles {
        let mut block = Body { json: Map::new(), edit: body.edit };
        if new {
            block.json.insert("enabled".into(), json!(true));
            block.text(fields, "cycles.mode");
        }
        block.number(fields, "cycles.max_iterations");
        block.number(fields, "cycles.cooldown_minutes");
        block.json.insert("filter_statuses".into(), json!(fields.all("cycles.filter_statuses").collect::<Vec<_>>()));
        let tags: Vec<&str> = fields.text("cycles.filter_tags").split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
        block.json.insert("filter_tags".into(), json!(tags));
        // The schedule's inputs are on the form in scheduled mode (always on create, where the
        // mode is being chosen); an untouched one (no day ticked) is not sent on create.
        let scheduled = stored_mode.is_none_or(|mode| mode == CycleMode::Scheduled);
        if scheduled && (body.edit || any_day_active(fields, "cycles.schedule")) {
            block.json.insert("schedule".into(), week(fields, "cycles.schedule"));
        }
        if scheduled {
            block.text(fields, "cycles.schedule_start_date");
            block.text(fields, "cycles.schedule_end_date");
        }
        body.json.insert("cycles".into(), Value::Object(block.json));
    }
    Value::Object(body.json)
}

/// The form read as the API reads its body: wrong types name their field, as in the API.
fn parse_input(body: &Value) -> Result<CampaignInput, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(ApiError::internal)?;
    parse_json::<CampaignInput>(&bytes)
}

// --- The page -----------------------------------------------------------------------------------

/// One input: its name (the JSON path), value, and what is said beside it.
struct Input {
    name: String,
    id: String,
    value: String,
    checked: bool,
    hint: Option<String>,
    error: Option<String>,
}

impl Input {
    /// The ids of the hint and the error, for `aria-describedby`.
    fn describedby(&self) -> String {
        let mut ids = Vec::new();
        if self.hint.is_some() {
            ids.push(format!("{}-hint", self.id));
        }
        if self.error.is_some() {
            ids.push(format!("{}-error", self.id));
        }
        ids.join(" ")
    }
}

fn input_id(name: &str) -> String {
    format!("f-{}", name.replace(['.', '[', ']'], "-"))
}

struct Choice {
    value: String,
    label: String,
    selected: bool,
    id: String,
}

struct DayView {
    label: &'static str,
    active: Input,
    start: Input,
    stop: Input,
}

struct WeekView {
    group: Input,
    legend: &'static str,
    days: Vec<DayView>,
}

/// An error of the summary at the top, linking to its input when it has one.
struct Problem {
    href: Option<String>,
    message: String,
}

/// Fixed facts of the campaign being edited, shown read-only.
struct Stored {
    id: i64,
    agent: String,
    integration: String,
    cycles: String,
    finished: bool,
}

#[derive(Template)]
#[template(path = "campaign_form.html")]
struct FormPage {
    chrome: Chrome,
    title: String,
    action: String,
    stored: Option<Stored>,
    problems: Vec<Problem>,
    phone: bool,
    whatsapp: bool,
    cycles_editable: bool,
    cycle_schedule: bool,
    name: Input,
    description: Input,
    agent: Input,
    agents: Vec<Choice>,
    integration: Input,
    integrations: Vec<IntegrationChoice>,
    timezone: Input,
    timezones: &'static [String],
    retries: Input,
    message_limit: Input,
    concurrency_limit: Input,
    first_message: Input,
    template: Input,
    template_alt: Input,
    scheduling: WeekView,
    cycles_enabled: Input,
    cycles_mode: Input,
    modes: Vec<Choice>,
    max_iterations: Input,
    cooldown_minutes: Input,
    filter_statuses: Input,
    statuses: Vec<Choice>,
    filter_tags: Input,
    cycles_schedule: WeekView,
    start_date: Input,
    end_date: Input,
}

struct IntegrationChoice {
    value: String,
    label: String,
    selected: bool,
    channel: &'static str,
    agent: String,
}

/// The API's errors, each given to the input it names.
struct Errors {
    list: Vec<(String, String)>,
    /// Every input name and group of this page, for matching `field` paths.
    names: HashSet<String>,
    claimed: Vec<bool>,
}

impl Errors {
    fn new(err: Option<&ApiError>) -> Errors {
        let list = match err {
            None => Vec::new(),
            Some(err) => match &err.body.details {
                Some(details) => details.iter().map(|d| (d.field.clone(), d.message.clone())).collect(),
                None => vec![(err.body.field.clone().unwrap_or_default(), err.body.message.clone())],
            },
        };
        let claimed = vec![false; list.len()];
        Errors { list, names: HashSet::new(), claimed }
    }

    /// The input an error's `field` belongs to: the input of that name, or the nearest group
    /// it is inside of (`cycles.filter_tags[2]` → `cycles.filter_tags`, `scheduling.mon` → the
    /// day's checkbox); `integration_type` is the integration's, from which it follows.
    fn owner(&self, field: &str) -> Option<String> {
        if field == "integration_type" {
            return Some("integration_id".into());
        }
        let mut path = field;
        loop {
            if self.names.contains(path) {
                return Some(path.to_owned());
            }
            if self.names.contains(&format!("{path}.active")) {
                return Some(format!("{path}.active"));
            }
            path = &path[..path.rfind(['.', '['])?];
        }
    }

    fn input(&mut self, fields: &Fields, name: &str, hint: Option<&str>) -> Input {
        self.names.insert(name.to_owned());
        Input {
            name: name.to_owned(),
            id: input_id(name),
            value: fields.text(name).to_owned(),
            checked: fields.checked(name),
            hint: hint.map(str::to_owned),
            error: None,
        }
    }

    fn week(&mut self, fields: &Fields, key: &str, legend: &'static str, hint: &str) -> WeekView {
        let group = self.input(fields, key, Some(hint));
        let days = DAY_KEYS
            .iter()
            .zip(DAY_NAMES)
            .map(|(day, label)| DayView {
                label,
                active: self.input(fields, &format!("{key}.{day}.active"), None),
                start: self.input(fields, &format!("{key}.{day}.startTime"), None),
                stop: self.input(fields, &format!("{key}.{day}.stopTime"), None),
            })
            .collect();
        WeekView { group, legend, days }
    }

    /// Puts each error beside its input; every error also goes in the summary.
    fn place<'a>(&mut self, inputs: impl IntoIterator<Item = &'a mut Input>) {
        let mut inputs: Vec<&mut Input> = inputs.into_iter().collect();
        for (i, (field, message)) in self.list.iter().enumerate() {
            let Some(owner) = self.owner(field) else { continue };
            if let Some(input) = inputs.iter_mut().find(|input| input.name == owner) {
                input.error = Some(match input.error.take() {
                    Some(earlier) => format!("{earlier} {message}"),
                    None => message.clone(),
                });
                self.claimed[i] = true;
            }
        }
    }

    fn problems(&self) -> Vec<Problem> {
        self.list
            .iter()
            .zip(&self.claimed)
            .map(|((field, message), claimed)| Problem {
                href: claimed.then(|| self.owner(field).map(|owner| format!("#{}", input_id(&owner)))).flatten(),
                message: message.clone(),
            })
            .collect()
    }
}

impl WeekView {
    fn inputs(&mut self) -> impl Iterator<Item = &mut Input> {
        std::iter::once(&mut self.group).chain(self.days.iter_mut().flat_map(|d| [&mut d.active, &mut d.start, &mut d.stop]))
    }
}

/// Builds the page from the form's fields and the API's error, if any.
async fn form_page(
    app: &AppState,
    session: &Session,
    fields: &Fields,
    campaign: Option<&Campaign>,
    err: Option<&ApiError>,
) -> Result<FormPage, DashError> {
    let mut errors = Errors::new(err);
    let e = &mut errors;
    let (agents, integrations) = match campaign {
        None => (app.store.list_agents(session.org_id).await?, app.store.list_integrations(session.org_id).await?),
        Some(_) => (Vec::new(), Vec::new()),
    };
    // A new form starts on the first integration and its agent, so that with one of each a
    // campaign needs only its name; a submitted form keeps what was chosen.
    let (chosen_agent, chosen_integration) = if campaign.is_none() && !fields.checked("agent_id") {
        integrations.first().map(|i| (i.agent_id.to_string(), i.id.clone())).unwrap_or_default()
    } else {
        (fields.text("agent_id").to_owned(), fields.text("integration_id").to_owned())
    };
    let (chosen_agent, chosen_integration) = (chosen_agent.as_str(), chosen_integration.as_str());
    let agent_names: std::collections::HashMap<String, String> = agents.iter().map(|a| (a.id.to_string(), a.name.clone())).collect();
    let channel = campaign.map(|c| c.integration.channel);
    let cycles = campaign.map(|c| &c.settings.cycles);
    let selected = |value: &str, chosen: &str| value == chosen;
    let mut page = FormPage {
        chrome: Chrome::new(session, "campaigns"),
        title: campaign.map_or("New campaign".to_owned(), |c| format!("Edit {}", c.settings.name)),
        action: campaign.map_or("/campaigns/new".to_owned(), |c| format!("/campaigns/{}/edit", c.id)),
        stored: campaign.map(|c| Stored {
            id: c.id,
            agent: c.agent.name.clone(),
            integration: format!("{} ({})", c.integration.id, channel_label(c.integration.channel)),
            cycles: match (c.settings.cycles.enabled, c.settings.cycles.mode) {
                (false, _) => "Off (cycles are chosen when a campaign is created)".to_owned(),
                (true, mode) => format!("On, {} mode", mode_name(mode)),
            },
            finished: c.status == CampaignStatus::Finished,
        }),
        problems: Vec::new(),
        phone: channel != Some(Channel::Whatsapp),
        whatsapp: channel != Some(Channel::PhoneCall),
        cycles_editable: cycles.is_none_or(|c| c.enabled),
        cycle_schedule: cycles.is_none_or(|c| c.mode == CycleMode::Scheduled),
        name: e.input(fields, "name", None),
        description: e.input(fields, "description", Some("Optional; for your team, never sent to contacts.")),
        agent: e.input(fields, "agent_id", None),
        agents: agents
            .iter()
            .map(|a| {
                let value = a.id.to_string();
                Choice { selected: selected(&value, chosen_agent), id: String::new(), label: a.name.clone(), value }
            })
            .collect(),
        integration: e.input(fields, "integration_id", Some("The integration must belong to the chosen agent; its channel makes the campaign a phone or a WhatsApp one.")),
        integrations: integrations
            .iter()
            .map(|i| IntegrationChoice {
                selected: selected(&i.id, chosen_integration),
                label: format!(
                    "{} · {} · {} · agent {}",
                    channel_label(i.channel),
                    i.provider.as_str(),
                    i.id,
                    agent_names.get(&i.agent_id.to_string()).map_or("?", String::as_str)
                ),
                channel: i.channel.as_str(),
                agent: i.agent_id.to_string(),
                value: i.id.clone(),
            })
            .collect(),
        timezone: e.input(fields, "timezone", Some("An IANA zone name such as America/Mexico_City; schedules are in this zone.")),
        timezones: &TIMEZONES,
        retries: e.input(fields, "retries", Some("0 to 5 more attempts per contact.")),
        message_limit: e.input(fields, "message_limit", Some("Attempts started per rolling 24 hours, 1 to 10,000.")),
        concurrency_limit: e.input(fields, "concurrency_limit", Some("Calls at once, 1 to 1000 (phone campaigns only; empty: 10).")),
        first_message: e.input(fields, "first_message", Some("What the agent says first (phone campaigns only); {name}-style placeholders are filled from the contact.")),
        template: e.input(fields, "template", Some("The WhatsApp template's name (WhatsApp campaigns only); needed before activating.")),
        template_alt: e.input(fields, "template_alt", Some("Used for retries (WhatsApp campaigns only).")),
        scheduling: e.week(fields, "scheduling", "Calling hours", "Times in the campaign's timezone. A stop time earlier than the start runs past midnight; 00:00 as the stop time is midnight at the end of the day."),
        cycles_enabled: e.input(fields, "cycles.enabled", Some("Several passes over the contact list (phone campaigns only); cannot be changed later.")),
        cycles_mode: e.input(fields, "cycles.mode", Some("Cooldown: the next pass starts a while after the last ended. Scheduled: passes run in their own week schedule. Cannot be changed later.")),
        modes: ["cooldown", "scheduled"]
            .into_iter()
            .map(|mode| Choice { value: mode.to_owned(), label: mode.to_owned(), selected: fields.text("cycles.mode") == mode, id: String::new() })
            .collect(),
        max_iterations: e.input(fields, "cycles.max_iterations", Some("Passes in all, the first included: 2 to 12.")),
        cooldown_minutes: e.input(fields, "cycles.cooldown_minutes", Some("Minutes between passes, 0 to 1440 (cooldown mode).")),
        filter_statuses: e.input(fields, "cycles.filter_statuses", Some("Contacts in these statuses are left out of the next pass.")),
        statuses: ContactStatus::ALL
            .iter()
            .map(|s| Choice {
                value: s.as_str().to_owned(),
                label: s.as_str().to_owned(),
                selected: fields.all("cycles.filter_statuses").any(|v| v == s.as_str()),
                id: input_id(&format!("cycles.filter_statuses.{}", s.as_str())),
            })
            .collect(),
        filter_tags: e.input(fields, "cycles.filter_tags", Some("Contacts with any of these tags are left out of the next pass; separate tags with commas.")),
        cycles_schedule: e.week(fields, "cycles.schedule", "Cycle schedule (scheduled mode)", "When passes may run, in scheduled mode only; leave every day unticked in cooldown mode."),
        start_date: e.input(fields, "cycles.schedule_start_date", Some("Scheduled mode only; optional.")),
        end_date: e.input(fields, "cycles.schedule_end_date", Some("Scheduled mode only; optional, not before the start date.")),
    };
    let p = &mut page;
    errors.place(
        [
            &mut p.name,
            &mut p.description,
            &mut p.agent,
            &mut p.integration,
            &mut p.timezone,
            &mut p.retries,
            &mut p.message_limit,
            &mut p.concurrency_limit,
            &mut p.first_message,
            &mut p.template,
            &mut p.template_alt,
            &mut p.cycles_enabled,
            &mut p.cycles_mode,
            &mut p.max_iterations,
            &mut p.cooldown_minutes,
            &mut p.filter_statuses,
            &mut p.filter_tags,
            &mut p.start_date,
            &mut p.end_date,
        ]
        .into_iter()
        .chain(p.scheduling.inputs())
        .chain(p.cycles_schedule.inputs()),
    );
    page.problems = errors.problems();
    Ok(page)
}

/// The form again with the API's refusal: 400 (409 when the campaign is finished).
async fn refused(
    app: &AppState,
    session: &Session,
    fields: &Fields,
    campaign: Option<&Campaign>,
    err: ApiError,
) -> Result<Response, DashError> {
    if err.status.is_server_error() {
        return Err(err.into());
    }
    let status = if err.status == StatusCode::CONFLICT { StatusCode::CONFLICT } else { StatusCode::BAD_REQUEST };
    let page = form_page(app, session, fields, campaign, Some(&err)).await?;
    let mut response = render(&page);
    *response.status_mut() = status;
    Ok(response)
}

// --- Handlers -----------------------------------------------------------------------------------

async fn new_form(State(app): State<AppState>, session: Session) -> Result<Response, DashError> {
    Ok(render(&form_page(&app, &session, &Fields::defaults(), None, None).await?))
}

/// `POST /campaigns/new`: what `POST /api/v1.0/campaigns` does, then the campaign's page.
async fn create(State(app): State<AppState>, session: Session, Form(pairs): Form<Vec<(String, String)>>) -> Result<Response, DashError> {
    let fields = Fields(pairs);
    let chosen = fields.text("integration_id");
    let channel = app.store.list_integrations(session.org_id).await?.into_iter().find(|i| i.id == chosen).map(|i| i.channel);
    let created = async {
        let input = parse_input(&request_body(&fields, &Target::New(channel)))?;
        let new = parse_new_campaign(&input)?;
        match app.store.create_campaign(session.org_id, new, app.clock.now(), None).await? {
            CreateCampaignOutcome::Created(campaign) => Ok(campaign.id),
            CreateCampaignOutcome::Refused(refused) => Err(reference_error(refused)),
        }
    };
    match created.await {
        Ok(id) => Ok(Redirect::to(&format!("/campaigns/{id}")).into_response()),
        Err(err) => refused(&app, &session, &fields, None, err).await,
    }
}

async fn load(app: &AppState, session: &Session, id: &str) -> Result<Campaign, DashError> {
    let id = id.parse::<i64>().map_err(|_| DashError::NotFound("campaign"))?;
    app.store.get_campaign(session.org_id, id).await?.ok_or(DashError::NotFound("campaign"))
}

async fn edit_form(State(app): State<AppState>, session: Session, Path(id): Path<String>) -> Result<Response, DashError> {
    let campaign = load(&app, &session, &id).await?;
    Ok(render(&form_page(&app, &session, &Fields::of(&campaign), Some(&campaign), None).await?))
}

/// `POST /campaigns/{id}/edit`: what `PATCH /api/v1.0/campaigns/{id}` does, then the campaign's page.
async fn update(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, DashError> {
    let fields = Fields(pairs);
    let campaign = load(&app, &session, &id).await?;
    let input = match parse_input(&request_body(&fields, &Target::Edit(&campaign))) {
        Ok(input) => input,
        Err(err) => return refused(&app, &session, &fields, Some(&campaign), err).await,
    };
    match app.store.modify_campaign(session.org_id, campaign.id, app.clock.now(), update_change(input), None).await? {
        Modified::Done(campaign) => Ok(Redirect::to(&format!("/campaigns/{}", campaign.id)).into_response()),
        Modified::Refused(refusal) => refused(&app, &session, &fields, Some(&campaign), ApiError::from(refusal)).await,
        Modified::NotFound => Err(DashError::NotFound("campaign")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        Fields(pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn numbers_go_as_numbers_when_they_read_as_one() {
        assert_eq!(number("5"), json!(5));
        assert_eq!(number("2.5"), json!(2.5));
        assert_eq!(number("five"), json!("five"));
    }

    #[test]
    fn empty_inputs_are_left_out_on_create() {
        let body = request_body(&fields(&[("name", "Q2"), ("retries", ""), ("description", " ")]), &Target::New(Some(Channel::PhoneCall)));
        assert_eq!(body["name"], json!("Q2"));
        assert_eq!(body["integration_type"], json!("phone_call"));
        assert!(body.get("retries").is_none() && body.get("description").is_none() && body.get("cycles").is_none());
        assert_eq!(body["scheduling"]["mon"], json!({ "active": false }));
    }

    #[test]
    fn a_midnight_stop_is_the_end_of_the_day() {
        let body = week(&fields(&[("s.sun.active", "on"), ("s.sun.startTime", "00:00"), ("s.sun.stopTime", "00:00")]), "s");
        assert_eq!(body["sun"], json!({ "active": true, "startTime": "00:00", "stopTime": "24:00" }));
    }

    #[test]
    fn errors_find_the_input_they_name() {
        let mut errors = Errors::new(None);
        let form = Fields::defaults();
        errors.input(&form, "cycles.filter_tags", None);
        errors.week(&form, "scheduling", "Hours", "");
        assert_eq!(errors.owner("cycles.filter_tags[2]").as_deref(), Some("cycles.filter_tags"));
        assert_eq!(errors.owner("scheduling.mon.startTime").as_deref(), Some("scheduling.mon.startTime"));
        assert_eq!(errors.owner("scheduling.tue").as_deref(), Some("scheduling.tue.active"));
        assert_eq!(errors.owner("scheduling").as_deref(), Some("scheduling"));
        assert_eq!(errors.owner("integration_type").as_deref(), Some("integration_id"));
        assert_eq!(errors.owner("nothing.here"), None);
    }
}
