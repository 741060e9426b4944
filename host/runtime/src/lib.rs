//! `coda-runtime`: runs one coda applet, a WASI component behind the `coda:applet` world, in
//! a sandbox whose limits hold against a hostile author.
//!
//! ```ignore
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let applet = runtime.load(&bytes, &LoadOptions::default()).await?;
//! let report = runtime.invoke(&applet, Invocation::new(context, config)).await;
//! ```
//!
//! There is one wasmtime [`Engine`](wasmtime::Engine) per runtime (Cranelift, pooling
//! allocator, fuel and epochs). A component is compiled once per content digest, kept in
//! memory as an `InstancePre` and on disk as a compiled artifact; every invocation gets a
//! fresh `Store`, so nothing one invocation leaves in memory reaches the next.

mod cache;
mod engine;
pub mod limits;
mod load;
mod preinit;
mod sandbox;
mod world;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use coda_types::capabilities;
pub use coda_types::{
    AppletInfo, Capability, Failure, HostError, InvocationContext, InvokeError, LimitExceeded,
    LimitKind, LogLevel, LogLine, Outcome, Value, Values,
};
pub use limits::Limits;
pub use load::{LoadError, LoadOptions};
pub use preinit::{INIT_EXPORT, PreInit};
pub use world::WorldVersion;

use crate::capabilities::{Capabilities, DenyAll};
use crate::sandbox::HostState;

/// How a [`Runtime`] is built. `RuntimeConfig::default()` is a working configuration with
/// no artifact cache on disk.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled artifacts are kept across restarts; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Component instances that may run at once (the pooling allocator's slots).
    pub max_concurrent_instances: u32,
    /// Native stack for WebAssembly; engine-wide, see [`limits::DEFAULT_WASM_STACK_BYTES`].
    pub wasm_stack_bytes: usize,
    /// Bound on compiling one component.
    pub compile_timeout: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            max_concurrent_instances: 1000,
            wasm_stack_bytes: limits::DEFAULT_WASM_STACK_BYTES,
            compile_timeout: limits::DEFAULT_COMPILE_TIMEOUT,
        }
    }
}

/// A loaded applet: validated, compiled, described, and ready to instantiate.
pub struct LoadedApplet {
    /// SHA-256 of the component's bytes, in hex.
    pub digest: String,
    pub world: WorldVersion,
    pub info: AppletInfo,
    /// The coda interfaces the component imports (`data`, `http`, ...): information, not
    /// proof of need, since some toolchains import every interface of the world.
    pub coda_imports: Vec<String>,
    /// True when this load compiled the component rather than finding it cached.
    pub compiled: bool,
    /// Whether steps start from a snapshot taken after the component's `wizer-initialize`,
    /// and whether this load ran it (see `preinit.rs`).
    pub pre_init: PreInit,
    pre: world::Pre,
}

impl std::fmt::Debug for LoadedApplet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedApplet")
            .field("digest", &self.digest)
            .field("world", &self.world)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// One call of an applet's `run`.
pub struct Invocation {
    pub context: InvocationContext,
    /// The node configuration, as JSON.
    pub config: serde_json::Value,
    /// The run's data sources as the applet sees them.
    pub data: Values,
    /// This node's state in this run.
    pub state: Values,
    pub limits: Limits,
    pub capabilities: Arc<dyn Capabilities>,
    /// The time the applet's wall clock starts at (the step's time on the flow's clock);
    /// `None` for the host's real time.
    pub wall_clock: Option<std::time::SystemTime>,
}

impl Invocation {
    /// An invocation with no data or state, the default limits and no capability granted.
    pub fn new(context: InvocationContext, config: serde_json::Value) -> Self {
        Invocation {
            context,
            config,
            data: Values::new(),
            state: Values::new(),
            limits: Limits::default(),
            capabilities: Arc::new(DenyAll),
            wall_clock: None,
        }
    }
}

/// What an invocation did.
pub type Report = coda_types::InvocationReport;

/// The applet host: one engine, its linker, the artifact cache and the loaded components.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: wasmtime::Engine,
    linker: wasmtime::component::Linker<HostState>,
    cache: Option<cache::ArtifactCache>,
    config: RuntimeConfig,
    compile_permits: Arc<tokio::sync::Semaphore>,
    /// One per pooling-allocator slot: an invocation waits for a free slot rather than
    /// failing because the pool is full.
    instance_permits: tokio::sync::Semaphore,
    /// Components already loaded in this process, by digest: loaded once, shared after.
    loaded: Mutex<HashMap<String, Arc<LoadedApplet>>>,
    _ticker: engine::EpochTicker,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let engine = engine::new_engine(&config)?;
        let mut linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        for version in WorldVersion::ALL {
            version.add_to_linker(&mut linker)?;
        }
        let cache = match &config.cache_dir {
            Some(dir) => Some(cache::ArtifactCache::open(dir, &engine).map_err(|e| {
                anyhow::anyhow!("cannot open the artifact cache at {}: {e}", dir.display())
            })?),
            None => None,
        };
        let ticker = engine::EpochTicker::start(&engine);
        let slots = config.max_concurrent_instances as usize;
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                linker,
                cache,
                config,
                compile_permits: Arc::new(tokio::sync::Semaphore::new(limits::COMPILE_CONCURRENCY)),
                instance_permits: tokio::sync::Semaphore::new(slots),
                loaded: Mutex::new(HashMap::new()),
                _ticker: ticker,
            }),
        })
    }

    /// Runs the applet's `run` once in a fresh sandbox. Never panics, whatever the applet
    /// does: every way it can go wrong is in the report's `result`.
    pub async fn invoke(&self, applet: &LoadedApplet, invocation: Invocation) -> Report {
        let started = Instant::now();
        let Invocation {
            context,
            config,
            data,
            state,
            limits,
            capabilities,
            wall_clock,
        } = invocation;
        let empty = |result| Report {
            result,
            data_changes: Values::new(),
            state_changes: Values::new(),
            logs: Vec::new(),
            fuel_used: 0,
            host_calls: 0,
            elapsed: started.elapsed(),
        };
        if let Err(why) = limits.validate() {
            return empty(Err(InvokeError::InvalidResult {
                message: format!("invalid limits: {why}"),
            }));
        }
        let config = config.to_string();
        // The semaphore is never closed, so acquiring only waits.
        let _slot = self.inner.instance_permits.acquire().await;
        let state = HostState::new(limits, context, data, state, capabilities, wall_clock);
        let mut store = sandbox::new_store(&self.inner.engine, state);
        let outcome =
            tokio::time::timeout(budget(&limits), applet.pre.run(&mut store, &config)).await;
        let result = match self.settle(outcome, &store) {
            Ok(Ok(outcome)) => check_outcome(outcome, &limits),
            Ok(Err(failure)) => check_failure(failure, &limits),
            Err(error) => Err(error),
        };
        let fuel_used = limits.fuel - store.get_fuel().unwrap_or(0);
        let host = store.into_data();
        let (data_changes, state_changes) = if result.is_ok() {
            (host.data_changes, host.state_changes)
        } else {
            (Values::new(), Values::new())
        };
        Report {
            result,
            data_changes,
            state_changes,
            logs: host.logs,
            fuel_used,
            host_calls: host.host_calls,
            elapsed: started.elapsed(),
        }
    }

    /// Settles one guest call made under [`budget`]: its value, or the typed error its
    /// failure stands for.
    pub(crate) fn settle<T>(
        &self,
        outcome: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
        store: &wasmtime::Store<HostState>,
    ) -> Result<T, InvokeError> {
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(sandbox::classify(
                error,
                store,
                self.inner.config.wasm_stack_bytes,
            )),
            Err(_elapsed) => {
                let deadline = store.data().limits.deadline.as_millis() as u64;
                Err(InvokeError::LimitExceeded(LimitExceeded {
                    kind: LimitKind::Deadline,
                    limit: deadline,
                    used: Some(deadline),
                }))
            }
        }
    }

    /// The engine, for benchmarks that compare against raw wasmtime on the same settings.
    #[doc(hidden)]
    pub fn engine(&self) -> &wasmtime::Engine {
        &self.inner.engine
    }
}

/// The wall-clock budget of one guest call. The epoch deadline stops the guest while it runs
/// WebAssembly; this timeout, a few ticks later, also covers time spent inside host calls.
fn budget(limits: &Limits) -> Duration {
    limits.deadline + 4 * limits::EPOCH_TICK
}

fn check_outcome(outcome: Outcome, limits: &Limits) -> Result<Outcome, InvokeError> {
    let len = outcome.output_len() as u64;
    if len > limits.output_bytes {
        return Err(InvokeError::LimitExceeded(LimitExceeded {
            kind: LimitKind::Output,
            limit: limits.output_bytes,
            used: Some(len),
        }));
    }
    let exits: Vec<&str> = match &outcome {
        Outcome::Exit(exit) | Outcome::Pause { exit, .. } => vec![exit],
        Outcome::Wait {
            event,
            on_event,
            on_timeout,
            ..
        } => vec![event, on_event, on_timeout],
        Outcome::Route { plan, .. } => vec![plan],
    };
    if exits.iter().any(|name| name.trim().is_empty()) {
        return Err(InvokeError::InvalidResult {
            message: format!("outcome {outcome:?} names an empty exit, event or plan"),
        });
    }
    // The event waited for and the plan routed to become store keys and reach the API:
    // they follow their kind's naming rule (an exit must be one the applet declared, which
    // the engine checks).
    use coda_types::names::{NameKind, check_name};
    let named = match &outcome {
        Outcome::Wait { event, .. } => check_name(NameKind::Event, event),
        Outcome::Route { plan, .. } => check_name(NameKind::Plan, plan),
        Outcome::Exit(_) | Outcome::Pause { .. } => Ok(()),
    };
    if let Err(e) = named {
        return Err(InvokeError::InvalidResult {
            message: format!("the outcome names {e}"),
        });
    }
    Ok(outcome)
}

fn check_failure(failure: Failure, limits: &Limits) -> Result<Outcome, InvokeError> {
    let len = failure.output_len() as u64;
    if len > limits.output_bytes {
        return Err(InvokeError::LimitExceeded(LimitExceeded {
            kind: LimitKind::Output,
            limit: limits.output_bytes,
            used: Some(len),
        }));
    }
    Err(InvokeError::Failure(failure))
}
