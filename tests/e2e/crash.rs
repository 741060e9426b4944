//! The crash test: the host killed with SIGKILL at varied moments while many runs are in
//! flight, restarted each time, until every run is done. Counted in the database the host
//! wrote, opened afresh: no acknowledged run lost, every step committed once, no data change
//! applied twice, and the database sound.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coda_store::{RunStatus, Store};
use coda_types::Value;

use crate::coda_bin;
use crate::run::{Files, applets_dir};

const RUNS: u32 = 300;
/// How long each host lives before it is killed, in milliseconds: early (loading applets),
/// mid-batch, and late.
const LIVES_MS: [u64; 8] = [40, 150, 90, 250, 15, 300, 60, 200];

const PLAN: &str = r#"
name: crashy
type: unattended
start: greet
nodes:
  greet:
    applet: hello@0.1.0
    exits: { greeted: first, anonymous: first }
  first:
    applet: scripted@0.1.0
    config: { count_into: Visits }
    exits: { next: nap }
  nap:
    applet: scripted@0.1.0
    config: { pause_ms: 400 }
    exits: { next: nap-again }
  nap-again:
    applet: scripted@0.1.0
    config: { pause_ms: 400 }
    exits: { next: once-more }
  once-more:
    applet: scripted@0.1.0
    config: { pause_ms: 400 }
    exits: { next: second }
  second:
    applet: scripted@0.1.0
    config: { count_into: Visits }
    exits: { next: record }
  record:
    applet: echo@0.1.0
"#;

/// Kills to land while runs are unfinished.
const MIN_KILLS: u32 = 6;

const NODES: [&str; 7] = [
    "greet",
    "first",
    "nap",
    "nap-again",
    "once-more",
    "second",
    "record",
];

fn spawn(args: &[&str]) -> Child {
    Command::new(coda_bin())
        .args(args)
        .env("CODA_CACHE_DIR", crate::cache_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting coda")
}

#[test]
fn runs_survive_sigkill_at_varied_moments() {
    let files = Files::new();
    let plan = files.write("crashy.yaml", PLAN);
    let event = files.write(
        "event.json",
        r#"{ "interaction": "crash", "data": { "CustomerName": "Ada" } }"#,
    );
    let db = files.path("coda.db");
    let applets = applets_dir();
    let applets = applets.to_str().unwrap();

    // The first host starts the runs; the ids it acknowledges are read as it goes.
    let mut first = spawn(&[
        "run",
        &plan,
        "--event",
        &event,
        "--applets",
        applets,
        "--db",
        &db,
        "--repeat",
        &RUNS.to_string(),
    ]);
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let acknowledged = acknowledged.clone();
        let stderr = first.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            // Only whole lines count: a line cut short by the kill acknowledged nothing.
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(id) = line
                    .strip_suffix('\n')
                    .and_then(|l| l.strip_prefix("run started: "))
                {
                    acknowledged.lock().unwrap().push(id.to_owned());
                }
                line.clear();
            }
        })
    };
    // Kill it once a third of the runs are acknowledged, so some were never started.
    while acknowledged.lock().unwrap().len() < (RUNS / 3) as usize {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the host ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    reader.join().unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    let mut kills: u32 = 1;

    // Restart and kill again, at varied moments, while work remains.
    for life in LIVES_MS.iter().cycle() {
        if kills >= MIN_KILLS || Store::open(db.as_ref()).unwrap().unfinished_runs().unwrap() == 0 {
            break;
        }
        let mut host = spawn(&["resume", "--db", &db, "--applets", applets]);
        std::thread::sleep(Duration::from_millis(*life));
        if host.try_wait().unwrap().is_none() {
            host.kill().unwrap();
            kills += 1;
        }
        host.wait().unwrap();
    }
    // The last restart takes everything to its end.
    let out = Command::new(coda_bin())
        .args(["resume", "--db", &db, "--applets", applets])
        .env("CODA_CACHE_DIR", crate::cache_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let store = Store::open(db.as_ref()).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let runs = store.runs("local", None, 10_000).unwrap();
    assert!(runs.len() >= acknowledged.len());
    for id in &acknowledged {
        assert!(
            runs.iter().any(|r| &r.id == id),
            "acknowledged run {id} was lost"
        );
    }
    let mut steps = 0;
    for run in &runs {
        assert_eq!(
            run.status,
            RunStatus::Done,
            "run {} is {:?}",
            run.id,
            run.status
        );
        let journal = store.journal("local", &run.id).unwrap();
        let nodes: Vec<&str> = journal.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(nodes, NODES, "run {}: every node once, in order", run.id);
        let seqs: Vec<u64> = journal.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, (0..NODES.len() as u64).collect::<Vec<_>>());
        // Two counting steps, each applied exactly once.
        assert_eq!(
            run.data.get("Visits"),
            Some(&Value::Integer(2)),
            "run {}",
            run.id
        );
        steps += journal.len();
    }
    eprintln!(
        "crash test: {kills} kills, {} runs ({} acknowledged before the first kill), {steps} steps",
        runs.len(),
        acknowledged.len()
    );
    assert!(
        kills >= MIN_KILLS,
        "too few kills landed while work remained: {kills}"
    );
}
