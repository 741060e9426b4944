//! One invocation's sandbox: the store data every import reaches ([`HostState`]), the resource
//! limiter, the coarse clocks, and how a failed call is turned into a typed error.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use coda_types::{
    InvocationContext, InvokeError, LimitExceeded, LimitKind, LogLevel, LogLine, Value, Values,
};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use crate::capabilities::Capabilities;
use crate::limits::{self, Limits};

/// Marks an error the host raised on purpose to stop the guest: a limit it hit.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Stop(pub LimitExceeded);

/// The resource limiter: memory, tables and instances, recording what was refused so the
/// error names the limit rather than the trap it causes.
pub(crate) struct Limiter {
    memory_bytes: u64,
    table_elements: u64,
    instances: usize,
    /// Bytes of linear memory in use across the store's memories.
    memory_in_use: u64,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .memory_in_use
            .saturating_sub(current as u64)
            .saturating_add(desired as u64);
        if total > self.memory_bytes {
            // An error, not `Ok(false)`: a refused grow makes most allocators abort with
            // `unreachable`, which would hide which limit was hit.
            return Err(wasmtime::Error::new(Stop(LimitExceeded {
                kind: LimitKind::Memory,
                limit: self.memory_bytes,
                used: Some(total),
            })));
        }
        self.memory_in_use = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.table_elements {
            return Err(wasmtime::Error::new(Stop(LimitExceeded {
                kind: LimitKind::TableElements,
                limit: self.table_elements,
                used: Some(desired as u64),
            })));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }
    fn tables(&self) -> usize {
        // Tables and memories per store follow the instance count; their sizes are what the
        // limits above bound.
        self.instances.saturating_mul(4)
    }
    fn memories(&self) -> usize {
        self.instances
    }
}

/// The wall clock an applet sees, truncated to [`limits::CLOCK_RESOLUTION`]. When the
/// embedder gives the invocation a time (the step's time on the flow's clock, which may be
/// virtual), the applet's clock starts there and moves with real time: a schedule check sees
/// the flow's "now". A step executed again after a crash gets the time of that execution,
/// not of the first (the same only on the virtual clock).
struct CoarseWallClock {
    start: Option<(Duration, Instant)>,
}

impl HostWallClock for CoarseWallClock {
    fn resolution(&self) -> Duration {
        limits::CLOCK_RESOLUTION
    }
    fn now(&self) -> Duration {
        let now = match self.start {
            Some((at, started)) => at + started.elapsed(),
            None => SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        };
        truncate(now)
    }
}

/// The monotonic clock an applet sees: time since the invocation began, coarsened.
struct CoarseMonotonicClock(Instant);

impl HostMonotonicClock for CoarseMonotonicClock {
    fn resolution(&self) -> u64 {
        limits::CLOCK_RESOLUTION.as_nanos() as u64
    }
    fn now(&self) -> u64 {
        truncate(self.0.elapsed()).as_nanos() as u64
    }
}

fn truncate(d: Duration) -> Duration {
    let step = limits::CLOCK_RESOLUTION.as_nanos();
    let nanos = d.as_nanos() / step * step;
    Duration::new(
        (nanos / 1_000_000_000) as u64,
        (nanos % 1_000_000_000) as u32,
    )
}

/// Builds the WASI context of one invocation: nothing from the host is visible. No
/// arguments, environment or preopened directories; stdin empty; stdout and stderr
/// discarded; every socket address and name lookup refused; clocks coarse; random allowed.
fn deny_all_wasi(wall_clock: Option<SystemTime>) -> WasiCtx {
    let start = wall_clock
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|at| (at, Instant::now()));
    let mut builder = WasiCtx::builder();
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .wall_clock(CoarseWallClock { start })
        .monotonic_clock(CoarseMonotonicClock(Instant::now()));
    builder.build()
}

/// The clocks an initialization sees: stopped at [`limits::INIT_CLOCK`], so what an init
/// reads from them is the same on every node and at every upload.
struct StoppedClock;

impl HostWallClock for StoppedClock {
    fn resolution(&self) -> Duration {
        limits::CLOCK_RESOLUTION
    }
    fn now(&self) -> Duration {
        limits::INIT_CLOCK
    }
}

impl HostMonotonicClock for StoppedClock {
    fn resolution(&self) -> u64 {
        limits::CLOCK_RESOLUTION.as_nanos() as u64
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The WASI context of a pre-initialization (`preinit.rs`): granted nothing, like an
/// invocation's, and deterministic besides: stopped clocks, and both random generators
/// seeded with [`limits::INIT_RANDOM_SEED`]. A snapshot is then a function of the
/// component's bytes alone: the same on every node, and holding nothing of the machine,
/// the moment or another upload (a key an init draws is no secret: draw those in `run`).
fn init_wasi() -> WasiCtx {
    use rand::SeedableRng;
    let mut builder = WasiCtx::builder();
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .wall_clock(StoppedClock)
        .monotonic_clock(StoppedClock)
        .secure_random(rand::rngs::StdRng::seed_from_u64(limits::INIT_RANDOM_SEED))
        .insecure_random(rand::rngs::StdRng::seed_from_u64(limits::INIT_RANDOM_SEED))
        .insecure_random_seed(u128::from(limits::INIT_RANDOM_SEED));
    builder.build()
}

/// Everything one invocation's imports reach.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) limits: Limits,
    pub(crate) context: InvocationContext,
    pub(crate) capabilities: Arc<dyn Capabilities>,
    pub(crate) data: Values,
    pub(crate) data_changes: Values,
    pub(crate) state: Values,
    pub(crate) state_changes: Values,
    pub(crate) logs: Vec<LogLine>,
    log_bytes: u64,
    data_bytes: u64,
    pub(crate) host_calls: u64,
    /// The limit a host function stopped the guest for, if any.
    pub(crate) stopped: Option<LimitExceeded>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HostState {
    pub(crate) fn new(
        limits: Limits,
        context: InvocationContext,
        data: Values,
        state: Values,
        capabilities: Arc<dyn Capabilities>,
        wall_clock: Option<SystemTime>,
    ) -> Self {
        HostState {
            wasi: deny_all_wasi(wall_clock),
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_bytes: limits.memory_bytes,
                table_elements: limits.table_elements,
                instances: usize::try_from(limits.instances).unwrap_or(usize::MAX),
                memory_in_use: 0,
            },
            limits,
            context,
            capabilities,
            data,
            data_changes: Values::new(),
            state,
            state_changes: Values::new(),
            logs: Vec::new(),
            log_bytes: 0,
            data_bytes: 0,
            host_calls: 0,
            stopped: None,
        }
    }

    /// The state of a pre-initialization: no tenant, data, state or capability, and the
    /// deterministic WASI of [`init_wasi`].
    pub(crate) fn for_init(limits: Limits) -> Self {
        HostState {
            wasi: init_wasi(),
            ..HostState::new(
                limits,
                InvocationContext::default(),
                Values::new(),
                Values::new(),
                Arc::new(crate::capabilities::DenyAll),
                None,
            )
        }
    }

    fn stop(&mut self, exceeded: LimitExceeded) -> wasmtime::Error {
        self.stopped = Some(exceeded.clone());
        wasmtime::Error::new(Stop(exceeded))
    }

    /// Counts one call into a coda import; past the limit the guest is stopped.
    pub(crate) fn count_call(&mut self) -> wasmtime::Result<()> {
        self.host_calls += 1;
        if self.host_calls > self.limits.host_calls {
            return Err(self.stop(LimitExceeded {
                kind: LimitKind::HostCalls,
                limit: self.limits.host_calls,
                used: Some(self.host_calls),
            }));
        }
        Ok(())
    }

    /// Records a log line; past the log-byte limit the guest is stopped.
    pub(crate) fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.log_bytes += message.len() as u64;
        if self.log_bytes > self.limits.log_bytes {
            return Err(self.stop(LimitExceeded {
                kind: LimitKind::Log,
                limit: self.limits.log_bytes,
                used: Some(self.log_bytes),
            }));
        }
        // The trace event is written by the host: without the step's secret values.
        let shown = self.context.scrubber.scrub(&message);
        tracing::trace!(target: "coda::applet", run = %self.context.run, node = %self.context.node, ?level, "{shown}");
        self.logs.push(LogLine { level, message });
        Ok(())
    }

    /// Checks a data-source or state write. `Ok(Err(..))` is the guest's `invalid` answer;
    /// `Err` stops the guest at the data-byte limit.
    pub(crate) fn check_write(
        &mut self,
        name: &str,
        value: &Value,
    ) -> wasmtime::Result<Result<(), String>> {
        if let Err(why) = check_name(name).and_then(|()| value.check()) {
            return Ok(Err(why));
        }
        self.data_bytes += (name.len() + value.stored_len()) as u64;
        if self.data_bytes > self.limits.data_bytes {
            return Err(self.stop(LimitExceeded {
                kind: LimitKind::Data,
                limit: self.limits.data_bytes,
                used: Some(self.data_bytes),
            }));
        }
        Ok(Ok(()))
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name must not be empty".into());
    }
    if name.len() > limits::MAX_NAME_BYTES {
        return Err(format!(
            "name of {} bytes is longer than {} bytes",
            name.len(),
            limits::MAX_NAME_BYTES
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("name {name:?} contains a control character"));
    }
    Ok(())
}

/// Sets up a fresh store for one invocation: limiter, fuel and the deadline.
pub(crate) fn new_store(engine: &wasmtime::Engine, state: HostState) -> Store<HostState> {
    let limits = state.limits;
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    // Fuel is always enabled on the engine, so setting it cannot fail.
    let _ = store.set_fuel(limits.fuel);
    let started = Instant::now();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |mut store| {
        let elapsed = started.elapsed();
        if elapsed >= limits.deadline {
            let elapsed = elapsed.as_millis() as u64;
            let exceeded = LimitExceeded {
                kind: LimitKind::Deadline,
                limit: limits.deadline.as_millis() as u64,
                used: Some(elapsed),
            };
            store.data_mut().stopped = Some(exceeded.clone());
            return Err(wasmtime::Error::new(Stop(exceeded)));
        }
        // Not late yet: give other tasks on this thread a turn, then go on.
        Ok(UpdateDeadline::Yield(1))
    });
    store
}

/// Turns the error of a failed instantiation or call into the typed error it stands for.
pub(crate) fn classify(
    error: wasmtime::Error,
    store: &Store<HostState>,
    wasm_stack_bytes: usize,
) -> InvokeError {
    let state = store.data();
    if let Some(stop) = error.downcast_ref::<Stop>() {
        return InvokeError::LimitExceeded(stop.0.clone());
    }
    if let Some(exceeded) = &state.stopped {
        return InvokeError::LimitExceeded(exceeded.clone());
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        match trap {
            Trap::OutOfFuel => {
                return InvokeError::LimitExceeded(LimitExceeded {
                    kind: LimitKind::Fuel,
                    limit: state.limits.fuel,
                    used: Some(state.limits.fuel),
                });
            }
            Trap::StackOverflow => {
                return InvokeError::LimitExceeded(LimitExceeded {
                    kind: LimitKind::Stack,
                    limit: wasm_stack_bytes as u64,
                    used: None,
                });
            }
            _ => {}
        }
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return InvokeError::Trap {
            message: format!("the applet called exit({})", exit.0),
        };
    }
    // wasmtime reports instance-count overruns as a plain error, before our limiter sees them.
    let text = format!("{error:#}");
    if text.contains("count too high") {
        return InvokeError::LimitExceeded(LimitExceeded {
            kind: LimitKind::Instances,
            limit: state.limits.instances,
            used: None,
        });
    }
    InvokeError::Trap {
        message: trap_message(&error),
    }
}

/// The trap's own message, then the guest frames wasmtime recorded, if any.
fn trap_message(error: &wasmtime::Error) -> String {
    let mut message = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    if let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
        for frame in backtrace.frames().iter().take(8) {
            let name = frame.func_name().unwrap_or("<unknown>");
            message.push_str(&format!("\n  at {name}"));
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("CLID").is_ok());
        assert!(check_name("Custom.Field name").is_ok());
        assert!(check_name("").unwrap_err().contains("empty"));
        assert!(
            check_name(&"x".repeat(limits::MAX_NAME_BYTES + 1))
                .unwrap_err()
                .contains("longer")
        );
        assert!(check_name("a\nb").unwrap_err().contains("control"));
    }

    #[test]
    fn clocks_are_coarse() {
        let t = truncate(Duration::new(5, 123_456_789));
        assert_eq!(t, Duration::new(5, 123_000_000));
        let wall = CoarseWallClock { start: None }.now();
        assert_eq!(wall.subsec_nanos() % 1_000_000, 0);
    }
}
