//! The `outbound` command line: `serve`, `keys`, `webhooks`, `contacts`, `dnc`, `migrate`.

use std::io::IsTerminal;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use jiff::SignedDuration;

use crate::api::ApiSettings;
use crate::api::rate_limit::RateLimitConfig;
use crate::clock::{Clock, SystemClock};
use crate::domain::attempt::RetrySettings;
use crate::domain::contact::IfDuplicate;
use crate::domain::ids::{NewApiKey, normalize_key_prefix};
use crate::domain::webhook::{delivery_public_id, is_webhook_id, parse_delivery_id};
use crate::engine::{Engine, EngineSettings};
use crate::providers::keyring::Keyring;
use crate::store;
use crate::webhooks::{Deliveries, WebhookSettings};
use crate::{import, server};

#[derive(Parser)]
#[command(name = "outbound", version, about = "Outbound campaigns engine with an Altur-compatible API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines on stderr: `auto` (text on a terminal, JSON otherwise), `text` or `json`.
    #[arg(long = "log-format", env = "OUTBOUND_LOG_FORMAT", value_enum, default_value = "auto", global = true)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Auto,
    Text,
    Json,
}

impl LogFormat {
    /// Whether lines are JSON. `auto`: people read a terminal; anything else (a file, a log
    /// collector) parses lines.
    fn is_json(self, stderr_is_terminal: bool) -> bool {
        match self {
            LogFormat::Auto => !stderr_is_terminal,
            LogFormat::Text => false,
            LogFormat::Json => true,
        }
    }
}

#[derive(clap::Args, Clone)]
struct DatabaseArg {
    /// sqlite://PATH or postgres://USER@HOST/DATABASE (created and migrated when missing)
    #[arg(long = "database", env = "OUTBOUND_DATABASE_URL", default_value = "sqlite://outbound.db")]
    url: String,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "OUTBOUND_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        #[command(flatten)]
        database: DatabaseArg,
        /// Requests per second per API key (burst equals it); 0 turns the limit off.
        #[arg(long, env = "OUTBOUND_RATE_LIMIT_RPS", default_value_t = 12)]
        rate_limit_rps: u32,
        /// Keep the per-key rate limit in this Redis (shared by every server using it), e.g.
        /// redis://127.0.0.1:6379; without it, PostgreSQL keeps it, or this process on SQLite.
        #[arg(long, env = "OUTBOUND_REDIS_URL")]
        redis_url: Option<String>,
        /// How long Idempotency-Key records are kept, e.g. 24h, 30m.
        #[arg(long, env = "OUTBOUND_IDEMPOTENCY_TTL", default_value = "24h", value_parser = parse_duration)]
        idempotency_ttl: SignedDuration,
        /// The web dashboard at `/` (sign in with an API key): `on` or `off`.
        #[arg(long, env = "OUTBOUND_DASHBOARD", value_enum, default_value = "on")]
        dashboard: Switch,
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        webhooks: WebhookArgs,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Inspect webhook subscriptions and send failed deliveries again.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Work with a campaign's contacts through a running server.
    Contacts {
        #[command(subcommand)]
        command: ContactsCommand,
    },
    /// Work with an organization's do-not-contact list in the database.
    Dnc {
        #[command(subcommand)]
        command: DncCommand,
    },
    /// Create the database if needed and apply pending migrations.
    Migrate {
        #[command(flatten)]
        database: DatabaseArg,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Switch {
    On,
    Off,
}

#[derive(clap::Args)]
struct EngineArgs {
    /// `on`: API and engine; `off`: API only; `only`: engine without the API.
    #[arg(long = "engine", env = "OUTBOUND_ENGINE", value_enum, default_value = "on")]
    mode: EngineMode,
    /// Wait before a retry attempt.
    #[arg(long, env = "OUTBOUND_RETRY_INTERVAL", default_value = "30m", value_parser = parse_duration)]
    retry_interval: SignedDuration,
    /// Retries after a `failed` outcome.
    #[arg(long, env = "OUTBOUND_FAILED_RETRY_LIMIT", default_value_t = 1)]
    failed_retry_limit: u32,
    /// An attempt with no final event by then is closed as failed.
    #[arg(long, env = "OUTBOUND_ATTEMPT_TIMEOUT", default_value = "2h", value_parser = parse_duration)]
    attempt_timeout: SignedDuration,
    /// How long a handoff to a provider may stay unconfirmed before it is re-sent (same attempt id).
    #[arg(long, env = "OUTBOUND_LEASE", default_value = "2m", value_parser = parse_duration)]
    lease: SignedDuration,
    /// The URL providers reach this deployment's API at, for `callback_url` (default: http://LISTEN).
    #[arg(long, env = "OUTBOUND_PUBLIC_URL")]
    public_url: Option<String>,
    /// Base64 of 32 random bytes: seals provider credentials at rest (default on SQLite: a key
    /// file beside the database, created on first use; required on PostgreSQL).
    #[arg(long, env = "OUTBOUND_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
}

#[derive(clap::Args)]
struct WebhookArgs {
    /// Where webhook events are delivered from: `auto` (where the engine runs), `on` or `off`.
    #[arg(long = "deliveries", env = "OUTBOUND_DELIVERIES", value_enum, default_value = "auto")]
    deliveries: DeliveriesMode,
    /// When each webhook delivery attempt is due after its event; the count is the number of attempts.
    #[arg(long, env = "OUTBOUND_WEBHOOK_RETRY_DELAYS", default_value = "0s,60s,2m,4m,8m", value_parser = parse_retry_delays)]
    webhook_retry_delays: RetryDelays,
    /// How long a webhook receiver has to answer.
    #[arg(long, env = "OUTBOUND_WEBHOOK_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    webhook_timeout: SignedDuration,
    /// Allow webhook URLs on loopback, private, link-local or unspecified addresses.
    #[arg(long, env = "OUTBOUND_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    webhook_allow_private: bool,
}

/// A parsed retry schedule (a newtype: clap reads a `Vec` as a repeated argument).
#[derive(Clone, Debug)]
struct RetryDelays(Vec<SignedDuration>);

fn parse_retry_delays(text: &str) -> Result<RetryDelays, String> {
    crate::domain::webhook::parse_retry_delays(text).map(RetryDelays)
}

impl WebhookArgs {
    fn settings(&self) -> anyhow::Result<WebhookSettings> {
        let timeout = std::time::Duration::try_from(self.webhook_timeout).context("--webhook-timeout must be positive")?;
        Ok(WebhookSettings { retry_delays: self.webhook_retry_delays.0.clone(), timeout, allow_private: self.webhook_allow_private })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DeliveriesMode {
    Auto,
    On,
    Off,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EngineMode {
    On,
    Off,
    Only,
}

#[derive(Subcommand)]
enum ContactsCommand {
    /// Stream a CSV (columns contact,name,context,f_id,tags; any other column goes into
    /// extracted_data; tags separated by |) into a campaign, then report every row not created.
    Import {
        #[arg(long)]
        campaign: i64,
        #[arg(long)]
        file: std::path::PathBuf,
        /// The server's base URL.
        #[arg(long, env = "OUTBOUND_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The API key to send.
        #[arg(long, env = "OUTBOUND_API_KEY")]
        key: String,
        #[arg(long, value_enum, default_value = "skip")]
        if_duplicate: DuplicateArg,
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
        /// Also write every row that was not created (line, contact, status, reason) to this CSV.
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum DncCommand {
    /// Add a CSV (columns contact,channel,reason; channel and reason optional, channel
    /// phone_call, whatsapp or all, the default) to the organization's list, source `csv`, then
    /// report every row not created.
    Import {
        #[arg(long)]
        org: String,
        #[arg(long)]
        file: std::path::PathBuf,
        #[command(flatten)]
        database: DatabaseArg,
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
        /// Also write every row that was not created (line, contact, status, reason) to this CSV.
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DuplicateArg {
    Skip,
    Update,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an API key (and its organization when new); prints only the key.
    Create {
        #[arg(long)]
        org: String,
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// List keys: prefix, organization, creation and last use.
    List {
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Revoke a key at once, by its 8-character prefix (with or without `ob_`).
    Revoke {
        prefix: String,
        #[command(flatten)]
        database: DatabaseArg,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// List subscriptions: id, organization, URL, events, enabled, deliveries pending and failed.
    List {
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Send a subscription's failed deliveries again (one more attempt each, same event ids), or
    /// only the one given; a running server's delivery worker sends them.
    Retry {
        /// The subscription, `whk_…`.
        webhook: String,
        /// Only this delivery, `dlv_…`.
        #[arg(long)]
        delivery: Option<String>,
        #[command(flatten)]
        database: DatabaseArg,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, so stdout carries only what a command is asked to print.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if format.is_json(terminal) {
        logs.json().with_current_span(true).try_init()
    } else {
        // Colours only for a terminal, and not when NO_COLOR asks for none (https://no-color.org).
        logs.with_ansi(terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())).try_init()
    };
}

async fn run(command: Command) -> anyhow::Result<()> {
    let clock = SystemClock;
    match command {
        Command::Serve { listen, database, rate_limit_rps, redis_url, idempotency_ttl, dashboard, engine, webhooks } => {
            // Before the store and the engine exist: a gauge raised before the recorder is in place
            // and lowered after it would read one too low for the life of the process.
            server::metrics_handle();
            let retry = RetrySettings { retry_interval: engine.retry_interval, failed_retry_limit: i64::from(engine.failed_retry_limit) };
            let webhook_settings = webhooks.settings()?;
            let keyring = Arc::new(Keyring::new(engine.secret_key.as_deref(), store::sqlite_file(&database.url).as_deref())?);
            let public_url = engine.public_url.clone().unwrap_or_else(|| format!("http://{listen}"));
            let settings = ApiSettings {
                rate_limit_rps: NonZeroU32::new(rate_limit_rps),
                idempotency_ttl,
                retry,
                webhooks: webhook_settings.clone(),
                keyring: keyring.clone(),
                public_url: public_url.clone(),
                dashboard: dashboard == Switch::On,
            };
            if settings.rate_limit_rps.is_none() {
                tracing::warn!("the per-key rate limit is off (OUTBOUND_RATE_LIMIT_RPS=0)");
            }
            let store = open(&database).await?;
            let key = NewApiKey::generate();
            if engine.mode != EngineMode::Only && store.bootstrap_organization("default", &key, clock.now()).await? {
                println!("Created organization \"default\". Its API key, shown only this once:\n\n    {}\n", key.key);
                println!("Try: curl -H 'Authorization: api-key {}' http://{listen}/api/v1.0/campaigns\n", key.key);
            }
            let stop = server::Stop::on_signal();
            let clock: Arc<dyn Clock> = Arc::new(clock);
            let engine_task = (engine.mode != EngineMode::Off).then(|| {
                let settings = EngineSettings { retry, attempt_timeout: engine.attempt_timeout, lease: engine.lease, public_url, keyring };
                let engine = Arc::new(Engine::new(store.clone(), clock.clone(), settings));
                tracing::info!("engine running");
                tokio::spawn(engine.run(stop.wait()))
            });
            let delivering = match webhooks.deliveries {
                DeliveriesMode::Auto => engine.mode != EngineMode::Off,
                DeliveriesMode::On => true,
                DeliveriesMode::Off => false,
            };
            let deliveries_task = if delivering {
                let deliveries =
                    Deliveries::new(store.clone(), clock.clone(), webhook_settings).context("cannot start webhook deliveries")?;
                tracing::info!("webhook deliveries running");
                Some(tokio::spawn(Arc::new(deliveries).run(stop.wait())))
            } else {
                None
            };
            if engine.mode == EngineMode::Only {
                if engine.public_url.is_none() {
                    tracing::warn!(
                        "--engine only without --public-url: providers are told to post events to http://{listen}, which this process does not serve"
                    );
                }
                println!("outbound engine running (no API)");
            } else {
                let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
                let address = listener.local_addr()?;
                // Before the "listening" line: scripts stop reading there.
                if settings.dashboard {
                    println!("dashboard: http://{address}/ (sign in with an API key)");
                }
                println!("outbound listening on http://{address}");
                tracing::info!(%address, database = %database.url, "outbound is serving");
                server::serve(listener, store, clock, settings, RateLimitConfig { redis_url, ..RateLimitConfig::default() }, stop.wait())
                    .await?;
            }
            if let Some(task) = engine_task {
                task.await.context("the engine stopped abnormally")?;
            }
            if let Some(task) = deliveries_task {
                task.await.context("webhook deliveries stopped abnormally")?;
            }
        }
        Command::Keys { command: KeysCommand::Create { org, database } } => {
            let org = org.trim();
            if org.is_empty() || org.chars().count() > 255 {
                bail!("--org must be 1 to 255 characters");
            }
            let store = open(&database).await?;
            let key = NewApiKey::generate();
            store.create_api_key(org, &key, clock.now()).await?;
            println!("{}", key.key);
        }
        Command::Keys { command: KeysCommand::List { org, database } } => {
            let store = open(&database).await?;
            let keys = store.list_api_keys(org.as_deref()).await?;
            println!("{:<12} {:<24} {:<25} {:<21} {:<21} REVOKED", "PREFIX", "ORGANIZATION", "PROJECT", "CREATED", "LAST USED");
            let show = |t: Option<jiff::Timestamp>| t.map(crate::api::views::format_time).unwrap_or_else(|| "-".to_owned());
            for key in keys {
                println!(
                    "{:<12} {:<24} {:<25} {:<21} {:<21} {}",
                    format!("ob_{}", key.prefix),
                    key.organization,
                    key.project_id,
                    show(Some(key.created_at)),
                    show(key.last_used_at),
                    show(key.revoked_at)
                );
            }
        }
        Command::Keys { command: KeysCommand::Revoke { prefix, database } } => {
            let Some(prefix) = normalize_key_prefix(&prefix) else {
                bail!("{prefix:?} is not a key prefix: give the 8 characters after ob_ (as `outbound keys list` shows)");
            };
            let store = open(&database).await?;
            if !store.revoke_api_key(prefix, clock.now()).await? {
                bail!("no key with prefix {prefix}");
            }
            println!("revoked ob_{prefix}");
        }
        Command::Webhooks { command: WebhooksCommand::List { org, database } } => {
            let store = open(&database).await?;
            let webhooks = store.webhook_overview(org.as_deref()).await?;
            println!("{:<25} {:<24} {:<8} {:>8} {:>8}  {:<40} EVENTS", "ID", "ORGANIZATION", "ENABLED", "PENDING", "FAILED", "URL");
            for summary in webhooks {
                let w = &summary.webhook;
                let events: Vec<&str> = w.events.iter().map(|e| e.as_str()).collect();
                println!(
                    "{:<25} {:<24} {:<8} {:>8} {:>8}  {:<40} {}",
                    w.id,
                    summary.organization,
                    if w.enabled { "yes" } else { "no" },
                    summary.pending,
                    summary.failed,
                    w.url,
                    events.join(",")
                );
            }
        }
        Command::Webhooks { command: WebhooksCommand::Retry { webhook, delivery, database } } => {
            if !is_webhook_id(&webhook) {
                bail!("{webhook:?} is not a webhook id (whk_ and 20 letters or digits, as `outbound webhooks list` shows)");
            }
            let delivery = match delivery.as_deref() {
                None => None,
                Some(text) => Some(parse_delivery_id(text).with_context(|| format!("{text:?} is not a delivery id (dlv_ and digits)"))?),
            };
            let store = open(&database).await?;
            let retried = store.retry_failed_deliveries(&webhook, delivery).await?;
            if delivery.is_some() && retried == 0 {
                bail!("no failed delivery {} of {webhook}", delivery.map(delivery_public_id).unwrap_or_default());
            }
            println!("{retried} failed deliveries of {webhook} will be sent again");
        }
        Command::Contacts { command: ContactsCommand::Import { campaign, file, url, key, if_duplicate, batch_size, report } } => {
            let if_duplicate = match if_duplicate {
                DuplicateArg::Skip => IfDuplicate::Skip,
                DuplicateArg::Update => IfDuplicate::Update,
            };
            let options = import::ImportOptions { url, key, campaign, file, if_duplicate, batch_size, report };
            let outcome = import::import(&options).await?;
            print!("{}", import::summary(&outcome, import::Columns::Contacts, 20));
        }
        Command::Dnc { command: DncCommand::Import { org, file, database, batch_size, report } } => {
            let store = open(&database).await?;
            let Some(org_id) = store.organization_named(&org).await? else {
                bail!("no organization named {org:?} (`outbound keys list` shows them)");
            };
            let outcome = import::import_dnc(store.as_ref(), org_id, &file, batch_size, report.as_deref(), || clock.now()).await?;
            print!("{}", import::summary(&outcome, import::Columns::Dnc, 20));
        }
        Command::Migrate { database } => {
            open(&database).await?;
            println!("database {} is up to date", database.url);
        }
    }
    Ok(())
}

/// Durations as operators write them: `30m`, `2h`, `250ms`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let duration: SignedDuration = text.parse().map_err(|err| format!("{text:?} is not a duration such as 30m, 2h or 250ms: {err}"))?;
    if duration.is_negative() || duration.is_zero() {
        return Err(format!("{text:?} must be a positive duration"));
    }
    Ok(duration)
}

async fn open(database: &DatabaseArg) -> anyhow::Result<store::DynStore> {
    store::open(&database.url).await.with_context(|| format!("cannot open database {}", database.url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_read_as_operators_write_them() {
        assert_eq!(parse_duration("30m"), Ok(SignedDuration::from_mins(30)));
        assert_eq!(parse_duration("24h"), Ok(SignedDuration::from_hours(24)));
        assert_eq!(parse_duration("250ms"), Ok(SignedDuration::from_millis(250)));
        assert_eq!(parse_duration("1h 30m"), Ok(SignedDuration::from_mins(90)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn logs_are_text_on_a_terminal_and_json_elsewhere_unless_told() {
        assert!(!LogFormat::Auto.is_json(true));
        assert!(LogFormat::Auto.is_json(false));
        assert!(LogFormat::Json.is_json(true));
        assert!(!LogFormat::Text.is_json(false));
        let cli = Cli::try_parse_from(["outbound", "serve", "--log-format", "json"]).expect("parses");
        assert_eq!(cli.log_format, LogFormat::Json, "given after the subcommand");
    }
}
