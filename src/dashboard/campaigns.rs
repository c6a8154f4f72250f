//! Campaign pages: the list, a campaign's page with its live progress, analytics drawn as
//! pictures, contacts and calls or messages, and the lifecycle buttons.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use super::charts::{self, Bar};
use super::session::Session;
use super::{Chrome, DashError, PAGE_SIZE, page_count, page_number, render};
use crate::api::AppState;
use crate::api::campaigns::{decode_cursor, encode_cursor};
use crate::api::error::ApiError;
use crate::domain::attempt::Speaker;
use crate::domain::campaign::{Campaign, CampaignStatus, Channel, ContactStatus, CycleMode, LifecycleAction};
use crate::domain::contact::ContactSearch;
use crate::domain::plan::{self, Plan};
use crate::domain::timezone::TimeZone;
use crate::store::{AttemptQuery, CampaignFilter, ContactPage, Modified, PageDirection, Refusal};

/// How far back the attempts-per-hour chart looks.
const CHART_DAYS: i64 = 3;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/campaigns", get(list))
        .route("/campaigns/{id}", get(page))
        .route("/campaigns/{id}/progress", get(progress))
        .route("/campaigns/{id}/actions/{action}", post(action))
}

/// A time in the campaign's timezone, as pages show it (the zone is named beside it).
pub fn local_time(at: Timestamp, zone: &TimeZone) -> String {
    at.to_zoned(zone.zone().clone()).strftime("%Y-%m-%d %H:%M").to_string()
}

pub(super) fn parse_id(raw: &str) -> Result<i64, DashError> {
    raw.parse().map_err(|_| DashError::NotFound("campaign"))
}

async fn load(app: &AppState, session: &Session, id: &str) -> Result<Campaign, DashError> {
    app.store.get_campaign(session.org_id, parse_id(id)?).await?.ok_or(DashError::NotFound("campaign"))
}

// --- The list -----------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct ListQuery {
    status: Option<String>,
    channel: Option<String>,
    archived: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
}

struct ListRow {
    id: i64,
    name: String,
    channel: &'static str,
    status: &'static str,
    archived: bool,
    processed: i64,
    contacts: i64,
    created: String,
}

#[derive(Template)]
#[template(path = "campaigns.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<ListRow>,
    total: i64,
    statuses: [CampaignStatus; 6],
    channels: [Channel; 2],
    status: String,
    channel: String,
    archived: bool,
    q: String,
    next: Option<String>,
    previous: Option<String>,
}

impl ListPage {
    /// This list's filters with another cursor, as a query string.
    fn link(&self, cursor: &str) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [("status", &self.status), ("channel", &self.channel), ("q", &self.q)] {
            if !value.is_empty() {
                query.append_pair(name, value);
            }
        }
        if self.archived {
            query.append_pair("archived", "on");
        }
        query.append_pair("cursor", cursor);
        format!("/campaigns?{}", query.finish())
    }
}

async fn list(State(app): State<AppState>, session: Session, Query(query): Query<ListQuery>) -> Result<Response, DashError> {
    let nonempty = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let status = nonempty(&query.status);
    let channel = nonempty(&query.channel);
    let q = nonempty(&query.q);
    let filter = CampaignFilter {
        status: status.as_deref().and_then(CampaignStatus::parse),
        channel: channel.as_deref().and_then(Channel::parse),
        include_archived: query.archived.is_some(),
        name_contains: q.clone(),
        ..CampaignFilter::default()
    };
    let cursor = match nonempty(&query.cursor) {
        Some(raw) => Some(decode_cursor(&raw).map_err(DashError::from)?),
        None => None,
    };
    let page = app.store.list_campaigns(session.org_id, &filter, cursor, PAGE_SIZE).await?;
    let key = |c: &Campaign| (c.created_at.as_second(), c.id);
    let next = page.campaigns.last().filter(|_| page.has_next).map(|c| encode_cursor(PageDirection::After, key(c)));
    let previous = page.campaigns.first().filter(|_| page.has_previous).map(|c| encode_cursor(PageDirection::Before, key(c)));
    let rows = page
        .campaigns
        .iter()
        .map(|c| ListRow {
            id: c.id,
            name: c.settings.name.clone(),
            channel: channel_label(c.integration.channel),
            status: c.status.as_str(),
            archived: c.archived,
            processed: c.counters.contacts_processed,
            contacts: c.counters.contacts,
            created: local_time(c.created_at, &c.settings.timezone),
        })
        .collect();
    Ok(render(&ListPage {
        chrome: Chrome::new(&session, "campaigns"),
        rows,
        total: page.total_count,
        statuses: CampaignStatus::ALL,
        channels: Channel::ALL,
        status: status.unwrap_or_default(),
        channel: channel.unwrap_or_default(),
        archived: query.archived.is_some(),
        q: q.unwrap_or_default(),
        next,
        previous,
    }))
}

pub fn channel_label(channel: Channel) -> &'static str {
    match channel {
        Channel::PhoneCall => "Phone call",
        Channel::Whatsapp => "WhatsApp",
    }
}

// --- A campaign's page ----------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct PageQuery {
    contacts_status: Option<String>,
    /// A number's or a name's beginning (see `ContactSearch::parse`).
    contacts_q: Option<String>,
    contacts_page: Option<u32>,
    attempts_page: Option<u32>,
}

/// The part of the page that refreshes itself every 2 s while the campaign can still change.
#[derive(Template)]
#[template(path = "campaign_progress.html")]
struct Progress {
    id: i64,
    live: bool,
    status: &'static str,
    archived: bool,
    processed: i64,
    contacts: i64,
    percent: String,
    stats: Vec<(&'static str, i64)>,
    funnel: String,
    breakdown: String,
    iteration: i64,
    max_iterations: Option<i64>,
    next_cycle_at: Option<String>,
    zone: String,
    actions: Vec<(&'static str, &'static str)>,
    csrf: String,
}

impl Progress {
    fn new(campaign: &Campaign, csrf: &str) -> Progress {
        let c = &campaign.counters;
        let (stats, funnel, breakdown) = match campaign.integration.channel {
            Channel::PhoneCall => (
                vec![
                    ("Contacts", c.contacts),
                    ("Processed", c.contacts_processed),
                    ("Calls", c.calls),
                    ("Answered", c.contacts_answered),
                    ("Converted", c.contacts_converted),
                    ("Failed", c.contacts_failed),
                ],
                charts::funnel(
                    "Phone funnel",
                    &[
                        Bar::new("Contacts", c.contacts),
                        Bar::new("Processed", c.contacts_processed),
                        Bar::new("Answered", c.contacts_answered),
                        Bar::new("Converted", c.contacts_converted),
                    ],
                ),
                charts::funnel(
                    "Calls by who answered",
                    &[Bar::new("Human", c.calls_human), Bar::new("Machine", c.calls_machine), Bar::new("Unknown", c.calls_unknown)],
                ),
            ),
            Channel::Whatsapp => (
                vec![
                    ("Contacts", c.contacts),
                    ("Sent", c.sent),
                    ("Delivered", c.delivered),
                    ("Read", c.read),
                    ("Accepted", c.accepted),
                    ("Converted", c.contacts_converted),
                ],
                charts::funnel(
                    "WhatsApp funnel",
                    &[
                        Bar::new("Sent", c.sent),
                        Bar::new("Delivered", c.delivered),
                        Bar::new("Read", c.read),
                        Bar::new("Accepted", c.accepted),
                        Bar::new("Converted", c.contacts_converted),
                    ],
                ),
                charts::funnel(
                    "Replies and failures",
                    &[Bar::new("Accepted", c.accepted), Bar::new("Rejected", c.rejected), Bar::new("Failed", c.failed)],
                ),
            ),
        };
        let cycles = &campaign.settings.cycles;
        let zone = &campaign.settings.timezone;
        Progress {
            id: campaign.id,
            live: !(campaign.archived || campaign.status == CampaignStatus::Finished),
            status: campaign.status.as_str(),
            archived: campaign.archived,
            processed: c.contacts_processed,
            contacts: c.contacts,
            percent: if c.contacts > 0 { format!("{:.0}", c.contacts_processed as f64 * 100.0 / c.contacts as f64) } else { "0".into() },
            stats,
            funnel,
            breakdown,
            iteration: campaign.current_iteration,
            max_iterations: cycles.enabled.then_some(cycles.max_iterations),
            next_cycle_at: campaign.next_cycle_at.map(|at| local_time(at, zone)),
            zone: zone.name().to_owned(),
            actions: campaign.changing_actions().into_iter().map(|a| (a.as_str(), action_label(a))).collect(),
            csrf: csrf.to_owned(),
        }
    }
}

/// The plan as the campaign page lists it: the counts that are not zero, then the times.
fn plan_rows(plan: &Plan, zone: &TimeZone) -> Vec<(&'static str, String)> {
    let b = &plan.blocked;
    let counts = [
        ("Waiting", plan.remaining),
        ("Eligible now", plan.eligible_now),
        ("Do not contact", b.suppressed),
        ("Outside the window", b.window_closed),
        ("Between cycles", b.cycle_cooldown),
        ("Outside their own hours", b.contact_hours),
        ("Waiting to retry", b.retry_wait),
        ("Over the daily limit", b.message_limit),
        ("Over the concurrency limit", b.concurrency),
    ];
    let mut rows: Vec<(&'static str, String)> =
        counts.into_iter().enumerate().filter(|(i, (_, n))| *i < 2 || *n > 0).map(|(_, (label, n))| (label, n.to_string())).collect();
    let when = |at: Option<Timestamp>, none: &str| at.map_or_else(|| none.to_owned(), |at| local_time(at, zone));
    rows.push(("Window opens", when(plan.next_window_opens_at, "never")));
    rows.push(("Estimated finish", when(plan.estimated_finish_at, "not yet known (no attempt timed)")));
    rows
}

fn action_label(action: LifecycleAction) -> &'static str {
    match action {
        LifecycleAction::Activate => "Activate",
        LifecycleAction::Pause => "Pause",
        LifecycleAction::Resume => "Resume",
        LifecycleAction::Archive => "Archive",
    }
}

struct ContactRow {
    contact: String,
    name: String,
    status: &'static str,
    calls: i64,
    last_call: String,
    failed_reason: &'static str,
}

struct AttemptRow {
    created: String,
    contact: String,
    status: &'static str,
    answered_by: &'static str,
    duration: String,
    ended_reason: String,
    recording_url: Option<String>,
    transcript: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "campaign.html")]
struct CampaignPage {
    chrome: Chrome,
    id: i64,
    name: String,
    description: String,
    channel: &'static str,
    is_phone: bool,
    settings: Vec<(&'static str, String)>,
    /// The plan preview (§12.3): eligible now, what holds the others, when the window opens, the estimate.
    plan: Vec<(&'static str, String)>,
    /// The live part, rendered on its own as `/progress` serves it.
    progress: String,
    per_hour: String,
    zone: String,
    contact_statuses: [ContactStatus; 12],
    contacts_status: String,
    contacts_q: String,
    searching: bool,
    contacts: Vec<ContactRow>,
    contacts_total: i64,
    contacts_page: u32,
    contacts_pages: u32,
    attempts: Vec<AttemptRow>,
    attempts_total: i64,
    attempts_page: u32,
    attempts_pages: u32,
    accepts_contacts: bool,
    editable: bool,
}

impl CampaignPage {
    fn contacts_link(&self, page: u32) -> String {
        self.link(page, self.attempts_page, "contacts")
    }

    fn attempts_link(&self, page: u32) -> String {
        self.link(self.contacts_page, page, "attempts")
    }

    /// This page with its filters, at other pages of its two tables.
    fn link(&self, contacts_page: u32, attempts_page: u32, anchor: &str) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if !self.contacts_status.is_empty() {
            query.append_pair("contacts_status", &self.contacts_status);
        }
        query.append_pair("contacts_page", &contacts_page.to_string());
        query.append_pair("attempts_page", &attempts_page.to_string());
        format!("/campaigns/{}?{}#{anchor}", self.id, query.finish())
    }
}

async fn page(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Response, DashError> {
    let campaign = load(&app, &session, &id).await?;
    let zone = campaign.settings.timezone.clone();
    let contacts_status = query.contacts_status.as_deref().and_then(ContactStatus::parse);
    // Pages count from 1 here, from 0 in the store; as deep as the API pages.
    let (contacts_page, attempts_page) = (page_number(query.contacts_page), page_number(query.attempts_page));
    let search = query.contacts_q.as_deref().and_then(ContactSearch::parse);
    let contacts = match &search {
        // A search shows its first page of matches; typing more narrows it.
        Some(search) => {
            let found = app
                .dashboard
                .search_contacts(session.org_id, campaign.id, search, PAGE_SIZE)
                .await?
                .ok_or(DashError::NotFound("campaign"))?;
            ContactPage { total_count: i64::try_from(found.len()).unwrap_or(0), contacts: found, timezone: zone.clone() }
        }
        None => app
            .store
            .list_contacts(session.org_id, campaign.id, contacts_status, PAGE_SIZE, contacts_page - 1)
            .await?
            .ok_or(DashError::NotFound("campaign"))?,
    };
    let attempt_query = AttemptQuery {
        channel: Some(campaign.integration.channel),
        status: None,
        answered_by: None,
        start: None,
        end: None,
        page_size: PAGE_SIZE,
        page_index: attempts_page - 1,
    };
    let attempts = app.store.list_attempts(session.org_id, campaign.id, &attempt_query).await?.ok_or(DashError::NotFound("campaign"))?;
    let now = app.clock.now();
    let since = now.checked_sub(SignedDuration::from_hours(24 * CHART_DAYS)).unwrap_or(now);
    let hours = app.dashboard.attempts_per_hour(session.org_id, campaign.id, since).await?;
    let per_hour = charts::per_hour(&hours, since, now, zone.zone());
    let s = &campaign.settings;
    let mut settings = vec![
        ("Agent", campaign.agent.name.clone()),
        ("Integration", format!("{} ({})", campaign.integration.id, channel_label(campaign.integration.channel))),
        ("Timezone", zone.name().to_owned()),
        ("Retries", s.retries.to_string()),
        ("Daily message limit", s.message_limit.to_string()),
        ("Concurrency limit", s.concurrency_limit.map_or("none".into(), |n| n.to_string())),
        ("Created", format!("{} ({})", local_time(campaign.created_at, &zone), zone.name())),
    ];
    if let Some(at) = campaign.started_at {
        settings.push(("Started", format!("{} ({})", local_time(at, &zone), zone.name())));
    }
    if let Some(at) = campaign.ended_at {
        settings.push(("Ended", format!("{} ({})", local_time(at, &zone), zone.name())));
    }
    if let Some(template) = &s.template {
        settings.push(("Template", template.clone()));
    }
    if let Some(template) = &s.template_alt {
        settings.push(("Template on retries", template.clone()));
    }
    if let Some(message) = &s.first_message {
        settings.push(("First message", message.clone()));
    }
    settings.push(("Schedule", super::schedule_summary(&s.scheduling)));
    if s.cycles.enabled {
        settings.push((
            "Cycles",
            format!(
                "{} iterations at most, {} mode",
                s.cycles.max_iterations,
                match s.cycles.mode {
                    CycleMode::Cooldown => "cooldown",
                    CycleMode::Scheduled => "scheduled",
                }
            ),
        ));
    }
    let contact_rows = contacts
        .contacts
        .into_iter()
        .map(|c| ContactRow {
            contact: c.phone.as_str().to_owned(),
            name: c.name.unwrap_or_default(),
            status: c.status.as_str(),
            calls: c.call_count,
            last_call: c.last_call_at.map(|at| local_time(at, &zone)).unwrap_or_default(),
            failed_reason: c.failed_reason.map_or("", |r| r.as_str()),
        })
        .collect();
    let attempt_rows = attempts
        .attempts
        .into_iter()
        .map(|a| AttemptRow {
            created: local_time(a.created_at, &zone),
            contact: a.contact.as_ref().map(|c| c.phone.as_str().to_owned()).unwrap_or_default(),
            status: a.status.as_str(),
            answered_by: a.answered_by.map_or("", |b| b.as_str()),
            duration: a.duration.map(|d| format!("{d} s")).unwrap_or_default(),
            ended_reason: a.ended_reason.unwrap_or_default(),
            recording_url: a.recording_url.filter(|url| url.starts_with("https://") || url.starts_with("http://")),
            transcript: a
                .transcript
                .unwrap_or_default()
                .into_iter()
                .map(|entry| {
                    let who = match entry.sent_by {
                        Speaker::Assistant => "Agent",
                        Speaker::User => "Contact",
                    };
                    (who.to_owned(), entry.content)
                })
                .collect(),
        })
        .collect();
    let progress = Progress::new(&campaign, &session.csrf).render().map_err(|err| DashError::Internal(err.to_string()))?;
    let now = app.clock.now();
    let plan = match app.store.plan_counts(session.org_id, campaign.id, now).await? {
        Some((campaign, counts)) => plan_rows(&plan::plan(&campaign, &counts, now), &zone),
        None => Vec::new(),
    };
    Ok(render(&CampaignPage {
        chrome: Chrome::new(&session, "campaigns"),
        id: campaign.id,
        name: s.name.clone(),
        description: s.description.clone().unwrap_or_default(),
        channel: channel_label(campaign.integration.channel),
        is_phone: campaign.integration.channel == Channel::PhoneCall,
        settings,
        plan,
        progress,
        per_hour,
        zone: zone.name().to_owned(),
        contact_statuses: ContactStatus::ALL,
        contacts_status: contacts_status.map_or(String::new(), |s| s.as_str().to_owned()),
        contacts_q: query.contacts_q.clone().unwrap_or_default(),
        searching: search.is_some(),
        contacts: contact_rows,
        contacts_total: contacts.total_count,
        contacts_page,
        contacts_pages: page_count(contacts.total_count),
        attempts: attempt_rows,
        attempts_total: attempts.total_count,
        attempts_page,
        attempts_pages: page_count(attempts.total_count),
        accepts_contacts: campaign.status.accepts_contacts() && !campaign.archived,
        editable: campaign.status != CampaignStatus::Finished,
    }))
}

/// `GET /campaigns/{id}/progress`: the live part of the page, polled every 2 s.
async fn progress(State(app): State<AppState>, session: Session, Path(id): Path<String>) -> Result<Response, DashError> {
    let campaign = load(&app, &session, &id).await?;
    Ok(render(&Progress::new(&campaign, &session.csrf)))
}

/// `POST /campaigns/{id}/actions/{action}`: the API's lifecycle action, through the same store call.
async fn action(State(app): State<AppState>, session: Session, Path((id, action)): Path<(String, String)>) -> Result<Response, DashError> {
    let id = parse_id(&id)?;
    let action = LifecycleAction::parse(&action).ok_or_else(|| DashError::Invalid(format!("unknown action {action:?}")))?;
    let now = app.clock.now();
    let change = Box::new(move |campaign: &mut Campaign| campaign.apply_action(action, now).map_err(Refusal::Lifecycle));
    match app.store.modify_campaign(session.org_id, id, now, change, None).await? {
        Modified::Done(_) => Ok(Redirect::to(&format!("/campaigns/{id}")).into_response()),
        Modified::Refused(refusal) => Err(DashError::from(ApiError::from(refusal))),
        Modified::NotFound => Err(DashError::NotFound("campaign")),
    }
}
