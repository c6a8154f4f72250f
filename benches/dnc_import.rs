//! Do-not-contact CSV import (issue 25, contract §12.1): one command, `cargo bench --bench dnc_import`.
//!
//! Creates an organization in a fresh SQLite file (`outbound keys create`), writes a CSV of
//! 100,000 rows (`contact,channel,reason`: numbers of one country, the three channels in turn, a
//! short reason on every other row), then times the real `outbound dnc import` (the binary, the
//! same path as an operator's) from start to exit, and prints entries added per second. Run twice:
//! the second run finds every entry listed already (`existing`), the cost of a repeated file.
//!
//! `BENCH_DNC_ROWS` (default 100000) scales the run.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_outbound");
/// The figure the issue asks for.
const TARGET_PER_SECOND: f64 = 50_000.0;

fn main() {
    let rows: usize = std::env::var("BENCH_DNC_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", dir.path().join("dnc.db").display());
    let created = Command::new(BIN).args(["keys", "create", "--org", "bench", "--database", &database]).output().expect("keys create");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));

    let csv = dir.path().join("dnc.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&csv).expect("csv"));
    writeln!(file, "contact,channel,reason").expect("write");
    for i in 0..rows {
        let channel = ["phone_call", "whatsapp", "all"][i % 3];
        let reason = if i % 2 == 0 { "asked not to be called" } else { "" };
        writeln!(file, "+5255{:08},{channel},{reason}", 10_000_000 + i).expect("write");
    }
    file.flush().expect("flush");
    drop(file);

    for run in ["fresh list", "every entry listed already"] {
        let started = Instant::now();
        let output = Command::new(BIN)
            .args(["dnc", "import", "--org", "bench", "--file"])
            .arg(&csv)
            .args(["--database", &database])
            .output()
            .expect("dnc import");
        let seconds = started.elapsed().as_secs_f64();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let summary = String::from_utf8_lossy(&output.stdout);
        let rate = rows as f64 / seconds;
        println!("dnc import, {run}: {rows} rows in {seconds:.2} s = {rate:.0} entries/s ({})", summary.lines().next().unwrap_or_default());
        if run == "fresh list" {
            let verdict = if rate >= TARGET_PER_SECOND { "PASS" } else { "MISS" };
            println!("target ≥ {TARGET_PER_SECOND:.0} entries/s: {verdict}");
        }
    }
}
