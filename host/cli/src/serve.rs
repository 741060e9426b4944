//! `coda serve`: the service. One process: the HTTP API (`coda-server`) and the flow
//! engine's scheduler over one SQLite database, with the built-in applets and a directory
//! of others; each tenant's capabilities come from the store (`grants::StoreGrants`).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use coda_flow::{Engine, FlowLimits, WallClock};
use coda_runtime::Runtime;
use coda_store::Store;
use serde_json::{Value as Json, json};

use crate::Exit;
use crate::applets::DirApplets;

/// The shortest operator token taken from the environment: a short one could be guessed.
const MIN_OPERATOR_TOKEN_LEN: usize = 16;

#[derive(Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0: any free port; the address is printed on stderr)
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The SQLite database [default: coda.db in $CODA_DATA_DIR, else the user's data dir]
    #[arg(long)]
    db: Option<PathBuf>,
    /// A directory of applet components (.wasm), besides the built-in ones
    #[arg(long)]
    applets: Option<PathBuf>,
    /// Seeds tenants' ceilings, grants and secrets from a settings file (YAML or JSON) at
    /// start, replacing what the store has for those tenants; without it, the operator and
    /// tenant APIs set them
    #[arg(long)]
    grants: Option<PathBuf>,
}

fn default_db() -> Result<PathBuf, Exit> {
    let dir = match std::env::var_os("CODA_DATA_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => directories::ProjectDirs::from("", "", "coda")
            .map(|d| d.data_dir().to_owned())
            .ok_or_else(|| {
                Exit::usage(
                    "usage",
                    "no data directory: set $CODA_DATA_DIR or pass --db PATH",
                )
            })?,
    };
    Ok(dir.join("coda.db"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
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
        .init_operator_token(&hash, now_ms())
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

/// SIGINT or SIGTERM.
async fn signalled() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

pub async fn serve(runtime: Runtime, args: ServeArgs) -> Result<Json, Exit> {
    let db = match args.db {
        Some(db) => db,
        None => default_db()?,
    };
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Exit::usage("io", format!("cannot create {}: {e}", dir.display())))?;
    }
    let applets = DirApplets::load(runtime, args.applets.as_deref())
        .await
        .map_err(|e| Exit::usage("io", e))?;
    let infos = applets.infos().cloned().collect();
    let store = Arc::new(Store::open(&db).map_err(|e| Exit::usage("io", e.to_string()))?);
    let operator_hash = operator_token_hash(&store).await?;
    let data_dir = match db.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let secrets_key = crate::grants::secrets_key(None, &data_dir)?;
    if let Some(file) = &args.grants {
        crate::grants::seed(&store, &secrets_key, file).await?;
    }
    let capabilities = Arc::new(crate::grants::StoreGrants::new(
        store.clone(),
        secrets_key.clone(),
    ));
    let engine = Arc::new(
        Engine::new(
            store,
            Arc::new(applets),
            Arc::new(WallClock),
            FlowLimits::default(),
        )
        .with_capabilities(capabilities),
    );
    let state = coda_server::AppState::new(engine.clone(), infos, &operator_hash)
        .map_err(|e| Exit::usage("internal", e))?
        .with_secrets_key(secrets_key);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| Exit::usage("io", format!("cannot listen on {}: {e}", args.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|e| Exit::usage("io", e.to_string()))?;
    {
        use std::io::Write;
        let line = format!(
            "coda serve: listening on http://{address} (database {})\n",
            db.display()
        );
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
    let shutdown = async {
        tokio::select! {
            _ = signalled() => {}
            _ = scheduler_ended => {}
        }
    };
    // Graceful: no new connections, requests in flight answered.
    let served = axum::serve(listener, coda_server::router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    // The scheduler starts no step once told, and waits for those in flight to commit
    // (`FlowLimits::drain_ms`); one still running after that is dropped uncommitted, and the
    // next start runs it again.
    let _ = stop.send(());
    let steps = scheduler
        .await
        .map_err(|e| Exit::usage("internal", format!("the scheduler failed: {e}")))?
        .map_err(|e| Exit::usage("internal", format!("the scheduler stopped: {e}")))?;
    served.map_err(|e| Exit::usage("io", format!("the server failed: {e}")))?;
    Ok(json!({ "stopped": true, "address": address.to_string(), "steps": steps }))
}
