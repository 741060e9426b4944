//! `coda plan validate` and `coda run`: plans and runs on the local machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, ValueEnum};
use coda_flow::{Clock, Engine, FlowLimits, InteractionEvent, VirtualClock, WallClock};
use coda_plan::{MemoryCatalog, Plan};
use coda_runtime::Runtime;
use coda_types::values_json;
use serde_json::{Value as Json, json};

use crate::Exit;
use coda_node::DirApplets;

/// The tenant of everything the CLI runs locally.
const LOCAL_TENANT: &str = "local";

#[derive(Args)]
pub struct ValidateArgs {
    /// The plan (.yaml, .yml or .json)
    pub(crate) file: PathBuf,
    /// A directory of applet components (.wasm) the plan may use (checks it locally)
    #[arg(long)]
    pub(crate) applets: Option<PathBuf>,
    /// Other plans this one may name (post-interaction process, routes; checks it locally)
    #[arg(long = "with", value_name = "PLAN")]
    pub(crate) with: Vec<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ClockKind {
    /// Real time: a pause of an hour takes an hour
    Wall,
    /// Pauses and timeouts pass at once
    Virtual,
}

#[derive(Args)]
pub struct RunArgs {
    /// The plan to run (.yaml, .yml or .json)
    plan: PathBuf,
    /// The interaction event that starts the run (JSON: interaction, channel, outcome, data)
    #[arg(long)]
    event: PathBuf,
    /// A directory of applet components (.wasm)
    #[arg(long)]
    applets: Option<PathBuf>,
    /// Other plans the run may route to
    #[arg(long = "with", value_name = "PLAN")]
    with: Vec<PathBuf>,
    /// The database: a SQLite file, or postgres://USER@HOST:PORT/DB [default: a temporary
    /// SQLite file, removed afterwards]
    #[arg(long)]
    db: Option<PathBuf>,
    /// [default: wall; virtual with --dry-run]
    #[arg(long, value_enum)]
    clock: Option<ClockKind>,
    /// Run the flow without performing any capability call: each is answered from a
    /// --fixture recorded for its node, or simulated with a plain success; prints the path
    /// taken and every effect that would have happened. Runs on a throwaway database
    #[arg(long, conflicts_with_all = ["db", "repeat"])]
    dry_run: bool,
    /// With --dry-run: a fixture whose recorded calls answer for the node its
    /// `context.node` names, e.g. one `coda runs show ID --as-fixture` wrote (repeatable)
    #[arg(long = "fixture", value_name = "FIXTURE", requires = "dry_run")]
    fixtures: Vec<PathBuf>,
    /// With `--clock virtual`: the time the virtual clock starts at instead of now (RFC 3339,
    /// e.g. 2026-03-27T07:30:00Z), which is also the applets' wall clock at the first step
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    at: Option<i64>,
    /// Grants, SMTP servers, databases and secrets for the applets (YAML or JSON; the
    /// local tenant is `local`). Without it every capability call answers not-granted
    #[arg(long)]
    grants: Option<PathBuf>,
    /// Start this many runs from the event (interactions ID-1 ... ID-N) and print a summary
    /// instead of the journal; each run id is written to stderr once it is on disk
    #[arg(long, default_value_t = 1)]
    repeat: u32,
}

#[derive(Args)]
pub struct ResumeArgs {
    /// The database (a SQLite file or postgres://…) whose unfinished runs to take to their end
    #[arg(long)]
    db: PathBuf,
    /// A directory of applet components (.wasm)
    #[arg(long)]
    applets: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "wall")]
    clock: ClockKind,
    /// Grants, SMTP servers, databases and secrets for the applets (as for `coda run`)
    #[arg(long)]
    grants: Option<PathBuf>,
}

/// A file's text under `limit` bytes (`coda_types::files`): a larger one is refused before
/// it is read whole, as `too-large`.
fn read_text(path: &Path, limit: u64) -> Result<String, Exit> {
    coda_types::files::read_text_capped(path, limit).map_err(|e| match e {
        coda_types::files::ReadError::TooLarge { .. } => Exit::usage("too-large", e.to_string()),
        _ => Exit::usage("io", e.to_string()),
    })
}

fn read_plan(path: &Path) -> Result<Plan, Exit> {
    let text = read_text(path, coda_plan::MAX_PLAN_BYTES as u64)?;
    coda_plan::parse(&text).map_err(|problems| invalid_plan(path, problems))
}

fn invalid_plan(path: &Path, problems: Vec<coda_plan::Problem>) -> Exit {
    Exit {
        status: 2,
        error: json!({
            "kind": "invalid-plan",
            "message": format!("{}: {} problem(s)", path.display(), problems.len()),
            "problems": problems
                .iter()
                .map(|p| json!({ "node": p.node, "field": p.field, "message": p.message }))
                .collect::<Vec<_>>(),
        }),
    }
}

/// Reads the plan and the plans it may name, and validates the plan against the applets.
async fn checked_plans(
    runtime: Runtime,
    plan_file: &Path,
    with: &[PathBuf],
    applets_dir: Option<&Path>,
) -> Result<(Plan, Vec<Plan>, DirApplets), Exit> {
    let plan = read_plan(plan_file)?;
    let others = with
        .iter()
        .map(|p| read_plan(p))
        .collect::<Result<Vec<_>, _>>()?;
    let applets = DirApplets::load(runtime, applets_dir)
        .await
        .map_err(|e| Exit::usage("io", e))?;
    let mut catalog = MemoryCatalog::new();
    for info in applets.infos() {
        catalog.insert_applet(info.clone());
    }
    for other in others.iter().chain(std::iter::once(&plan)) {
        catalog.insert_plan(&other.name, other.plan_type);
    }
    coda_plan::validate(&plan, &catalog).map_err(|problems| invalid_plan(plan_file, problems))?;
    for (other, path) in others.iter().zip(with) {
        coda_plan::validate(other, &catalog).map_err(|problems| invalid_plan(path, problems))?;
    }
    Ok((plan, others, applets))
}

pub async fn validate(runtime: Runtime, args: ValidateArgs) -> Result<Json, Exit> {
    let (plan, _, _) =
        checked_plans(runtime, &args.file, &args.with, args.applets.as_deref()).await?;
    Ok(json!({ "valid": true, "plan": plan.name, "nodes": plan.nodes.len() }))
}

/// The event that starts a local run.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    interaction: String,
    #[serde(default = "ended")]
    r#type: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    data: serde_json::Map<String, Json>,
    /// Named events for the interaction delivered while the run goes on (an agent's
    /// disposition, a survey reply), each `after_ms` after the run starts.
    #[serde(default)]
    then: Vec<LaterEvent>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LaterEvent {
    after_ms: u64,
    event: String,
    #[serde(default)]
    data: Json,
}

fn ended() -> String {
    "ended".into()
}

/// Writes `run started: ID` to stderr in one write, so a reader never sees half a line.
fn acknowledge(id: &str) {
    use std::io::Write;
    let line = format!("run started: {id}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// How many of the local runs ended in each status.
fn summary(store: &coda_store::Store) -> Result<Json, Exit> {
    let internal = |e: coda_store::StoreError| Exit::usage("internal", e.to_string());
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .runs(LOCAL_TENANT, after.as_deref(), 1000)
            .map_err(internal)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for run in &page {
            let status = serde_json::to_value(run.status).unwrap_or_default();
            *counts
                .entry(status.as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
    }
    Ok(json!({ "runs": counts }))
}

/// Takes every unfinished run of a database to its end: what a host does after a restart.
pub async fn resume(runtime: Runtime, args: ResumeArgs) -> Result<Json, Exit> {
    let applets = DirApplets::load(runtime, args.applets.as_deref())
        .await
        .map_err(|e| Exit::usage("io", e))?;
    let store = Arc::new(crate::serve::database_path(args.db.clone())?.open()?);
    let clock: Arc<dyn Clock> = match args.clock {
        ClockKind::Wall => Arc::new(WallClock),
        ClockKind::Virtual => Arc::new(VirtualClock::new()),
    };
    let capabilities = coda_node::grants::source(args.grants.as_deref(), store.clone())?;
    let engine = Arc::new(
        Engine::new(store.clone(), Arc::new(applets), clock, local_limits())
            .with_capabilities(capabilities)
            .with_node_id(LOCAL_NODE),
    );
    let steps = engine
        .run_until_idle()
        .await
        .map_err(|e| Exit::usage("internal", e.to_string()))?;
    let mut out = summary(&store)?;
    out["steps"] = steps.into();
    Ok(out)
}

/// Milliseconds since the Unix epoch of an RFC 3339 time: `2026-03-29T07:30:00Z`,
/// `2026-03-29T09:30:00.250+02:00`. Hand-rolled because it is the CLI's only date.
fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let bad = || format!("`{text}` is not an RFC 3339 time like 2026-03-29T07:30:00Z");
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let digits = b.get(from..from + len).ok_or_else(bad)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        Ok(digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if b.len() < 20
        || !separators.iter().all(|&(i, c)| b[i] == c)
        || !matches!(b[10], b'T' | b't' | b' ')
    {
        return Err(bad());
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let mut at = 19;
    let mut millis = 0;
    if b[at] == b'.' {
        let digits = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return Err(bad());
        }
        millis = (0..3).try_fold(0, |ms, i| {
            Ok::<_, String>(ms * 10 + if i < digits { num(at + 1 + i, 1)? } else { 0 })
        })?;
        at += 1 + digits;
    }
    let offset_minutes = match &b[at..] {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let minutes = num(at + 1, 2)? * 60 + num(at + 4, 2)?;
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return Err(bad()),
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let valid = (1..=12).contains(&month)
        && (1..=month_days).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    if !valid {
        return Err(bad());
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1_000 + millis)
}

/// A journal entry as users read it: data values as plain JSON.
fn step_json(step: &coda_store::StepRecord) -> Json {
    let mut json = serde_json::to_value(step).unwrap_or(Json::Null);
    json["data_changes"] = values_json(&step.data_changes);
    json
}

// tidy: long — the second "interaction ended" path issue 15 replaces with Engine::on_event; marked, not split, while that lands
pub async fn run(runtime: Runtime, args: RunArgs) -> Result<Json, Exit> {
    // An event file holds what `POST …/events` would carry: the API's body cap.
    let text = read_text(&args.event, coda_server::MAX_BODY_BYTES as u64)?;
    let event: Event = serde_json::from_str(&text)
        .map_err(|e| Exit::usage("invalid-event", format!("{}: {e}", args.event.display())))?;
    if event.r#type != "ended" {
        return Err(Exit::usage(
            "invalid-event",
            format!(
                "{}: a local run starts from an `ended` event, not `{}`",
                args.event.display(),
                event.r#type
            ),
        ));
    }
    let (plan, others, applets) =
        checked_plans(runtime, &args.plan, &args.with, args.applets.as_deref()).await?;

    let temp;
    let db = match &args.db {
        Some(path) => crate::serve::database_path(path.clone())?,
        None => {
            temp = tempfile::tempdir().map_err(|e| Exit::usage("io", e.to_string()))?;
            crate::serve::Database::Sqlite(temp.path().join("coda.db"))
        }
    };
    let store = Arc::new(db.open()?);
    let clock_kind = args.clock.unwrap_or(if args.dry_run {
        ClockKind::Virtual
    } else {
        ClockKind::Wall
    });
    let clock: Arc<dyn Clock> = match (clock_kind, args.at) {
        (ClockKind::Wall, None) => Arc::new(WallClock),
        (ClockKind::Wall, Some(_)) => {
            return Err(Exit::usage(
                "usage",
                "--at sets the virtual clock: use it with --clock virtual",
            ));
        }
        (ClockKind::Virtual, None) => Arc::new(VirtualClock::new()),
        (ClockKind::Virtual, Some(ms)) => Arc::new(VirtualClock::starting_at(ms)),
    };
    for p in others.iter().chain(std::iter::once(&plan)) {
        let body = serde_json::to_value(p).map_err(|e| Exit::usage("internal", e.to_string()))?;
        store
            .publish_plan(LOCAL_TENANT, &p.name, &body, clock.now_ms())
            .await
            .map_err(|e| Exit::usage("io", e.to_string()))?;
    }
    let channel = match &event.channel {
        None => coda_store::Channel::Voice,
        Some(name) => serde_json::from_value(Json::String(name.clone())).map_err(|_| {
            Exit::usage(
                "invalid-event",
                format!(
                    "{}: unknown channel `{name}` (voice, chat, sms, email, task)",
                    args.event.display()
                ),
            )
        })?,
    };
    let mut capabilities = coda_node::grants::source(args.grants.as_deref(), store.clone())?;
    let mut dry_run = None;
    if args.dry_run {
        let dry = Arc::new(crate::dryrun::DryRun::new(
            &args.fixtures,
            capabilities,
            args.grants.as_deref(),
            |node| {
                others
                    .iter()
                    .chain(std::iter::once(&plan))
                    .any(|p| p.nodes.contains_key(node))
            },
        )?);
        capabilities = dry.clone();
        dry_run = Some(dry);
    }
    let engine = Arc::new(
        Engine::new(
            store.clone(),
            Arc::new(applets),
            clock.clone(),
            local_limits(),
        )
        .with_capabilities(capabilities)
        .with_node_id(LOCAL_NODE),
    );
    let started_at = clock.now_ms();
    // Started concurrently, so that their commits share fsyncs; each id is acknowledged
    // once its run is on disk.
    let mut started = Vec::new();
    let mut interactions = Vec::new();
    let mut pending = tokio::task::JoinSet::new();
    for i in 1..=args.repeat {
        let interaction = if args.repeat == 1 {
            event.interaction.clone()
        } else {
            format!("{}-{i}", event.interaction)
        };
        // Kept only to deliver later events to: a million runs must not cost a million
        // strings here when there are none.
        if !event.then.is_empty() {
            interactions.push(interaction.clone());
        }
        // The interaction starts and ends as the service's events say it does
        // (`Engine::on_event`), and its end starts the plan as its post-interaction process:
        // the same completed interaction, data sources and trigger key as `coda serve`'s.
        let events = [
            InteractionEvent::Started {
                interaction: interaction.clone(),
                channel,
                plan: None,
                data: event.data.clone(),
                skill: None,
            },
            InteractionEvent::Ended {
                interaction,
                outcome: event.outcome.clone(),
            },
        ];
        let (engine, process, file) = (engine.clone(), plan.name.clone(), args.event.clone());
        pending.spawn(async move {
            let mut runs = Vec::new();
            for event in events {
                match engine
                    .on_event_with_process(LOCAL_TENANT, event, &process)
                    .await
                    .map_err(|e| Exit::usage("internal", e.to_string()))?
                {
                    Ok(accepted) => runs = accepted.runs().to_vec(),
                    Err(refused) => {
                        let message = format!("{}: {refused}", file.display());
                        return Err(Exit::usage("invalid-event", message));
                    }
                }
            }
            runs.pop()
                .ok_or_else(|| Exit::usage("internal", "the interaction's end started no run"))
        });
        if pending.len() >= 256 || i == args.repeat {
            while let Some(run) = pending.join_next().await {
                let run = run.map_err(|e| Exit::usage("internal", e.to_string()))??;
                if args.repeat > 1 {
                    acknowledge(&run.id);
                }
                if args.repeat == 1 {
                    started.push(run);
                }
            }
        }
    }
    let internal = |e: coda_flow::FlowError| Exit::usage("internal", e.to_string());
    let mut later: Vec<&LaterEvent> = event.then.iter().collect();
    later.sort_by_key(|e| e.after_ms);
    for later in later {
        let at = started_at.saturating_add(i64::try_from(later.after_ms).unwrap_or(i64::MAX));
        engine.run_until(Some(at)).await.map_err(internal)?;
        for interaction in &interactions {
            engine
                .deliver(LOCAL_TENANT, interaction, &later.event, later.data.clone())
                .await
                .map_err(internal)?
                .map_err(|refused| Exit::usage("internal", refused.to_string()))?;
        }
    }
    engine.run_until_idle().await.map_err(internal)?;
    if args.repeat > 1 {
        return summary(&store);
    }
    let started = started.remove(0);
    let record = store
        .run(LOCAL_TENANT, &started.id)
        .map_err(|e| Exit::usage("internal", e.to_string()))?
        .ok_or_else(|| Exit::usage("internal", "the run disappeared"))?;
    let journal = store
        .journal(LOCAL_TENANT, &started.id)
        .map_err(|e| Exit::usage("internal", e.to_string()))?;
    let effects = store
        .effects(&started.id, None)
        .map_err(|e| Exit::usage("internal", e.to_string()))?;
    if let Some(dry) = dry_run {
        let path: Vec<Json> = journal
            .iter()
            .map(|step| {
                json!({
                    "seq": step.seq,
                    "node": step.node,
                    "applet": step.applet,
                    "result": step.result,
                    "note": step.note,
                    "data_changes": values_json(&step.data_changes),
                    "logs": step.logs,
                })
            })
            .collect();
        let output = json!({
            "dry_run": true,
            "run": started.id,
            "plan": format!("{}@{}", record.plan, record.plan_version),
            "status": record.status,
            "path": path,
            "data": values_json(&record.data),
            "effects": dry.effects(),
            "unused_recorded_calls": dry.unused(),
        });
        return finished(output, record.status);
    }
    let output = json!({
        "run": started.id,
        "plan": format!("{}@{}", record.plan, record.plan_version),
        "status": record.status,
        "data": values_json(&record.data),
        "journal": journal.iter().map(step_json).collect::<Vec<_>>(),
        "effects": effects,
    });
    finished(output, record.status)
}

/// The run's output, or exit 1 with it when the run failed.
fn finished(output: Json, status: coda_store::RunStatus) -> Result<Json, Exit> {
    if status == coda_store::RunStatus::Failed {
        return Err(Exit {
            status: 1,
            error: json!({ "kind": "run-failed", "message": "the run ended through an error with no error exit", "run": output }),
        });
    }
    Ok(output)
}

/// The node id of a local command (`coda run`, `coda resume`): the same each time, so a
/// `coda resume` after a killed `coda run` takes back the runs that one had claimed at once
/// instead of waiting for their leases to run out.
const LOCAL_NODE: &str = "local";

/// A local command (`coda run`, `coda resume`) has the machine to itself: its runs are not
/// held to a service tenant's share of the scheduler, nor its events to a tenant's queue.
fn local_limits() -> FlowLimits {
    FlowLimits {
        tenant_concurrency: usize::MAX,
        tenant_queue: u64::MAX,
        ..FlowLimits::default()
    }
}

#[cfg(test)]
mod tests {
    /// Issue 14's second round: `coda plan validate` and `coda run` read a plan or an event
    /// file whole before its size was checked. A file past the cap (here sparse: 8 GiB by
    /// its size, nothing on disk) is refused as `too-large`, naming the file and the limit,
    /// without being read.
    #[test]
    fn plan_and_event_files_are_refused_by_their_size_before_they_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.yaml");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(8 << 30)
            .unwrap();
        let Err(exit) = super::read_plan(&path) else {
            panic!("the plan was taken")
        };
        assert_eq!(exit.error["kind"], "too-large", "{}", exit.error);
        let message = exit.error["message"].as_str().unwrap();
        assert!(
            message.contains("huge.yaml")
                && message.contains(&coda_plan::MAX_PLAN_BYTES.to_string()),
            "{message}"
        );
        let Err(exit) = super::read_text(&path, coda_server::MAX_BODY_BYTES as u64) else {
            panic!("the event was taken")
        };
        assert_eq!(exit.error["kind"], "too-large", "{}", exit.error);
    }
}
