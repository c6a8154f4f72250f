//! The `outbound` binary: first start on an empty database, keys create/list/revoke, migrate,
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
