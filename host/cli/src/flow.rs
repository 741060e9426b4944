//! `coda plan validate` and `coda run`: plans and runs on the local machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, ValueEnum};
use coda_flow::{Clock, Engine, FlowLimits, Start, VirtualClock, WallClock};
use coda_plan::{MemoryCatalog, Plan};
use coda_runtime::{Runtime, Value, Values};
use coda_types::values_json;
use serde_json::{Value as Json, json};

use crate::Exit;
use crate::applets::DirApplets;

/// The tenant of everything the CLI runs locally.
const LOCAL_TENANT: &str = "local";

#[derive(Args)]
pub struct ValidateArgs {
    /// The plan (.yaml, .yml or .json)
    file: PathBuf,
    /// A directory of applet components (.wasm) the plan may use
    #[arg(long)]
    applets: Option<PathBuf>,
    /// Other plans this one may name (post-interaction process, routes)
    #[arg(long = "with", value_name = "PLAN")]
    with: Vec<PathBuf>,
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
    /// The SQLite database [default: a temporary one, removed afterwards]
    #[arg(long)]
    db: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "wall")]
    clock: ClockKind,
    /// Start this many runs from the event (interactions ID-1 ... ID-N) and print a summary
    /// instead of the journal; each run id is written to stderr once it is on disk
    #[arg(long, default_value_t = 1)]
    repeat: u32,
}

#[derive(Args)]
pub struct ResumeArgs {
    /// The SQLite database whose unfinished runs to take to their end
    #[arg(long)]
    db: PathBuf,
    /// A directory of applet components (.wasm)
    #[arg(long)]
    applets: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "wall")]
    clock: ClockKind,
}

fn read_plan(path: &Path) -> Result<Plan, Exit> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Exit::usage("io", format!("cannot read {}: {e}", path.display())))?;
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
    let store =
        Arc::new(coda_store::Store::open(&args.db).map_err(|e| Exit::usage("io", e.to_string()))?);
    let clock: Arc<dyn Clock> = match args.clock {
        ClockKind::Wall => Arc::new(WallClock),
        ClockKind::Virtual => Arc::new(VirtualClock::new()),
    };
    let engine = Arc::new(Engine::new(
        store.clone(),
        Arc::new(applets),
        clock,
        FlowLimits::default(),
    ));
    let steps = engine
        .run_until_idle()
        .await
        .map_err(|e| Exit::usage("internal", e.to_string()))?;
    let mut out = summary(&store)?;
    out["steps"] = steps.into();
    Ok(out)
}

/// A journal entry as users read it: data values as plain JSON.
fn step_json(step: &coda_store::StepRecord) -> Json {
    let mut json = serde_json::to_value(step).unwrap_or(Json::Null);
    json["data_changes"] = values_json(&step.data_changes);
    json
}

pub async fn run(runtime: Runtime, args: RunArgs) -> Result<Json, Exit> {
    let text = std::fs::read_to_string(&args.event)
        .map_err(|e| Exit::usage("io", format!("cannot read {}: {e}", args.event.display())))?;
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
        Some(path) => path.clone(),
        None => {
            temp = tempfile::tempdir().map_err(|e| Exit::usage("io", e.to_string()))?;
            temp.path().join("coda.db")
        }
    };
    let store =
        Arc::new(coda_store::Store::open(&db).map_err(|e| Exit::usage("io", e.to_string()))?);
    let clock: Arc<dyn Clock> = match args.clock {
        ClockKind::Wall => Arc::new(WallClock),
        ClockKind::Virtual => Arc::new(VirtualClock::new()),
    };
    for p in others.iter().chain(std::iter::once(&plan)) {
        let body = serde_json::to_value(p).map_err(|e| Exit::usage("internal", e.to_string()))?;
        store
            .publish_plan(LOCAL_TENANT, &p.name, &body, clock.now_ms())
            .await
            .map_err(|e| Exit::usage("io", e.to_string()))?;
    }
    let mut data = Values::new();
    for (name, value) in &event.data {
        data.insert(name.clone(), Value::from_json(value));
    }
    data.insert(
        "InteractionId".into(),
        Value::Text(event.interaction.clone()),
    );
    if let Some(channel) = &event.channel {
        data.insert("Channel".into(), Value::Text(channel.clone()));
    }
    if let Some(outcome) = &event.outcome {
        data.insert("InteractionOutcome".into(), Value::Text(outcome.clone()));
    }
    let engine = Arc::new(Engine::new(
        store.clone(),
        Arc::new(applets),
        clock,
        FlowLimits::default(),
    ));
    // Started concurrently, so that their commits share fsyncs; each id is acknowledged
    // once its run is on disk.
    let mut started = Vec::new();
    let mut pending = tokio::task::JoinSet::new();
    for i in 1..=args.repeat {
        let interaction = if args.repeat == 1 {
            event.interaction.clone()
        } else {
            format!("{}-{i}", event.interaction)
        };
        let mut data = data.clone();
        data.insert("InteractionId".into(), Value::Text(interaction.clone()));
        let start = Start {
            tenant: LOCAL_TENANT.into(),
            plan: plan.name.clone(),
            version: None,
            interaction: Some(interaction.clone()),
            trigger_key: Some(format!("{interaction}/ended")),
            data,
        };
        let engine = engine.clone();
        pending.spawn(async move { engine.start(start).await });
        if pending.len() >= 256 || i == args.repeat {
            while let Some(run) = pending.join_next().await {
                let run = run
                    .map_err(|e| Exit::usage("internal", e.to_string()))?
                    .map_err(|e| Exit::usage("internal", e.to_string()))?;
                if args.repeat > 1 {
                    acknowledge(&run.id);
                }
                started.push(run);
            }
        }
    }
    engine
        .run_until_idle()
        .await
        .map_err(|e| Exit::usage("internal", e.to_string()))?;
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
    let output = json!({
        "run": started.id,
        "plan": format!("{}@{}", record.plan, record.plan_version),
        "status": record.status,
        "data": values_json(&record.data),
        "journal": journal.iter().map(step_json).collect::<Vec<_>>(),
    });
    if record.status == coda_store::RunStatus::Failed {
        return Err(Exit {
            status: 1,
            error: json!({ "kind": "run-failed", "message": "the run ended through an error with no error exit", "run": output }),
        });
    }
    Ok(output)
}
