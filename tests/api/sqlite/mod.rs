//! The HTTP tests on SQLite: the same files as every backend, with `helpers::TestApp` on this one.

mod helpers {
    pub use crate::helpers::*;

    pub type TestApp = crate::helpers::TestAppOn<crate::helpers::OnSqlite>;
}

#[path = "../agents_integrations.rs"]
mod agents_integrations;
#[path = "../auth.rs"]
mod auth;
#[path = "../campaign_create.rs"]
mod campaign_create;
#[path = "../campaign_list.rs"]
mod campaign_list;
#[path = "../campaign_update.rs"]
mod campaign_update;
#[path = "../contact_hours.rs"]
mod contact_hours;
#[path = "../contacts.rs"]
mod contacts;
#[path = "../dashboard.rs"]
mod dashboard;
// One browser run is enough: it tests pages, not the store.
#[path = "../dashboard_browser.rs"]
mod dashboard_browser;
#[path = "../dashboard_campaigns.rs"]
mod dashboard_campaigns;
#[path = "../dashboard_dnc.rs"]
mod dashboard_dnc;
#[path = "../dashboard_settings.rs"]
mod dashboard_settings;
#[path = "../dashboard_store.rs"]
mod dashboard_store;
#[path = "../dnc.rs"]
mod dnc;
#[path = "../engine.rs"]
mod engine;
#[path = "../engine_cycles.rs"]
mod engine_cycles;
#[path = "../engine_dispatch.rs"]
mod engine_dispatch;
#[path = "../engine_events.rs"]
mod engine_events;
#[path = "../engine_lists.rs"]
mod engine_lists;
#[path = "../engine_outcomes.rs"]
mod engine_outcomes;
#[path = "../engine_webhook.rs"]
mod engine_webhook;
#[path = "../engine_whatsapp.rs"]
mod engine_whatsapp;
#[path = "../errors.rs"]
mod errors;
#[path = "../idempotency.rs"]
mod idempotency;
#[path = "../integrations.rs"]
mod integrations;
#[path = "../lifecycle.rs"]
mod lifecycle;
#[path = "../metrics.rs"]
mod metrics;
#[path = "../openapi.rs"]
mod openapi;
#[path = "../plan.rs"]
mod plan;
#[path = "../providers_retell.rs"]
mod providers_retell;
#[path = "../providers_twilio.rs"]
mod providers_twilio;
#[path = "../providers_vapi.rs"]
mod providers_vapi;
#[path = "../providers_whatsapp.rs"]
mod providers_whatsapp;
#[path = "../rate_limit.rs"]
mod rate_limit;
#[path = "../suppression.rs"]
mod suppression;
#[path = "../webhooks.rs"]
mod webhooks;
