//! Several `coda serve` nodes on one PostgreSQL database, and what happens to them: killed
//! (SIGKILL) mid-flow, paused (SIGSTOP) past their lease, given the same event at once, and
//! left without their database for a while. Effects are counted where they land: a gateway
//! speaking the Twilio API (by idempotency key) and an SMTP server (by Message-ID), both on
//! loopback; steps are counted in the database the nodes shared, opened afresh.
//!
//! Needs a PostgreSQL server (`CODA_TEST_POSTGRES`, which `./dev test` starts); each test
//! makes its own database and drops it. The database-unavailable test starts a PostgreSQL
//! cluster of its own ([`coda_testkit::PostgresCluster`]), since it stops it.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use coda_store::{RunStatus, Store};
use serde_json::{Value, json};

use crate::serve::{OPERATOR, Server, start_command};

/// Short, so that a killed node's runs are taken over within the test's patience; the
/// heartbeat renews at a third of it.
const LEASE_MS: u64 = 1_500;

/// A database of the test's own on the suite's PostgreSQL server, dropped at the end.
pub(crate) struct PgDatabase {
    admin: String,
    name: String,
    pub(crate) url: String,
}

pub(crate) fn postgres_admin_url() -> String {
    std::env::var("CODA_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!("CODA_TEST_POSTGRES is not set: run the suite with `./dev test`, which starts a PostgreSQL server, or point it at one (postgres://USER@HOST:PORT/postgres)")
    })
}

fn admin_execute(admin: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {admin}: {e}"));
        let task = tokio::spawn(connection);
        // One at a time: CREATE DATABASE cannot run in the implicit transaction of a
        // multi-statement query.
        for statement in sql.split("; ") {
            client
                .batch_execute(statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        drop(client);
        let _ = task.await;
    });
}

impl PgDatabase {
    pub(crate) fn create(prefix: &str) -> PgDatabase {
        let admin = postgres_admin_url();
        let name = format!("{prefix}_{}", std::process::id());
        admin_execute(
            &admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE); CREATE DATABASE {name}"),
        );
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        let url = format!("{base}/{name}");
        PgDatabase { admin, name, url }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        admin_execute(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Nodes of one service: each its own process and data directory, all on one database and
/// one secrets key (the first node's, copied to the others).
struct Nodes {
    db: String,
    dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Option<Server>>,
}

impl Nodes {
    fn start(db: &str, count: usize) -> Nodes {
        let mut nodes = Nodes {
            db: db.to_owned(),
            dirs: (0..count).map(|_| tempfile::tempdir().unwrap()).collect(),
            nodes: (0..count).map(|_| None).collect(),
        };
        for i in 0..count {
            nodes.spawn(i);
        }
        nodes
    }

    fn spawn(&mut self, i: usize) {
        let dir = self.dirs[i].path().to_owned();
        if i > 0 {
            let key = self.dirs[0].path().join("secrets.key");
            std::fs::copy(&key, dir.join("secrets.key"))
                .unwrap_or_else(|e| panic!("copying {}: {e}", key.display()));
        }
        let mut command = Command::new(crate::coda_bin());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--db", &self.db])
            .args(["--applets", crate::run::applets_dir().to_str().unwrap()])
            .env("CODA_DATA_DIR", &dir)
            .env("CODA_NODE_ID", format!("node-{i}"))
            .env("CODA_LEASE_MS", LEASE_MS.to_string());
        self.nodes[i] = Some(start_command(command, Some(OPERATOR)));
    }

    fn node(&self, i: usize) -> &Server {
        self.nodes[i].as_ref().expect("a running node")
    }

    fn signal(&self, i: usize, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.node(i).pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} node {i}");
    }

    /// SIGKILL: no drain, no goodbye.
    fn kill(&mut self, i: usize) {
        self.signal(i, "-KILL");
        // Dropping the handle reaps the process.
        self.nodes[i] = None;
    }
}

/// What the flows text and mail through, and their tenant's setup on the service.
struct World {
    /// Runs the servers below; kept alive as long as they are.
    _rt: tokio::runtime::Runtime,
    gateway: coda_testkit::SmsGateway,
    smtp: coda_testkit::SmtpServer,
}

impl World {
    fn new(gateway_delay_ms: u64) -> World {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let gateway = rt
            .block_on(coda_testkit::SmsGateway::start(
                coda_testkit::SmsGatewayConfig {
                    delay_ms: gateway_delay_ms,
                    ..Default::default()
                },
            ))
            .unwrap();
        let smtp = rt
            .block_on(coda_testkit::SmtpServer::start(
                coda_testkit::SmtpMode::Accept,
                None,
            ))
            .unwrap();
        World {
            _rt: rt,
            gateway,
            smtp,
        }
    }

    /// Tenant `acme` through `server`: a ceiling with the loopback gateway and SMTP server,
    /// the gateway's secrets, grants for `sms` and `send-email`, and the plans: `live`, whose
    /// post-interaction process `after` texts the caller, pauses a second, mails them and
    /// stamps the run. Returns the tenant's token.
    fn set_up(&self, server: &Server) -> String {
        let token = server.create_tenant("acme");
        let (status, body) = server.call(
            "PUT",
            "/v1/operator/tenants/acme/ceiling",
            Some(OPERATOR),
            Some(
                &json!({
                    "ceiling": {"http_hosts": ["127.0.0.1:*"], "allow_private": ["127.0.0.0/8"],
                        "email": true, "email_per_hour": 100000, "max_secrets": 5},
                    "smtp": {"host": "127.0.0.1", "port": self.smtp.port(), "tls": "none",
                        "from": "Acme <support@acme.example>"}
                })
                .to_string(),
            ),
        );
        assert_eq!(status, 200, "{body}");
        server.grant_sms(&token);
        let (status, body) = server.call(
            "PUT",
            "/v1/grants/send-email",
            Some(&token),
            Some(r#"{"email": true}"#),
        );
        assert_eq!(status, 200, "{body}");
        let after = json!({
            "name": "after", "type": "unattended", "start": "text",
            "nodes": {
                "text": {"applet": "sms@0.1.0", "config": {
                    "base_url": self.gateway.url(), "from": "+15550123", "to": "{{ CLID }}",
                    "body": "Thanks {{ CustomerName }}, we got your call.",
                    "account_sid_secret": "twilio-sid", "auth_token_secret": "twilio-token"},
                    "exits": {"sent": "nap"}},
                "nap": {"applet": "pause@0.1.0", "config": {"seconds": 1}, "exits": {"next": "mail"}},
                "mail": {"applet": "send-email@0.1.0", "config": {
                    "to": ["ada@example.com"],
                    "subject": "Your call {{ InteractionId }}",
                    "text": "Thanks {{ CustomerName }}."},
                    "exits": {"sent": "stamp"}},
                "stamp": {"applet": "set-data@0.1.0", "config": {"set": [{"name": "Done", "value": "yes"}]}}
            }
        });
        let live = json!({
            "name": "live", "type": "default", "start": "greet", "post_interaction": "after",
            "nodes": {"greet": {"applet": "set-data@0.1.0",
                "config": {"set": [{"name": "Greeted", "value": "yes"}]}}}
        });
        for (name, plan) in [("after", after), ("live", live)] {
            let (status, body) = server.call(
                "PUT",
                &format!("/v1/plans/{name}"),
                Some(&token),
                Some(&plan.to_string()),
            );
            assert_eq!(status, 201, "{body}");
        }
        token
    }
}

/// The nodes of the `after` plan, in the order every run takes them once.
const AFTER_NODES: [&str; 4] = ["text", "nap", "mail", "stamp"];

/// Posts interaction `id`'s start and end to `server`; returns the run its end started.
fn call_ends(server: &Server, token: &str, id: &str) -> String {
    let started = json!({"type": "started", "interaction": id, "channel": "voice", "plan": "live",
        "data": {"CLID": "+15550100", "CustomerName": "Ada"}});
    let (status, body) = server.call(
        "POST",
        "/v1/interactions/events",
        Some(token),
        Some(&started.to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let ended = json!({"type": "ended", "interaction": id, "outcome": "resolved"});
    let (status, body) = server.call(
        "POST",
        "/v1/interactions/events",
        Some(token),
        Some(&ended.to_string()),
    );
    assert_eq!(status, 200, "{body}");
    body["runs"][0]
        .as_str()
        .unwrap_or_else(|| panic!("the end of {id} started no run: {body}"))
        .to_owned()
}

fn open_store(url: &str) -> Store {
    Store::open_url(url).unwrap_or_else(|e| panic!("opening {url}: {e}"))
}

/// Waits until every run of `acme` is finished (or `limit` passes).
fn wait_all_finished(db: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let unfinished = open_store(db).unfinished_runs().unwrap();
        if unfinished == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{unfinished} runs still unfinished after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn committed_steps(store: &Store) -> u64 {
    store
        .runs("acme", None, 100_000)
        .map(|runs| runs.iter().map(|r| r.step_seq).sum())
        .unwrap_or(0)
}

/// What the counts came to.
#[derive(Debug, Default)]
struct Counts {
    runs: usize,
    steps: usize,
    sms_deliveries: usize,
    sms_retried_in_flight: usize,
    mails: usize,
    mails_retried_in_flight: usize,
}

/// Every run of `acme` done through every node of `after` once, in order, each step
/// committed once; at the gateway one message per run under the step's key, with no
/// delivery after the one whose answer was journaled (a completed effect made again); at
/// the SMTP server one distinct mail per run, by the Message-ID the call's key gave it.
fn verify(db: &str, world: &World, expected: &[String]) -> Counts {
    let store = open_store(db);
    let runs = store.runs("acme", None, 100_000).unwrap();
    for id in expected {
        assert!(
            runs.iter().any(|r| &r.id == id),
            "acknowledged run {id} was lost"
        );
    }
    let mut counts = Counts {
        runs: runs.len(),
        ..Default::default()
    };
    let mut journaled = BTreeMap::<String, u32>::new();
    for run in &runs {
        assert_eq!(run.status, RunStatus::Done, "run {}: {:?}", run.id, run);
        let journal = store.journal("acme", &run.id).unwrap();
        let nodes: Vec<&str> = journal.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(
            nodes, AFTER_NODES,
            "run {}: every node once, in order",
            run.id
        );
        let seqs: Vec<u64> = journal.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, (0..AFTER_NODES.len() as u64).collect::<Vec<_>>());
        assert_eq!(
            run.data.get("Done"),
            Some(&coda_types::Value::Text("yes".into()))
        );
        counts.steps += journal.len();
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

    let deliveries = world.gateway.deliveries();
    let mut by_token = BTreeMap::<String, Vec<u32>>::new();
    for d in &deliveries {
        by_token
            .entry(d.token.clone().expect("every delivery carries a key"))
            .or_default()
            .push(d.number);
    }
    assert_eq!(
        world.gateway.messages_created() as usize,
        runs.len(),
        "one message per run"
    );
    assert_eq!(by_token.len(), runs.len(), "one key per run");
    for (token, numbers) in &by_token {
        let kept = journaled
            .get(token)
            .unwrap_or_else(|| panic!("key {token} is no run's text step"));
        assert_eq!(
            numbers.last(),
            Some(kept),
            "key {token}: deliveries {numbers:?}, journaled {kept}: a completed effect was made again"
        );
    }
    counts.sms_deliveries = deliveries.len();
    counts.sms_retried_in_flight = deliveries.len() - by_token.len();

    let mails = world.smtp.mails();
    let mut by_id = BTreeMap::<String, usize>::new();
    for mail in &mails {
        *by_id
            .entry(
                mail.header("Message-ID")
                    .expect("every mail has a Message-ID"),
            )
            .or_default() += 1;
    }
    assert_eq!(by_id.len(), runs.len(), "one distinct mail per run");
    counts.mails = mails.len();
    counts.mails_retried_in_flight = mails.len() - by_id.len();
    counts
}

/// Three nodes share the runs; one is killed (SIGKILL) while calls are in flight, and every
/// run, its own included, completes on the other two once its lease runs out.
#[test]
fn three_nodes_share_the_runs_and_finish_a_killed_nodes_runs() {
    let db = PgDatabase::create("coda_nodes_kill");
    let world = World::new(150);
    let mut nodes = Nodes::start(&db.url, 3);
    let token = world.set_up(nodes.node(0));

    let mut runs = Vec::new();
    for i in 0..60 {
        runs.push(call_ends(nodes.node(i % 3), &token, &format!("call-{i}")));
    }
    // Kill node 1 while the gateway holds calls: some of them are node 1's.
    let deadline = Instant::now() + Duration::from_secs(20);
    while world.gateway.in_flight() == 0 {
        assert!(
            Instant::now() < deadline,
            "no call ever reached the gateway"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    nodes.kill(1);
    wait_all_finished(&db.url, Duration::from_secs(120));
    let counts = verify(&db.url, &world, &runs);
    // The survivors did the work, both of them.
    let mut stepped = Vec::new();
    for i in [0, 2] {
        let summary = nodes.nodes[i].take().unwrap().stop();
        stepped.push(summary["steps"].as_u64().unwrap_or(0));
    }
    assert!(
        stepped.iter().all(|&s| s > 0),
        "both survivors stepped runs: {stepped:?}"
    );
    eprintln!("three nodes, one killed: {counts:?}, survivors' steps {stepped:?}");
}

/// A node stopped (SIGSTOP) while its steps are in flight, for longer than its lease, then
/// continued: the other node took its runs over, and the woken node's late commits are
/// refused by the claim fence — exactly one commit per step.
#[test]
fn a_node_paused_past_its_lease_commits_nothing_when_it_wakes() {
    let db = PgDatabase::create("coda_nodes_stop");
    let world = World::new(300);
    let mut nodes = Nodes::start(&db.url, 2);
    let token = world.set_up(nodes.node(0));
    let mut runs = Vec::new();
    for i in 0..30 {
        runs.push(call_ends(nodes.node(i % 2), &token, &format!("call-{i}")));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while world.gateway.in_flight() == 0 {
        assert!(
            Instant::now() < deadline,
            "no call ever reached the gateway"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    nodes.signal(1, "-STOP");
    std::thread::sleep(Duration::from_millis(LEASE_MS * 3));
    nodes.signal(1, "-CONT");
    wait_all_finished(&db.url, Duration::from_secs(120));
    // Let the woken node try what it had in hand.
    std::thread::sleep(Duration::from_millis(500));
    let counts = verify(&db.url, &world, &runs);
    for node in nodes.nodes.iter_mut() {
        node.take().unwrap().stop();
    }
    eprintln!("node paused past its lease: {counts:?}");
}

/// The same interaction's end posted to two nodes at the same moment: one run, and both
/// answers name it.
#[test]
fn the_same_event_posted_to_two_nodes_at_once_starts_one_run() {
    let db = PgDatabase::create("coda_nodes_twice");
    let world = World::new(0);
    let mut nodes = Nodes::start(&db.url, 2);
    let token = world.set_up(nodes.node(0));
    for i in 0..20 {
        let id = format!("call-{i}");
        let started = json!({"type": "started", "interaction": id, "channel": "voice",
            "plan": "live", "data": {"CLID": "+15550100", "CustomerName": "Ada"}});
        let (status, body) = nodes.node(0).call(
            "POST",
            "/v1/interactions/events",
            Some(&token),
            Some(&started.to_string()),
        );
        assert_eq!(status, 200, "{body}");
        let ended = json!({"type": "ended", "interaction": id, "outcome": "resolved"}).to_string();
        let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
            let posts: Vec<_> = (0..2)
                .map(|n| {
                    let (server, token, ended) = (nodes.node(n), &token, &ended);
                    s.spawn(move || {
                        server.call("POST", "/v1/interactions/events", Some(token), Some(ended))
                    })
                })
                .collect();
            posts.into_iter().map(|p| p.join().unwrap()).collect()
        });
        for (status, body) in &answers {
            assert_eq!(*status, 200, "{body}");
        }
        let ids: Vec<&Value> = answers.iter().map(|(_, b)| &b["runs"][0]).collect();
        assert!(ids[0].is_string(), "{answers:?}");
        assert_eq!(ids[0], ids[1], "both answers name the one run: {answers:?}");
    }
    wait_all_finished(&db.url, Duration::from_secs(120));
    let counts = verify(&db.url, &world, &[]);
    assert_eq!(counts.runs, 20);
    for node in nodes.nodes.iter_mut() {
        node.take().unwrap().stop();
    }
}

/// When each kill of the hundred lands.
#[derive(Clone, Copy, Debug)]
enum Moment {
    DuringCall,
    AfterSteps(u64),
    After(u64),
}

const MOMENTS: [Moment; 7] = [
    Moment::DuringCall,
    Moment::AfterSteps(5),
    Moment::After(50),
    Moment::DuringCall,
    Moment::AfterSteps(20),
    Moment::After(300),
    Moment::After(0),
];

/// Kills of the multi-node half of the hundred (the single-node SQLite half is
/// `crash.rs`).
pub(crate) const MULTI_NODE_KILLS: u32 = 50;

/// Three nodes on PostgreSQL, killed (SIGKILL) fifty times between them at varied moments
/// (during a gateway call, after some commits, at a time — while loading too) and each
/// restarted, while calls keep ending: 0 acknowledged runs lost, every step committed once,
/// no completed effect made again at the gateway or the SMTP server.
#[test]
fn fifty_kills_across_three_nodes_lose_nothing_and_repeat_nothing() {
    let db = PgDatabase::create("coda_nodes_kills");
    let world = World::new(100);
    let mut nodes = Nodes::start(&db.url, 3);
    let token = world.set_up(nodes.node(0));
    let mut runs = Vec::new();
    let mut calls = 0;
    let mut landed = BTreeMap::<String, u32>::new();
    let mut kills = 0;
    let mut moments = MOMENTS.iter().cycle();
    while kills < MULTI_NODE_KILLS {
        let victim = kills as usize % 3;
        let alive = (victim + 1) % 3;
        // Keep work coming, through a node that is up.
        for _ in 0..6 {
            runs.push(call_ends(
                nodes.node(alive),
                &token,
                &format!("call-{calls}"),
            ));
            calls += 1;
        }
        let moment = *moments.next().unwrap();
        let store = open_store(&db.url);
        let before = committed_steps(&store);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            let now = match moment {
                Moment::DuringCall => world.gateway.in_flight() > 0,
                Moment::AfterSteps(n) => committed_steps(&store) >= before + n,
                Moment::After(ms) => started.elapsed() >= Duration::from_millis(ms),
            };
            if now {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        nodes.kill(victim);
        kills += 1;
        *landed.entry(format!("{moment:?}")).or_default() += 1;
        nodes.spawn(victim);
    }
    wait_all_finished(&db.url, Duration::from_secs(180));
    let counts = verify(&db.url, &world, &runs);
    assert!(counts.mails_retried_in_flight <= kills as usize * 8);
    for node in nodes.nodes.iter_mut() {
        node.take().unwrap().stop();
    }
    eprintln!("multi-node kills: {kills} kills landed at {landed:?}; {counts:?}");
}

/// PostgreSQL stopped under a running node, then started again: meanwhile the API answers
/// 503 with Retry-After and the scheduler backs off; afterwards the work resumes and
/// finishes, nothing lost and nothing done twice.
#[test]
fn a_node_answers_503_while_its_database_is_down_and_resumes_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = coda_testkit::PostgresCluster::start(&dir.path().join("pg")).unwrap();
    let url = cluster.create_database("coda").unwrap();
    let world = World::new(50);
    let mut nodes = Nodes::start(&url, 1);
    let token = world.set_up(nodes.node(0));
    let mut runs = Vec::new();
    for i in 0..10 {
        runs.push(call_ends(nodes.node(0), &token, &format!("call-{i}")));
    }
    // Runs are parked in their pause when the database goes.
    let deadline = Instant::now() + Duration::from_secs(20);
    while world.gateway.messages_created() < 5 {
        assert!(Instant::now() < deadline, "no messages sent");
        std::thread::sleep(Duration::from_millis(5));
    }
    cluster.stop().unwrap();
    let (status, headers, body) = nodes.node(0).call_with_headers(
        "GET",
        &format!("/v1/runs/{}", runs[0]),
        Some(&token),
        None,
    );
    assert_eq!(status, 503, "{body}");
    let retry_after = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no Retry-After: {headers:?}"));
    assert!(
        retry_after.parse::<u64>().is_ok_and(|s| s >= 1),
        "{retry_after}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("database"),
        "{body}"
    );
    // Down for a few seconds: longer than a pause, so runs come due meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    cluster.start_again().unwrap();
    wait_all_finished(&url, Duration::from_secs(120));
    let counts = verify(&url, &world, &runs);
    let (status, body) =
        nodes
            .node(0)
            .call("GET", &format!("/v1/runs/{}", runs[0]), Some(&token), None);
    assert_eq!(status, 200, "{body}");
    nodes.nodes[0].take().unwrap().stop();
    eprintln!("database down and back: {counts:?}");
}

/// Two `coda serve` nodes on one PostgreSQL database count every call's contact on one kv
/// key (Contact Frequency), and one is SIGKILLed mid-flow: its runs are taken over, each
/// count step's increment committed with its effect record or not at all, so every run got
/// a count of its own and the key ends at the number of runs.
#[test]
fn kv_counts_survive_a_killed_node_applied_once_each() {
    let db = PgDatabase::create("coda_nodes_kv");
    let mut nodes = Nodes::start(&db.url, 2);
    let server = nodes.node(0);
    let token = server.create_tenant("acme");
    for (method, path, auth, body, expected) in [
        (
            "PUT",
            "/v1/operator/tenants/acme/ceiling",
            OPERATOR,
            json!({"ceiling": {"kv": {}}}),
            200,
        ),
        (
            "PUT",
            "/v1/grants/contact-frequency",
            token.as_str(),
            json!({"kv": ["contact-frequency/"]}),
            200,
        ),
        (
            "PUT",
            "/v1/plans/after",
            token.as_str(),
            json!({
                "name": "after", "type": "unattended", "start": "count",
                "nodes": {
                    "count": {"applet": "contact-frequency@0.1.0",
                        "config": {"key": "contact-frequency/all", "limit": 100000,
                            "window_seconds": 86400},
                        "exits": {"allowed": "nap", "limited": "nap"}},
                    "nap": {"applet": "pause@0.1.0", "config": {"seconds": 1},
                        "exits": {"next": "stamp"}},
                    "stamp": {"applet": "set-data@0.1.0",
                        "config": {"set": [{"name": "Done", "value": "yes"}]}}
                }
            }),
            201,
        ),
        (
            "PUT",
            "/v1/plans/live",
            token.as_str(),
            json!({"name": "live", "type": "default", "start": "greet", "post_interaction": "after",
                "nodes": {"greet": {"applet": "set-data@0.1.0",
                    "config": {"set": [{"name": "Greeted", "value": "yes"}]}}}}),
            201,
        ),
    ] {
        let (status, answer) = server.call(method, path, Some(auth), Some(&body.to_string()));
        assert_eq!(status, expected, "{path}: {answer}");
    }

    let mut runs = Vec::new();
    for i in 0..40 {
        runs.push(call_ends(
            nodes.node(i % 2),
            &token,
            &format!("kv-call-{i}"),
        ));
    }
    // Kill node 1 once counting is under way, while most runs are still unfinished.
    let deadline = Instant::now() + Duration::from_secs(20);
    while committed_steps(&open_store(&db.url)) < 8 {
        assert!(Instant::now() < deadline, "no step was ever committed");
        std::thread::sleep(Duration::from_millis(2));
    }
    nodes.kill(1);
    wait_all_finished(&db.url, Duration::from_secs(120));

    let store = open_store(&db.url);
    let mut counts = Vec::new();
    for run in store.runs("acme", None, 1_000).unwrap() {
        assert_eq!(
            run.status,
            RunStatus::Done,
            "run {}: {:?}",
            run.id,
            run.data.get("LastError")
        );
        match run.data.get("ContactCount") {
            Some(coda_types::Value::Integer(n)) => counts.push(*n),
            other => panic!("run {}: ContactCount {other:?}", run.id),
        }
    }
    assert_eq!(counts.len(), runs.len());
    counts.sort_unstable();
    assert_eq!(counts, (1..=runs.len() as i64).collect::<Vec<_>>());
    let get = coda_types::kv::KvOp::Get {
        key: "contact-frequency/all".into(),
    };
    let stored = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(coda_types::kv::KvStore::apply(
            &store,
            "acme",
            get,
            Default::default(),
            0,
            None,
            &Default::default(),
        ));
    match stored {
        Ok(coda_types::kv::KvAnswer::Entry(Some(entry))) => {
            assert_eq!(entry.value, coda_types::Value::Integer(runs.len() as i64))
        }
        other => panic!("{other:?}"),
    }
}
