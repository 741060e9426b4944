//! `coda`: the command line of the coda applet host.
//!
//! Exit status: 0 when the command did what was asked; 1 when an invoked applet failed,
//! trapped or hit a limit; 2 for a usage error, an unreadable file or a refused component.
//! Results and errors are printed as one JSON object on stdout.
//!
//! The tenant commands (`tenant.rs`: `coda applet push`, `coda plan push`, `coda runs …`)
//! talk to a running service instead; they print tables, or the API's JSON with `--json`,
//! and exit 1 when the service refuses or cannot be reached.

mod client;
mod config;
mod dryrun;
mod flow;
mod harness;
mod package;
mod scaffold;
mod serve;
mod tenant;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use coda_runtime::{
    Invocation, InvocationContext, Limits, LoadOptions, LoadedApplet, Runtime, RuntimeConfig,
    Value, Values,
};
use coda_types::values_json;
use config::LogFormat;
use serde_json::{Value as Json, json};

#[derive(Parser)]
#[command(
    name = "coda",
    version,
    about = "Run contact-center flows as sandboxed WebAssembly applets"
)]
struct Cli {
    /// Where compiled components are cached [default: the user's cache dir, or $CODA_CACHE_DIR]
    #[arg(long, global = true, env = "CODA_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every time instead of using the artifact cache
    #[arg(long, global = true)]
    no_cache: bool,
    /// How long compiling one component may take, in milliseconds [default: 60000; for
    /// `coda serve`, its config's `compile_timeout_ms`]. Large components (a Python or
    /// JavaScript interpreter) on a busy machine may need more.
    #[arg(long, global = true, env = "CODA_COMPILE_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    compile_timeout_ms: Option<u64>,
    /// How log lines on stderr are written (the level is $CODA_LOG's, default warn)
    #[arg(long, global = true, env = "CODA_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with one applet component file, or with the applets of a service
    #[command(subcommand)]
    Applet(AppletCommand),
    /// Work with interaction plans, locally or on a service
    #[command(subcommand)]
    Plan(PlanCommand),
    /// The runs of a service: list, show, tail, cancel, retry
    #[command(subcommand)]
    Runs(tenant::RunsCommand),
    /// The interactions of a service: events, details, edits, clones, dispositions
    #[command(subcommand)]
    Interaction(tenant::InteractionCommand),
    /// What each applet is granted on a service
    #[command(subcommand)]
    Grant(tenant::GrantCommand),
    /// The tenant's secrets on a service (values go in, never come out)
    #[command(subcommand)]
    Secret(tenant::SecretCommand),
    /// Run a post-interaction flow locally to its end and print its journal
    Run(flow::RunArgs),
    /// Take every unfinished run in a database to its end (after a crash, say)
    Resume(flow::ResumeArgs),
    /// Run the service: the HTTP API for tenants and operators, and the scheduler
    Serve(serve::ServeArgs),
}

#[derive(Subcommand)]
enum PlanCommand {
    /// Check a plan; exit 0, or exit 2 listing every problem
    ///
    /// With a service (--server,
    /// --token, $CODA_SERVER or $CODA_TOKEN) and no --applets or --with, the service checks
    /// it against the tenant's applets and plans; otherwise it is checked here
    Validate(PlanValidateArgs),
    #[command(flatten)]
    Service(tenant::PlanCommand),
}

#[derive(Args)]
struct PlanValidateArgs {
    #[command(flatten)]
    local: flow::ValidateArgs,
    /// Check on this machine even when a service is configured
    #[arg(long = "local")]
    local_only: bool,
    #[command(flatten)]
    client: client::ClientArgs,
}

impl PlanValidateArgs {
    fn remote(&self) -> bool {
        !self.local_only
            && self.local.applets.is_none()
            && self.local.with.is_empty()
            && (self.client.server.is_some() || self.client.token.is_some())
    }
}

#[derive(Subcommand)]
enum AppletCommand {
    /// Print the applet's info and the coda interfaces it imports, as JSON
    Describe {
        /// The component (.wasm)
        file: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Run the applet's `run` once and print its outcome, data changes, fuel and logs
    Invoke(InvokeArgs),
    /// Run the applet offline against fixtures (config, data, state, secrets and recorded
    /// capability answers) and check its outcome, data changes and calls; exit 1 if one fails
    Test(harness::TestArgs),
    /// Create a new applet project (Rust, Python or JavaScript) that builds to a component
    New(scaffold::NewArgs),
    /// Make a vendor's Ed25519 signing key; prints the public key operators trust
    Keygen(package::KeygenArgs),
    /// Sign a component and its manifest into a vendor package (.codapkg)
    Package(package::PackageArgs),
    /// Check a package offline against trusted vendor keys, as a service would
    Verify(package::VerifyArgs),
    #[command(flatten)]
    Service(tenant::AppletCommand),
}

/// The largest component file `coda applet describe|invoke|test|package|verify` reads unless
/// told: the author's own file, and a Python or JavaScript one carries its interpreter
/// (12 to 19 MB for a hello world). What a service takes from a tenant is the service's
/// limit, not this one.
pub(crate) const LOCAL_FILE_MAX_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Args)]
struct LoadArgs {
    /// Largest component accepted, in bytes
    #[arg(long, default_value_t = LOCAL_FILE_MAX_BYTES)]
    max_bytes: u64,
}

#[derive(Args)]
struct InvokeArgs {
    /// The component (.wasm)
    file: PathBuf,
    /// The node configuration, as JSON
    #[arg(long, default_value = "{}")]
    config: String,
    /// A data source the applet sees, as NAME=JSON (repeatable); a value that is not JSON
    /// is taken as text
    #[arg(long = "data", value_name = "NAME=JSON")]
    data: Vec<String>,
    /// Node state the applet sees, as KEY=JSON (repeatable)
    #[arg(long = "state", value_name = "KEY=JSON")]
    state: Vec<String>,
    /// The interaction id the invocation belongs to
    #[arg(long)]
    interaction: Option<String>,
    /// Fuel for the invocation
    #[arg(long)]
    fuel: Option<u64>,
    /// Linear memory limit, in bytes
    #[arg(long)]
    memory: Option<u64>,
    /// Wall-clock deadline, in milliseconds
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Host-call limit
    #[arg(long)]
    host_calls: Option<u64>,
    #[command(flatten)]
    load: LoadArgs,
}

/// A command's failure: the JSON error to print and the exit status.
pub(crate) struct Exit {
    status: u8,
    pub(crate) error: Json,
}

impl Exit {
    pub(crate) fn usage(kind: &str, message: impl Into<String>) -> Self {
        Exit {
            status: 2,
            error: json!({ "kind": kind, "message": message.into() }),
        }
    }
}

impl From<coda_node::SetupError> for Exit {
    fn from(e: coda_node::SetupError) -> Self {
        Exit::usage(e.kind(), e.to_string())
    }
}

/// Logs go to stderr (stdout is the command's one answer), filtered by `$CODA_LOG` (default:
/// warnings), as text or JSON lines. Nothing logged carries a token or a secret (the
/// request log has method, path, status and time, never headers).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CODA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // `coda serve`'s settings first: its config file says how to log.
    let mut serve_settings = None;
    if let Command::Serve(args) = &mut cli.command {
        let args = std::mem::take(args);
        match args.settings() {
            Ok(settings) => serve_settings = Some(settings),
            Err(exit) => return report(Err(exit)),
        }
    }
    // `--log-format` (or `$CODA_LOG_FORMAT`) wins over the config file's.
    init_logging(
        cli.log_format
            .or(serve_settings.as_ref().map(|s| s.log_format))
            .unwrap_or_default(),
    );
    let command = match place(cli.command) {
        Place::Service(tenant) => {
            // A tenant command needs no wasm runtime: only a client on a small runtime.
            return match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(tenant::run(tenant)),
                Err(e) => report(Err(Exit::usage(
                    "internal",
                    format!("cannot start tokio: {e}"),
                ))),
            };
        }
        Place::Local(local) => local,
    };
    let cli = Cli { command, ..cli };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            return report(Err(Exit::usage(
                "internal",
                format!("cannot start tokio: {e}"),
            )));
        }
    };
    report(runtime.block_on(run(cli, serve_settings)))
}

/// Where a command runs.
enum Place {
    /// On a service, over HTTP.
    Service(tenant::TenantCommand),
    /// Here, with the wasm runtime.
    Local(Command),
}

/// The command if it talks to a service; otherwise it back, to run here.
fn place(command: Command) -> Place {
    use tenant::TenantCommand as T;
    Place::Service(match command {
        Command::Applet(AppletCommand::Service(c)) => T::Applet(c),
        Command::Plan(PlanCommand::Service(c)) => T::Plan(c),
        Command::Plan(PlanCommand::Validate(args)) if args.remote() => T::Validate {
            file: args.local.file,
            client: args.client,
        },
        Command::Runs(c) => T::Runs(c),
        Command::Interaction(c) => T::Interaction(c),
        Command::Grant(c) => T::Grant(c),
        Command::Secret(c) => T::Secret(c),
        local => return Place::Local(local),
    })
}

fn report(result: Result<Json, Exit>) -> ExitCode {
    use std::io::Write;
    let (output, code) = match result {
        Ok(output) => (output, ExitCode::SUCCESS),
        Err(exit) => (json!({ "error": exit.error }), ExitCode::from(exit.status)),
    };
    // Written, not println!: a reader that stops early (`coda ... | head`) closes the pipe,
    // and that is no reason to panic. The command's own status stands.
    let _ = writeln!(std::io::stdout().lock(), "{output:#}");
    code
}

async fn run(cli: Cli, serve_settings: Option<serve::Settings>) -> Result<Json, Exit> {
    let cache_dir = if cli.no_cache {
        None
    } else {
        cli.cache_dir.or_else(|| {
            directories::ProjectDirs::from("", "", "coda").map(|d| d.cache_dir().join("artifacts"))
        })
    };
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir,
        // The CLI runs one applet at a time: a small pool keeps start-up cheap. The service
        // steps many runs at once.
        max_concurrent_instances: if matches!(cli.command, Command::Serve(_)) {
            64
        } else {
            8
        },
        compile_timeout: cli
            .compile_timeout_ms
            .or(serve_settings.as_ref().and_then(|s| s.compile_timeout_ms))
            .map_or(
                coda_runtime::limits::DEFAULT_COMPILE_TIMEOUT,
                Duration::from_millis,
            ),
        ..RuntimeConfig::default()
    })
    .map_err(|e| Exit::usage("internal", format!("{e:#}")))?;
    match cli.command {
        Command::Applet(AppletCommand::Describe { file, load }) => {
            let applet = load_applet(&runtime, &file, &load, Limits::default()).await?;
            Ok(describe_json(&applet))
        }
        Command::Applet(AppletCommand::Invoke(args)) => invoke(&runtime, args).await,
        Command::Applet(AppletCommand::Test(args)) => harness::test(&runtime, args).await,
        Command::Applet(AppletCommand::New(args)) => scaffold::new(args),
        Command::Applet(AppletCommand::Keygen(args)) => package::keygen(args),
        Command::Applet(AppletCommand::Package(args)) => package::package(&runtime, args).await,
        Command::Applet(AppletCommand::Verify(args)) => package::verify(&runtime, args).await,
        Command::Plan(PlanCommand::Validate(args)) => flow::validate(runtime, args.local).await,
        Command::Run(args) => flow::run(runtime, args).await,
        Command::Resume(args) => flow::resume(runtime, args).await,
        Command::Serve(_) => match serve_settings {
            Some(settings) => serve::serve(runtime, settings).await,
            None => Err(Exit::usage("internal", "coda serve without its settings")),
        },
        // Taken by `place` before a runtime is made.
        Command::Applet(AppletCommand::Service(_))
        | Command::Plan(PlanCommand::Service(_))
        | Command::Runs(_)
        | Command::Interaction(_)
        | Command::Grant(_)
        | Command::Secret(_) => Err(Exit::usage("internal", "a tenant command ran locally")),
    }
}

async fn load_applet(
    runtime: &Runtime,
    file: &PathBuf,
    load: &LoadArgs,
    limits: Limits,
) -> Result<std::sync::Arc<LoadedApplet>, Exit> {
    let bytes = read_capped(file, load.max_bytes)?;
    runtime
        .load(
            &bytes,
            &LoadOptions {
                max_bytes: load.max_bytes,
                limits,
            },
        )
        .await
        .map_err(|e| Exit::usage(e.kind(), format!("{}: {e}", file.display())))
}

/// Reads the file, refusing it by its size before reading it whole.
pub(crate) fn read_capped(file: &PathBuf, max_bytes: u64) -> Result<Vec<u8>, Exit> {
    let io_error =
        |e: std::io::Error| Exit::usage("io", format!("cannot read {}: {e}", file.display()));
    let size = std::fs::metadata(file).map_err(io_error)?.len();
    if size > max_bytes {
        return Err(Exit::usage(
            "too-large",
            format!(
                "{}: component of {size} bytes is larger than the upload limit of {max_bytes} bytes",
                file.display()
            ),
        ));
    }
    std::fs::read(file).map_err(io_error)
}

fn describe_json(applet: &LoadedApplet) -> Json {
    let info = &applet.info;
    json!({
        "name": info.name,
        "version": info.version,
        "description": info.description,
        "exits": info.exits,
        "config_schema": info.config_schema,
        "needs_live_party": info.needs_live_party,
        "capabilities": info.capabilities,
        "coda_imports": applet.coda_imports,
        "world": applet.world.as_str(),
        "digest": applet.digest,
    })
}

/// Parses NAME=JSON pairs; a value that is not JSON is taken as text.
fn parse_values(pairs: &[String], flag: &str) -> Result<Values, Exit> {
    let mut values = Values::new();
    for pair in pairs {
        let Some((name, raw)) = pair.split_once('=') else {
            return Err(Exit::usage(
                "usage",
                format!(
                    "--{flag} {pair:?}: expected NAME=JSON, e.g. --{flag} 'CLID=\"+15550100\"'"
                ),
            ));
        };
        if name.is_empty() {
            return Err(Exit::usage(
                "usage",
                format!("--{flag} {pair:?}: the name is empty"),
            ));
        }
        let value = match serde_json::from_str::<Json>(raw) {
            Ok(json) => Value::from_json(&json),
            Err(_) => Value::Text(raw.to_string()),
        };
        values.insert(name.to_string(), value);
    }
    Ok(values)
}

async fn invoke(runtime: &Runtime, args: InvokeArgs) -> Result<Json, Exit> {
    let config: Json = serde_json::from_str(&args.config)
        .map_err(|e| Exit::usage("usage", format!("--config is not JSON: {e}")))?;
    let data = parse_values(&args.data, "data")?;
    let state = parse_values(&args.state, "state")?;
    let defaults = Limits::default();
    let limits = Limits {
        fuel: args.fuel.unwrap_or(defaults.fuel),
        memory_bytes: args.memory.unwrap_or(defaults.memory_bytes),
        deadline: args
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(defaults.deadline),
        host_calls: args.host_calls.unwrap_or(defaults.host_calls),
        ..defaults
    };
    limits.validate().map_err(|why| Exit::usage("usage", why))?;
    // `describe` runs at load under the same limits, so a raised memory limit also lets a
    // component with a large initial memory load.
    let applet = load_applet(runtime, &args.file, &args.load, limits).await?;
    let mut invocation = Invocation::new(
        InvocationContext {
            tenant: "local".into(),
            interaction: args.interaction,
            run: "cli".into(),
            plan: "cli".into(),
            node: "cli".into(),
            idempotency_key: format!("cli-{}", &applet.digest[..16]),
            attempt: 1,
            ..Default::default()
        },
        config,
    );
    invocation.data = data;
    invocation.state = state;
    invocation.limits = limits;
    let report = runtime.invoke(&applet, invocation).await;
    let logs = serde_json::to_value(&report.logs).unwrap_or_default();
    match report.result {
        Ok(outcome) => {
            let mut output = json!({
                "outcome": outcome,
                "data": values_json(&report.data_changes),
                "fuel_used": report.fuel_used,
                "logs": logs,
            });
            if !report.state_changes.is_empty() {
                output["state"] = values_json(&report.state_changes);
            }
            Ok(output)
        }
        Err(error) => {
            let mut error = error.to_json();
            error["fuel_used"] = report.fuel_used.into();
            error["logs"] = logs;
            Err(Exit { status: 1, error })
        }
    }
}
