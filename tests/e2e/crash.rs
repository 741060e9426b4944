//! The crash test: the host killed with SIGKILL at varied moments while many runs are in
//! flight, restarted each time, until every run is done. Counted in the database the host
//! wrote, opened afresh: no acknowledged run lost, every step committed once, no data change
//! applied twice, and the database sound. Each run also texts the caller through a Twilio-
//! speaking gateway on loopback (slow enough that kills land during outbound calls), which
//! counts by idempotency key: one message per run, and no delivery after one whose answer
//! the host had journaled.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coda_store::{RunStatus, Store};
use coda_types::Value;

use crate::coda_bin;
use crate::run::{Files, applets_dir};

const RUNS: u32 = 300;

/// When each restarted host is killed. Fixed times alone would mostly land while a host
/// loads its applets; these wait for what they name.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// While the gateway holds at least one of its calls unanswered.
    DuringCall,
    /// Once this many more steps are committed: mid-batch.
    AfterSteps(u64),
    /// This many milliseconds after start: while loading, or wherever it is.
    After(u64),
}

const MOMENTS: [Moment; 8] = [
    Moment::DuringCall,
    Moment::AfterSteps(40),
    Moment::After(30),
    Moment::DuringCall,
    Moment::AfterSteps(200),
    Moment::After(400),
    Moment::AfterSteps(10),
    Moment::After(0),
];

fn committed_steps(db: &str) -> u64 {
    rusqlite::Connection::open(db)
        .and_then(|c| c.query_row("SELECT count(*) FROM steps", [], |r| r.get(0)))
        .unwrap_or(0)
}

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
    exits: { next: text }
  text:
    applet: sms@0.1.0
    config:
      base_url: "GATEWAY"
      from: "+15550123"
      body: "Thanks {{ CustomerName }}, we got your call."
      account_sid_secret: sid
      auth_token_secret: token
    exits: { sent: mail }
  mail:
    applet: send-email@0.1.0
    config:
      to: ["ada@example.com"]
      subject: "Your call"
      text: "Thanks {{ CustomerName }}."
    exits: { sent: nap }
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

/// Kills to land while runs are unfinished: the single-node half of the hundred (the
/// multi-node half is `nodes.rs`). When every run is done before they have all landed, a
/// further batch of runs is started (and its host killed too).
const MIN_KILLS: u32 = 50;

const NODES: [&str; 9] = [
    "greet",
    "first",
    "text",
    "mail",
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
    let servers = tokio::runtime::Runtime::new().unwrap();
    let gateway = servers
        .block_on(coda_testkit::SmsGateway::start(
            coda_testkit::SmsGatewayConfig {
                delay_ms: 200,
                ..Default::default()
            },
        ))
        .unwrap();
    let smtp = servers
        .block_on(coda_testkit::SmtpServer::start(
            coda_testkit::SmtpMode::Accept,
            None,
        ))
        .unwrap();
    let files = Files::new();
    let plan = files.write("crashy.yaml", &PLAN.replace("GATEWAY", &gateway.url()));
    let grants = files.write(
        "grants.yaml",
        &format!(
            "tenants:\n  local:\n    ceiling: {{ http_hosts: [\"127.0.0.1:*\"], allow_private: [127.0.0.0/8], secrets: [sid, token], email: true, email_per_hour: 100000 }}\n    grants:\n      sms: {{ http: [\"127.0.0.1:*\"], secrets: [sid, token] }}\n      send-email: {{ email: true }}\n    smtp: {{ host: 127.0.0.1, port: {}, tls: none, from: \"Acme <support@acme.example>\" }}\n    secrets: {{ sid: {}, token: {} }}\n",
            smtp.port(),
            gateway.config().account_sid,
            gateway.config().auth_token
        ),
    );
    let event = files.write(
        "event.json",
        r#"{ "interaction": "crash", "data": { "CustomerName": "Ada", "CLID": "+15550100" } }"#,
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
        "--grants",
        &grants,
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
    let mut landed = Vec::new();
    let mut batches = 1;
    for moment in MOMENTS.iter().cycle() {
        if kills >= MIN_KILLS {
            break;
        }
        // Work left: resume it. None: a further batch of runs, started by a host that is
        // killed like the others.
        let idle = Store::open(db.as_ref()).unwrap().unfinished_runs().unwrap() == 0;
        let before = committed_steps(&db);
        let started = std::time::Instant::now();
        let batch = (RUNS / 4).to_string();
        let mut host = if idle {
            batches += 1;
            // Interactions of their own: the first batch's would start no run again.
            let event = files.write(
                &format!("event-{batches}.json"),
                &format!(
                    r#"{{ "interaction": "crash-batch-{batches}", "data": {{ "CustomerName": "Ada", "CLID": "+15550100" }} }}"#
                ),
            );
            spawn(&[
                "run",
                &plan,
                "--event",
                &event,
                "--applets",
                applets,
                "--db",
                &db,
                "--repeat",
                &batch,
                "--grants",
                &grants,
            ])
        } else {
            spawn(&[
                "resume",
                "--db",
                &db,
                "--applets",
                applets,
                "--grants",
                &grants,
            ])
        };
        // A new batch is let start its runs before its moment is awaited: killed while it
        // loads, it would start none, again and again.
        while idle
            && host.try_wait().unwrap().is_none()
            && started.elapsed() < Duration::from_secs(10)
            && Store::open(db.as_ref()).unwrap().unfinished_runs().unwrap() == 0
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let started = std::time::Instant::now();
        // Wait for the moment, but never for long: a host that has nothing left of that kind
        // (no call to make) is killed wherever it is after a few seconds.
        while host.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(5) {
            let now = match moment {
                Moment::DuringCall => gateway.in_flight() > 0,
                Moment::AfterSteps(n) => committed_steps(&db) >= before + n,
                Moment::After(ms) => started.elapsed() >= Duration::from_millis(*ms),
            };
            if now {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if host.try_wait().unwrap().is_none() {
            host.kill().unwrap();
            kills += 1;
            landed.push(format!("{moment:?}"));
        }
        host.wait().unwrap();
    }
    // The last restart takes everything to its end.
    let out = Command::new(coda_bin())
        .args([
            "resume",
            "--db",
            &db,
            "--applets",
            applets,
            "--grants",
            &grants,
        ])
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
    let mut journaled = std::collections::BTreeMap::<String, u32>::new();
    for run in &runs {
        assert_eq!(
            run.status,
            RunStatus::Done,
            "run {} is {:?} ({:?})",
            run.id,
            run.status,
            // A run parked by the host says why (`host-fault`: its step never finished).
            run.data.get("LastError")
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

        // The text step's call, as journaled: the gateway's answer the host kept.
        let text = journal.iter().find(|s| s.node == "text").unwrap();
        let effects = store.effects(&run.id, Some(text.seq)).unwrap();
        assert_eq!(effects.len(), 1, "run {}: one call journaled", run.id);
        let kept = effects[0].result["Ok"]["headers"]
            .as_array()
            .and_then(|h| h.iter().find(|h| h[0] == "x-delivery"))
            .and_then(|h| h[1].as_str()?.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("run {}: no delivery number in {:?}", run.id, effects[0]));
        journaled.insert(format!("{}/{}", run.id, text.seq), kept);
    }

    // At the gateway: every run's message created once, under the step's key.
    let deliveries = gateway.deliveries();
    let mut by_token = std::collections::BTreeMap::<String, Vec<u32>>::new();
    for d in &deliveries {
        by_token
            .entry(d.token.clone().expect("every delivery carries a key"))
            .or_default()
            .push(d.number);
    }
    assert_eq!(
        gateway.messages_created() as usize,
        runs.len(),
        "one message per run"
    );
    assert_eq!(by_token.len(), runs.len(), "one key per run");
    for (token, numbers) in &by_token {
        let kept = journaled
            .get(token)
            .unwrap_or_else(|| panic!("key {token} is no run's text step"));
        // A delivery after the one whose answer was journaled would be a completed effect
        // made again; a repeat before it is the in-flight call retried with its key.
        assert_eq!(
            numbers.last(),
            Some(kept),
            "key {token}: deliveries {numbers:?}, journaled {kept}"
        );
    }
    let repeats = deliveries.len() - by_token.len();

    // At the SMTP server: one distinct mail per run, by the Message-ID its key gave it; a
    // repeat is a call that was in flight at a kill (at most one per run per kill).
    let mails = smtp.mails();
    let mut by_message_id = std::collections::BTreeMap::<String, u32>::new();
    for mail in &mails {
        *by_message_id
            .entry(mail.header("Message-ID").expect("a Message-ID"))
            .or_default() += 1;
    }
    assert_eq!(by_message_id.len(), runs.len(), "one distinct mail per run");
    for run in &runs {
        let journal = store.journal("local", &run.id).unwrap();
        let mail = journal.iter().find(|s| s.node == "mail").unwrap();
        assert_eq!(
            store.effects(&run.id, Some(mail.seq)).unwrap().len(),
            1,
            "run {}: one mail journaled",
            run.id
        );
    }
    let mail_repeats = mails.len() - by_message_id.len();
    eprintln!("crash test: kills landed at {landed:?}");
    eprintln!(
        "crash test: {kills} kills, {batches} batches, {} runs ({} acknowledged before the first kill), {steps} steps, \
         {} gateway deliveries for {} messages ({repeats} in-flight calls retried with their key, \
         0 journaled effects repeated), {} mails for {} runs ({mail_repeats} in flight at a kill)",
        runs.len(),
        acknowledged.len(),
        deliveries.len(),
        gateway.messages_created(),
        mails.len(),
        runs.len()
    );
    assert!(
        kills >= MIN_KILLS,
        "too few kills landed while work remained: {kills}"
    );
}

/// Issue 14's poison pill: a tenant's step ran `PRAGMA hard_heap_limit=65536` on its SQLite
/// database, which limited the heap of the whole process; the host's own store ran out of
/// memory, the host exited, and every restart resumed the run, ran the statement again and
/// exited again. Now the statement is refused (the step takes its error exit with the
/// host's `invalid`), and hosts killed and restarted meanwhile finish every run.
const PILL_PLAN: &str = r#"
name: pill
type: unattended
start: pill
nodes:
  pill:
    applet: sql-statement@0.1.0
    config: { database: calls, statement: "PRAGMA hard_heap_limit=65536" }
    exits: { done: after }
    error: after
  after:
    applet: scripted@0.1.0
    config: { pause_ms: 200 }
    exits: { next: record }
  record:
    applet: echo@0.1.0
"#;

#[test]
fn a_poison_pill_is_contained_and_every_restart_goes_on() {
    let files = Files::new();
    let plan = files.write("pill.yaml", PILL_PLAN);
    let tenant_db = files.path("calls.db");
    let grants = files.write(
        "grants.yaml",
        &format!(
            "tenants:\n  local:\n    ceiling: {{ databases: [calls] }}\n    grants:\n      sql-statement: {{ sql: [calls] }}\n    databases: {{ calls: \"sqlite:{tenant_db}\" }}\n"
        ),
    );
    let event = files.write(
        "event.json",
        r#"{ "interaction": "pill", "data": { "CLID": "+15550100" } }"#,
    );
    let db = files.path("coda.db");
    // The applets of this plan alone, the hostile one among them.
    let applets = files.path("applets");
    std::fs::create_dir_all(&applets).unwrap();
    for path in [
        coda_applet_artifacts::SQL_STATEMENT,
        coda_applet_artifacts::SCRIPTED,
        coda_applet_artifacts::ECHO,
    ] {
        let name = std::path::Path::new(path).file_name().unwrap();
        std::fs::copy(path, std::path::Path::new(&applets).join(name)).unwrap();
    }
    const PILLS: u32 = 12;
    let resume = [
        "resume",
        "--db",
        &db,
        "--applets",
        &applets,
        "--grants",
        &grants,
    ];
    // The first host starts the runs; it and one restart are killed once the pills have
    // been taken and runs are still going.
    let mut host = spawn(&[
        "run",
        &plan,
        "--event",
        &event,
        "--applets",
        &applets,
        "--db",
        &db,
        "--repeat",
        &PILLS.to_string(),
        "--grants",
        &grants,
    ]);
    for round in 0..2 {
        let before = committed_steps(&db);
        let started = std::time::Instant::now();
        while host.try_wait().unwrap().is_none()
            && committed_steps(&db) < before + u64::from(PILLS / 2)
            && started.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(status) = host.try_wait().unwrap() {
            // Done already is fine; dying on its own is what the pill did.
            let mut stderr = String::new();
            std::io::Read::read_to_string(host.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            assert!(status.success(), "round {round}: the host ended: {stderr}");
        } else {
            host.kill().unwrap();
            host.wait().unwrap();
        }
        host = spawn(&resume);
    }
    host.kill().unwrap();
    host.wait().unwrap();
    // The last restart takes everything to its end, and ends well.
    let out = Command::new(coda_bin())
        .args(resume)
        .env("CODA_CACHE_DIR", crate::cache_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let store = Store::open(db.as_ref()).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let runs = store.runs("local", None, 10_000).unwrap();
    assert!(!runs.is_empty());
    for run in &runs {
        assert_eq!(run.status, RunStatus::Done, "run {}", run.id);
        let journal = store.journal("local", &run.id).unwrap();
        let nodes: Vec<&str> = journal.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(nodes, ["pill", "after", "record"], "run {}", run.id);
        let pill = &journal[0];
        assert_eq!(pill.result["error"]["code"], "invalid", "{pill:?}");
        assert!(
            pill.note.contains("PRAGMA hard_heap_limit is not allowed"),
            "{}",
            pill.note
        );
        let last_error = run.data.get("LastError").map(Value::to_json).unwrap();
        assert_eq!(last_error["node"], "pill");
    }
}

const KV_RUNS: u32 = 120;

/// Every run counts one contact on one shared key, then naps: the count step's increment
/// and its effect record commit in one transaction, so however the hosts die, the key ends
/// at the number of runs and each run got a count of its own. (The nap keeps runs
/// unfinished long enough for the first kill to land.)
const KV_PLAN: &str = r#"
name: kv-crashy
type: unattended
start: count
nodes:
  count:
    applet: contact-frequency@0.1.0
    config: { key: "contact-frequency/all", limit: 100000, window_seconds: 86400 }
    exits: { allowed: nap, limited: nap }
  nap:
    applet: scripted@0.1.0
    config: { pause_ms: 500 }
"#;

#[test]
fn kv_increments_survive_sigkill_applied_once_each() {
    let files = Files::new();
    let plan = files.write("kv-crashy.yaml", KV_PLAN);
    let grants = files.write(
        "grants.yaml",
        "tenants:\n  local:\n    ceiling: { kv: {} }\n    grants:\n      contact-frequency: { kv: [contact-frequency/] }\n",
    );
    let event = files.write("event.json", r#"{ "interaction": "kv-crash" }"#);
    let db = files.path("coda.db");
    let applets = applets_dir();
    let applets = applets.to_str().unwrap();
    let runs = KV_RUNS.to_string();
    let start = [
        "run",
        &plan,
        "--event",
        &event,
        "--applets",
        applets,
        "--db",
        &db,
        "--repeat",
        &runs,
        "--grants",
        &grants,
    ];
    let resume = [
        "resume",
        "--db",
        &db,
        "--applets",
        applets,
        "--grants",
        &grants,
    ];
    let unfinished = || Store::open(db.as_ref()).unwrap().unfinished_runs().unwrap();
    // The first host is killed once a third of the runs are started, mid-stepping.
    let mut first = spawn(&start);
    while first.try_wait().unwrap().is_none() && unfinished() < u64::from(KV_RUNS / 3) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut kills = u32::from(first.try_wait().unwrap().is_none());
    first.kill().ok();
    first.wait().unwrap();
    // Then each restart is killed once a few more steps are committed: counting steps, naps.
    for steps in [3u64, 10, 1, 25, 5, 40, 2, 15] {
        if unfinished() == 0 {
            break;
        }
        let before = committed_steps(&db);
        let mut host = spawn(&resume);
        let started = std::time::Instant::now();
        while host.try_wait().unwrap().is_none()
            && committed_steps(&db) < before + steps
            && started.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        if host.try_wait().unwrap().is_none() {
            host.kill().unwrap();
            kills += 1;
        }
        host.wait().unwrap();
    }
    assert!(kills > 0, "no kill landed");
    let out = Command::new(coda_bin())
        .args(resume)
        .env("CODA_CACHE_DIR", crate::cache_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let store = Store::open(db.as_ref()).unwrap();
    let runs = store.runs("local", None, 10_000).unwrap();
    assert!(!runs.is_empty());
    let mut counts = Vec::new();
    for run in &runs {
        assert_eq!(
            run.status,
            RunStatus::Done,
            "run {}: {:?}",
            run.id,
            run.data.get("LastError")
        );
        match run.data.get("ContactCount") {
            Some(Value::Integer(n)) => counts.push(*n),
            other => panic!("run {}: ContactCount {other:?}", run.id),
        }
        let kv_calls = store
            .effects(&run.id, None)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "kv")
            .count();
        assert_eq!(kv_calls, 1, "run {}: one kv call journaled", run.id);
    }
    // Each run got a count of its own, 1 to the number of runs: no increment was applied
    // twice (a count would be skipped) nor lost (one would repeat).
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=runs.len() as i64).collect::<Vec<_>>(),
        "after {kills} kills"
    );
    let stored: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT value FROM kv WHERE tenant = 'local' AND key = 'contact-frequency/all'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&stored).unwrap(),
        Value::Integer(runs.len() as i64)
    );
}

/// A post-interaction run that waits an hour for the event `reply`; `got` records that it
/// came (the timeout's `late` that it did not).
const WAITER: &str = r#"{"name": "waiter", "type": "unattended", "start": "wait", "nodes": {
  "wait": {"applet": "wait-for-event@0.1.0", "config": {"event": "reply", "timeout_seconds": 3600},
           "exits": {"received": "got", "timeout": "late"}},
  "got": {"applet": "set-data@0.1.0", "config": {"set": [{"name": "Path", "value": "event"}]}},
  "late": {"applet": "set-data@0.1.0", "config": {"set": [{"name": "Path", "value": "timeout"}]}}}}"#;

/// One request to a server that may have been killed: `None` when the connection failed or
/// was cut before a whole answer came (nothing was acknowledged).
fn try_call(address: &str, method: &str, path: &str, token: &str, body: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, _) = response.split_once("\r\n\r\n")?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// Named events sent while their runs start and reach their waits, some before and some
/// after, with `coda serve` killed with SIGKILL every few requests and started again: an
/// event is sent until the API acknowledges it (at least once, as platforms do). At the end
/// every run went on by its event, none by its timeout: no acknowledged event was lost
/// between being stored and waking its run, whichever came first.
#[test]
fn events_sent_early_or_late_survive_sigkill_and_wake_their_runs() {
    events_survive_sigkill(None);
}

/// The same with `coda serve --db postgres://…` (needs `CODA_TEST_POSTGRES`).
#[test]
fn events_sent_early_or_late_survive_sigkill_on_postgres() {
    let database = crate::serve_postgres::Database::new("events_sigkill");
    events_survive_sigkill(Some(&database.url));
}

fn events_survive_sigkill(postgres: Option<&str>) {
    use crate::serve::{OPERATOR, start_with};
    const INTERACTIONS: usize = 40;
    let data = tempfile::tempdir().unwrap();
    let args: Vec<&str> = postgres.map(|url| vec!["--db", url]).unwrap_or_default();
    let start = |data: &std::path::Path, operator| start_with(data, operator, &args);
    let mut server = start(data.path(), Some(OPERATOR));
    let token = server.create_tenant("acme");
    for (name, body) in [
        ("waiter", WAITER.to_owned()),
        (
            "live",
            r#"{"name": "live", "type": "default", "start": "greet", "post_interaction": "waiter",
  "nodes": {"greet": {"applet": "set-data@0.1.0", "config": {"set": [{"name": "Greeted", "value": "yes"}]}}}}"#
                .to_owned(),
        ),
    ] {
        let (status, answer) =
            server.call("PUT", &format!("/v1/plans/{name}"), Some(&token), Some(&body));
        assert!(status == 200 || status == 201, "{answer}");
    }
    // Each interaction's requests in order: its start, its end (which starts the run), and
    // its event, sent at once for the even ones (before the run can reach its wait) and
    // after all the ends for the odd ones.
    let mut requests: Vec<(String, String)> = Vec::new();
    let event = |i: usize| {
        (
            format!("/v1/interactions/c{i}/events/reply"),
            format!(r#"{{"n": {i}}}"#),
        )
    };
    for i in 0..INTERACTIONS {
        requests.push((
            "/v1/interactions/events".into(),
            format!(r#"{{"type": "started", "interaction": "c{i}", "channel": "voice", "plan": "live"}}"#),
        ));
        requests.push((
            "/v1/interactions/events".into(),
            format!(r#"{{"type": "ended", "interaction": "c{i}"}}"#),
        ));
        if i % 2 == 0 {
            requests.push(event(i));
        }
    }
    requests.extend((0..INTERACTIONS).filter(|i| i % 2 == 1).map(event));

    let mut kills = 0;
    let mut sent = 0;
    while sent < requests.len() {
        let (path, body) = &requests[sent];
        match try_call(&server.address, "POST", path, &token, body) {
            Some(status) if (200..300).contains(&status) => sent += 1,
            Some(503) => {}
            Some(status) => panic!("POST {path} {body}: {status}"),
            None => {
                // Killed under the request: whatever it did or not, it is sent again.
                drop(server);
                server = start(data.path(), Some(OPERATOR));
                continue;
            }
        }
        // Every seventh acknowledged request, the host dies (runs stepping meanwhile).
        if sent % 7 == 0 && sent < requests.len() {
            server.child.kill().unwrap();
            server.child.wait().unwrap();
            kills += 1;
            server = start(data.path(), Some(OPERATOR));
        }
    }
    assert!(kills >= 10, "only {kills} kills landed");

    let (status, runs) = server.call("GET", "/v1/runs?limit=500", Some(&token), None);
    assert_eq!(status, 200, "{runs}");
    let runs = runs["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), INTERACTIONS, "one run per interaction");
    // Taken by the commit that parked the run (the event was there first: the wait and the
    // event's step share their time) or woken by the event (it came later): both happened.
    let (mut taken_on_park, mut woken) = (0, 0);
    for run in &runs {
        let id = run["id"].as_str().unwrap();
        let done = server.finished_run(&token, id);
        let interaction = done["interaction"].as_str().unwrap().to_owned();
        assert_eq!(done["status"], "done", "{done}");
        assert_eq!(done["data"]["Path"], "event", "{interaction}: {done}");
        assert_eq!(
            done["data"]["Event"]["n"].as_u64().map(|n| format!("c{n}")),
            Some(interaction.clone()),
            "{done}"
        );
        let journal = done["journal"].as_array().unwrap();
        assert_eq!(journal[1]["result"]["event"], "reply", "{done}");
        if journal[0]["at_ms"] == journal[1]["at_ms"] {
            taken_on_park += 1;
        } else {
            woken += 1;
        }
    }
    assert!(
        taken_on_park > 0 && woken > 0,
        "{taken_on_park} taken at the wait, {woken} woken"
    );
    let summary = server.stop();
    assert!(summary.is_object(), "{summary}");
    let store = match postgres {
        Some(url) => Store::open_url(url).unwrap(),
        None => Store::open(&data.path().join("coda.db")).unwrap(),
    };
    assert_eq!(store.integrity_check().unwrap(), "ok");
}
