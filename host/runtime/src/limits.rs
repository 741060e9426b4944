//! Every sandbox limit, in one place: its default, what it counts, and why the default is
//! what it is. A caller overrides any of them per invocation through [`Limits`].

use std::time::Duration;

/// Fuel per invocation: roughly one unit per WebAssembly instruction. Deterministic, so the
/// same applet on the same input always stops at the same place. Twenty times Shopify
/// Functions' 11 million instructions, for interpreters such as componentize-py's.
pub const DEFAULT_FUEL: u64 = 200_000_000;

/// Linear memory per invocation, summed over the component's memories (Cloudflare Workers
/// give an isolate 128 MB). Counted when memory is created or grows.
pub const DEFAULT_MEMORY_BYTES: u64 = 128 << 20;

/// The most any override may raise the memory limit to: a 32-bit linear memory's size,
/// which is also the pooling allocator's slot size.
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;

/// Elements per table. Interpreters carry large function tables (CPython's is in the tens of
/// thousands); beyond this a table is refused.
pub const DEFAULT_TABLE_ELEMENTS: u64 = 100_000;

/// Core and component instances a component may create in its store. A Rust applet needs a
/// handful, componentize-py output a few dozen.
pub const DEFAULT_INSTANCES: u64 = 100;

/// Wall-clock time per invocation, host calls included; enforced by epoch interruption.
/// Long enough for a capability call with its own 10 s timeout (Twilio Studio's HTTP bound).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(15);

/// Bytes of the outcome or failure an applet returns (Talkdesk caps a step's output at 65 KB).
pub const DEFAULT_OUTPUT_BYTES: u64 = 64 << 10;

/// Bytes of data sources and state an invocation writes (names plus values).
pub const DEFAULT_DATA_BYTES: u64 = 256 << 10;

/// Calls into coda's own imports (data, state, log and the capabilities) per invocation.
pub const DEFAULT_HOST_CALLS: u64 = 10_000;

/// Bytes an invocation may log.
pub const DEFAULT_LOG_BYTES: u64 = 16 << 10;

/// Size of a component accepted for loading, checked before anything is parsed or compiled.
/// componentize-py and ComponentizeJS output (12–18 MB) needs the operator to raise it.
pub const DEFAULT_UPLOAD_BYTES: u64 = 8 << 20;

/// Native stack available to WebAssembly. Engine-wide in wasmtime, so it is set when the
/// runtime is built ([`crate::RuntimeConfig::wasm_stack_bytes`]), not per invocation.
pub const DEFAULT_WASM_STACK_BYTES: usize = 1 << 20;

/// Time to compile one component. Compilation cannot be interrupted, so past this bound the
/// caller gets an error while the compile finishes in the background under the compile
/// semaphore; the upload size limit is what keeps compiles short.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(60);

/// Components compiled at once; more wait, so compiling never takes every core.
pub const COMPILE_CONCURRENCY: usize = 1;

/// How often the epoch advances. The deadline is checked, and a running applet yields to
/// other tasks, at this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The resolution of the clocks an applet sees; finer clocks help timing attacks.
pub const CLOCK_RESOLUTION: Duration = Duration::from_millis(1);

/// Longest data-source or state name.
pub const MAX_NAME_BYTES: usize = 256;

/// Longest config schema `describe` may return.
pub const MAX_SCHEMA_BYTES: usize = 1 << 20;

/// The largest pre-initialized component (`preinit.rs`): the component with its memory
/// after `wizer-initialize` as data segments. An init that fills its memory makes a snapshot
/// that is refused (`too-large`) rather than stored, compiled and mapped into every step.
pub const MAX_SNAPSHOT_BYTES: u64 = 64 << 20;

/// Fuel for reading a snapshot out of an initialized instance: wizer's own accessor
/// functions (a few instructions per memory and global), never the applet's code, given a
/// budget of their own so that an init that stopped just short of its limit still snapshots.
pub const SNAPSHOT_FUEL: u64 = 1_000_000;

/// The wall clock an init reads (2000-01-01T00:00:00Z, as time since the epoch): stopped, so a
/// snapshot does not depend on when it was made.
pub const INIT_CLOCK: Duration = Duration::from_secs(946_684_800);

/// The seed of both random generators an init reads: fixed, so a snapshot does not depend
/// on where it was made and holds nothing another upload of the same bytes would not.
pub const INIT_RANDOM_SEED: u64 = 0x636f_6461_2d69_6e69;

/// The limits of one invocation. `Limits::default()` holds the documented defaults; override
/// a field to change one: `Limits { fuel: 1_000, ..Limits::default() }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub fuel: u64,
    pub memory_bytes: u64,
    pub table_elements: u64,
    pub instances: u64,
    pub deadline: Duration,
    pub output_bytes: u64,
    pub data_bytes: u64,
    pub host_calls: u64,
    pub log_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: DEFAULT_FUEL,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            table_elements: DEFAULT_TABLE_ELEMENTS,
            instances: DEFAULT_INSTANCES,
            deadline: DEFAULT_DEADLINE,
            output_bytes: DEFAULT_OUTPUT_BYTES,
            data_bytes: DEFAULT_DATA_BYTES,
            host_calls: DEFAULT_HOST_CALLS,
            log_bytes: DEFAULT_LOG_BYTES,
        }
    }
}

impl Limits {
    /// Checks that the limits can be enforced by this runtime.
    pub fn validate(&self) -> Result<(), String> {
        if self.memory_bytes > MAX_MEMORY_BYTES {
            return Err(format!(
                "memory limit {} bytes is above the most a 32-bit memory can hold ({MAX_MEMORY_BYTES})",
                self.memory_bytes
            ));
        }
        if self.deadline.is_zero() {
            return Err("deadline must be above zero".into());
        }
        Ok(())
    }
}
