//! `TestAppOn<Backend>`: a real server on port 0 over a throwaway database (SQLite in a temporary
//! directory, or a PostgreSQL database of its own), a controlled clock and request helpers; plus
//! the check of response bodies against Altur's OpenAPI document.

use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use jiff::Timestamp;
use outbound::api::ApiSettings;
use outbound::api::rate_limit::RateLimitConfig;
use outbound::clock::ManualClock;
use outbound::domain::credentials::SecretKey;
use outbound::domain::ids::NewApiKey;
use outbound::engine::{Engine, EngineSettings, TickReport};
use outbound::providers::keyring::Keyring;
use outbound::server::RunningServer;
use outbound::store::{self, DynStore};
use outbound::webhooks::{Deliveries, WebhookSettings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The database a test app runs on.
pub trait Backend {
    const NAME: &'static str;
}

pub struct OnSqlite;
pub struct OnPostgres;

impl Backend for OnSqlite {
    const NAME: &'static str = "sqlite";
}

impl Backend for OnPostgres {
    const NAME: &'static str = "postgres";
}

/// A test app on SQLite, for the tests that exist only there (the CLI on a database file).
pub type TestApp = TestAppOn<OnSqlite>;

pub struct TestAppOn<B> {
    pub base: String,
    pub key: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub store: DynStore,
    /// The engine over the same store and clock; tests drive it with `settle()`.
    pub engine: Arc<Engine>,
    /// Webhook deliveries over the same store and clock; tests drive them with `deliver()`.
    pub deliveries: Arc<Deliveries>,
    /// The store's URL, for a second store on the same database (another process).
    pub database_url: String,
    _server: RunningServer,
    /// Dropped last: the database goes once the server and the store are gone.
    _database: TestDatabase,
    _backend: PhantomData<B>,
}

/// A keyring with a fresh key, as `OUTBOUND_SECRET_KEY` gives one.
pub fn test_keyring() -> Arc<Keyring> {
    Arc::new(Keyring::with_key(SecretKey::generate()))
}

/// Webhook settings for tests: the defaults, but receivers may listen on 127.0.0.1.
pub fn local_webhooks() -> WebhookSettings {
    WebhookSettings { allow_private: true, ..WebhookSettings::default() }
}

pub fn start_time() -> Timestamp {
    "2026-06-08T18:00:00Z".parse().expect("valid timestamp")
}

/// The skip-or-fail rules for PostgreSQL and Redis and the throwaway PostgreSQL databases, shared
/// with the system tests and the benches (`tests/kit/`).
#[path = "../kit/postgres.rs"]
mod throwaway;

use throwaway::ThrowawayDatabase;

/// A rate-limit configuration on the test Redis (`OUTBOUND_TEST_REDIS_URL`) with a key prefix of its own; `None` when Redis
/// is not reachable and not required (`CI` or `OUTBOUND_REQUIRE_REDIS=1` fail instead).
pub async fn redis_limits() -> Option<RateLimitConfig> {
    let url = throwaway::redis_for_test("this test").await?;
    Some(RateLimitConfig { redis_url: Some(url), key_prefix: format!("outbound-test:{}:", uuid::Uuid::new_v4().simple()) })
}

/// A throwaway database: a temporary directory for SQLite, a database of its own on PostgreSQL
/// (on `OUTBOUND_TEST_POSTGRES_URL`'s server; dropped at the end of the test, even if connections
/// to it are still open).
enum TestDatabase {
    Sqlite { _dir: tempfile::TempDir },
    Postgres(Option<ThrowawayDatabase>),
}

impl TestDatabase {
    /// The database and its URL; `None` when PostgreSQL is not reachable and not required (`CI` or
    /// `OUTBOUND_REQUIRE_POSTGRES=1` fail instead).
    async fn create(backend: &str) -> Option<(TestDatabase, String)> {
        if backend == OnSqlite::NAME {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("outbound.db").display());
            return Some((TestDatabase::Sqlite { _dir: dir }, url));
        }
        let database = throwaway::for_test("outbound_test").await?;
        database.create().await.expect("create test database");
        let url = database.url.clone();
        Some((TestDatabase::Postgres(Some(database)), url))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres(database) = self
            && let Some(database) = database.take()
        {
            database.drop_blocking();
        }
    }
}

impl<B: Backend> TestAppOn<B> {
    /// A server with the default settings but no rate limit (tests send bursts of requests);
    /// `None` when its database is not available (see `TestDatabase::create`).
    pub async fn spawn() -> Option<Self> {
        Self::spawn_with(ApiSettings {
            rate_limit_rps: None,
            webhooks: local_webhooks(),
            keyring: test_keyring(),
            ..ApiSettings::default()
        })
        .await
    }

    pub async fn spawn_with(settings: ApiSettings) -> Option<Self> {
        Self::spawn_with_limits(settings, RateLimitConfig::default()).await
    }

    /// A server whose rate limiter is chosen from `limits` (Redis when it has a URL).
    pub async fn spawn_with_limits(settings: ApiSettings, limits: RateLimitConfig) -> Option<Self> {
        // As `outbound serve` does: the recorder is in place before the store's first write.
        outbound::server::metrics_handle();
        let (database, url) = TestDatabase::create(B::NAME).await?;
        let store = store::open(&url).await.expect("open store");
        let database_url = url;
        let clock = Arc::new(ManualClock::new(start_time()));
        let (retry, webhooks, keyring) = (settings.retry, settings.webhooks.clone(), settings.keyring.clone());
        let server = RunningServer::start_with("127.0.0.1:0", store.clone(), clock.clone(), settings, limits).await.expect("start server");
        let base = format!("http://{}", server.addr);
        let engine_settings = EngineSettings { retry, public_url: base.clone(), keyring, ..EngineSettings::default() };
        let engine = Arc::new(Engine::new(store.clone(), clock.clone(), engine_settings));
        let deliveries = Arc::new(Deliveries::new(store.clone(), clock.clone(), webhooks).expect("webhook client"));
        let mut app = TestAppOn {
            base,
            engine,
            deliveries,
            key: String::new(),
            client: reqwest::Client::new(),
            clock,
            store,
            database_url,
            _server: server,
            _database: database,
            _backend: PhantomData,
        };
        app.key = app.new_key("acme").await;
        Some(app)
    }

    /// A new API key for `org` (created when new), as `outbound keys create` makes one.
    pub async fn new_key(&self, org: &str) -> String {
        let key = NewApiKey::generate();
        self.store.create_api_key(org, &key, self.clock.now_for_tests()).await.expect("create key");
        key.key
    }

    /// Sends every webhook delivery due at the clock's current instant and records the answers;
    /// returns how many attempts were made.
    pub async fn deliver(&self) -> usize {
        self.deliveries.settle().await.expect("deliveries settle")
    }

    /// Lets the engine do everything due at the clock's current instant.
    pub async fn settle(&self) -> TickReport {
        self.engine.settle().await.expect("engine settles")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request under `/api/v1.0` with the app's key; returns status and JSON body.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_with_key(method, path, body, Some(&self.key.clone())).await
    }

    pub async fn call_with_key(&self, method: Method, path: &str, body: Option<Value>, key: Option<&str>) -> (StatusCode, Value) {
        let method_name = method.to_string();
        let mut request = self.client.request(method, self.url(&format!("/api/v1.0{path}")));
        if let Some(key) = key {
            request = request.header("Authorization", format!("api-key {key}"));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body read");
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON body: {text}")) };
        if status.is_success()
            && let Some(schema) = altur_schema_of(&method_name, path)
        {
            assert_matches_altur(schema, &value);
        }
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn create_agent(&self, name: &str) -> String {
        let (status, body) = self.post("/agents", json!({ "name": name })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["agent"]["id"].as_str().expect("agent id").to_owned()
    }

    pub async fn create_integration(&self, agent_id: &str, channel: &str) -> String {
        let body = json!({ "agent_id": agent_id, "type": channel, "provider": "simulator" });
        let (status, body) = self.post("/integrations", body).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["integration"]["id"].as_str().expect("integration id").to_owned()
    }

    /// An agent with a phone and a WhatsApp integration.
    pub async fn setup(&self) -> Setup {
        let agent = self.create_agent("Sales bot").await;
        let phone = self.create_integration(&agent, "phone_call").await;
        let whatsapp = self.create_integration(&agent, "whatsapp").await;
        Setup { agent, phone, whatsapp }
    }

    /// Creates an integration with this provider and config; asserts 201 and returns the
    /// integration object (with its `secret`, shown only at creation).
    pub async fn create_integration_with(&self, agent_id: &str, channel: &str, provider: &str, config: Value) -> Value {
        let body = json!({ "agent_id": agent_id, "type": channel, "provider": provider, "config": config });
        let (status, body) = self.post("/integrations", body).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["integration"].clone()
    }

    /// POSTs raw `body` to `/api/v1.0/integrations/{integration}/events` without an API key, with
    /// the given `X-Outbound-Signature` and `Content-Type` headers when set.
    pub async fn post_event_raw(
        &self,
        integration: &str,
        body: &[u8],
        signature: Option<&str>,
        content_type: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.post(self.url(&format!("/api/v1.0/integrations/{integration}/events"))).body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("X-Outbound-Signature", signature);
        }
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body read");
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON body: {text}")) };
        (status, value)
    }

    /// POSTs `event` as JSON to an integration's events route, signed with its `secret`.
    pub async fn post_event(&self, integration: &str, secret: &str, event: &Value) -> (StatusCode, Value) {
        let body = serde_json::to_vec(event).expect("event serializes");
        let signature = outbound::domain::ids::sign(secret, &body).expect("secret is base64");
        self.post_event_raw(integration, &body, Some(&signature), Some("application/json")).await
    }

    /// Creates a campaign from `base` fields merged with `extra`; asserts 201.
    pub async fn create_campaign(&self, body: Value) -> Value {
        let (status, body) = self.post("/campaigns", body).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_matches_altur("CampaignDetailResponse", &body);
        body["campaign"].clone()
    }
}

pub struct Setup {
    pub agent: String,
    pub phone: String,
    pub whatsapp: String,
}

impl Setup {
    /// A valid phone campaign body with `extra` fields added or replaced.
    pub fn phone(&self, extra: Value) -> Value {
        merge(
            json!({ "name": "Q2 Reactivation", "agent_id": self.agent, "integration_id": self.phone, "integration_type": "phone_call" }),
            extra,
        )
    }

    pub fn whatsapp(&self, extra: Value) -> Value {
        merge(
            json!({ "name": "Promo June", "agent_id": self.agent, "integration_id": self.whatsapp, "integration_type": "whatsapp", "template": "promo_june_v1" }),
            extra,
        )
    }
}

pub fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        for (k, v) in extra {
            base.insert(k, v);
        }
    }
    base
}

/// Asserts the contract's error envelope with this key and field.
#[track_caller]
pub fn assert_error(status: StatusCode, body: &Value, expected_status: u16, key: &str, field: Option<&str>) {
    assert_eq!(status.as_u16(), expected_status, "status for {body}");
    assert_eq!(body["success"], json!(false), "{body}");
    assert_eq!(body["error"], json!(key), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(body["field"].as_str(), field, "field of {body}");
    assert!(body.get("details").is_some(), "details key missing in {body}");
}

trait NowForTests {
    fn now_for_tests(&self) -> Timestamp;
}

impl NowForTests for ManualClock {
    fn now_for_tests(&self) -> Timestamp {
        outbound::clock::Clock::now(self)
    }
}

static ALTUR: OnceLock<Value> = OnceLock::new();

fn altur_document() -> &'static Value {
    ALTUR.get_or_init(|| serde_json::from_str(include_str!("fixtures/altur-openapi.json")).expect("Altur OpenAPI document parses"))
}

/// Fields Altur's schemas list that the contract says Outbound does not return.
const NOT_RETURNED: [(&str, &str); 2] = [("CampaignCyclesConfig", "filter_tags"), ("CampaignCall", "policy_evaluation")];

/// Fields Altur's schemas list without `nullable` that Outbound leaves out when they have no
/// value (§0, §0.2); every other field Altur lists must be present.
const LEFT_OUT_WHEN_ABSENT: [(&str, &str); 24] = [
    ("CampaignDetail", "analytics"),
    ("CampaignCyclesConfig", "schedule"),
    ("Campaign", "description"),
    ("Campaign", "template"),
    ("Campaign", "first_message"),
    ("Campaign", "concurrency_limit"),
    ("Campaign", "cycle_last_iteration_at"),
    ("CursorPagination", "next_cursor"),
    ("CursorPagination", "previous_cursor"),
    ("OffsetPagination", "next_page"),
    ("OffsetPagination", "previous_page"),
    ("CampaignContact", "f_id"),
    ("CampaignContact", "name"),
    ("CampaignContact", "context"),
    ("CampaignContact", "last_call_at"),
    ("CampaignCall", "recording_url"),
    ("CampaignCall", "answered_by"),
    ("CampaignCall", "duration"),
    ("CampaignCall", "billed_duration"),
    ("CampaignCallContact", "f_id"),
    ("CampaignCallContact", "name"),
    // Batch results are inline in Altur's CampaignContactBatchResponse.
    ("CampaignContactBatchResponse", "id"),
    ("CampaignContactBatchResponse", "contact"),
    ("CampaignContactBatchResponse", "error"),
];

/// The Altur schema of a campaign endpoint's successful answer (§2–§4), by method and path.
pub fn altur_schema_of(method: &str, path: &str) -> Option<&'static str> {
    let path = path.split('?').next().unwrap_or_default();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("POST", ["campaigns"]) => Some("CampaignDetailResponse"),
        ("GET", ["campaigns"]) => Some("CampaignsResponse"),
        ("GET" | "PATCH", ["campaigns", _]) => Some("CampaignDetailResponse"),
        ("POST", ["campaigns", _, "contacts"]) => Some("CampaignContactBatchResponse"),
        ("POST", ["campaigns", _, _]) => Some("CampaignDetailResponse"),
        ("GET", ["campaigns", _, "contacts"]) => Some("CampaignContactsResponse"),
        ("GET", ["campaigns", _, "contacts", _]) => Some("CampaignContactDetailResponse"),
        ("GET", ["campaigns", _, "calls"]) => Some("CampaignCallsResponse"),
        _ => None,
    }
}

/// Validates `body` against Altur's schema `name` as published: a property is nullable only
/// where Altur marks it `nullable` (contract §0). Checks that every property Altur lists is
/// present, except those Outbound leaves out when they have no value.
#[track_caller]
pub fn assert_matches_altur(name: &str, body: &Value) {
    let doc = altur_document();
    let schemas = &doc["components"]["schemas"];
    let mut definitions = serde_json::Map::new();
    for (key, schema) in schemas.as_object().expect("schemas") {
        definitions.insert(key.clone(), to_json_schema(schema));
    }
    let root = json!({ "$schema": "http://json-schema.org/draft-07/schema#", "definitions": definitions, "$ref": format!("#/definitions/{name}") });
    let validator = jsonschema::validator_for(&root).expect("schema compiles");
    let errors: Vec<String> = validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(errors.is_empty(), "{name} does not validate: {errors:#?}\nbody: {body:#}");
    assert_all_properties_present(schemas, name, body, name);
}

fn to_json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (key, value) in map {
                match key.as_str() {
                    "$ref" => {
                        out.insert(key.clone(), json!(value.as_str().expect("ref").replace("#/components/schemas/", "#/definitions/")));
                    }
                    "nullable" | "example" | "format" => {}
                    "properties" => {
                        let props = value
                            .as_object()
                            .expect("properties")
                            .iter()
                            .map(|(k, v)| {
                                // OpenAPI 3.0.3: `nullable` does not extend an `enum` without null.
                                let enum_without_null =
                                    v.get("enum").and_then(Value::as_array).is_some_and(|values| !values.contains(&Value::Null));
                                let nullable = v.get("nullable") == Some(&json!(true)) && !enum_without_null;
                                let schema = to_json_schema(v);
                                (k.clone(), if nullable { json!({ "anyOf": [schema, { "type": "null" }] }) } else { schema })
                            })
                            .collect();
                        out.insert(key.clone(), Value::Object(props));
                    }
                    _ => {
                        out.insert(key.clone(), to_json_schema(value));
                    }
                }
            }
            // A $ref with siblings: keep the reference alone (draft-07 ignores siblings anyway).
            if let Some(reference) = out.get("$ref").cloned() {
                return json!({ "$ref": reference });
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(to_json_schema).collect()),
        other => other.clone(),
    }
}

fn resolve<'a>(schemas: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => &schemas[reference.trim_start_matches("#/components/schemas/")],
        None => schema,
    }
}

#[track_caller]
fn assert_all_properties_present(schemas: &Value, schema_name: &str, body: &Value, path: &str) {
    let schema = resolve(schemas, &schemas[schema_name]);
    check_object(schemas, schema_name, schema, body, path);
}

#[track_caller]
fn check_object(schemas: &Value, schema_name: &str, schema: &Value, body: &Value, path: &str) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return };
    let Some(object) = body.as_object() else { return };
    for (key, property) in properties {
        if NOT_RETURNED.contains(&(schema_name, key.as_str())) {
            assert!(!object.contains_key(key), "{path}.{key} must not be returned");
            continue;
        }
        if !object.contains_key(key) && LEFT_OUT_WHEN_ABSENT.contains(&(schema_name, key.as_str())) {
            continue;
        }
        assert!(object.contains_key(key), "{path}.{key} is missing (Altur's {schema_name} lists it)");
        let nested_name =
            property.get("$ref").and_then(Value::as_str).map(|r| r.trim_start_matches("#/components/schemas/")).unwrap_or(schema_name);
        let nested = resolve(schemas, property);
        let value = &object[key];
        match value {
            Value::Object(_) => check_object(schemas, nested_name, nested, value, &format!("{path}.{key}")),
            Value::Array(items) => {
                if let Some(item_schema) = nested.get("items") {
                    let item_name = item_schema
                        .get("$ref")
                        .and_then(Value::as_str)
                        .map(|r| r.trim_start_matches("#/components/schemas/"))
                        .unwrap_or(nested_name);
                    let item_schema = resolve(schemas, item_schema);
                    for (i, item) in items.iter().enumerate() {
                        check_object(schemas, item_name, item_schema, item, &format!("{path}.{key}[{i}]"));
                    }
                }
            }
            _ => {}
        }
    }
}

/// A POST sent with an `Idempotency-Key`: its status, whether it was replayed, its
/// `Retry-After` and its body as received.
pub struct Sent {
    pub status: StatusCode,
    pub replayed: bool,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

impl Sent {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// POSTs `body` to `/api/v1.0{path}` with `api_key` and the Idempotency-Key `key`.
pub async fn post_with_key<B: Backend>(app: &TestAppOn<B>, key: &str, api_key: &str, path: &str, body: &Value) -> Sent {
    let response = app
        .client
        .post(app.url(&format!("/api/v1.0{path}")))
        .header("Authorization", format!("api-key {api_key}"))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("sent");
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let replayed = header("idempotent-replayed").as_deref() == Some("true");
    let retry_after = header("retry-after");
    Sent { status: response.status(), replayed, retry_after, body: response.bytes().await.expect("body").to_vec() }
}

/// A browser's view of the dashboard: a client that does not follow redirects, holding the
/// session cookie of a sign-in and the CSRF token its pages carry.
pub struct Browser {
    pub base: String,
    pub client: reqwest::Client,
    /// `outbound_session=…`, or empty before sign-in.
    pub cookie: String,
    pub csrf: String,
}

/// A dashboard page or form answer: status, `Location` when it redirects, `Set-Cookie`, body.
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookie: Option<String>,
    pub body: String,
}

impl Page {
    /// The page contains `text` (panics with the page when not).
    pub fn shows(&self, text: &str) -> &Self {
        assert!(self.body.contains(text), "the page ({}) does not show {text:?}:\n{}", self.status, self.body);
        self
    }

    /// The value of the first `name="csrf"` input of the page.
    pub fn csrf(&self) -> Option<String> {
        let start = self.body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
        let end = self.body[start..].find('"')?;
        Some(self.body[start..start + end].to_owned())
    }
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Browser { base: base.to_owned(), client, cookie: String::new(), csrf: String::new() }
    }

    /// Signs in with `key` and keeps the session; panics unless it worked.
    pub async fn signed_in(base: &str, key: &str) -> Browser {
        let mut browser = Browser::new(base);
        let page = browser.post_form("/sign-in", &[("key", key)]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "sign-in: {}", page.body);
        let cookie = page.set_cookie.expect("a session cookie");
        browser.cookie = cookie.split(';').next().expect("cookie pair").to_owned();
        let campaigns = browser.get("/campaigns").await;
        browser.csrf = campaigns.csrf().expect("pages carry a CSRF token");
        browser
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Page {
        let request = if self.cookie.is_empty() { request } else { request.header("Cookie", &self.cookie) };
        let response = request.send().await.expect("request sent");
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (status, location, set_cookie) = (response.status(), header("location"), header("set-cookie"));
        let body = response.text().await.expect("body read");
        Page { status, location, set_cookie, body }
    }

    pub async fn get(&self, path: &str) -> Page {
        self.send(self.client.get(format!("{}{path}", self.base))).await
    }

    pub async fn send_with_header(&self, path: &str, name: &str, value: &str) -> Page {
        self.send(self.client.get(format!("{}{path}", self.base)).header(name, value)).await
    }

    /// Posts a form as a browser does, with the session's CSRF token added when there is one.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut fields: Vec<(&str, &str)> = fields.to_vec();
        if !self.csrf.is_empty() && !fields.iter().any(|(name, _)| *name == "csrf") {
            fields.push(("csrf", &self.csrf));
        }
        self.send(self.client.post(format!("{}{path}", self.base)).form(&fields)).await
    }

    /// Posts a form exactly as given: no token added.
    pub async fn post_form_raw(&self, path: &str, fields: &[(&str, &str)], origin: Option<&str>) -> Page {
        let mut request = self.client.post(format!("{}{path}", self.base)).form(&fields);
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        self.send(request).await
    }

    /// Posts a multipart form (a file upload) with the CSRF token in its header, as the page's script does.
    pub async fn post_multipart(&self, path: &str, form: reqwest::multipart::Form) -> Page {
        self.send(self.client.post(format!("{}{path}", self.base)).header("X-CSRF-Token", &self.csrf).multipart(form)).await
    }
}
