//! `coda serve --db postgres://…`: the service on a PostgreSQL database of the test's own
//! (made on the server `CODA_TEST_POSTGRES` names, which `./dev test` starts, and dropped
//! afterwards), from a tenant to a finished run; then `coda run --db postgres://…` on the
//! same database.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::json;

use crate::serve::{AFTER, LIVE, OPERATOR, start_with};

/// A database of the test's own, dropped with it.
pub(crate) struct Database {
    server: String,
    name: String,
    pub(crate) url: String,
}

fn admin(server: &str, sql: &str) {
    let (server, sql) = (server.to_owned(), sql.to_owned());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {server}: {e}"));
        let task = tokio::spawn(connection);
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        drop(client);
        let _ = task.await;
    });
}

impl Database {
    pub(crate) fn new(name: &str) -> Database {
        let server = std::env::var("CODA_TEST_POSTGRES").unwrap_or_else(|_| {
            panic!("CODA_TEST_POSTGRES is not set: run the suite with `./dev test`, which starts a PostgreSQL server, or point it at one (postgres://USER@HOST:PORT/postgres)")
        });
        let name = format!("coda_e2e_{name}_{}", std::process::id());
        admin(&server, &format!("DROP DATABASE IF EXISTS {name}"));
        admin(&server, &format!("CREATE DATABASE {name}"));
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Database { server, name, url }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        admin(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

#[test]
fn serve_on_postgres_takes_a_tenant_from_events_to_a_finished_run() {
    let database = Database::new("serve");
    let data = tempfile::tempdir().unwrap();
    let server = start_with(data.path(), Some(OPERATOR), &["--db", &database.url]);
    assert!(
        server
            .banner
            .iter()
            .any(|l| l.contains(&format!("(database {})", database.url))),
        "{:#?}",
        server.banner
    );
    // The SQLite file it would have made otherwise is not there.
    assert!(!data.path().join("coda.db").exists());
    assert_eq!(server.call("GET", "/readyz", None, None).0, 200);
    let token = server.create_tenant("acme");
    for (name, text) in [("after", AFTER), ("live", LIVE)] {
        let mut stream = TcpStream::connect(&server.address).unwrap();
        let request = format!(
            "PUT /v1/plans/{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/yaml\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    }
    let events = [
        json!({"type": "started", "interaction": "call-1", "channel": "voice", "plan": "live",
            "data": {"CLID": "+15550100"}}),
        json!({"type": "ended", "interaction": "call-1", "outcome": "resolved"}),
    ];
    let mut run_id = None;
    for event in events {
        let (status, body) = server.call(
            "POST",
            "/v1/interactions/events",
            Some(&token),
            Some(&event.to_string()),
        );
        assert_eq!(status, 200, "{body}");
        if let Some(id) = body["runs"][0].as_str() {
            run_id = Some(id.to_owned());
        }
    }
    let run_id = run_id.expect("the end started a run");
    let run = server.finished_run(&token, &run_id);
    assert_eq!(run["status"], "done", "{run:#}");
    assert_eq!(run["data"]["ProcessedBy"], "coda-serve");
    assert_eq!(run["data"]["Thanked"], "yes");
    let summary = server.stop();
    assert_eq!(summary["steps"], 3, "{summary}");

    // A second start on the same database: migrations already applied, the run is there.
    let server = start_with(data.path(), Some(OPERATOR), &["--db", &database.url]);
    let (status, body) = server.call("GET", &format!("/v1/runs/{run_id}"), Some(&token), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "done", "{body}");
    server.stop();
}

#[test]
fn run_on_postgres_keeps_its_runs_in_the_database() {
    let database = Database::new("run");
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("after.yaml");
    std::fs::write(&plan, AFTER).unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        json!({"interaction": "call-2", "outcome": "resolved", "data": {"CLID": "+15550100"}})
            .to_string(),
    )
    .unwrap();
    let (status, out) = crate::coda(&[
        "run",
        plan.to_str().unwrap(),
        "--event",
        event.to_str().unwrap(),
        "--repeat",
        "3",
        "--db",
        &database.url,
    ]);
    assert_eq!(status, 0, "{out:#}");
    let store = coda_store::Store::open_url(&database.url).unwrap();
    assert_eq!(store.unfinished_runs().unwrap(), 0);
    let runs = store
        .runs_by_state()
        .unwrap()
        .into_iter()
        .filter(|(_, state, _)| state == "done")
        .map(|(_, _, n)| n)
        .sum::<u64>();
    assert_eq!(runs, 3);
}
