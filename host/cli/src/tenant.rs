//! The tenant CLI: `coda applet push|list|show|retire`, `coda plan push|validate|list|show|
//! diff`, `coda runs …`, `coda interaction …`, `coda grant …`, `coda secret …`, each a thin
//! mapping of its arguments onto one endpoint of a running service (README: "The service"),
//! printing a table, or the API's JSON with `--json`.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Subcommand;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Map, Value as Json, json};

use crate::client::{
    Body, Client, ClientArgs, Failure, cell, items, list_table, print_json, record_table, report,
    table,
};

/// The applet commands that talk to a service (beside the local `describe` and `invoke`).
#[derive(Subcommand)]
pub enum AppletCommand {
    /// Upload a component, or a signed vendor package, to the service; prints what it
    /// declares it needs
    Push {
        /// The component (.wasm) or vendor package (.codapkg)
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The tenant's applets on the service
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One applet and its versions, or one version
    Show {
        name: String,
        version: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Retire a version: no new plan may use it
    Retire {
        name: String,
        version: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// The plan commands that talk to a service (beside `validate`, local or remote).
#[derive(Subcommand)]
pub enum PlanCommand {
    /// Validate and publish a plan as a new version
    Push {
        /// The plan (.yaml, .yml or .json)
        file: PathBuf,
        /// The name to publish under [default: the plan's own `name`]
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The tenant's plans (latest versions)
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A plan's latest version, or the one given
    Show {
        name: String,
        #[arg(long)]
        version: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A plan's versions
    Versions {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// What changed between two versions of a plan
    Diff {
        name: String,
        from: u32,
        to: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum RunsCommand {
    /// Runs, newest first, filtered
    List {
        /// Only runs of this plan
        #[arg(long)]
        plan: Option<String>,
        /// Only runs in this state (ready, parked, waiting, done, failed, cancelled)
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this interaction
        #[arg(long)]
        interaction: Option<String>,
        /// Only runs created since: an RFC 3339 time or a duration ago (30m, 2h, 7d)
        #[arg(long, value_parser = parse_time)]
        since: Option<String>,
        /// Only runs created before: an RFC 3339 time or a duration ago
        #[arg(long, value_parser = parse_time)]
        until: Option<String>,
        /// The page after this run id (the `next` of the previous page)
        #[arg(long)]
        after: Option<String>,
        /// At most this many runs
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A run, its data and its journal as a table of steps
    Show {
        id: String,
        /// Print one applet step as a test fixture (YAML) for `coda applet test` instead:
        /// the step's config, data, state and recorded calls, and what it did
        #[arg(long)]
        as_fixture: bool,
        /// With --as-fixture: the step's sequence number [default: the last failed applet
        /// step, else the last applet step]
        #[arg(long, requires = "as_fixture")]
        step: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Follow a run's steps as they commit; ends when the run does (exit 1 if it failed)
    Tail {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a run that has not ended
    Cancel {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run a failed run again from its failed step
    Retry {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum InteractionCommand {
    /// Send interaction events (started, party-joined, party-disconnected, ended): a JSON
    /// object or an array of them, from FILE or `-` (stdin)
    Event {
        file: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// An interaction: status, parties, data, post-flow action
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Edit a completed interaction's details (kept in its audit trail)
    Edit {
        id: String,
        /// FIELD=TEXT (repeatable); a dotted field sets inside an object
        /// (custom_fields.tier=gold)
        #[arg(long = "set", value_name = "FIELD=TEXT")]
        set: Vec<String>,
        /// FIELD=JSON (repeatable), for values that are not text (numbers, null, lists)
        #[arg(long = "set-json", value_name = "FIELD=JSON")]
        set_json: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The audit trail of an interaction's edits
    Audit {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Clone a completed interaction into a new active outbound one, assigned to you
    Clone {
        id: String,
        /// voice, chat, sms, email or task
        #[arg(long)]
        channel: String,
        #[arg(long)]
        queue: String,
        /// The new interaction's subject [default: the original's]
        #[arg(long)]
        subject: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Submit an agent's disposition for an interaction
    Disposition {
        id: String,
        code: String,
        /// An amount with the disposition (a sale's value, say)
        #[arg(long)]
        amount: Option<String>,
        /// The agent's notes with it
        #[arg(long)]
        notes: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum GrantCommand {
    /// Grant an applet capabilities: from FILE (YAML or JSON), or from the flags
    Set {
        applet: String,
        /// The grant as a file, e.g. `{http: [api.twilio.com], secrets: [twilio-auth-token]}`
        #[arg(conflicts_with_all = ["http", "email", "sql", "secret", "interactions", "kv"])]
        file: Option<PathBuf>,
        /// An outbound host pattern the applet may call (repeatable)
        #[arg(long, value_name = "PATTERN")]
        http: Vec<String>,
        /// The applet may send email
        #[arg(long)]
        email: bool,
        /// A database the applet may query (repeatable)
        #[arg(long, value_name = "DATABASE")]
        sql: Vec<String>,
        /// A secret the applet may read (repeatable)
        #[arg(long, value_name = "NAME")]
        secret: Vec<String>,
        /// The applet may create follow-up interactions
        #[arg(long)]
        interactions: bool,
        /// A key prefix of the tenant's key-value store the applet may use (repeatable;
        /// `""` for every key)
        #[arg(long, value_name = "PREFIX")]
        kv: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The grants of every applet
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Take every grant from an applet
    Delete {
        applet: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Set a secret: the value from stdin, or --value-file (never an argument: other users
    /// can read a process's arguments)
    Set {
        name: String,
        /// Read the value from this file instead of stdin
        #[arg(long)]
        value_file: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The names of the tenant's secrets (values are never shown)
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// A tenant command, whichever group it came from.
pub enum TenantCommand {
    Applet(AppletCommand),
    Plan(PlanCommand),
    /// `coda plan validate FILE` against the service.
    Validate {
        file: PathBuf,
        client: ClientArgs,
    },
    Runs(RunsCommand),
    Interaction(InteractionCommand),
    Grant(GrantCommand),
    Secret(SecretCommand),
}

impl TenantCommand {
    fn client_args(&self) -> &ClientArgs {
        use AppletCommand as A;
        use GrantCommand as G;
        use InteractionCommand as I;
        use PlanCommand as P;
        use RunsCommand as R;
        use SecretCommand as S;
        match self {
            TenantCommand::Applet(
                A::Push { client, .. }
                | A::List { client }
                | A::Show { client, .. }
                | A::Retire { client, .. },
            )
            | TenantCommand::Plan(
                P::Push { client, .. }
                | P::List { client }
                | P::Show { client, .. }
                | P::Versions { client, .. }
                | P::Diff { client, .. },
            )
            | TenantCommand::Validate { client, .. }
            | TenantCommand::Runs(
                R::List { client, .. }
                | R::Show { client, .. }
                | R::Tail { client, .. }
                | R::Cancel { client, .. }
                | R::Retry { client, .. },
            )
            | TenantCommand::Interaction(
                I::Event { client, .. }
                | I::Show { client, .. }
                | I::Edit { client, .. }
                | I::Audit { client, .. }
                | I::Clone { client, .. }
                | I::Disposition { client, .. },
            )
            | TenantCommand::Grant(
                G::Set { client, .. } | G::List { client } | G::Delete { client, .. },
            )
            | TenantCommand::Secret(
                S::Set { client, .. } | S::List { client } | S::Delete { client, .. },
            ) => client,
        }
    }
}

/// Runs a tenant command: prints its answer, or its failure, and gives the exit status.
pub async fn run(command: TenantCommand) -> ExitCode {
    let json_mode = command.client_args().json;
    let result = async {
        let client = Client::new(command.client_args())?;
        dispatch(&client, command).await
    }
    .await;
    report(json_mode, result)
}

async fn dispatch(client: &Client, command: TenantCommand) -> Result<(), Failure> {
    match command {
        TenantCommand::Applet(command) => applet(client, command).await,
        TenantCommand::Plan(command) => plan(client, command).await,
        TenantCommand::Validate { file, .. } => validate(client, &file).await,
        TenantCommand::Runs(command) => runs(client, command).await,
        TenantCommand::Interaction(command) => interaction(client, command).await,
        TenantCommand::Grant(command) => grant(client, command).await,
        TenantCommand::Secret(command) => secret(client, command).await,
    }
}

/// Prints the answer: its JSON with `--json`, else what `human` makes of it.
fn show(client: &Client, answer: &Json, human: impl FnOnce(&Json)) {
    if client.json {
        print_json(answer);
    } else {
        human(answer);
    }
}

/// A one-line acknowledgement, or the answer's fields if it has any.
fn done(client: &Client, answer: &Json, what: &str) {
    show(client, answer, |answer| {
        if answer.is_object() {
            println!("{}", record_table(answer, &[], &[]));
        } else {
            println!("{what}");
        }
    });
}

fn read_file(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::io(path, e))
}

/// A text file sent as a request body (a plan, a config, a secret's value): one larger than
/// the API takes (`coda_server::MAX_BODY_BYTES`) is refused before it is read whole.
fn read_text(path: &Path) -> Result<String, Failure> {
    coda_types::files::read_text_capped(path, coda_server::MAX_BODY_BYTES as u64).map_err(|e| {
        match e {
            coda_types::files::ReadError::Io { source, .. } => Failure::io(path, source),
            other => Failure::usage(other.to_string()),
        }
    })
}

// ---- applets ----

async fn applet(client: &Client, command: AppletCommand) -> Result<(), Failure> {
    match command {
        AppletCommand::Push { file, .. } => {
            let bytes = read_file(&file)?;
            // A package by its name or its bytes; the service checks which it is either way.
            let content_type = if coda_package::is_package(&bytes)
                || file
                    .extension()
                    .is_some_and(|e| e == coda_package::EXTENSION)
            {
                coda_package::CONTENT_TYPE
            } else {
                "application/wasm"
            };
            let answer = client
                .call(
                    Method::POST,
                    &["v1", "applets"],
                    &[],
                    Body::Bytes(bytes, content_type),
                )
                .await?;
            show(client, &answer, |a| {
                println!(
                    "{}",
                    record_table(
                        a,
                        &[
                            "name",
                            "version",
                            "vendor",
                            "digest",
                            "capabilities",
                            "coda_imports"
                        ],
                        &["config_schema", "package"]
                    )
                );
                print_needs(a);
            });
        }
        AppletCommand::List { .. } => {
            let answer = client.get(&["v1", "applets"], &[]).await?;
            show(client, &answer, |a| {
                let rows: Vec<Json> = items(a, "applets").iter().map(applet_row).collect();
                print_list(
                    &rows,
                    &["name", "versions", "origins", "description"],
                    "no applets",
                )
            });
        }
        AppletCommand::Show { name, version, .. } => {
            let answer = match &version {
                Some(v) => {
                    client
                        .get(&["v1", "applets", &name, "versions", v], &[])
                        .await?
                }
                None => client.get(&["v1", "applets", &name], &[]).await?,
            };
            show(client, &answer, |a| {
                println!(
                    "{}",
                    record_table(
                        a,
                        &["name", "version", "vendor", "description"],
                        &["versions", "config_schema", "package"]
                    )
                );
                print_needs(a);
                if let Some(versions) = a.get("versions").and_then(Json::as_array)
                    && versions.iter().any(Json::is_object)
                {
                    println!("\nversions:");
                    println!(
                        "{}",
                        list_table(
                            versions,
                            &[
                                "version",
                                "origin",
                                "retired",
                                "digest",
                                "capabilities",
                                "uploaded_at_ms",
                                "created_at_ms"
                            ]
                        )
                    );
                }
            });
        }
        AppletCommand::Retire { name, version, .. } => {
            let answer = client
                .call(
                    Method::DELETE,
                    &["v1", "applets", &name, "versions", &version],
                    &[],
                    Body::None,
                )
                .await?;
            done(client, &answer, &format!("retired {name} {version}"));
        }
    }
    Ok(())
}

/// A vendor package's declared needs, each with why, as the vendor signed them.
fn print_needs(applet: &Json) {
    let Some(needs) = applet
        .pointer("/package/manifest/capabilities")
        .and_then(Json::as_array)
    else {
        return;
    };
    let signer = applet.pointer("/package/signed_by").and_then(Json::as_str);
    println!(
        "\nsigned by {} ({})",
        cell("", applet.get("vendor")),
        signer.unwrap_or("?")
    );
    if !needs.is_empty() {
        println!("{}", list_table(needs, &["name", "why"]));
    }
}

/// An applet of the list as a row: its versions on one line, a retired one marked.
fn applet_row(applet: &Json) -> Json {
    let mut row = applet.clone();
    if let Some(versions) = applet.get("versions").and_then(Json::as_array) {
        let versions: Vec<String> = versions
            .iter()
            .map(|v| match v.get("version") {
                Some(version) if v.get("retired") == Some(&Json::Bool(true)) => {
                    format!("{} (retired)", cell("", Some(version)))
                }
                Some(version) => cell("", Some(version)),
                None => cell("", Some(v)),
            })
            .collect();
        row["versions"] = json!(versions);
    }
    row
}

fn print_list(items: &[Json], columns: &[&str], none: &str) {
    if items.is_empty() {
        println!("{none}");
    } else {
        println!("{}", list_table(items, columns));
    }
}

// ---- plans ----

/// A plan file's text, the Content-Type it is sent with, and its own `name`.
fn plan_file(path: &Path) -> Result<(String, &'static str, Option<String>), Failure> {
    let text = read_text(path)?;
    let (content_type, parsed) = match coda_plan::Format::detect(&text) {
        coda_plan::Format::Json => ("application/json", serde_json::from_str::<Json>(&text).ok()),
        coda_plan::Format::Yaml => (
            "application/yaml",
            coda_types::yaml::from_str::<Json>(&text).ok(),
        ),
    };
    // The server reports a plan that does not parse, with every problem; here the name is
    // all that is wanted.
    let name = parsed
        .as_ref()
        .and_then(|p| p.get("name"))
        .and_then(Json::as_str)
        .map(str::to_owned);
    Ok((text, content_type, name))
}

async fn validate(client: &Client, file: &Path) -> Result<(), Failure> {
    let (text, content_type, _) = plan_file(file)?;
    let answer = client
        .call(
            Method::POST,
            &["v1", "plans", "validate"],
            &[],
            Body::Bytes(text.into_bytes(), content_type),
        )
        .await
        .map_err(|mut failure| {
            if failure.kind == "invalid-plan" {
                failure.message = format!("{}: {}", file.display(), failure.message);
            }
            failure
        })?;
    show(client, &answer, |_| println!("{}: valid", file.display()));
    Ok(())
}

async fn plan(client: &Client, command: PlanCommand) -> Result<(), Failure> {
    match command {
        PlanCommand::Push { file, name, .. } => {
            let (text, content_type, own_name) = plan_file(&file)?;
            let Some(name) = name.or(own_name) else {
                return Err(Failure::usage(format!(
                    "{} has no `name`: give one with --name",
                    file.display()
                )));
            };
            let answer = client
                .call(
                    Method::PUT,
                    &["v1", "plans", &name],
                    &[],
                    Body::Bytes(text.into_bytes(), content_type),
                )
                .await
                .map_err(|mut failure| {
                    if failure.kind == "invalid-plan" {
                        failure.message = format!("{}: {}", file.display(), failure.message);
                    }
                    failure
                })?;
            show(client, &answer, |a| {
                println!(
                    "published {} version {}",
                    cell("plan", a.get("plan")),
                    cell("version", a.get("version"))
                );
            });
        }
        PlanCommand::List { .. } => {
            let answer = client.get(&["v1", "plans"], &[]).await?;
            show(client, &answer, |a| {
                print_list(
                    items(a, "plans"),
                    &["name", "version", "type", "created_at_ms"],
                    "no plans",
                )
            });
        }
        PlanCommand::Show { name, version, .. } => {
            let answer = match version {
                Some(v) => {
                    client
                        .get(&["v1", "plans", &name, "versions", &v.to_string()], &[])
                        .await?
                }
                None => client.get(&["v1", "plans", &name], &[]).await?,
            };
            show(client, &answer, |a| {
                println!(
                    "# plan {} version {}",
                    cell("plan", a.get("plan")),
                    cell("version", a.get("version"))
                );
                let body = a.get("body").unwrap_or(a);
                match serde_yaml_ng::to_string(body) {
                    Ok(yaml) => print!("{yaml}"),
                    Err(_) => print_json(body),
                }
            });
        }
        PlanCommand::Versions { name, .. } => {
            let answer = client.get(&["v1", "plans", &name, "versions"], &[]).await?;
            show(client, &answer, |a| {
                print_list(
                    items(a, "versions"),
                    &["version", "created_at_ms", "digest"],
                    "no versions",
                )
            });
        }
        PlanCommand::Diff { name, from, to, .. } => {
            let answer = client
                .get(
                    &["v1", "plans", &name, "diff"],
                    &[("from", from.to_string()), ("to", to.to_string())],
                )
                .await?;
            show(client, &answer, print_diff);
        }
    }
    Ok(())
}

/// A diff: what changed, node by node, then the unified diff of the two versions.
fn print_diff(answer: &Json) {
    let (from, to) = (cell("", answer.get("from")), cell("", answer.get("to")));
    if answer.get("identical") == Some(&Json::Bool(true)) {
        println!("versions {from} and {to} are identical");
        return;
    }
    let summary = answer.get("summary").unwrap_or(&Json::Null);
    let names = |key: &str| {
        items(summary, key)
            .iter()
            .map(|n| cell("", Some(n)))
            .collect::<Vec<_>>()
    };
    for node in names("nodes_added") {
        println!("+ node {node}");
    }
    for node in names("nodes_removed") {
        println!("- node {node}");
    }
    for node in items(summary, "nodes_changed") {
        println!(
            "~ node {}: {}",
            cell("", node.get("node")),
            cell("", node.get("changed"))
        );
    }
    for field in ["start", "type", "post_interaction", "description"] {
        if let Some(change) = summary.get(field).filter(|c| c.is_object()) {
            println!(
                "~ {field}: {} -> {}",
                cell("", change.get("from")),
                cell("", change.get("to"))
            );
        }
    }
    match answer.get("unified").and_then(Json::as_str) {
        Some(text) => {
            println!();
            print!("{text}");
        }
        None if summary.is_null() => print_json(answer),
        None => {}
    }
}

// ---- runs ----

/// A time for the API: a duration ago (`30m`, `2h`, `7d`) as milliseconds since the epoch;
/// anything else (an RFC 3339 time, with any offset) as written, for the server to read and,
/// if need be, refuse by name.
fn parse_time(text: &str) -> Result<String, String> {
    let Ok(ago) = humantime::parse_duration(text) else {
        return Ok(text.to_owned());
    };
    let ms = SystemTime::now()
        .checked_sub(ago)
        .and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok())
        .ok_or_else(|| format!("`{text}` ago is before 1970"))?
        .as_millis();
    Ok(ms.to_string())
}

const RUN_COLUMNS: &[&str] = &[
    "id",
    "plan",
    "plan_version",
    "interaction",
    "status",
    "node",
    "created_at_ms",
    "updated_at_ms",
];

/// Where a run ends.
fn is_final(status: &str) -> bool {
    matches!(status, "done" | "failed" | "cancelled" | "canceled")
}

async fn runs(client: &Client, command: RunsCommand) -> Result<(), Failure> {
    match command {
        RunsCommand::List {
            plan,
            status,
            interaction,
            since,
            until,
            after,
            limit,
            ..
        } => {
            let query: Vec<(&str, String)> = [
                ("plan", plan),
                ("status", status),
                ("interaction", interaction),
                ("since", since),
                ("until", until),
                ("after", after),
                ("limit", limit.map(|n| n.to_string())),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            let answer = client.get(&["v1", "runs"], &query).await?;
            show(client, &answer, |a| {
                print_list(items(a, "runs"), RUN_COLUMNS, "no runs");
                if let Some(next) = a.get("next").and_then(Json::as_str) {
                    println!("(more: --after {next})");
                }
            });
        }
        RunsCommand::Show {
            id,
            as_fixture: true,
            step,
            ..
        } => {
            let query: Vec<(&str, String)> =
                step.map(|s| ("step", s.to_string())).into_iter().collect();
            let answer = client.get(&["v1", "runs", &id, "fixture"], &query).await?;
            // Read back as the harness reads fixtures: what is printed is sure to run.
            let fixture = coda_harness::Fixture::parse(&answer.to_string()).map_err(|e| {
                Failure::usage(format!("the service's fixture does not parse: {e}"))
            })?;
            if client.json {
                println!("{answer:#}");
            } else {
                print!("{}", fixture.to_yaml());
            }
        }
        RunsCommand::Show { id, .. } => {
            let answer = client.get(&["v1", "runs", &id], &[]).await?;
            show(client, &answer, print_run);
        }
        RunsCommand::Tail { id, .. } => tail(client, &id).await?,
        RunsCommand::Cancel { id, .. } => {
            let answer = client
                .call(
                    Method::POST,
                    &["v1", "runs", &id, "cancel"],
                    &[],
                    Body::None,
                )
                .await?;
            done(client, &answer, &format!("cancelled {id}"));
        }
        RunsCommand::Retry { id, .. } => {
            let answer = client
                .call(Method::POST, &["v1", "runs", &id, "retry"], &[], Body::None)
                .await?;
            done(client, &answer, &format!("retrying {id}"));
        }
    }
    Ok(())
}

fn print_run(run: &Json) {
    let mut order = RUN_COLUMNS.to_vec();
    order.extend(["attempt", "due_at_ms", "wait"]);
    println!(
        "{}",
        record_table(run, &order, &["journal", "effects", "data"])
    );
    if let Some(data) = run.get("data").and_then(Json::as_object)
        && !data.is_empty()
    {
        println!("\ndata:");
        println!("{}", record_table(&Json::Object(data.clone()), &[], &[]));
    }
    let journal = items(run, "journal");
    println!("\njournal:");
    if journal.is_empty() {
        println!("no steps yet");
    } else {
        let mut steps = table(&[
            "seq", "node", "applet", "attempt", "result", "note", "fuel", "ms",
        ]);
        for step in journal {
            steps.add_row(step_cells(step));
        }
        println!("{steps}");
    }
    // What the applets logged, step by step.
    let logged: Vec<String> = journal
        .iter()
        .flat_map(|step| {
            let seq = cell("", step.get("seq"));
            items(step, "logs").iter().map(move |line| {
                format!(
                    "  {seq:>4} {:<5} {}",
                    line.get("level").and_then(Json::as_str).unwrap_or("?"),
                    line.get("message").and_then(Json::as_str).unwrap_or("")
                )
            })
        })
        .collect();
    if !logged.is_empty() {
        println!(
            "
logs:"
        );
        for line in logged {
            println!("{line}");
        }
    }
    let effects = items(run, "effects");
    if !effects.is_empty() {
        println!("\neffects:");
        let mut table = table(&["step", "call", "kind", "result", "at"]);
        for effect in effects {
            let result = effect.get("result");
            let summary = match result.and_then(|r| r.get("error")) {
                Some(error) => format!("error {}", cell("", error.get("kind").or(Some(error)))),
                None => "ok".into(),
            };
            table.add_row(vec![
                cell("", effect.get("step_seq")),
                cell("", effect.get("call_seq")),
                cell("", effect.get("kind")),
                summary,
                cell("at_ms", effect.get("at_ms")),
            ]);
        }
        println!("{table}");
    }
}

/// A journal step as the cells of a row.
fn step_cells(step: &Json) -> Vec<String> {
    let ms = step
        .get("duration_us")
        .and_then(Json::as_u64)
        .map(|us| format!("{:.1}", us as f64 / 1000.0))
        .unwrap_or_else(|| "-".into());
    vec![
        cell("", step.get("seq")),
        cell("", step.get("node")),
        cell("", step.get("applet")),
        cell("", step.get("attempt")),
        result_summary(step.get("result")),
        cell("", step.get("note")),
        cell("", step.get("fuel_used")),
        ms,
    ]
}

/// A step's result in a word or two: `exit next`, `pause`, `error fuel`.
fn result_summary(result: Option<&Json>) -> String {
    let Some(Json::Object(result)) = result else {
        return cell("", result);
    };
    if let Some(exit) = result.get("exit").and_then(Json::as_str) {
        return format!("exit {exit}");
    }
    if let Some(error) = result.get("error") {
        let kind = error.get("kind").and_then(Json::as_str).unwrap_or("?");
        return format!("error {kind}");
    }
    result.keys().next().cloned().unwrap_or_else(|| "-".into())
}

/// Follows `GET /v1/runs/{id}/tail` (server-sent events): each step as it commits; ends when
/// an event says the run ended, or when the stream closes and the run has ended.
async fn tail(client: &Client, id: &str) -> Result<(), Failure> {
    use eventsource_stream::Eventsource;
    let response = client.open_stream(&["v1", "runs", id, "tail"]).await?;
    // The response's chunks as a stream (reqwest's own needs its `stream` feature, which
    // would compile more for the capabilities' client as well).
    let chunks = futures_util::stream::unfold(Some(response), |response| async move {
        let mut response = response?;
        match response.chunk().await {
            Ok(Some(bytes)) => Some((Ok(bytes), Some(response))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut events = std::pin::pin!(chunks.eventsource());
    if !client.json {
        println!(
            "{:>4}  {:<16} {:<24} {:<8} {:<16} note",
            "SEQ", "NODE", "APPLET", "ATTEMPT", "RESULT"
        );
    }
    let mut ended: Option<String> = None;
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| match e {
            eventsource_stream::EventStreamError::Transport(e) => client.transport(e),
            other => Failure::new(
                1,
                "invalid-response",
                format!("the run's event stream is malformed: {other}"),
            ),
        })?;
        let data: Json =
            serde_json::from_str(&event.data).unwrap_or_else(|_| Json::String(event.data.clone()));
        if client.json {
            println!(
                "{}",
                json!({ "event": event.event, "id": event.id, "data": data })
            );
        } else if data.get("node").is_some() && data.get("seq").is_some() {
            let cells = step_cells(&data);
            println!(
                "{:>4}  {:<16} {:<24} {:<8} {:<16} {}",
                cells[0], cells[1], cells[2], cells[3], cells[4], cells[5]
            );
        }
        if event.event == "error" {
            // The server failed mid-tail and said so in the stream.
            return Err(Failure::new(
                1,
                data.get("kind").and_then(Json::as_str).unwrap_or("error"),
                cell("", data.get("message").or(Some(&data))),
            ));
        }
        let status = data.get("status").and_then(Json::as_str);
        let final_event = matches!(
            event.event.as_str(),
            "end" | "ended" | "done" | "finished" | "run-ended"
        );
        if final_event || (data.get("seq").is_none() && status.is_some_and(is_final)) {
            ended = Some(status.unwrap_or("ended").to_owned());
            break;
        }
    }
    // The stream closed without saying how the run ended (or said it in no known way): the
    // run itself says.
    let status = match ended {
        Some(status) if is_final(&status) => status,
        _ => {
            let run = client.get(&["v1", "runs", id], &[]).await?;
            let status = run
                .get("status")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_owned();
            if !is_final(&status) {
                return Err(Failure::new(
                    1,
                    "stream-ended",
                    format!("the stream ended while run {id} is still {status}"),
                ));
            }
            status
        }
    };
    if !client.json {
        println!("run {id}: {status}");
    }
    if status == "failed" {
        return Err(Failure::new(1, "run-failed", format!("run {id} failed")));
    }
    Ok(())
}

// ---- interactions ----

/// Reads FILE, or stdin for `-`.
fn read_input(file: &str) -> Result<String, Failure> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::new(2, "io", format!("cannot read stdin: {e}")))?;
        Ok(text)
    } else {
        read_text(Path::new(file))
    }
}

/// Sets `value` at a dotted path in `object`, making the objects on the way.
fn set_path(object: &mut Map<String, Json>, path: &str, value: Json) -> Result<(), Failure> {
    let mut parts = path.split('.').peekable();
    let mut at = object;
    while let Some(part) = parts.next() {
        if part.is_empty() {
            return Err(Failure::usage(format!("`{path}`: a field name is empty")));
        }
        if parts.peek().is_none() {
            at.insert(part.to_owned(), value);
            return Ok(());
        }
        let next = at
            .entry(part.to_owned())
            .or_insert_with(|| Json::Object(Map::new()));
        at = next.as_object_mut().ok_or_else(|| {
            Failure::usage(format!("`{path}`: `{part}` is set to a value already"))
        })?;
    }
    Ok(())
}

/// The body of `coda interaction edit`: every --set as text, every --set-json as JSON.
fn edit_body(set: &[String], set_json: &[String]) -> Result<Json, Failure> {
    let mut body = Map::new();
    for (pairs, flag) in [(set, "--set"), (set_json, "--set-json")] {
        for pair in pairs {
            let Some((field, raw)) = pair.split_once('=') else {
                return Err(Failure::usage(format!(
                    "{flag} {pair:?}: expected FIELD=VALUE, e.g. {flag} subject=Refund"
                )));
            };
            let value = if flag == "--set" {
                Json::String(raw.to_owned())
            } else {
                serde_json::from_str(raw)
                    .map_err(|e| Failure::usage(format!("{flag} {field}: not JSON: {e}")))?
            };
            set_path(&mut body, field, value)?;
        }
    }
    if body.is_empty() {
        return Err(Failure::usage(
            "nothing to change: give --set FIELD=TEXT or --set-json FIELD=JSON",
        ));
    }
    Ok(Json::Object(body))
}

async fn interaction(client: &Client, command: InteractionCommand) -> Result<(), Failure> {
    match command {
        InteractionCommand::Event { file, .. } => {
            let text = read_input(&file)?;
            let parsed: Json = serde_json::from_str(&text)
                .map_err(|e| Failure::usage(format!("{file}: not JSON: {e}")))?;
            // One event, or several sent in order (started, then ended).
            let events = match parsed {
                Json::Array(events) => events,
                event => vec![event],
            };
            let mut answers = Vec::new();
            for event in events {
                let answer = client
                    .call(
                        Method::POST,
                        &["v1", "interactions", "events"],
                        &[],
                        Body::Json(event),
                    )
                    .await?;
                if !client.json {
                    println!(
                        "interaction {}: {}; runs started: {}",
                        cell("", answer.get("interaction")),
                        cell("", answer.get("status")),
                        cell("", answer.get("runs")),
                    );
                }
                answers.push(answer);
            }
            if client.json {
                print_json(&match <[Json; 1]>::try_from(answers) {
                    Ok([one]) => one,
                    Err(answers) => Json::Array(answers),
                });
            }
        }
        InteractionCommand::Show { id, .. } => {
            let answer = client.get(&["v1", "interactions", &id], &[]).await?;
            show(client, &answer, |a| {
                println!(
                    "{}",
                    record_table(a, &["id", "channel", "status", "plan"], &["data"])
                );
                if let Some(data) = a.get("data").and_then(Json::as_object)
                    && !data.is_empty()
                {
                    println!("\ndata:");
                    println!("{}", record_table(&Json::Object(data.clone()), &[], &[]));
                }
            });
        }
        InteractionCommand::Edit {
            id, set, set_json, ..
        } => {
            let body = edit_body(&set, &set_json)?;
            let answer = client
                .call(
                    Method::PATCH,
                    &["v1", "interactions", &id],
                    &[],
                    Body::Json(body),
                )
                .await?;
            done(client, &answer, &format!("edited {id}"));
        }
        InteractionCommand::Audit { id, .. } => {
            let answer = client
                .get(&["v1", "interactions", &id, "audit"], &[])
                .await?;
            show(client, &answer, |a| {
                print_list(
                    items(a, "audit"),
                    &["seq", "at_ms", "by", "field", "before", "after"],
                    "no edits",
                )
            });
        }
        InteractionCommand::Clone {
            id,
            channel,
            queue,
            subject,
            ..
        } => {
            let mut body = json!({ "channel": channel, "queue": queue });
            if let Some(subject) = subject {
                body["subject"] = json!(subject);
            }
            let answer = client
                .call(
                    Method::POST,
                    &["v1", "interactions", &id, "clone"],
                    &[],
                    Body::Json(body),
                )
                .await?;
            done(client, &answer, &format!("cloned {id}"));
        }
        InteractionCommand::Disposition {
            id,
            code,
            amount,
            notes,
            ..
        } => {
            let mut body = json!({ "code": code });
            if let Some(notes) = notes {
                body["notes"] = json!(notes);
            }
            if let Some(amount) = amount {
                // A number as written (19.99), so no float formatting changes it on the way.
                let number: serde_json::Number = amount
                    .trim()
                    .parse()
                    .map_err(|_| Failure::usage(format!("--amount `{amount}` is not a number")))?;
                body["amount"] = Json::Number(number);
            }
            let answer = client
                .call(
                    Method::POST,
                    &["v1", "interactions", &id, "disposition"],
                    &[],
                    Body::Json(body),
                )
                .await?;
            done(
                client,
                &answer,
                &format!("disposition {code} submitted for {id}"),
            );
        }
    }
    Ok(())
}

// ---- grants and secrets ----

/// A grant from the flags: only what was given, so the server's defaults (nothing) hold
/// for the rest.
fn grant_from_flags(
    http: Vec<String>,
    email: bool,
    sql: Vec<String>,
    secret: Vec<String>,
    interactions: bool,
    kv: Vec<String>,
) -> Json {
    let mut grant = Map::new();
    if !http.is_empty() {
        grant.insert("http".into(), json!(http));
    }
    if email {
        grant.insert("email".into(), json!(true));
    }
    if !sql.is_empty() {
        grant.insert("sql".into(), json!(sql));
    }
    if !secret.is_empty() {
        grant.insert("secrets".into(), json!(secret));
    }
    if interactions {
        grant.insert("interactions".into(), json!(true));
    }
    if !kv.is_empty() {
        grant.insert("kv".into(), json!(kv));
    }
    Json::Object(grant)
}

async fn grant(client: &Client, command: GrantCommand) -> Result<(), Failure> {
    match command {
        GrantCommand::Set {
            applet,
            file,
            http,
            email,
            sql,
            secret,
            interactions,
            kv,
            ..
        } => {
            let body = match file {
                Some(file) => {
                    let text = read_text(&file)?;
                    // YAML reads JSON as well; the server names any field it refuses.
                    coda_types::yaml::from_str::<Json>(&text).map_err(|e| match e {
                        coda_types::yaml::Error::Refused(refused) => {
                            Failure::usage(format!("{}: the file {refused}", file.display()))
                        }
                        e => Failure::usage(format!("{}: not YAML or JSON: {e}", file.display())),
                    })?
                }
                None => grant_from_flags(http, email, sql, secret, interactions, kv),
            };
            let answer = client
                .call(
                    Method::PUT,
                    &["v1", "grants", &applet],
                    &[],
                    Body::Json(body),
                )
                .await?;
            done(client, &answer, &format!("granted {applet}"));
        }
        GrantCommand::List { .. } => {
            let answer = client.get(&["v1", "grants"], &[]).await?;
            show(client, &answer, print_grants);
        }
        GrantCommand::Delete { applet, .. } => {
            let answer = client
                .call(Method::DELETE, &["v1", "grants", &applet], &[], Body::None)
                .await?;
            done(client, &answer, &format!("revoked the grants of {applet}"));
        }
    }
    Ok(())
}

/// Grants as a table, whether the server lists them or maps applets to them.
fn print_grants(answer: &Json) {
    let columns = ["applet", "http", "email", "sql", "secrets", "interactions"];
    let grants = answer.get("grants").unwrap_or(answer);
    match grants {
        Json::Object(by_applet) => {
            let rows: Vec<Json> = by_applet
                .iter()
                .map(|(applet, grant)| {
                    let mut row = grant.clone();
                    if let Some(object) = row.as_object_mut() {
                        object.insert("applet".into(), json!(applet));
                    }
                    row
                })
                .collect();
            print_list(&rows, &columns, "no grants");
        }
        // `[{applet, grant: {...}, updated_at_ms}]`: the grant's fields as columns.
        _ => {
            let rows: Vec<Json> = items(answer, "grants")
                .iter()
                .map(|item| {
                    let mut row = item.clone();
                    if let (Some(row), Some(grant)) = (
                        row.as_object_mut(),
                        item.get("grant").and_then(Json::as_object),
                    ) {
                        row.remove("grant");
                        row.extend(grant.clone());
                    }
                    row
                })
                .collect();
            print_list(&rows, &columns, "no grants")
        }
    }
}

/// A secret's value: from the file, else stdin; one trailing newline (as `echo` adds) is
/// not part of it.
fn secret_value(value_file: Option<&Path>) -> Result<String, Failure> {
    let mut value = match value_file {
        Some(file) => read_text(file)?,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("reading the secret's value from stdin (end with Ctrl-D):");
            }
            let mut value = String::new();
            stdin
                .lock()
                .read_to_string(&mut value)
                .map_err(|e| Failure::new(2, "io", format!("cannot read stdin: {e}")))?;
            value
        }
    };
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        return Err(Failure::usage("the secret's value is empty"));
    }
    Ok(value)
}

async fn secret(client: &Client, command: SecretCommand) -> Result<(), Failure> {
    match command {
        SecretCommand::Set {
            name, value_file, ..
        } => {
            let value = secret_value(value_file.as_deref())?;
            let answer = client
                .call(
                    Method::PUT,
                    &["v1", "secrets", &name],
                    &[],
                    Body::Json(json!({ "value": value })),
                )
                .await?;
            done(client, &answer, &format!("secret {name} set"));
        }
        SecretCommand::List { .. } => {
            let answer = client.get(&["v1", "secrets"], &[]).await?;
            show(client, &answer, |a| {
                let secrets = items(a, "secrets");
                if secrets.iter().all(Json::is_string) {
                    if secrets.is_empty() {
                        println!("no secrets");
                    }
                    for name in secrets {
                        println!("{}", cell("", Some(name)));
                    }
                } else {
                    print_list(
                        secrets,
                        &["name", "created_at_ms", "updated_at_ms"],
                        "no secrets",
                    );
                }
            });
        }
        SecretCommand::Delete { name, .. } => {
            let answer = client
                .call(Method::DELETE, &["v1", "secrets", &name], &[], Body::None)
                .await?;
            done(client, &answer, &format!("secret {name} deleted"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_sets_text_json_and_dotted_fields() {
        let body = edit_body(
            &[
                "subject=Refund =ok".into(),
                "custom_fields.tier=gold".into(),
            ],
            &["custom_fields.score=3".into(), "notes=null".into()],
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"subject": "Refund =ok", "custom_fields": {"tier": "gold", "score": 3}, "notes": null})
        );
        assert!(edit_body(&["subject".into()], &[]).is_err());
        assert!(edit_body(&[], &[]).is_err());
        assert!(edit_body(&["a=1".into(), "a.b=2".into()], &[]).is_err());
    }

    #[test]
    fn times_are_a_duration_ago_or_passed_on() {
        assert_eq!(
            parse_time("2026-01-31T09:00:00+01:00").unwrap(),
            "2026-01-31T09:00:00+01:00"
        );
        let ms = |t: &str| parse_time(t).unwrap().parse::<i64>().unwrap();
        assert!((ms("0s") - ms("1h") - 3_600_000).abs() < 5_000);
    }

    #[test]
    fn grants_from_flags_carry_only_what_was_given() {
        assert_eq!(
            grant_from_flags(
                vec!["api.twilio.com".into()],
                false,
                vec![],
                vec!["t".into()],
                true,
                vec![]
            ),
            json!({"http": ["api.twilio.com"], "secrets": ["t"], "interactions": true})
        );
        assert_eq!(
            grant_from_flags(
                vec![],
                false,
                vec![],
                vec![],
                false,
                vec!["contact/".into()]
            ),
            json!({"kv": ["contact/"]})
        );
    }

    /// A loopback server whose tail sends `events` (name, JSON) and whose run answers
    /// `status`; the client pointed at it.
    async fn tail_server(
        events: Vec<(&'static str, Json)>,
        status: &'static str,
    ) -> (Client, tokio::task::JoinHandle<()>) {
        use axum::response::sse::{Event, Sse};
        use axum::routing::get;
        let router = axum::Router::new()
            .route(
                "/v1/runs/{id}/tail",
                get(move || {
                    let events = events.clone();
                    async move {
                        Sse::new(futures_util::stream::iter(events.into_iter().map(
                            |(name, data)| {
                                Ok::<_, std::convert::Infallible>(
                                    Event::default().event(name).data(data.to_string()),
                                )
                            },
                        )))
                    }
                }),
            )
            .route(
                "/v1/runs/{id}",
                get(move || async move { axum::Json(json!({ "status": status })) }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let client = Client::new(&ClientArgs {
            server: Some(format!("http://{address}")),
            token: Some("t".into()),
            json: false,
        })
        .unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn tail_prints_steps_until_the_run_ends() {
        let step = |seq: u64, node: &str| {
            json!({"seq": seq, "node": node, "applet": "set-data@0.1.0", "attempt": 1,
                   "result": {"exit": "next"}, "note": "", "fuel_used": 1, "duration_us": 10})
        };
        // Ended by an event that says so.
        let (client, server) = tail_server(
            vec![
                ("step", step(0, "a")),
                ("step", step(1, "b")),
                ("end", json!({"status": "done"})),
            ],
            "running",
        )
        .await;
        tail(&client, "r1").await.unwrap();
        server.abort();
        // A failed run: exit 1.
        let (client, server) =
            tail_server(vec![("end", json!({"status": "failed"}))], "failed").await;
        assert_eq!(tail(&client, "r1").await.unwrap_err().kind, "run-failed");
        server.abort();
        // The stream closes without a word: the run says it ended, or that it did not.
        let (client, server) = tail_server(vec![("step", step(0, "a"))], "done").await;
        tail(&client, "r1").await.unwrap();
        server.abort();
        let (client, server) = tail_server(vec![("step", step(0, "a"))], "waiting").await;
        assert_eq!(tail(&client, "r1").await.unwrap_err().kind, "stream-ended");
        server.abort();
    }

    #[test]
    fn an_applet_row_lists_its_versions_and_marks_the_retired() {
        let row = applet_row(
            &json!({"name": "sms", "origins": ["uploaded"], "versions": [
            {"version": "0.1.0", "retired": true}, {"version": "0.2.0", "retired": false}]}),
        );
        assert_eq!(
            cell("versions", row.get("versions")),
            "0.1.0 (retired), 0.2.0"
        );
    }

    #[test]
    fn step_results_read_in_a_word() {
        assert_eq!(result_summary(Some(&json!({"exit": "next"}))), "exit next");
        assert_eq!(
            result_summary(Some(&json!({"error": {"kind": "fuel"}}))),
            "error fuel"
        );
        assert_eq!(result_summary(Some(&json!({"pause": {"ms": 5}}))), "pause");
    }
}
