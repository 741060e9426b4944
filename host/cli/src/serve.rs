//! `coda serve`: the service. One process: the HTTP API (`coda-server`) and the flow
//! engine's scheduler over one SQLite database, with the built-in applets and a directory
//! of others; each tenant's capabilities come from the store (`coda_node::StoreGrants`).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use coda_flow::{Engine, FlowLimits, WallClock};
use coda_runtime::Runtime;
use coda_store::Store;
use serde_json::{Value as Json, json};

use crate::Exit;
use crate::config::{LogFormat, ServeConfig};
use coda_node::{DirApplets, ServiceApplets};

/// The shortest operator token taken from the environment: a short one could be guessed.
const MIN_OPERATOR_TOKEN_LEN: usize = 16;

/// Where `coda serve` listens unless told.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The shortest lease taken: the heartbeat renews claims every third of it.
const MIN_LEASE_MS: u64 = 100;

/// Each setting from its flag, else the config file, else its default.
#[derive(Args, Default)]
pub struct ServeArgs {
    /// Settings in a file (YAML or JSON; examples/serve.yaml); flags given here win over it
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The address to listen on (port 0: any free port; the address is printed on stderr)
    /// [default: 127.0.0.1:8080]
    #[arg(long)]
    listen: Option<String>,
    /// The database: a SQLite file (a path or sqlite:PATH), or postgres://USER@HOST:PORT/DB
    /// shared by several nodes [default: coda.db in the data directory]
    #[arg(long)]
    db: Option<PathBuf>,
    /// Where the service keeps its files [default: the user's data dir]
    #[arg(long, env = "CODA_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A directory of applet components (.wasm), besides the built-in ones
    #[arg(long)]
    applets: Option<PathBuf>,
    /// Seeds tenants' ceilings, grants and secrets from a settings file (YAML or JSON) at
    /// start, replacing what the store has for those tenants; without it, the operator and
    /// tenant APIs set them
    #[arg(long)]
    grants: Option<PathBuf>,
    /// The key that encrypts the tenants' secrets at rest
    #[arg(long, value_name = "FILE")]
    secrets_key_file: Option<PathBuf>,
    /// This node's id in the claims it takes on runs, unique among the nodes sharing the
    /// database; a node restarted under its old id takes its runs back at once [default: a
    /// fresh UUID]
    #[arg(long, env = "CODA_NODE_ID", value_name = "ID")]
    node_id: Option<String>,
    /// How long a claim on a run lasts without renewal: a node stopped for longer has its
    /// runs taken over by the others [default: 30000]
    #[arg(long, env = "CODA_LEASE_MS", value_name = "MS")]
    lease_ms: Option<u64>,
    /// The vendor keys whose signed packages tenants may install (YAML or JSON: a list of
    /// {vendor, key}); replaces the config file's `trusted_vendors`
    #[arg(long, env = "CODA_TRUSTED_VENDORS", value_name = "FILE")]
    trusted_vendors: Option<PathBuf>,
    /// Refuse unsigned uploads: tenants install only signed vendor packages
    #[arg(long)]
    require_signed_packages: bool,
    /// The most connections served at once; past it a new one is answered 503 at once
    /// (a few more are kept for /healthz) [default: 4096, at most half the open-files limit]
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
}

/// The service's settings once flags, the config file and defaults are merged.
// The data directory, the secrets key and the scheduler's bounds are here for the parts of
// the service that take them (uploaded applets, secrets at rest, fair scheduling).
#[derive(Debug)]
pub struct Settings {
    pub listen: String,
    pub db: Database,
    /// The data directory (the database's, unless `db` says otherwise).
    pub data_dir: PathBuf,
    pub applets: Option<PathBuf>,
    pub grants: Option<PathBuf>,
    pub log_format: LogFormat,
    /// For the secrets' encryption at rest: checked readable at start.
    pub secrets_key_file: Option<PathBuf>,
    /// The scheduler's bounds, per-tenant concurrency and queue bound included.
    pub limits: FlowLimits,
    /// This node's id in its claims on runs (none: a fresh UUID).
    pub node_id: Option<String>,
    /// The vendor keys a package must be signed with.
    pub trusted_vendors: coda_package::TrustedKeys,
    /// Whether unsigned uploads are refused.
    pub require_signed_packages: bool,
    /// The config file's compile limit (`--compile-timeout-ms`, a global flag, wins).
    pub compile_timeout_ms: Option<u64>,
    /// The bounds on the API's connections.
    pub conn: coda_server::ConnLimits,
    /// Where the health checks alone are served too (none: only on `listen`).
    pub health_listen: Option<String>,
    /// Live tails open at once, in all and per tenant.
    pub max_tails: usize,
    pub max_tails_per_tenant: usize,
    /// The outbound webhooks' timings and bounds.
    pub webhooks: coda_webhooks::WebhookSettings,
}

impl ServeArgs {
    /// Flags over the file over the defaults.
    pub fn settings(self) -> Result<Settings, Exit> {
        let file = match &self.config {
            Some(path) => {
                ServeConfig::from_file(path).map_err(|e| Exit::usage("invalid-config", e))?
            }
            None => ServeConfig::default(),
        };
        let data_dir = match self.data_dir.filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => dir,
            None => match file.data_dir {
                Some(dir) => dir,
                None => directories::ProjectDirs::from("", "", "coda")
                    .map(|d| d.data_dir().to_owned())
                    .ok_or_else(|| {
                        Exit::usage(
                            "usage",
                            "no data directory: set $CODA_DATA_DIR, pass --data-dir or --db PATH",
                        )
                    })?,
            },
        };
        let db = match self.db.or(file.db) {
            Some(db) => database_path(db)?,
            None => Database::Sqlite(data_dir.join("coda.db")),
        };
        let defaults = FlowLimits::default();
        let scheduler = file.scheduler;
        let secrets_key_file = self.secrets_key_file.or(file.secrets_key_file);
        let lease_ms = self
            .lease_ms
            .or(scheduler.lease_ms)
            .unwrap_or(defaults.lease_ms);
        if lease_ms < MIN_LEASE_MS {
            return Err(Exit::usage(
                "invalid-config",
                format!("lease_ms {lease_ms} is below the least lease, {MIN_LEASE_MS} ms"),
            ));
        }
        let node_id = self.node_id.or(file.node_id);
        if node_id.as_ref().is_some_and(|n| n.trim().is_empty()) {
            return Err(Exit::usage("invalid-config", "node_id is empty"));
        }
        if let Some(key) = &secrets_key_file {
            // Found unreadable now rather than at the first secret a tenant writes.
            std::fs::File::open(key).map_err(|e| {
                Exit::usage(
                    "io",
                    format!("cannot read the secrets key file {}: {e}", key.display()),
                )
            })?;
        }
        let trusted_vendors = match &self.trusted_vendors {
            Some(path) => {
                let text = coda_types::files::read_text_capped(
                    path,
                    coda_types::files::MAX_CONFIG_FILE_BYTES,
                )
                .map_err(|e| Exit::usage("io", format!("the trusted vendors file: {e}")))?;
                coda_package::TrustedKeys::parse(&text).map_err(|e| {
                    Exit::usage(
                        "invalid-config",
                        format!("trusted vendors file {}: {e}", path.display()),
                    )
                })?
            }
            None => coda_package::TrustedKeys::new(file.trusted_vendors.unwrap_or_default())
                .map_err(|e| Exit::usage("invalid-config", e))?,
        };
        let webhooks = file
            .webhooks
            .settings()
            .map_err(|e| Exit::usage("invalid-config", e))?;
        let http = file.http;
        let ms = |value: Option<u64>, default: std::time::Duration| {
            value.map_or(default, std::time::Duration::from_millis)
        };
        let conn = coda_server::ConnLimits {
            max_connections: self
                .max_connections
                .or(http.max_connections)
                .unwrap_or(coda_server::DEFAULT_MAX_CONNECTIONS),
            reserved_connections: http
                .reserved_connections
                .unwrap_or(coda_server::DEFAULT_RESERVED_CONNECTIONS),
            header_timeout: ms(http.header_timeout_ms, coda_server::DEFAULT_HEADER_TIMEOUT),
            body_timeout: ms(http.body_timeout_ms, coda_server::DEFAULT_BODY_TIMEOUT),
            write_timeout: ms(http.write_timeout_ms, coda_server::DEFAULT_WRITE_TIMEOUT),
            shutdown_grace: coda_server::DEFAULT_SHUTDOWN_GRACE,
        };
        conn.check()
            .map_err(|e| Exit::usage("invalid-config", format!("http: {e}")))?;
        Ok(Settings {
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            db,
            data_dir,
            applets: self.applets.or(file.applets),
            grants: self.grants.or(file.grants),
            log_format: file.log_format.unwrap_or_default(),
            secrets_key_file,
            limits: FlowLimits {
                batch: scheduler.batch.unwrap_or(defaults.batch),
                max_attempts: scheduler.max_attempts.unwrap_or(defaults.max_attempts),
                drain_ms: scheduler.drain_ms.unwrap_or(defaults.drain_ms),
                tenant_concurrency: scheduler
                    .tenant_concurrency
                    .map_or(defaults.tenant_concurrency, |n| n as usize),
                tenant_queue: scheduler.tenant_queue.unwrap_or(defaults.tenant_queue),
                lease_ms,
                max_step_starts: scheduler
                    .max_step_starts
                    .unwrap_or(defaults.max_step_starts),
                max_run_data_bytes: scheduler
                    .max_run_data_bytes
                    .unwrap_or(defaults.max_run_data_bytes),
                continue_steps: scheduler.continue_steps.unwrap_or(defaults.continue_steps),
                continue_ms: scheduler.continue_ms.unwrap_or(defaults.continue_ms),
                event_keep_ms: scheduler.event_keep_ms.unwrap_or(defaults.event_keep_ms),
                max_events_per_interaction: scheduler
                    .max_events_per_interaction
                    .unwrap_or(defaults.max_events_per_interaction),
                max_events_per_tenant: scheduler
                    .max_events_per_tenant
                    .unwrap_or(defaults.max_events_per_tenant),
                ..defaults
            },
            node_id,
            trusted_vendors,
            require_signed_packages: self.require_signed_packages
                || file.require_signed_packages.unwrap_or(false),
            compile_timeout_ms: file.compile_timeout_ms,
            conn,
            health_listen: http.health_listen,
            max_tails: http.max_tails.unwrap_or(coda_server::DEFAULT_MAX_TAILS),
            max_tails_per_tenant: http
                .max_tails_per_tenant
                .unwrap_or(coda_server::DEFAULT_MAX_TAILS_PER_TENANT),
            webhooks,
        })
    }
}

/// Where the service keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file: one node.
    Sqlite(PathBuf),
    /// A PostgreSQL database several nodes share.
    Postgres(String),
}

impl Database {
    /// Opens it (creating a SQLite file's directory if needed).
    pub fn open(&self) -> Result<Store, Exit> {
        match self {
            Database::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        Exit::usage("io", format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                Store::open(path).map_err(|e| Exit::usage("io", e.to_string()))
            }
            Database::Postgres(url) => {
                Store::open_url(url).map_err(|e| Exit::usage("database", e.to_string()))
            }
        }
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres(url) => f.write_str(&coda_store::redact_url(url)),
        }
    }
}

/// `--db`: a SQLite file, as a path or a `sqlite:` URL, or a PostgreSQL URL. Any other
/// scheme is refused by name rather than taken for a file called `mysql:`.
pub fn database_path(db: PathBuf) -> Result<Database, Exit> {
    let text = db.to_string_lossy();
    if let Some(rest) = text
        .strip_prefix("sqlite://")
        .or_else(|| text.strip_prefix("sqlite:"))
    {
        if rest.is_empty() {
            return Err(Exit::usage("usage", "--db sqlite: names no file"));
        }
        return Ok(Database::Sqlite(PathBuf::from(rest)));
    }
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        return Ok(Database::Postgres(text.into_owned()));
    }
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(Exit::usage(
            "usage",
            format!(
                "--db: `{scheme}://` is not a database coda knows; give a SQLite file path \
                 (or sqlite:PATH) or postgres://USER@HOST:PORT/DB"
            ),
        ));
    }
    Ok(Database::Sqlite(db))
}

/// The hash of the operator's token: from `$CODA_OPERATOR_TOKEN`, else the one stored on
/// an earlier start, else a new one, stored (as its hash) and printed once on stderr.
async fn operator_token_hash(store: &Store) -> Result<String, Exit> {
    let io = |e: coda_store::StoreError| Exit::usage("io", e.to_string());
    if let Ok(token) = std::env::var("CODA_OPERATOR_TOKEN") {
        let token = token.trim();
        if token.len() < MIN_OPERATOR_TOKEN_LEN {
            return Err(Exit::usage(
                "usage",
                format!("CODA_OPERATOR_TOKEN is shorter than {MIN_OPERATOR_TOKEN_LEN} characters"),
            ));
        }
        return Ok(coda_server::hash_token(token));
    }
    if let Some(hash) = store.operator_token_hash().map_err(io)? {
        return Ok(hash);
    }
    let token = coda_server::new_token("coda_op_").map_err(|e| Exit::usage("internal", e))?;
    let hash = coda_server::hash_token(&token);
    // Stored only if no other process stored one first; only the one stored is shown.
    if store
        .init_operator_token(&hash, coda_types::time::now_ms())
        .await
        .map_err(io)?
    {
        use std::io::Write;
        let line = format!(
            "coda serve: the operator token (shown this once; set CODA_OPERATOR_TOKEN to use another): {token}\n"
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
        return Ok(hash);
    }
    store
        .operator_token_hash()
        .map_err(io)?
        .ok_or_else(|| Exit::usage("internal", "the operator token was not stored"))
}

/// SIGINT or SIGTERM. The handlers are installed when this is called, not when the future
/// is first polled: a signal that arrives once the address is printed (a supervisor that
/// stops the service at once) must stop it gracefully, not kill it.
fn signalled() -> Result<impl std::future::Future<Output = ()>, Exit> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind: SignalKind| {
            signal(kind).map_err(|e| Exit::usage("io", format!("cannot handle signals: {e}")))
        };
        let mut interrupt = install(SignalKind::interrupt())?;
        let mut terminate = install(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

// tidy: long — the service's start-up in order; issue 15 moves the node's assembly out of the binary, which shortens it
pub async fn serve(runtime: Runtime, settings: Settings) -> Result<Json, Exit> {
    let args = settings;
    let db = args.db;
    let applets = DirApplets::load(runtime, args.applets.as_deref())
        .await
        .map_err(|e| Exit::usage("io", e))?;
    let store = Arc::new(db.open()?);
    // Tenants' uploads run beside the built-in and directory applets; the same object
    // checks and compiles uploads, so an upload runs on this node without compiling again.
    // Each tenant's ceiling bounds its steps in flight and each invocation's fuel and memory.
    let ceilings = Arc::new(coda_node::CeilingLimits::new(store.clone()));
    let applets = Arc::new(ServiceApplets::new(
        applets,
        store.clone(),
        ceilings.clone(),
    ));
    let infos = applets.infos().cloned().collect();
    let operator_hash = operator_token_hash(&store).await?;
    // The key's file from the configuration, else $CODA_SECRETS_KEY, else the data
    // directory's (generated on the first start).
    let configured = match &args.secrets_key_file {
        Some(path) => Some(
            coda_types::files::read_text_capped(path, coda_types::files::MAX_CONFIG_FILE_BYTES)
                .map_err(|e| Exit::usage("io", format!("the secrets key file: {e}")))?,
        ),
        None => None,
    };
    std::fs::create_dir_all(&args.data_dir).map_err(|e| {
        Exit::usage(
            "io",
            format!("cannot create {}: {e}", args.data_dir.display()),
        )
    })?;
    let secrets_key = coda_node::secrets_key(configured.as_deref(), &args.data_dir)?;
    if let Some(file) = &args.grants {
        coda_node::seed(&store, &secrets_key, file).await?;
    }
    let capabilities = Arc::new(coda_node::StoreGrants::new(
        store.clone(),
        secrets_key.clone(),
    ));
    let webhook_store = store.clone();
    let mut engine = Engine::new(store, applets.clone(), Arc::new(WallClock), args.limits)
        .with_capabilities(capabilities)
        .with_tenant_limits(ceilings);
    if let Some(node) = &args.node_id {
        engine = engine.with_node_id(node.clone());
    }
    tracing::info!(
        node = engine.node_id(),
        lease_ms = args.limits.lease_ms,
        trusted_vendor_keys = args.trusted_vendors.len(),
        require_signed_packages = args.require_signed_packages,
        "node"
    );
    let engine = Arc::new(engine);
    // The webhook deliveries of this node, claimed under the engine's node id.
    let webhooks = Arc::new(coda_webhooks::Webhooks::new(
        webhook_store,
        secrets_key.clone(),
        engine.node_id(),
        args.webhooks,
    ));
    let state = coda_server::AppState::new(engine.clone(), infos, &operator_hash)
        .map_err(|e| Exit::usage("internal", e))?
        .with_installer(applets)
        .with_trusted_vendors(args.trusted_vendors)
        .with_require_signed_packages(args.require_signed_packages)
        .with_secrets_key(secrets_key)
        .with_tail_limits(args.max_tails, args.max_tails_per_tenant);
    // Thousands of connections need more than the usual soft limit of 1,024 files; the
    // connections then take at most half of what there is, so the database and the applets
    // always have files left and /healthz keeps answering.
    let mut conn = args.conn;
    if let Some(fd_limit) = coda_server::raise_fd_limit() {
        let wanted = conn.max_connections;
        if conn.fit_to_fd_limit(fd_limit) {
            tracing::warn!(
                wanted,
                max_connections = conn.max_connections,
                fd_limit,
                "max_connections lowered to half the open-files limit"
            );
        }
    }
    tracing::info!(
        max_connections = conn.max_connections,
        reserved_connections = conn.reserved_connections,
        header_timeout_ms = conn.header_timeout.as_millis() as u64,
        body_timeout_ms = conn.body_timeout.as_millis() as u64,
        write_timeout_ms = conn.write_timeout.as_millis() as u64,
        "http"
    );
    let signalled = signalled()?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| Exit::usage("io", format!("cannot listen on {}: {e}", args.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|e| Exit::usage("io", e.to_string()))?;
    {
        use std::io::Write;
        let line = format!("coda serve: listening on http://{address} (database {db})\n");
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    // The scheduler runs beside the API. Unfinished runs of an earlier process are due in
    // the store, so it resumes them on its first pass. If it stops with an error, the API
    // stops too: a service that takes events and never runs them would look healthy.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ended, scheduler_ended) = tokio::sync::oneshot::channel::<()>();
    let scheduler = tokio::spawn({
        let engine = engine.clone();
        async move {
            let result = engine
                .serve(async {
                    let _ = stopped.await;
                })
                .await;
            let _ = ended.send(());
            result
        }
    });
    // The delivery loop beside them, stopped with the scheduler.
    let (stop_webhooks, webhooks_stopped) = tokio::sync::oneshot::channel::<()>();
    let deliveries = tokio::spawn(webhooks.serve(async {
        let _ = webhooks_stopped.await;
    }));
    let shutdown = async {
        tokio::select! {
            _ = signalled => {}
            _ = scheduler_ended => {}
        }
    };
    // The health checks on an address of their own, if asked: stopped after the API.
    let health = match &args.health_listen {
        Some(health_address) => {
            let health_listener = tokio::net::TcpListener::bind(health_address)
                .await
                .map_err(|e| {
                    Exit::usage("io", format!("cannot listen on {health_address}: {e}"))
                })?;
            if let Ok(bound) = health_listener.local_addr() {
                use std::io::Write;
                let line = format!("coda serve: health checks on http://{bound}/healthz\n");
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            let (stop_health, health_stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(coda_server::serve_health(
                health_listener,
                coda_server::router(state.clone()),
                conn.clone(),
                async {
                    let _ = health_stopped.await;
                },
            ));
            Some((stop_health, task))
        }
        None => None,
    };
    // Graceful: no new connections, requests in flight answered (within the grace).
    let served = coda_server::serve(listener, coda_server::router(state), conn, shutdown).await;
    if let Some((stop_health, task)) = health {
        let _ = stop_health.send(());
        let _ = task.await;
    }
    // The scheduler starts no step once told, and waits for those in flight to commit
    // (`FlowLimits::drain_ms`); one still running after that is dropped uncommitted, and the
    // next start runs it again.
    let _ = stop.send(());
    let _ = stop_webhooks.send(());
    let _ = deliveries.await;
    let steps = scheduler
        .await
        .map_err(|e| Exit::usage("internal", format!("the scheduler failed: {e}")))?
        .map_err(|e| Exit::usage("internal", format!("the scheduler stopped: {e}")))?;
    served.map_err(|e| Exit::usage("io", format!("the server failed: {e}")))?;
    Ok(json!({ "stopped": true, "address": address.to_string(), "steps": steps }))
}

#[cfg(test)]
mod tests {
    use super::{Database, ServeArgs, database_path};
    use std::path::PathBuf;

    #[test]
    fn the_http_section_sets_the_connection_limits_and_the_flag_wins() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("serve.yaml");
        let settings = |text: &str, flag: Option<usize>| {
            std::fs::write(&config, text).unwrap();
            ServeArgs {
                config: Some(config.clone()),
                data_dir: Some(dir.path().to_owned()),
                max_connections: flag,
                ..ServeArgs::default()
            }
            .settings()
        };
        let set = settings(
            "http: { max_connections: 100, header_timeout_ms: 2500, max_tails_per_tenant: 3, \
             health_listen: '127.0.0.1:0' }",
            None,
        )
        .unwrap_or_else(|e| panic!("{}", e.error));
        assert_eq!(set.conn.max_connections, 100);
        assert_eq!(set.conn.header_timeout.as_millis(), 2500);
        assert_eq!(set.conn.body_timeout, coda_server::DEFAULT_BODY_TIMEOUT);
        assert_eq!(set.max_tails_per_tenant, 3);
        assert_eq!(set.max_tails, coda_server::DEFAULT_MAX_TAILS);
        assert_eq!(set.health_listen.as_deref(), Some("127.0.0.1:0"));
        let set = settings("http: { max_connections: 100 }", Some(7))
            .unwrap_or_else(|e| panic!("{}", e.error));
        assert_eq!(set.conn.max_connections, 7);
        for refused in [
            "http: { max_connections: 0 }",
            "http: { body_timeout_ms: 0 }",
        ] {
            let Err(exit) = settings(refused, None) else {
                panic!("{refused} was taken")
            };
            assert!(exit.error.to_string().contains("http:"), "{refused}");
        }
    }

    /// The run limits an operator sets in `scheduler:` reach the engine (issue 14 left
    /// `max_step_starts` at its built-in 5); left out, the defaults hold; 0 is refused.
    #[test]
    fn the_scheduler_section_sets_the_run_limits() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("serve.yaml");
        let settings = |text: &str| {
            std::fs::write(&config, text).unwrap();
            ServeArgs {
                config: Some(config.clone()),
                data_dir: Some(dir.path().to_owned()),
                ..ServeArgs::default()
            }
            .settings()
        };
        let set = settings(
            "scheduler: { max_step_starts: 7, max_run_data_bytes: 65536, continue_steps: 1, continue_ms: 20 }",
        )
        .unwrap_or_else(|e| panic!("{}", e.error));
        assert_eq!(set.limits.max_step_starts, 7);
        assert_eq!(set.limits.max_run_data_bytes, 65536);
        assert_eq!((set.limits.continue_steps, set.limits.continue_ms), (1, 20));
        let defaults = coda_flow::FlowLimits::default();
        let set = settings("scheduler: { batch: 4 }").unwrap_or_else(|e| panic!("{}", e.error));
        assert_eq!(set.limits.max_step_starts, defaults.max_step_starts);
        assert_eq!(set.limits.max_run_data_bytes, defaults.max_run_data_bytes);
        for refused in [
            "scheduler: { max_step_starts: 0 }",
            "scheduler: { max_run_data_bytes: 0 }",
            "scheduler: { continue_steps: 0 }",
        ] {
            let Err(exit) = settings(refused) else {
                panic!("{refused} was taken")
            };
            assert!(
                exit.error.to_string().contains("scheduler."),
                "{refused}: {}",
                exit.error
            );
        }
    }

    #[test]
    fn db_takes_a_path_or_a_sqlite_url_and_names_what_it_refuses() {
        let path = |s: &str| database_path(PathBuf::from(s));
        let file = |p: &str| Some(Database::Sqlite(PathBuf::from(p)));
        assert_eq!(path("data/coda.db").ok(), file("data/coda.db"));
        assert_eq!(path("sqlite:data/c.db").ok(), file("data/c.db"));
        assert_eq!(path("sqlite:///tmp/c.db").ok(), file("/tmp/c.db"));
        assert_eq!(
            path("postgres://u@h/db").ok(),
            Some(Database::Postgres("postgres://u@h/db".into()))
        );
        assert_eq!(
            path("postgresql://h/db").ok(),
            Some(Database::Postgres("postgresql://h/db".into()))
        );
        for refused in ["mysql://h/db", "sqlite:"] {
            let Err(exit) = path(refused) else {
                panic!("{refused} was taken for a file")
            };
            let message = exit.error.to_string();
            assert!(message.contains("--db"), "{refused}: {message}");
        }
    }
}
