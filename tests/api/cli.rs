//! The `outbound` binary: first start on an empty database, keys create/list/revoke, webhooks
//! list/retry, migrate,
//! graceful shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_outbound");

fn outbound(args: &[&str], database: &str) -> (bool, String, String) {
    let output = Command::new(BIN).args(args).env("OUTBOUND_DATABASE_URL", database).env("RUST_LOG", "warn").output().expect("binary runs");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn is_key(text: &str) -> bool {
    let parts: Vec<&str> = text.split('_').collect();
    parts.len() == 3
        && parts[0] == "ob"
        && parts[1].len() == 8
        && parts[2].len() == 32
        && text[3..].replace('_', "").bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Starts `outbound serve` on port 0; returns the child, its address and what it printed on
/// stdout before it announced the address.
fn serve(database: &str) -> (Child, String, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut printed = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("stdout line");
        if let Some(address) = line.strip_prefix("outbound listening on http://") {
            return (child, address.to_owned(), printed);
        }
        printed.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("serve exited without announcing its address; printed {printed:?}");
}

fn terminate(child: &mut Child) -> bool {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    child.wait().expect("server exits").success()
}

#[tokio::test]
async fn first_start_prints_a_working_key_once_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", dir.path().join("first.db").display());
    let (mut child, address, printed) = serve(&database);
    let key = printed.iter().map(|l| l.trim()).find(|l| is_key(l)).expect("bootstrap key printed").to_owned();

    let client = reqwest::Client::new();
    let response = client
        .get(format!("http://{address}/api/v1.0/campaigns"))
        .header("Authorization", format!("api-key {key}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);

    // Revoking through the CLI while the server runs takes effect on the next request.
    let (ok, out, err) = outbound(&["keys", "revoke", &key[..11]], &database);
    assert!(ok, "{err}");
    assert!(out.contains("revoked"));
    let response = client
        .get(format!("http://{address}/api/v1.0/campaigns"))
        .header("Authorization", format!("api-key {key}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 401);
    assert!(terminate(&mut child), "SIGTERM is a clean exit");

    // A second start on the same database creates no new organization or key.
    let (mut child, _, printed) = serve(&database);
    assert!(!printed.iter().any(|l| is_key(l.trim())), "no key on a second start: {printed:?}");
    assert!(terminate(&mut child));
}

#[test]
fn keys_create_list_revoke_and_migrate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", dir.path().join("keys.db").display());
    let (ok, out, err) = outbound(&["migrate"], &database);
    assert!(ok, "{err}");
    assert!(out.contains("up to date"));

    let (ok, out, err) = outbound(&["keys", "create", "--org", "acme"], &database);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "only the key on stdout: {out:?}");
    assert!(is_key(lines[0]), "{out}");
    let prefix = &lines[0][3..11];
    let (ok, second, _) = outbound(&["keys", "create", "--org", "acme"], &database);
    assert!(ok && is_key(second.trim()));
    let (ok, _, _) = outbound(&["keys", "create", "--org", "globex"], &database);
    assert!(ok);

    let (ok, listing, _) = outbound(&["keys", "list", "--org", "acme"], &database);
    assert!(ok);
    assert!(listing.contains(&format!("ob_{prefix}")) && listing.contains("acme") && !listing.contains("globex"), "{listing}");
    assert!(!listing.contains(&lines[0][12..]), "the secret part is never shown");

    let (ok, _, _) = outbound(&["keys", "revoke", prefix], &database);
    assert!(ok);
    let (_, listing, _) = outbound(&["keys", "list"], &database);
    let row = listing.lines().find(|l| l.contains(prefix)).expect("revoked key still listed");
    assert!(row.trim_end().ends_with('Z'), "revocation time shown: {row}");

    let (ok, _, err) = outbound(&["keys", "revoke", "ZZZZZZZZ"], &database);
    assert!(!ok && err.contains("no key"), "{err}");
    let (ok, _, err) = outbound(&["keys", "revoke", "short"], &database);
    assert!(!ok && err.contains("not a key prefix"), "{err}");
    let (ok, _, _) = outbound(&["keys", "create", "--org", "  "], &database);
    assert!(!ok);
}

/// Logs on stderr: JSON lines for a pipe (here, as under a process manager), text when asked.
/// (On a terminal `auto` writes text: `cli::tests` covers the choice.)
#[test]
fn logs_are_json_lines_on_a_pipe_and_text_when_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let migrate = |format: Option<&str>, file: &str| {
        let mut command = Command::new(BIN);
        command.args(["migrate", "--database", &format!("sqlite://{}", dir.path().join(file).display())]);
        command.env("RUST_LOG", "info").env_remove("OUTBOUND_LOG_FORMAT").env_remove("NO_COLOR");
        if let Some(format) = format {
            command.env("OUTBOUND_LOG_FORMAT", format);
        }
        let output = command.output().expect("binary runs");
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let auto = migrate(None, "auto.db");
    assert!(!auto.is_empty() && auto.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()), "{auto}");
    let text = migrate(Some("text"), "text.db");
    let line = text.lines().next().unwrap_or_else(|| panic!("a log line in {text:?}"));
    assert!(line.contains(" INFO ") && serde_json::from_str::<serde_json::Value>(line).is_err(), "{text}");
    assert!(!text.contains('\u{1b}'), "no colours on a pipe: {text:?}");
}

#[tokio::test]
async fn contacts_import_streams_a_csv_and_reports_every_row_not_created() {
    let app = crate::helpers::TestApp::spawn().await.expect("SQLite is always available");
    let setup = app.setup().await;
    let campaign = app.create_campaign(setup.phone(serde_json::json!({}))).await;
    let id = campaign["id"].as_i64().expect("id");
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("contacts.csv");
    let long_name = "n".repeat(1001);
    let rows = [
        "contact,name,context,f_id,tags,amount_due,due_date".to_owned(),
        "55 1234 5678,Ana,owes since May,crm-1,vip|late,1000,2026-07-01".to_owned(),
        "+52 55 8765 4321,Luis,,crm-2,,,".to_owned(),
        "+525512345678,Ana again,,,,,".to_owned(),
        "12,Bad number,,,,,".to_owned(),
        ",No number,,,,,".to_owned(),
        format!("+14155552671,{long_name},,,,,"),
        "\"+1 (212) 555-0187\",\"Quoted, name\",,,,,".to_owned(),
    ];
    std::fs::write(&csv, rows.join("\n")).expect("write csv");
    let report = dir.path().join("report.csv");
    let output = tokio::process::Command::new(BIN)
        .args(["contacts", "import", "--campaign", &id.to_string(), "--batch-size", "3", "--url", &app.base, "--key", &app.key])
        .arg("--file")
        .arg(&csv)
        .arg("--report")
        .arg(&report)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("import runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.starts_with("7 rows: 3 created, 0 updated, 1 skipped (duplicates), 3 failed"), "{stdout}");
    assert!(stdout.contains("line 4: +525512345678 skipped_duplicate"), "{stdout}");
    assert!(stdout.contains("line 5: 12 failed (INVALID_PHONE_NUMBER)"), "{stdout}");
    assert!(stdout.contains("line 6:  failed (MISSING_CONTACT)"), "{stdout}");
    assert!(stdout.contains("line 7: +14155552671 failed"), "{stdout}");

    let written = std::fs::read_to_string(&report).expect("report written");
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines[0], "line,contact,status,reason");
    assert_eq!(lines.len(), 5, "{written}");

    let (_, list) = app.get(&format!("/campaigns/{id}/contacts")).await;
    assert_eq!(list["total_count"], 3);
    let ana = &list["contacts"][0];
    assert_eq!(ana["contact"], "+525512345678");
    assert_eq!(ana["f_id"], "crm-1");
    assert_eq!(ana["tags"], serde_json::json!(["vip", "late"]));
    assert_eq!(ana["extracted_data"], serde_json::json!({ "amount_due": "1000", "due_date": "2026-07-01" }));
    assert_eq!(list["contacts"][2]["name"], "Quoted, name");

    // Running the same import again creates nothing new: every number is already there.
    let again = tokio::process::Command::new(BIN)
        .args(["contacts", "import", "--campaign", &id.to_string(), "--url", &app.base, "--key", &app.key])
        .arg("--file")
        .arg(&csv)
        .output()
        .await
        .expect("import runs");
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("7 rows: 0 created, 0 updated, 4 skipped (duplicates), 3 failed"));

    // A campaign that does not exist stops the import with a clear error.
    let missing = tokio::process::Command::new(BIN)
        .args(["contacts", "import", "--campaign", "999999", "--url", &app.base, "--key", &app.key])
        .arg("--file")
        .arg(&csv)
        .output()
        .await
        .expect("import runs");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("campaign not found"), "{}", String::from_utf8_lossy(&missing.stderr));
}

#[tokio::test]
async fn webhooks_list_shows_subscriptions_and_retry_sends_a_failed_delivery_again() {
    use jiff::SignedDuration;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let app = crate::helpers::TestApp::spawn().await.expect("SQLite is always available");
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500)).up_to_n_times(5).mount(&receiver).await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).mount(&receiver).await;
    let (status, created) =
        app.post("/webhooks", serde_json::json!({ "url": receiver.uri(), "events": ["webhook.test"], "description": "CRM" })).await;
    assert_eq!(status, 201, "{created}");
    let id = created["webhook"]["id"].as_str().expect("id").to_owned();
    let (status, _) = app.post(&format!("/webhooks/{id}/test"), serde_json::json!({})).await;
    assert_eq!(status, 200);
    // The five attempts of the default schedule, each answered 500.
    for wait in [0, 60, 60, 120, 240] {
        app.clock.advance(SignedDuration::from_secs(wait));
        assert_eq!(app.deliver().await, 1);
    }
    let (_, log) = app.get(&format!("/webhooks/{id}/deliveries")).await;
    let delivery = log["deliveries"][0]["id"].as_str().expect("delivery id").to_owned();
    assert_eq!(log["deliveries"][0]["status"], "failed");

    let (ok, out, err) = outbound(&["webhooks", "list"], &app.database_url);
    assert!(ok, "{err}");
    let row = out.lines().find(|line| line.starts_with(&id)).unwrap_or_else(|| panic!("{id} listed in {out}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&columns[1..5], ["acme", "yes", "0", "1"], "{row}");
    assert!(row.contains(&receiver.uri()) && row.ends_with("webhook.test"), "{row}");
    let (ok, out, _) = outbound(&["keys", "list"], &app.database_url);
    assert!(ok && out.lines().next().is_some_and(|header| header.contains("PROJECT")), "{out}");
    assert!(out.lines().skip(1).all(|line| line.split_whitespace().nth(2).is_some_and(|p| p.starts_with("prj_"))), "{out}");

    // Refused: a malformed id, an unknown delivery.
    let (ok, _, err) = outbound(&["webhooks", "retry", "whk_nope"], &app.database_url);
    assert!(!ok && err.contains("not a webhook id"), "{err}");
    let (ok, _, err) = outbound(&["webhooks", "retry", &id, "--delivery", "dlv_999999"], &app.database_url);
    assert!(!ok && err.contains("no failed delivery dlv_999999"), "{err}");
    assert_eq!(app.deliver().await, 0, "nothing was made due");

    let (ok, out, err) = outbound(&["webhooks", "retry", &id, "--delivery", &delivery], &app.database_url);
    assert!(ok, "{err}");
    assert!(out.starts_with("1 failed deliveries"), "{out}");
    assert_eq!(app.deliver().await, 1, "one more attempt, at once");
    let (_, log) = app.get(&format!("/webhooks/{id}/deliveries")).await;
    assert_eq!(log["deliveries"][0]["status"], "delivered");
    assert_eq!(log["deliveries"][0]["attempts"], 6);
    assert_eq!(log["deliveries"][0]["last_status_code"], 204);
    let (ok, out, _) = outbound(&["webhooks", "retry", &id], &app.database_url);
    assert!(ok && out.starts_with("0 failed deliveries"), "{out}");
}

/// `outbound dnc import`: the CSV's entries listed with source `csv`, numbers without `+` read in
/// the default region (US: no campaign yet), a bad row reported with its line and the others
/// added, a second run finding every entry listed; an unknown organization or column refused.
#[tokio::test]
async fn dnc_import_lists_a_csv_and_reports_its_bad_rows_by_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", dir.path().join("dnc.db").display());
    let (ok, key, _) = outbound(&["keys", "create", "--org", "acme"], &database);
    assert!(ok);
    let csv = dir.path().join("dnc.csv");
    std::fs::write(
        &csv,
        "contact,channel,reason\n+525512345678,whatsapp,asked\n(415) 555-2671,,\n12,all,\n+525587654321,sms,\n+525512345678,whatsapp,again\n",
    )
    .expect("csv written");
    let report = dir.path().join("report.csv");
    let file = csv.to_str().expect("path");
    let (ok, stdout, stderr) =
        outbound(&["dnc", "import", "--org", "acme", "--file", file, "--report", report.to_str().expect("path")], &database);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("5 rows: 2 created, 1 existing (already listed), 2 failed"), "{stdout}");
    let report = std::fs::read_to_string(&report).expect("report written");
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "line,contact,status,reason");
    assert_eq!(lines[1], "4,12,failed,INVALID_PHONE_NUMBER");
    assert!(lines[2].starts_with("5,+525587654321,failed,") && lines[2].contains("sms"), "{report}");
    assert_eq!(lines[3], "6,+525512345678,existing,already listed for whatsapp");

    let (ok, stdout, _) = outbound(&["dnc", "import", "--org", "acme", "--file", file], &database);
    assert!(ok && stdout.starts_with("5 rows: 0 created, 3 existing (already listed), 2 failed"), "{stdout}");

    // What the API shows of them.
    let (mut child, address, _) = serve(&database);
    let client = reqwest::Client::new();
    let listed: serde_json::Value = client
        .get(format!("http://{address}/api/v1.0/dnc"))
        .header("Authorization", format!("api-key {}", key.trim()))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    terminate(&mut child);
    assert_eq!(listed["total_count"], 2, "{listed}");
    assert_eq!(listed["entries"][0]["contact"], "+14155552671");
    assert_eq!((&listed["entries"][0]["channel"], &listed["entries"][0]["source"]), (&serde_json::json!("all"), &serde_json::json!("csv")));
    assert_eq!(listed["entries"][1]["reason"], "asked");

    let (ok, _, stderr) = outbound(&["dnc", "import", "--org", "nobody", "--file", file], &database);
    assert!(!ok && stderr.contains("no organization named"), "{stderr}");
    std::fs::write(&csv, "contact,chanel\n+525512345678,whatsapp\n").expect("csv written");
    let (ok, _, stderr) = outbound(&["dnc", "import", "--org", "acme", "--file", file], &database);
    assert!(!ok && stderr.contains("unknown column `chanel`"), "{stderr}");
}
