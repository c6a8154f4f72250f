//! A mock of the real providers' APIs (PROVIDERS.md §2–§3, `reference/providers.md` §1–§2): one
//! axum server inside the harness that plays Twilio Programmable Voice and the WhatsApp Cloud API
//! (Meta's Graph API) for the provider scenarios (`provider_crash.rs`, `benches/providers.rs`).
//!
//! - `POST /2010-04-01/Accounts/{sid}/Calls.json` (Twilio's create call): checks HTTP Basic
//!   `sid:auth_token` of an account made known with [`ProvidersMock::add_twilio`] and the form
//!   (`To` in E.164, `From`, `Url` and `StatusCallback` both carrying the same `attempt_id`,
//!   `StatusCallbackMethod=POST`, the four `StatusCallbackEvent`s, and with `MachineDetection`
//!   also `AsyncAmd=true` and an `AsyncAmdStatusCallback`), answers `201` at once with a new
//!   `CA` + 32 hex `sid`, then plays the call from a spawned task: form-encoded status callbacks
//!   to `StatusCallback` signed with `X-Twilio-Signature` (base64 HMAC-SHA1 with the auth token
//!   over the URL and the sorted parameters), `ringing` → `in-progress` → the AMD verdict to
//!   `AsyncAmdStatusCallback` → `completed`, or `ringing` → `no-answer`. The outcome is a pure
//!   function of the attempt id ([`super::mock::outcome`]: 60% a human, 20% a machine
//!   (`machine_start`), 20% no answer); whether `AnsweredBy` is repeated on the `completed`
//!   callback too is drawn from the id as well (Twilio's docs leave it open), so both readings
//!   are exercised. Without AMD every answered call is reported as a plain `completed`.
//! - `POST /{version}/{phone_number_id}/messages` (the Graph API's send): checks `Authorization:
//!   Bearer <access_token>` of a number made known with [`ProvidersMock::add_whatsapp`] and the
//!   body (`messaging_product`, `to`, `type: template`, `template.name`, `template.language.code`,
//!   `biz_opaque_callback_data` = the attempt id), answers `200` with a new `wamid.…`, then posts
//!   the status webhooks `sent` → `delivered` → `read` to the number's callback URL, signed with
//!   `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, raw body)>`.
//!
//! - `POST /call` (Vapi's create call): checks `Authorization: Bearer <api_key>` of an org made
//!   known with [`ProvidersMock::add_vapi`] and the body (`assistantId`, `phoneNumberId`,
//!   `customer.number` in E.164, `assistantOverrides.metadata.attempt_id`,
//!   `assistantOverrides.server.url`, `serverMessages` with `end-of-call-report`), answers `201`
//!   with a new call `id` (a UUID), then posts the server messages to `server.url` with the
//!   headers the create asked for (`server.headers`, where Outbound puts `X-Vapi-Secret`):
//!   `status-update` `in-progress` (answered calls), `status-update` `ended`, then the
//!   `end-of-call-report` (`customer-ended-call` with a transcript, a recording and
//!   `successEvaluation`, `voicemail`, or `customer-did-not-answer`).
//! - `POST /v2/create-phone-call` (Retell's): checks `Authorization: Bearer <api_key>` of an
//!   account made known with [`ProvidersMock::add_retell`] and the body (`from_number`,
//!   `to_number` in E.164, `metadata.attempt_id`, string-valued `retell_llm_dynamic_variables`),
//!   answers `201` with a new `call_id`, then posts `call_started` (answered calls),
//!   `call_ended` and `call_analyzed` to the account's webhook URL, signed with
//!   `x-retell-signature: v=<ms>,d=<hex HMAC-SHA256(api_key, body + ms)>`.
//!
//! Every signature is computed here, by this file's own code (checked against the providers'
//! published vectors by `tests/system/providers_mock.rs`), never by the server's: the scenarios check the
//! server independently.
//!
//! It records every create (attempt id, provider, account, `To`, the id it gave, the instant,
//! how many times that attempt id came: a real provider places a second call, so more than one
//! breaks the re-sending rule) and keeps the instants of every account's creates for pacing
//! ([`ProvidersMock::create_times`]). Callbacks go out one after the other per attempt, each
//! retried every 200 ms on a connection error or a 5xx (the server may be down) until a 2xx, at
//! most 128 in flight at once; a 404 or any other 4xx is recorded as a problem (nothing is
//! re-sent after it). The harness counts the server's lives ([`ProvidersMock::next_generation`]
//! after each kill); each create records the life that sent it, and the life that acknowledged
//! its final callback. [`ProvidersMock::hold`] makes it answer no create (each is still recorded
//! and played, as a provider that acted but whose answer was lost), so that a server killed
//! meanwhile leaves hand-offs nobody confirmed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::Sha256;
use tokio::sync::Semaphore;

use super::mock::{Outcome, digest_u32, outcome};

/// How long the mock keeps trying one callback.
const REPORT_FOR: Duration = Duration::from_secs(300);
/// The pause between two tries of one callback.
const REPORT_PAUSE: Duration = Duration::from_millis(200);
/// Callback POSTs in flight at once.
const POSTING: usize = 128;
/// Problems kept word for word (the rest are only counted).
const KEEP_PROBLEMS: usize = 200;

/// The provider a create went to.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum Provider {
    Twilio,
    Whatsapp,
    Vapi,
    Retell,
}

/// What the mock reported for a hand-off.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reported {
    /// A Twilio call, ended with this outcome.
    Call(Outcome),
    /// A WhatsApp template: sent, delivered, read.
    Read,
}

/// One attempt id as the mock saw it.
pub struct Create {
    pub provider: Provider,
    /// The Twilio account sid or the WhatsApp phone number id it was sent to.
    pub account: String,
    pub to: String,
    /// The provider's id the mock gave its first create (`CA…`, `wamid.…`).
    pub provider_id: String,
    pub reported: Reported,
    /// Creates of this attempt id: more than one breaks the re-sending rule.
    pub creates: u32,
    pub received: Instant,
    /// The server's life (see [`ProvidersMock::next_generation`]) that sent its first create.
    pub generation: u32,
    /// Its first create was not answered (held before a kill).
    pub held: bool,
    /// The server's life that acknowledged its final callback, once one did (`None` also when
    /// a kill came between the request and its answer).
    pub final_acked: Option<u32>,
}

impl Create {
    /// A first create, received now (see [`ProvidersMock::register`]).
    fn new(provider: Provider, account: &str, to: &str, provider_id: &str, reported: Reported, held: bool) -> Create {
        Create {
            provider,
            account: account.to_owned(),
            to: to.to_owned(),
            provider_id: provider_id.to_owned(),
            reported,
            creates: 1,
            received: Instant::now(),
            generation: 0,
            held,
            final_acked: None,
        }
    }
}

#[derive(Default)]
pub struct Record {
    pub attempts: HashMap<String, Create>,
    /// Account (sid or phone number id) → the instant of every create it received, in order.
    pub times: HashMap<String, Vec<Instant>>,
    /// Creates of an attempt id seen before.
    pub duplicates: u64,
    /// The first problems, word for word; `problem_count` counts them all.
    pub problems: Vec<String>,
    pub problem_count: u64,
}

/// A WhatsApp business number the mock serves.
struct Number {
    access_token: String,
    app_secret: String,
    /// Where Meta posts this app's webhooks: the integration's `callback_url`.
    callback_url: String,
}

/// Callbacks in flight to the server, and how they went.
#[derive(Default, Clone, Debug)]
pub struct CallbackCounts {
    /// Callbacks to deliver (each counted once, however many tries).
    pub callbacks: u64,
    /// POSTs made, retries included.
    pub posts: u64,
    /// Callbacks answered 2xx.
    pub acked: u64,
    /// Final callbacks (a call's end, a message's last status) answered 2xx.
    pub finals_acked: u64,
    pub connection_errors: u64,
    /// Answers other than 2xx, by status.
    pub statuses: BTreeMap<u16, u64>,
}

/// The mock providers' server.
pub struct ProvidersMock {
    /// Twilio account sid → auth token.
    twilio: Mutex<HashMap<String, String>>,
    /// WhatsApp phone number id → its app.
    whatsapp: Mutex<HashMap<String, Number>>,
    /// Vapi API keys taken.
    vapi: Mutex<Vec<String>>,
    /// Retell API key → the webhook URL of its agent.
    retell: Mutex<HashMap<String, String>>,
    pub record: Mutex<Record>,
    /// Create requests received (refused ones too).
    pub creates: AtomicU64,
    /// Distinct attempt ids created.
    pub distinct: AtomicU64,
    /// Attempts whose callbacks are not all delivered yet.
    pub pending: AtomicI64,
    counts: Mutex<CallbackCounts>,
    acked: AtomicU64,
    generation: AtomicU32,
    hold: AtomicBool,
    /// Creates left unanswered while holding.
    pub held: AtomicU64,
    client: reqwest::Client,
    posting: Semaphore,
    /// A call lasts `0..=max_call_ms` (drawn from the attempt id) between `in-progress` and its
    /// end.
    max_call_ms: u64,
}

impl ProvidersMock {
    pub fn new(max_call_ms: u64) -> Arc<ProvidersMock> {
        Arc::new(ProvidersMock {
            twilio: Mutex::new(HashMap::new()),
            whatsapp: Mutex::new(HashMap::new()),
            vapi: Mutex::new(Vec::new()),
            retell: Mutex::new(HashMap::new()),
            record: Mutex::new(Record::default()),
            creates: AtomicU64::new(0),
            distinct: AtomicU64::new(0),
            pending: AtomicI64::new(0),
            counts: Mutex::new(CallbackCounts::default()),
            acked: AtomicU64::new(0),
            generation: AtomicU32::new(0),
            hold: AtomicBool::new(false),
            held: AtomicU64::new(0),
            client: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client"),
            posting: Semaphore::new(POSTING),
            max_call_ms,
        })
    }

    /// Listens on a free port of 127.0.0.1; returns its base URL (`http://127.0.0.1:PORT`), the
    /// `api_base` of both providers' configs.
    pub async fn serve(self: &Arc<Self>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("mock listens");
        let address = format!("http://{}", listener.local_addr().expect("address"));
        let app = Router::new()
            .route("/2010-04-01/Accounts/{sid}/Calls.json", post(create_call))
            .route("/{version}/{phone_number_id}/messages", post(send_message))
            .route("/call", post(vapi_call))
            .route("/v2/create-phone-call", post(retell_call))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("mock serves") });
        address
    }

    /// A Twilio account the mock takes calls for.
    pub fn add_twilio(&self, account_sid: &str, auth_token: &str) {
        self.twilio.lock().expect("twilio").insert(account_sid.to_owned(), auth_token.to_owned());
    }

    /// A WhatsApp business number the mock takes templates for; its status webhooks go to
    /// `callback_url` (the integration's). Then checks the callback URL as Meta does when the
    /// webhook is configured: `GET` with `hub.mode=subscribe`, `hub.verify_token` and
    /// `hub.challenge` must echo the challenge, and with a wrong token must answer 403. `Err`
    /// says how it did not.
    pub async fn add_whatsapp(
        &self,
        phone_number_id: &str,
        access_token: &str,
        app_secret: &str,
        verify_token: &str,
        callback_url: &str,
    ) -> Result<(), String> {
        let number =
            Number { access_token: access_token.to_owned(), app_secret: app_secret.to_owned(), callback_url: callback_url.to_owned() };
        self.whatsapp.lock().expect("whatsapp").insert(phone_number_id.to_owned(), number);
        let challenge = "1158201444";
        let verify = |token: &str| {
            let url = url::Url::parse_with_params(
                callback_url,
                [("hub.mode", "subscribe"), ("hub.challenge", challenge), ("hub.verify_token", token)],
            )
            .expect("callback URL");
            self.client.get(url).send()
        };
        let answer = verify(verify_token).await.map_err(|e| format!("GET {callback_url}: {e}"))?;
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        if status != StatusCode::OK || text != challenge {
            return Err(format!("the verification GET with the right token answered {status} {text:?}, not 200 {challenge:?}"));
        }
        let wrong = verify("not-the-token").await.map_err(|e| format!("GET {callback_url}: {e}"))?.status();
        if wrong != StatusCode::FORBIDDEN {
            return Err(format!("the verification GET with a wrong token answered {wrong}, not 403"));
        }
        Ok(())
    }

    /// A Vapi org whose private key is `api_key`.
    pub fn add_vapi(&self, api_key: &str) {
        self.vapi.lock().expect("vapi").push(api_key.to_owned());
    }

    /// A Retell account whose agent posts its webhooks to `webhook_url` (the integration's
    /// `callback_url`), signed with `api_key`.
    pub fn add_retell(&self, api_key: &str, webhook_url: &str) {
        self.retell.lock().expect("retell").insert(api_key.to_owned(), webhook_url.to_owned());
    }

    /// From now on creates are recorded and played but not answered (`true`), or answered again.
    pub fn hold(&self, hold: bool) {
        self.hold.store(hold, Ordering::Relaxed);
    }

    /// The server was killed: what comes next comes from its next life.
    pub fn next_generation(&self) -> u32 {
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Relaxed)
    }

    /// What shows the server is moving: creates received and callbacks acknowledged, so far.
    pub fn progress(&self) -> (u64, u64) {
        (self.creates.load(Ordering::Relaxed), self.acked.load(Ordering::Relaxed))
    }

    pub fn callback_counts(&self) -> CallbackCounts {
        self.counts.lock().expect("counts").clone()
    }

    /// The instants of the creates `account` (a sid, a phone number id) received, in order.
    pub fn create_times(&self, account: &str) -> Vec<Instant> {
        self.record.lock().expect("record").times.get(account).cloned().unwrap_or_default()
    }

    pub fn problem(&self, problem: String) {
        let mut record = self.record.lock().expect("record");
        record.problem_count += 1;
        if record.problems.len() < KEEP_PROBLEMS {
            record.problems.push(problem);
        }
    }

    /// Once every campaign is finished: waits (60 s at most) for the callbacks still on their way,
    /// then `lease` and a second more for late creates; returns how many creates came meanwhile.
    /// Callbacks still pending then are a problem.
    pub async fn drain(&self, lease: Duration) -> u64 {
        let creates_at_finish = self.creates.load(Ordering::Relaxed);
        let waiting = Instant::now();
        while self.pending.load(Ordering::Relaxed) > 0 && waiting.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(lease + Duration::from_secs(1)).await;
        let pending = self.pending.load(Ordering::Relaxed);
        if pending > 0 {
            self.problem(format!("the callbacks of {pending} attempts were still not all acknowledged after every campaign finished"));
        }
        self.creates.load(Ordering::Relaxed) - creates_at_finish
    }

    /// Records a create of `attempt_id`: `create` when it is the first (its `received` and
    /// `generation` set here), one more create of it otherwise.
    fn register(&self, attempt_id: &str, mut create: Create) {
        create.received = Instant::now();
        create.generation = self.generation();
        let mut guard = self.record.lock().expect("record");
        let record = &mut *guard;
        record.times.entry(create.account.clone()).or_default().push(create.received);
        match record.attempts.get_mut(attempt_id) {
            Some(seen) => {
                seen.creates += 1;
                record.duplicates += 1;
            }
            None => {
                record.attempts.insert(attempt_id.to_owned(), create);
                self.distinct.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// POSTs one callback until a 2xx (`Some(life that acknowledged it, if known)`), or until
    /// refused (a 4xx) or given up on (`None`, a problem recorded).
    async fn deliver(
        &self,
        attempt_id: &str,
        url: &str,
        content_type: &str,
        signature: (&str, &str),
        body: Vec<u8>,
    ) -> Option<Option<u32>> {
        self.counts.lock().expect("counts").callbacks += 1;
        let started = Instant::now();
        loop {
            let generation = self.generation();
            let sent = {
                let _permit = self.posting.acquire().await.expect("semaphore");
                self.counts.lock().expect("counts").posts += 1;
                self.client
                    .post(url)
                    .header("content-type", content_type)
                    .header(signature.0, signature.1)
                    .body(body.clone())
                    .send()
                    .await
                    .map(|response| response.status())
            };
            match sent {
                Ok(status) if status.is_success() => {
                    self.counts.lock().expect("counts").acked += 1;
                    self.acked.fetch_add(1, Ordering::Relaxed);
                    return Some((self.generation() == generation).then_some(generation));
                }
                Ok(status) => {
                    *self.counts.lock().expect("counts").statuses.entry(status.as_u16()).or_default() += 1;
                    if status.is_client_error() {
                        self.problem(format!("a callback of attempt {attempt_id} was answered {status} by {url}"));
                        return None;
                    }
                }
                Err(_) => self.counts.lock().expect("counts").connection_errors += 1,
            }
            if started.elapsed() > REPORT_FOR {
                self.problem(format!("gave up a callback of attempt {attempt_id} after {} s", REPORT_FOR.as_secs()));
                return None;
            }
            tokio::time::sleep(REPORT_PAUSE).await;
        }
    }

    /// The final callback of `attempt_id` was acknowledged by life `generation`.
    fn final_acked(&self, attempt_id: &str, generation: Option<u32>) {
        self.counts.lock().expect("counts").finals_acked += 1;
        if let Some(seen) = self.record.lock().expect("record").attempts.get_mut(attempt_id) {
            seen.final_acked = seen.final_acked.or(generation);
        }
    }

    /// Whether creates are held now.
    fn holding(&self) -> bool {
        self.hold.load(Ordering::Relaxed)
    }

    /// What to answer a create with: `answer` at once, or (`held`) nothing until the server is gone.
    async fn answer(&self, held: bool, answer: Response) -> Response {
        if held {
            self.held.fetch_add(1, Ordering::Relaxed);
            // No answer for as long as the sender could wait (it is killed meanwhile).
            tokio::time::sleep(Duration::from_secs(60)).await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        answer
    }
}

/// `X-Twilio-Signature` of a form POST to `url` (`reference/providers.md` §1.7): base64 of
/// HMAC-SHA1 keyed with the auth token over the URL followed by every parameter's name and value,
/// sorted by name (then value).
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    BASE64.encode(mac.finalize().into_bytes())
}

/// `X-Hub-Signature-256` of a body (`reference/providers.md` §2.8): `sha256=` and the lowercase
/// hex HMAC-SHA256 keyed with the app secret over the raw body.
pub fn hub_signature(app_secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).expect("any key length");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A Twilio account sid or auth token of 32 hex digits drawn from `seed` (the sid with `AC`).
pub fn hex32(seed: u64) -> String {
    let digest = <Sha256 as sha2::Digest>::digest(seed.to_le_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Twilio's error body (`reference/providers.md` §1.4).
fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({ "code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status.as_u16() });
    (status, axum::Json(body)).into_response()
}

/// The Graph API's error body (`reference/providers.md` §2.4).
fn graph_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({ "error": { "message": message, "type": "OAuthException", "code": code, "fbtrace_id": "mock" } });
    (status, axum::Json(body)).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// The `attempt_id` query parameter of a URL.
fn attempt_of(url: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == "attempt_id").map(|(_, v)| v.into_owned())
}

/// RFC 2822 in UTC, as Twilio writes dates (`Tue, 31 Aug 2010 20:36:44 +0000`).
fn rfc2822_now() -> String {
    jiff::fmt::rfc2822::to_string(&jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC)).expect("a printable date")
}

/// `POST /2010-04-01/Accounts/{sid}/Calls.json`.
async fn create_call(State(mock): State<Arc<ProvidersMock>>, Path(sid): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    mock.creates.fetch_add(1, Ordering::Relaxed);
    let token = mock.twilio.lock().expect("twilio").get(&sid).cloned();
    let Some(token) = token else {
        mock.problem(format!("a call was created for an unknown Twilio account {sid}"));
        return twilio_error(StatusCode::NOT_FOUND, 20404, "The requested resource was not found");
    };
    if header(&headers, "authorization") != Some(format!("Basic {}", BASE64.encode(format!("{sid}:{token}"))).as_str()) {
        mock.problem(format!("a call for account {sid} came without its HTTP Basic credentials"));
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let one = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let (Some(to), Some(from), Some(status_callback)) = (one("To"), one("From"), one("StatusCallback")) else {
        mock.problem(format!("a call lacks To, From or StatusCallback: {}", String::from_utf8_lossy(&body)));
        return twilio_error(StatusCode::BAD_REQUEST, 21205, "To, From and StatusCallback are required here");
    };
    let Some(attempt_id) = attempt_of(status_callback) else {
        mock.problem(format!("StatusCallback {status_callback:?} carries no attempt_id"));
        return twilio_error(StatusCode::BAD_REQUEST, 21205, "StatusCallback carries no attempt_id");
    };
    let mut problems = Vec::new();
    if !is_e164(to) || !is_e164(from) {
        problems.push(format!("To {to:?} or From {from:?} is not E.164"));
    }
    match one("Url").map(attempt_of) {
        Some(Some(id)) if id == attempt_id => {}
        other => problems.push(format!("Url carries attempt_id {other:?}, StatusCallback {attempt_id}")),
    }
    if one("StatusCallbackMethod") != Some("POST") {
        problems.push(format!("StatusCallbackMethod is {:?}", one("StatusCallbackMethod")));
    }
    let mut events: Vec<&str> = params.iter().filter(|(k, _)| k == "StatusCallbackEvent").map(|(_, v)| v.as_str()).collect();
    events.sort_unstable();
    if events != ["answered", "completed", "initiated", "ringing"] {
        problems.push(format!("StatusCallbackEvent is {events:?}, not the four events"));
    }
    let amd = match one("MachineDetection") {
        None => None,
        Some("Enable" | "DetectMessageEnd") => match (one("AsyncAmd"), one("AsyncAmdStatusCallback")) {
            (Some("true"), Some(url)) => {
                if attempt_of(url).as_deref() != Some(attempt_id.as_str()) {
                    problems.push(format!("AsyncAmdStatusCallback {url:?} does not carry attempt_id {attempt_id}"));
                }
                Some(url.to_owned())
            }
            other => {
                problems.push(format!("MachineDetection without AsyncAmd=true and AsyncAmdStatusCallback: {other:?}"));
                None
            }
        },
        Some(other) => {
            problems.push(format!("MachineDetection {other:?}"));
            None
        }
    };
    for problem in problems {
        mock.problem(format!("attempt {attempt_id}: {problem}"));
    }
    let reported = match (outcome(&attempt_id), &amd) {
        (Outcome::NoAnswer, _) => Outcome::NoAnswer,
        (answered, Some(_)) => answered,
        (_, None) => Outcome::Human,
    };
    let call_sid = format!("CA{}", uuid::Uuid::new_v4().simple());
    let held = mock.holding();
    mock.register(&attempt_id, Create::new(Provider::Twilio, &sid, to, &call_sid, Reported::Call(reported), held));
    let call = TwilioCall {
        attempt_id,
        call_sid: call_sid.clone(),
        account_sid: sid.clone(),
        auth_token: token,
        from: from.to_owned(),
        to: to.to_owned(),
        status_callback: status_callback.to_owned(),
        amd_callback: amd,
        outcome: reported,
    };
    mock.pending.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(play_call(mock.clone(), call));
    let now = rfc2822_now();
    let created = json!({
        "sid": call_sid, "account_sid": sid, "parent_call_sid": null, "to": to, "from": from, "status": "queued",
        "start_time": null, "end_time": null, "duration": null, "price": null, "price_unit": "USD", "direction": "outbound-api",
        "answered_by": null, "api_version": "2010-04-01", "queue_time": "0", "date_created": now, "date_updated": now,
        "uri": format!("/2010-04-01/Accounts/{sid}/Calls/{call_sid}.json"),
    });
    mock.answer(held, (StatusCode::CREATED, axum::Json(created)).into_response()).await
}

/// A form's parameters, in order.
type Form = Vec<(String, String)>;

/// One call the mock plays back to the server.
struct TwilioCall {
    attempt_id: String,
    call_sid: String,
    account_sid: String,
    auth_token: String,
    from: String,
    to: String,
    status_callback: String,
    amd_callback: Option<String>,
    outcome: Outcome,
}

impl TwilioCall {
    /// A status callback's parameters.
    fn status(&self, status: &str, sequence: u32, extra: &[(&str, &str)]) -> Form {
        let mut params: Form = [
            ("AccountSid", self.account_sid.as_str()),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", &self.call_sid),
            ("CallStatus", status),
            ("CallbackSource", "call-progress-events"),
            ("Direction", "outbound-api"),
            ("From", &self.from),
            ("To", &self.to),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        params.push(("SequenceNumber".to_owned(), sequence.to_string()));
        params.push(("Timestamp".to_owned(), rfc2822_now()));
        params.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        params
    }
}

/// Plays a call: its callbacks one after the other, each delivered before the next.
async fn play_call(mock: Arc<ProvidersMock>, call: TwilioCall) {
    let answered_by = match call.outcome {
        Outcome::Human => Some("human"),
        Outcome::Machine => Some("machine_start"),
        Outcome::NoAnswer => None,
    };
    // Whether AnsweredBy comes on `completed` too, besides the AMD callback.
    let repeat_verdict = digest_u32(&call.attempt_id, 2) % 2 == 1;
    let delay = Duration::from_millis(u64::from(digest_u32(&call.attempt_id, 1)) % (mock.max_call_ms + 1));
    // Each callback: its URL, its parameters, whether it is the final one.
    let mut steps: Vec<(String, Form, bool)> = Vec::new();
    let status_url = call.status_callback.clone();
    steps.push((status_url.clone(), call.status("ringing", 0, &[]), false));
    match answered_by {
        None => steps.push((status_url, call.status("no-answer", 1, &[("CallDuration", "0")]), true)),
        Some(verdict) => {
            steps.push((status_url.clone(), call.status("in-progress", 1, &[]), false));
            if let Some(amd_url) = &call.amd_callback {
                let params = [
                    ("AccountSid", call.account_sid.as_str()),
                    ("AnsweredBy", verdict),
                    ("CallSid", &call.call_sid),
                    ("MachineDetectionDuration", "1800"),
                ]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
                steps.push((amd_url.clone(), params, false));
            }
            let duration = if call.outcome == Outcome::Human { "60" } else { "20" };
            let mut extra = vec![("CallDuration", duration)];
            if repeat_verdict && call.amd_callback.is_some() {
                extra.push(("AnsweredBy", verdict));
            }
            steps.push((status_url, call.status("completed", 2, &extra), true));
        }
    }
    for (index, (url, params, last)) in steps.into_iter().enumerate() {
        if last && index > 1 && !delay.is_zero() {
            // The call lasts a while once answered.
            tokio::time::sleep(delay).await;
        }
        let signature = twilio_signature(&call.auth_token, &url, &params);
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish().into_bytes();
        match mock.deliver(&call.attempt_id, &url, "application/x-www-form-urlencoded", ("x-twilio-signature", &signature), body).await {
            Some(acked) if last => mock.final_acked(&call.attempt_id, acked),
            Some(_) => {}
            None => break,
        }
    }
    mock.pending.fetch_sub(1, Ordering::Relaxed);
}

/// `POST /{version}/{phone_number_id}/messages`.
async fn send_message(
    State(mock): State<Arc<ProvidersMock>>,
    Path((version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    mock.creates.fetch_add(1, Ordering::Relaxed);
    let app = mock
        .whatsapp
        .lock()
        .expect("whatsapp")
        .get(&phone_number_id)
        .map(|n| (n.access_token.clone(), n.app_secret.clone(), n.callback_url.clone()));
    let Some((access_token, app_secret, callback_url)) = app else {
        mock.problem(format!("a message was sent from an unknown phone number id {phone_number_id}"));
        return graph_error(StatusCode::BAD_REQUEST, 100, "Unsupported post request: unknown phone number id");
    };
    if header(&headers, "authorization") != Some(format!("Bearer {access_token}").as_str()) {
        mock.problem(format!("a message from {phone_number_id} came without its Bearer token"));
        return graph_error(StatusCode::UNAUTHORIZED, 190, "Invalid OAuth access token");
    }
    if !version.starts_with('v') {
        mock.problem(format!("a message was sent to Graph API version {version:?}"));
    }
    let message: Value = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(err) => {
            mock.problem(format!("a message body is not JSON ({err})"));
            return graph_error(StatusCode::BAD_REQUEST, 100, "Invalid JSON");
        }
    };
    let (Some(attempt_id), Some(to)) = (message["biz_opaque_callback_data"].as_str(), message["to"].as_str()) else {
        mock.problem(format!("a message lacks biz_opaque_callback_data or to: {message}"));
        return graph_error(StatusCode::BAD_REQUEST, 100, "biz_opaque_callback_data and to are required here");
    };
    let template = &message["template"];
    let well_formed = message["messaging_product"] == "whatsapp"
        && message["type"] == "template"
        && template["name"].as_str().is_some_and(|n| !n.is_empty())
        && template["language"]["code"].as_str().is_some_and(|c| !c.is_empty());
    if !well_formed {
        mock.problem(format!("message {attempt_id} is not a well-formed template message: {message}"));
    }
    let recipient = to.trim_start_matches('+').to_owned();
    let wamid = format!("wamid.HBgL{}", uuid::Uuid::new_v4().simple().to_string().to_uppercase());
    let held = mock.holding();
    mock.register(attempt_id, Create::new(Provider::Whatsapp, &phone_number_id, to, &wamid, Reported::Read, held));
    let delivery = Delivery {
        attempt_id: attempt_id.to_owned(),
        wamid: wamid.clone(),
        phone_number_id,
        recipient: recipient.clone(),
        app_secret,
        callback_url,
    };
    mock.pending.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(play_message(mock.clone(), delivery));
    let sent = json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": to, "wa_id": recipient }],
        "messages": [{ "id": wamid, "message_status": "accepted" }],
    });
    mock.answer(held, (StatusCode::OK, axum::Json(sent)).into_response()).await
}

/// One template the mock reports on.
struct Delivery {
    attempt_id: String,
    wamid: String,
    phone_number_id: String,
    recipient: String,
    app_secret: String,
    callback_url: String,
}

/// Posts a message's status webhooks, `sent` → `delivered` → `read`, each delivered before the next.
async fn play_message(mock: Arc<ProvidersMock>, message: Delivery) {
    let statuses = ["sent", "delivered", "read"];
    for (index, status) in statuses.iter().enumerate() {
        let mut item = json!({
            "id": message.wamid, "status": status, "timestamp": jiff::Timestamp::now().as_second().to_string(),
            "recipient_id": message.recipient, "biz_opaque_callback_data": message.attempt_id,
        });
        if *status == "sent" {
            item["pricing"] = json!({ "billable": true, "pricing_model": "PMP", "type": "regular", "category": "marketing" });
        }
        let webhook = json!({
            "object": "whatsapp_business_account",
            "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": { "display_phone_number": "15550783881", "phone_number_id": message.phone_number_id },
                "statuses": [item],
            }}]}],
        });
        let body = serde_json::to_vec(&webhook).expect("JSON");
        let signature = hub_signature(&message.app_secret, &body);
        let last = index == statuses.len() - 1;
        match mock.deliver(&message.attempt_id, &message.callback_url, "application/json", ("x-hub-signature-256", &signature), body).await
        {
            Some(acked) if last => mock.final_acked(&message.attempt_id, acked),
            Some(_) => {}
            None => break,
        }
    }
    mock.pending.fetch_sub(1, Ordering::Relaxed);
}

/// The Bearer token of a request.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    header(headers, "authorization")?.strip_prefix("Bearer ")
}

/// Vapi's and Retell's error bodies (`reference/providers.md` §3.4, §4.4).
fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "status": "error", "message": message, "statusCode": status.as_u16() }))).into_response()
}

/// `x-retell-signature` of a body sent at `millis` (`reference/providers.md` §4.7): `v=<ms>,d=`
/// and the lowercase hex HMAC-SHA256 keyed with the API key over the body followed by the ms.
pub fn retell_signature(api_key: &str, body: &[u8], millis: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(api_key.as_bytes()).expect("any key length");
    mac.update(body);
    mac.update(millis.to_string().as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("v={millis},d={hex}")
}

/// How long a played voice-platform call lasts, for its timestamps (seconds).
fn call_seconds(outcome: Outcome) -> i64 {
    match outcome {
        Outcome::Human => 60,
        Outcome::Machine => 20,
        Outcome::NoAnswer => 0,
    }
}

/// `POST /call` (Vapi).
async fn vapi_call(State(mock): State<Arc<ProvidersMock>>, headers: HeaderMap, body: Bytes) -> Response {
    mock.creates.fetch_add(1, Ordering::Relaxed);
    let Some(api_key) = bearer(&headers).filter(|key| mock.vapi.lock().expect("vapi").iter().any(|k| k == key)).map(str::to_owned) else {
        mock.problem("a Vapi call came without a known Bearer key".to_owned());
        return json_error(
            StatusCode::UNAUTHORIZED,
            "Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa.",
        );
    };
    let create: Value = serde_json::from_slice(&body).unwrap_or_default();
    let overrides = &create["assistantOverrides"];
    let (Some(attempt_id), Some(server_url), Some(to)) =
        (overrides["metadata"]["attempt_id"].as_str(), overrides["server"]["url"].as_str(), create["customer"]["number"].as_str())
    else {
        mock.problem(format!("a Vapi call lacks metadata.attempt_id, server.url or customer.number: {create}"));
        return json_error(
            StatusCode::BAD_REQUEST,
            "assistantOverrides.metadata.attempt_id, server.url and customer.number are required here",
        );
    };
    let mut problems = Vec::new();
    if !is_e164(to) {
        problems.push(format!("customer.number {to:?} is not E.164"));
    }
    if create["assistantId"].as_str().is_none_or(str::is_empty) || create["phoneNumberId"].as_str().is_none_or(str::is_empty) {
        problems.push("assistantId or phoneNumberId missing".to_owned());
    }
    let messages = overrides["serverMessages"].as_array().cloned().unwrap_or_default();
    if !messages.iter().any(|m| m == "end-of-call-report") {
        problems.push(format!("serverMessages {messages:?} lacks end-of-call-report"));
    }
    let server_headers: Vec<(String, String)> = overrides["server"]["headers"]
        .as_object()
        .map(|h| h.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default();
    if server_headers.is_empty() {
        problems.push("server.headers carries no secret: the server messages would go unauthenticated".to_owned());
    }
    for problem in problems {
        mock.problem(format!("attempt {attempt_id}: {problem}"));
    }
    let reported = outcome(attempt_id);
    let call_id = uuid::Uuid::new_v4().to_string();
    let held = mock.holding();
    mock.register(attempt_id, Create::new(Provider::Vapi, &api_key, to, &call_id, Reported::Call(reported), held));
    let call = json!({
        "id": call_id, "orgId": "org-mock", "type": "outboundPhoneCall", "status": "queued",
        "createdAt": jiff::Timestamp::now().to_string(), "updatedAt": jiff::Timestamp::now().to_string(),
        "assistantId": create["assistantId"], "phoneNumberId": create["phoneNumberId"], "customer": create["customer"],
        "assistantOverrides": { "metadata": overrides["metadata"] },
    });
    mock.pending.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(play_vapi(mock.clone(), attempt_id.to_owned(), server_url.to_owned(), server_headers, call.clone(), reported));
    let mut answer = call;
    answer["subscriptionLimits"] = json!({ "concurrencyBlocked": false, "concurrencyLimit": 10, "remainingConcurrentCalls": 9 });
    mock.answer(held, (StatusCode::CREATED, axum::Json(answer)).into_response()).await
}

/// Posts a Vapi call's server messages, each delivered before the next.
async fn play_vapi(
    mock: Arc<ProvidersMock>,
    attempt_id: String,
    url: String,
    headers: Vec<(String, String)>,
    call: Value,
    reported: Outcome,
) {
    let ended_reason = match reported {
        Outcome::Human => "customer-ended-call",
        Outcome::Machine => "voicemail",
        Outcome::NoAnswer => "customer-did-not-answer",
    };
    let end = jiff::Timestamp::now();
    let start = end - jiff::SignedDuration::from_secs(call_seconds(reported));
    let status = |status: &str| {
        let mut message =
            json!({ "type": "status-update", "status": status, "timestamp": jiff::Timestamp::now().as_millisecond(), "call": call });
        if status == "ended" {
            message["endedReason"] = json!(ended_reason);
        }
        json!({ "message": message })
    };
    let mut steps = Vec::new();
    if reported != Outcome::NoAnswer {
        steps.push(status("in-progress"));
    }
    steps.push(status("ended"));
    let converted = digest_u32(&attempt_id, 3).is_multiple_of(4);
    let mut report = json!({
        "type": "end-of-call-report", "endedReason": ended_reason, "timestamp": end.as_millisecond(),
        "call": call, "customer": call["customer"], "cost": 0.11,
        "analysis": { "summary": "The customer confirmed.", "successEvaluation": if converted { "true" } else { "false" } },
        "artifact": { "transcript": "", "messages": [] },
    });
    if reported != Outcome::NoAnswer {
        report["startedAt"] = json!(start.to_string());
        report["endedAt"] = json!(end.to_string());
        report["artifact"] = json!({
            "transcript": "AI: Hello, this is a reminder.\nUser: Thanks.",
            "recordingUrl": format!("https://storage.vapi.ai/{}-mono.wav", call["id"].as_str().unwrap_or_default()),
            "messages": [
                { "role": "bot", "message": "Hello, this is a reminder.", "time": start.as_millisecond() + 800, "secondsFromStart": 0.8 },
                { "role": "user", "message": "Thanks.", "time": start.as_millisecond() + 4200, "secondsFromStart": 4.2 },
            ],
        });
    }
    steps.push(json!({ "message": report }));
    let last = steps.len() - 1;
    for (index, message) in steps.into_iter().enumerate() {
        let body = serde_json::to_vec(&message).expect("JSON");
        let (name, value) = headers.first().cloned().unwrap_or_else(|| ("x-vapi-secret".to_owned(), String::new()));
        match mock.deliver(&attempt_id, &url, "application/json", (&name, &value), body).await {
            Some(acked) if index == last => mock.final_acked(&attempt_id, acked),
            Some(_) => {}
            None => break,
        }
    }
    mock.pending.fetch_sub(1, Ordering::Relaxed);
}

/// `POST /v2/create-phone-call` (Retell).
async fn retell_call(State(mock): State<Arc<ProvidersMock>>, headers: HeaderMap, body: Bytes) -> Response {
    mock.creates.fetch_add(1, Ordering::Relaxed);
    let account = bearer(&headers).and_then(|key| Some((key.to_owned(), mock.retell.lock().expect("retell").get(key)?.clone())));
    let Some((api_key, webhook_url)) = account else {
        mock.problem("a Retell call came without a known Bearer key".to_owned());
        return json_error(StatusCode::UNAUTHORIZED, "API key is missing or invalid.");
    };
    let create: Value = serde_json::from_slice(&body).unwrap_or_default();
    let (Some(attempt_id), Some(from), Some(to)) =
        (create["metadata"]["attempt_id"].as_str(), create["from_number"].as_str(), create["to_number"].as_str())
    else {
        mock.problem(format!("a Retell call lacks metadata.attempt_id, from_number or to_number: {create}"));
        return json_error(StatusCode::BAD_REQUEST, "metadata.attempt_id, from_number and to_number are required here");
    };
    let mut problems = Vec::new();
    if !is_e164(to) || !is_e164(from) {
        problems.push(format!("to_number {to:?} or from_number {from:?} is not E.164"));
    }
    let variables = &create["retell_llm_dynamic_variables"];
    if variables.as_object().is_some_and(|vars| vars.values().any(|v| !v.is_string())) {
        problems.push(format!("retell_llm_dynamic_variables has a value that is not a string: {variables}"));
    }
    for problem in problems {
        mock.problem(format!("attempt {attempt_id}: {problem}"));
    }
    let reported = outcome(attempt_id);
    let call_id = uuid::Uuid::new_v4().simple().to_string();
    let held = mock.holding();
    mock.register(attempt_id, Create::new(Provider::Retell, &api_key, to, &call_id, Reported::Call(reported), held));
    let call = json!({
        "call_type": "phone_call", "call_id": call_id, "agent_id": create["override_agent_id"], "agent_version": 1,
        "call_status": "registered", "direction": "outbound", "from_number": from, "to_number": to,
        "metadata": create["metadata"], "retell_llm_dynamic_variables": variables,
    });
    mock.pending.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(play_retell(mock.clone(), attempt_id.to_owned(), webhook_url, api_key, call.clone(), reported));
    mock.answer(held, (StatusCode::CREATED, axum::Json(call)).into_response()).await
}

/// Posts a Retell call's webhooks, each delivered before the next.
async fn play_retell(mock: Arc<ProvidersMock>, attempt_id: String, url: String, api_key: String, call: Value, reported: Outcome) {
    let end = jiff::Timestamp::now().as_millisecond();
    let start = end - call_seconds(reported) * 1000;
    let (status, reason) = match reported {
        Outcome::Human => ("ended", "user_hangup"),
        Outcome::Machine => ("ended", "voicemail_reached"),
        Outcome::NoAnswer => ("not_connected", "dial_no_answer"),
    };
    let mut ended = call.clone();
    ended["call_status"] = json!(status);
    ended["disconnection_reason"] = json!(reason);
    ended["end_timestamp"] = json!(end);
    if reported != Outcome::NoAnswer {
        ended["start_timestamp"] = json!(start);
        ended["duration_ms"] = json!(end - start);
        ended["transcript"] = json!("Agent: Hello, this is a reminder.\nUser: Thanks.\n");
        ended["transcript_object"] = json!([
            { "role": "agent", "content": "Hello, this is a reminder.", "words": [{ "word": "Hello", "start": 0.7, "end": 1.0 }] },
            { "role": "user", "content": "Thanks.", "words": [{ "word": "Thanks.", "start": 4.2, "end": 4.6 }] },
        ]);
        ended["recording_url"] =
            json!(format!("https://dxc03zgurdly9.cloudfront.net/{}/recording.wav", call["call_id"].as_str().unwrap_or_default()));
    }
    let mut analyzed = ended.clone();
    analyzed["call_analysis"] = json!({
        "call_summary": "The customer confirmed.", "in_voicemail": reported == Outcome::Machine, "user_sentiment": "Positive",
        "call_successful": digest_u32(&attempt_id, 3).is_multiple_of(4), "custom_analysis_data": {},
    });
    let mut started = call;
    started["call_status"] = json!("ongoing");
    started["start_timestamp"] = json!(start);
    let mut steps = Vec::new();
    if reported != Outcome::NoAnswer {
        steps.push(json!({ "event": "call_started", "call": started }));
    }
    steps.push(json!({ "event": "call_ended", "call": ended }));
    steps.push(json!({ "event": "call_analyzed", "call": analyzed }));
    let last = steps.len() - 1;
    for (index, webhook) in steps.into_iter().enumerate() {
        let body = serde_json::to_vec(&webhook).expect("JSON");
        let signature = retell_signature(&api_key, &body, jiff::Timestamp::now().as_millisecond());
        match mock.deliver(&attempt_id, &url, "application/json", ("x-retell-signature", &signature), body).await {
            Some(acked) if index == last => mock.final_acked(&attempt_id, acked),
            Some(_) => {}
            None => break,
        }
    }
    mock.pending.fetch_sub(1, Ordering::Relaxed);
}

/// Creates among `times` (in order) within `[from, from + window)`.
pub fn creates_within(times: &[Instant], from: Instant, window: Duration) -> usize {
    times.iter().filter(|t| **t >= from && **t < from + window).count()
}

/// The most creates among `times` (in order) within any `window`.
pub fn most_within(times: &[Instant], window: Duration) -> usize {
    let (mut most, mut start) = (0, 0);
    for (end, at) in times.iter().enumerate() {
        while *at - times[start] >= window {
            start += 1;
        }
        most = most.max(end + 1 - start);
    }
    most
}
